package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TicketBucket is the default key-value bucket of Tickets.
const TicketBucket = "parley_ws_tickets"

// Tickets keeps single-use WebSocket tickets (service.TicketStore) in a
// JetStream key-value bucket, so that a ticket issued by one node opens a
// socket on any node, once. The bucket's TTL drops what nobody redeemed.
// Redemption reads the key and deletes it on the condition that its
// revision is still the one read: of several redeemers, on any nodes, one
// deletes and the others find the revision moved and fail. Values are kept
// in memory only (a NATS restart loses the tickets of the last seconds:
// their clients ask for new ones). Safe for concurrent use.
type Tickets struct {
	kv  jetstream.KeyValue
	ttl time.Duration
}

// TicketOptions configure NewTickets.
type TicketOptions struct {
	// Bucket is the key-value bucket; default TicketBucket.
	Bucket string
	// TTL is how long a ticket lives unredeemed; default 30 s.
	TTL time.Duration
	// Replicas is the bucket's replica count on a NATS cluster; default 1.
	Replicas int
}

// NewTickets creates (or opens: creating is idempotent) the bucket.
func NewTickets(ctx context.Context, b *Bus, opts TicketOptions) (*Tickets, error) {
	if opts.Bucket == "" {
		opts.Bucket = TicketBucket
	}
	if opts.TTL <= 0 {
		opts.TTL = 30 * time.Second
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: tickets: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       opts.Bucket,
		Description:  "Parley WebSocket tickets: SHA-256 of a ticket -> the session it opens (ids, expiry)",
		History:      1,
		TTL:          opts.TTL,
		Storage:      jetstream.MemoryStorage,
		Replicas:     max(opts.Replicas, 1),
		MaxValueSize: 1024,
	})
	if err != nil {
		return nil, fmt.Errorf("natsbus: tickets bucket %s: %w", opts.Bucket, err)
	}
	return &Tickets{kv: kv, ttl: opts.TTL}, nil
}

// TTL is how long a ticket lives unredeemed.
func (t *Tickets) TTL() time.Duration { return t.ttl }

// Put stores value under key (a hex hash: a valid NATS key), which must be
// new.
func (t *Tickets) Put(ctx context.Context, key string, value []byte) error {
	if _, err := t.kv.Create(ctx, key, value); err != nil {
		return fmt.Errorf("natsbus: store ticket: %w", err)
	}
	return nil
}

// Take returns the value under key and deletes it; ok is false if there
// is none (never stored, expired, or taken already, here or on another
// node).
func (t *Tickets) Take(ctx context.Context, key string) (value []byte, ok bool, err error) {
	e, err := t.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("natsbus: read ticket: %w", err)
	}
	if time.Since(e.Created()) >= t.ttl {
		return nil, false, nil // past its TTL, not yet swept by the server
	}
	// Only the redeemer whose delete lands on the revision it read wins.
	if err := t.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("natsbus: use up ticket: %w", err)
	}
	return e.Value(), true, nil
}
