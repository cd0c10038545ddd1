package parley

import (
	"context"
	"time"
)

// Bus carries live events between the parts of Parley and between nodes:
// messages, receipts, typing, presence and membership changes all travel on
// it, even on a single node, so that a cluster needs no other path.
//
// The bus is news, not truth: the store is the system of record. An event
// can be lost (a node dying between commit and publish, a subscriber
// reconnecting), so nothing may depend on the bus being lossless; clients
// heal gaps by fetching from the store. What the bus does promise: events
// one publisher sends on one subject reach each subscriber in the order
// they were published, and each at most once per subscription.
//
// Subjects are dot-separated tokens; in Subscribe, "*" matches one token
// and a final ">" matches one or more. Implementations are safe for
// concurrent use. bus/bustest holds the contract suite every engine passes.
type Bus interface {
	// Publish sends data on subject. It returns once the bus has accepted
	// the event, not once subscribers have it. It fails with CodeUnavailable
	// when the bus cannot be reached.
	Publish(ctx context.Context, subject string, data []byte) error
	// Subscribe calls handle for every event on subjects matching pattern
	// until the subscription is closed. Calls for one subscription are
	// sequential, in arrival order; handle must not block for long (it
	// holds up that subscription's later events) and must not keep data
	// after it returns.
	Subscribe(pattern string, handle func(subject string, data []byte)) (Subscription, error)
	// Close ends every subscription and releases the bus.
	Close() error
}

// BatchSubscriber is implemented by a Bus whose subscriptions can tell
// the handler, with each event, whether more events of that subscription
// are already waiting: a handler may then hold work back (the WebSocket
// gateway holds the frames bound for one socket, to write them in one
// syscall) until an event comes with more false. One always follows an
// event with more true, unless the subscription is closed meanwhile. A
// layer that drops an event (seal.Bus, for one that does not open) passes
// it on with nil data when more is false, so the handler still learns
// that the burst ended; handlers skip nil data.
type BatchSubscriber interface {
	SubscribeBatch(pattern string, handle func(subject string, data []byte, more bool)) (Subscription, error)
}

// QueueWaiter is implemented by a Subscription that measures how long its
// events wait in this process between arriving and reaching the handler:
// the node's delivery backlog. The WebSocket gateway holds new sends while
// it is over a bound (back-pressure; docs/protocol.md, Overload).
type QueueWaiter interface {
	// QueueWait is the subscription's backlog in time, as of the event
	// being handled (or, between events, the last one handled): how long
	// that event waited in the queue or, if longer, how long the events
	// queued behind it are expected to (their number times the recent
	// handling time per event). Safe for concurrent use; cheap (called
	// for every event).
	QueueWait() time.Duration
}

// Subscription is one Subscribe; Close stops its deliveries (a call in
// progress may finish) and is idempotent.
type Subscription interface {
	Close() error
}
