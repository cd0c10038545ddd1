package push

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// deviceState is what the push role remembers per device and
// conversation, in the state bucket under "<device>.<conversation>".
type deviceState struct {
	// Notified is the newest seq a notification sent to the device
	// covers; Cleared the Notified a read update has since cleared. The
	// device holds a notification while Notified > Cleared.
	Notified int64 `json:"n,omitempty"`
	Cleared  int64 `json:"c,omitempty"`
	// Claim is the seq a worker is sending a notification up to, since
	// ClaimAt (Unix ms): others wait rather than send it twice. A claim
	// older than claimTTL is void (its worker died).
	Claim   int64 `json:"k,omitempty"`
	ClaimAt int64 `json:"ka,omitempty"`
	// ClearClaim is the same for a read update.
	ClearClaim   int64 `json:"kc,omitempty"`
	ClearClaimAt int64 `json:"kca,omitempty"`
}

// A claim left behind (its worker died, or could not record the outcome)
// may have been sent: it counts as held until a clear covers it (an extra
// silent clear does no harm).
func (s *deviceState) held() bool { return max(s.Notified, s.Claim) > s.Cleared }

// sending reports a notification claim live at now: a send whose outcome
// is not known yet.
func (s *deviceState) sending(now time.Time) bool {
	return s.Claim > 0 && live(s.ClaimAt, now)
}

// live reports whether a claim taken at (Unix ms) is younger than
// claimTTL at now. A time further ahead than clockSkew (another node's
// clock running fast) does not keep a claim alive.
func live(at int64, now time.Time) bool {
	age := now.Sub(time.UnixMilli(at))
	return age < claimTTL && age > -clockSkew
}

// clockSkew is how far ahead another node's clock may run.
const clockSkew = 5 * time.Second

// claimTTL bounds a send: longer than a provider request can take (FCM
// may fetch an OAuth token first, each bounded by sendTimeout).
const claimTTL = 3 * sendTimeout

func stateKey(deviceID, conversationID string) string { return deviceID + "." + conversationID }

// loadState reads a device's state in a conversation and its revision (0
// if it has none).
func (q *Queue) loadState(ctx context.Context, deviceID, conversationID string) (deviceState, uint64, error) {
	var s deviceState
	e, err := q.state.Get(ctx, stateKey(deviceID, conversationID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return s, 0, nil
	}
	if err != nil {
		return s, 0, err
	}
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return deviceState{}, e.Revision(), nil // unreadable: start over
	}
	return s, e.Revision(), nil
}

// updateState applies change to a device's state atomically (compare and
// set, retried on conflict). change returns false to leave it as it is.
func (q *Queue) updateState(ctx context.Context, deviceID, conversationID string, change func(s *deviceState) (bool, error)) (deviceState, error) {
	s, _, err := q.updateStateFrom(ctx, deviceID, conversationID, nil, change)
	return s, err
}

// updateStateFrom is updateState starting from known, the entry as this
// node last wrote it (nil: read it first), and returning the entry
// written (nil if nothing was). A known entry spares the read: if
// another wrote the key since, the write conflicts and the key is read
// as usual.
func (q *Queue) updateStateFrom(ctx context.Context, deviceID, conversationID string, known *kvEntry,
	change func(s *deviceState) (bool, error)) (deviceState, *kvEntry, error) {
	var s deviceState
	wrote, err := casUpdateFrom(ctx, q.state, stateKey(deviceID, conversationID), known, func(cur []byte) ([]byte, error) {
		s = deviceState{}
		if cur != nil && json.Unmarshal(cur, &s) != nil {
			s = deviceState{} // unreadable: start over
		}
		ok, err := change(&s)
		if err != nil || !ok {
			return nil, err
		}
		return json.Marshal(&s)
	})
	return s, wrote, err
}

// casAttempts bounds the rereads of a contended key.
const casAttempts = 32

// errContended says a key kept changing under a compare-and-set.
var errContended = errors.New("push: key changed by others on every attempt")

// kvEntry is a key's value at a revision (revision 0: the key did not
// exist).
type kvEntry struct {
	value    []byte
	revision uint64
}

// casUpdate reads key (cur is nil if it does not exist), calls change,
// and writes what it returns only if the key has not changed meanwhile,
// reading again on a conflict. change returns nil to write nothing.
func casUpdate(ctx context.Context, kv jetstream.KeyValue, key string, change func(cur []byte) ([]byte, error)) error {
	_, err := casUpdateFrom(ctx, kv, key, nil, change)
	return err
}

