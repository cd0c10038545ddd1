package push

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley"
)

// endpointState is the failure record of one device's Web Push
// registration, in the state bucket under "endpoint.<device>" (so every
// push node sees it). A registration whose sends keep failing backs off:
// no sends to it until Until; after EndpointDropAfter failures in a row
// spanning EndpointDropSpan it is removed. A success clears the record; a
// new registration of the device (another RegisteredAt) starts over.
type endpointState struct {
	RegisteredAt int64 `json:"r"`            // the registration's UpdatedAt, Unix ms
	Failures     int   `json:"f"`            // consecutive failed sends
	First        int64 `json:"ft,omitempty"` // the first of them, Unix ms
	Last         int64 `json:"lt,omitempty"` // the last of them, Unix ms
	Until        int64 `json:"u,omitempty"`  // no sends before this, Unix ms
}

// endpointBackoffMax caps a registration's backoff.
const endpointBackoffMax = time.Hour

func endpointKey(deviceID string) string { return "endpoint." + deviceID }

// loadEndpoint reads a registration's failure record; the zero record if
// it has none or the one kept is of an earlier registration.
func (q *Queue) loadEndpoint(ctx context.Context, deviceID string, reg *parley.PushRegistration) (endpointState, error) {
	var s endpointState
	e, err := q.state.Get(ctx, endpointKey(deviceID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if json.Unmarshal(e.Value(), &s) != nil || s.RegisteredAt != reg.UpdatedAt.UnixMilli() {
		return endpointState{}, nil
	}
	return s, nil
}

// endpointFailed records a failed send at now and returns the record:
// from the second failure in a row the registration backs off for base,
// doubling per further failure up to endpointBackoffMax.
func (q *Queue) endpointFailed(ctx context.Context, deviceID string, reg *parley.PushRegistration, base time.Duration, now time.Time) (endpointState, error) {
	var s endpointState
	regAt := reg.UpdatedAt.UnixMilli()
	err := casUpdate(ctx, q.state, endpointKey(deviceID), func(cur []byte) ([]byte, error) {
		s = endpointState{}
		if cur != nil && (json.Unmarshal(cur, &s) != nil || s.RegisteredAt != regAt) {
			s = endpointState{}
		}
		s.RegisteredAt = regAt
		s.Failures++
		if s.First == 0 {
			s.First = now.UnixMilli()
		}
		s.Last = now.UnixMilli()
		if s.Failures >= 2 {
			wait := min(base<<min(s.Failures-2, 20), endpointBackoffMax)
			s.Until = now.Add(wait).UnixMilli()
		}
		return json.Marshal(&s)
	})
	return s, err
}

// endpointSucceeded clears a registration's failure record, if it has
// one (known is what loadEndpoint read before the send).
func (q *Queue) endpointSucceeded(ctx context.Context, deviceID string, known endpointState) error {
	if known.Failures == 0 {
		return nil
	}
	return q.endpointForget(ctx, deviceID)
}

// endpointForget deletes a registration's failure record.
func (q *Queue) endpointForget(ctx context.Context, deviceID string) error {
	err := q.state.Delete(ctx, endpointKey(deviceID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}
