package wsgate

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
)

// Back-pressure: when live delivery falls behind, the gateway holds new
// sends instead of committing messages faster than it can deliver them.
//
// The measure is the node's delivery backlog in time: how long the bus
// events it handles waited in the subscription's queue before the hub got
// them (parley.QueueWaiter; nats.go's pending list). Pipelined sends are
// acked as soon as they commit, so without a bound a node at maximum load
// keeps acking while that queue, and with it the time from send to
// delivery, grows by seconds. Above Config.DeliveryLagBound the node
// raises the pressure; a session then holds the sends at the head of its
// request queue (not its receipts or reads) until the pressure falls,
// which it does once an event waited at most half the bound or the queue
// emptied, or at most maxSendHold. Held sends are not acked, so a client
// with a window of sends in flight slows to the rate the node delivers;
// its further frames wait in the request queue (rate_limited past
// QueueDepth) and, past that, in TCP. Nothing is dropped or reordered:
// the sends go on in their order once released.
//
// An idle or keeping-up node pays one atomic load per run of sends; no
// timer exists unless a send is held.
type pressure struct {
	lagging atomic.Int32 // subscriptions whose events wait past the bound
	mu      sync.Mutex
	clear   chan struct{} // closed when lagging falls to 0; nil while 0
}

// maxSendHold bounds how long one run of sends is held: a backlog that
// does not shrink (another node's traffic, a stuck subscriber) slows this
// node's senders but never stops them.
const maxSendHold = 2 * time.Second

// raise counts one subscription over the bound.
func (p *pressure) raise() {
	p.mu.Lock()
	if p.lagging.Add(1) == 1 {
		p.clear = make(chan struct{})
	}
	p.mu.Unlock()
}

// lower counts one subscription back under the bound, releasing the held
// sends when it was the last.
func (p *pressure) lower() {
	p.mu.Lock()
	if p.lagging.Add(-1) == 0 {
		close(p.clear)
		p.clear = nil
	}
	p.mu.Unlock()
}

// hold waits while the pressure is up, at most maxSendHold, and returns
// how long it waited (0 at once when the pressure is down).
func (p *pressure) hold(ctx context.Context) time.Duration {
	if p.lagging.Load() == 0 {
		return 0
	}
	p.mu.Lock()
	ch := p.clear
	p.mu.Unlock()
	if ch == nil {
		return 0
	}
	start := time.Now()
	t := time.NewTimer(maxSendHold)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
	return time.Since(start)
}

// lagWatch follows one subscription's queue wait and moves the pressure.
// observe runs on the subscription's handler goroutine; stop may run
// beside it.
type lagWatch struct {
	g    *Gateway
	sub  atomic.Value // parley.QueueWaiter, set once subscribed
	over atomic.Bool  // this subscription counts in g.press
}

// observe runs after each event: more says whether others wait.
func (w *lagWatch) observe(more bool) {
	q, _ := w.sub.Load().(parley.QueueWaiter)
	if q == nil {
		return
	}
	wait := q.QueueWait()
	g := w.g
	g.cfg.Metrics.DeliveryLag(wait)
	bound := g.cfg.DeliveryLagBound
	if bound <= 0 {
		return
	}
	if !w.over.Load() {
		if wait > bound && w.over.CompareAndSwap(false, true) {
			g.press.raise()
		}
	} else if wait <= bound/2 || !more {
		w.stop()
	}
}

// stop takes this subscription's share of the pressure away.
func (w *lagWatch) stop() {
	if w.over.CompareAndSwap(true, false) {
		w.g.press.lower()
	}
}