// casUpdateFrom is casUpdate whose first attempt starts from known
// instead of reading the key (nil: read it). It returns the entry it
// wrote, nil if change wrote nothing.
func casUpdateFrom(ctx context.Context, kv jetstream.KeyValue, key string, known *kvEntry,
	change func(cur []byte) ([]byte, error)) (*kvEntry, error) {
	for range casAttempts {
		var cur []byte
		var rev uint64
		if known != nil {
			cur, rev = known.value, known.revision
			known = nil
		} else {
			e, err := kv.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return nil, err
			default:
				cur, rev = e.Value(), e.Revision()
			}
		}
		next, err := change(cur)
		if err != nil || next == nil {
			return nil, err
		}
		if rev == 0 {
			rev, err = kv.Create(ctx, key, next)
		} else {
			rev, err = kv.Update(ctx, key, next, rev)
		}
		if err == nil {
			return &kvEntry{value: next, revision: rev}, nil
		}
		if !isConflict(err) {
			return nil, err
		}
	}
	return nil, errContended
}

// isConflict reports a compare-and-set conflict of Create or Update: the
// key changed since it was read. A replicated (R>1) bucket reports it
// with another code than a single one.
func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// claimNotify claims the sending of a notification up to upTo for a job of
// seq: errCovered if an earlier notification covers seq, errClaimed if
// another worker is sending one that does.
func (q *Queue) claimNotify(ctx context.Context, deviceID, conversationID string, seq, upTo int64, now time.Time) error {
	_, err := q.claimNotifyEntry(ctx, deviceID, conversationID, seq, upTo, now)
	return err
}

// claimNotifyEntry is claimNotify returning the state entry the claim
// wrote, for finishNotifyFrom.
func (q *Queue) claimNotifyEntry(ctx context.Context, deviceID, conversationID string, seq, upTo int64, now time.Time) (*kvEntry, error) {
	_, wrote, err := q.updateStateFrom(ctx, deviceID, conversationID, nil, func(s *deviceState) (bool, error) {
		if s.Notified >= seq {
			return false, errCovered
		}
		// One send at a time per device and conversation: an older
		// notification must not land after a newer one (or a clear).
		if s.sending(now) {
			return false, errClaimed
		}
		s.Claim, s.ClaimAt = upTo, now.UnixMilli()
		return true, nil
	})
	return wrote, err
}

// finishNotify records the outcome of a claimed send: sent raises
// Notified to upTo; either way the claim goes.
func (q *Queue) finishNotify(ctx context.Context, deviceID, conversationID string, upTo int64, sent bool) error {
	return q.finishNotifyFrom(ctx, deviceID, conversationID, upTo, sent, nil)
}

// finishNotifyFrom is finishNotify starting from claimed, the entry the
// claim wrote (nil: read it), which spares a read when nobody wrote the
// key since.
func (q *Queue) finishNotifyFrom(ctx context.Context, deviceID, conversationID string, upTo int64, sent bool, claimed *kvEntry) error {
	_, _, err := q.updateStateFrom(ctx, deviceID, conversationID, claimed, func(s *deviceState) (bool, error) {
		if sent && upTo > s.Notified {
			s.Notified = upTo
		}
		if s.Claim == upTo {
			s.Claim, s.ClaimAt = 0, 0
		}
		return true, nil
	})
	return err
}

// claimClear claims a read update for a device: errCovered if it holds no
// notification of the conversation at or below readSeq.
func (q *Queue) claimClear(ctx context.Context, deviceID, conversationID string, readSeq int64, now time.Time) error {
	_, err := q.updateState(ctx, deviceID, conversationID, func(s *deviceState) (bool, error) {
		if s.sending(now) {
			return false, errClaimed // clear it once that send is done
		}
		if !s.held() || s.Cleared >= readSeq {
			return false, errCovered
		}
		if s.ClearClaim >= readSeq && live(s.ClearClaimAt, now) {
			return false, errClaimed
		}
		s.ClearClaim, s.ClearClaimAt = readSeq, now.UnixMilli()
		return true, nil
	})
	return err
}

// finishClear records a read update's outcome: sent clears what was
// notified up to readSeq.
func (q *Queue) finishClear(ctx context.Context, deviceID, conversationID string, readSeq int64, sent bool) error {
	_, err := q.updateState(ctx, deviceID, conversationID, func(s *deviceState) (bool, error) {
		if sent {
			s.Cleared = max(s.Cleared, min(max(s.Notified, s.Claim), readSeq))
		}
		if s.ClearClaim == readSeq {
			s.ClearClaim, s.ClearClaimAt = 0, 0
		}
		return true, nil
	})
	return err
}

// holdsNotification reports whether a device holds a notification of the
// conversation, or may in a moment (a send in flight), for the read
// fan-out.
func (q *Queue) holdsNotification(ctx context.Context, deviceID, conversationID string, now time.Time) (bool, error) {
	s, _, err := q.loadState(ctx, deviceID, conversationID)
	return s.held() || s.sending(now), err
}

// errCovered says there is nothing to send: an earlier notification (or
// clear) covers the job.
var errCovered = errors.New("push: covered by an earlier notification")
