package wsgate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// slowBus is a one-subscription bus whose handler takes delay per event,
// so events queue when they come faster; its subscription measures the
// backlog (parley.QueueWaiter) as natsbus's does: the wait of the event
// handled or, if longer, the queued events times delay.
type slowBus struct {
	delay  time.Duration
	queue  chan queued
	wait   atomic.Int64
	handle func(subject string, data []byte, more bool)
	done   chan struct{}
}

type queued struct {
	data []byte
	at   time.Time
}

func newSlowBus(delay time.Duration) *slowBus {
	return &slowBus{delay: delay, queue: make(chan queued, 1<<16), done: make(chan struct{})}
}

func (b *slowBus) Publish(_ context.Context, _ string, data []byte) error {
	b.queue <- queued{data, time.Now()}
	return nil
}

func (b *slowBus) run() {
	defer close(b.done)
	for q := range b.queue {
		b.wait.Store(int64(max(time.Since(q.at), time.Duration(len(b.queue))*b.delay)))
		time.Sleep(b.delay)
		b.handle("conv", q.data, len(b.queue) > 0)
	}
}

func (b *slowBus) QueueWait() time.Duration { return time.Duration(b.wait.Load()) }

// busCore is a pipeCore whose sends publish their message events on a
// bus, as the service does once they commit.
type busCore struct {
	pipeCore
	t   testing.TB
	bus *slowBus
}

func (c *busCore) SendMany(ctx context.Context, p *parley.Principal, reqs []service.SendRequest, each func(int, service.SendResult)) []service.SendResult {
	return c.pipeCore.SendMany(ctx, p, reqs, func(i int, r service.SendResult) {
		c.publish(r)
		each(i, r)
	})
}

func (c *busCore) Send(ctx context.Context, p *parley.Principal, req service.SendRequest) (*parley.Message, bool, error) {
	m, created, err := c.pipeCore.Send(ctx, p, req)
	c.publish(service.SendResult{Message: m, Err: err})
	return m, created, err
}

func (c *busCore) publish(r service.SendResult) {
	if r.Err == nil {
		_ = c.bus.Publish(context.Background(), "conv", messageEvent(c.t, *r.Message))
	}
}

// count returns how many frames of type typ r holds.
func (r *recorder) count(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, f := range r.frames {
		if strings.HasPrefix(string(f), `{"type":"`+typ+`"`) {
			n++
		}
	}
	return n
}

// TestBackPressure: a client keeps 16 sends in flight while the node can
// deliver only one event every 2 ms. Without back-pressure the node acks
// as fast as its (instant) store commits and live delivery falls behind
// by about all of the run; with a bound of 25 ms, sends are held, acks
// slow to the delivery rate, the events' wait stays near the bound, and
// every message arrives once, in order. (Not ms: events, which the
// machine's speed does not change.)
func TestBackPressure(t *testing.T) {
	const n, window, delay, bound = 600, 16, 2 * time.Millisecond, 25 * time.Millisecond
	run := func(t *testing.T, bound time.Duration) (maxWait time.Duration, maxAhead int) {
		bus := newSlowBus(delay)
		core := &busCore{t: t, bus: bus}
		h := newTestHub(t, &core.fakeCore)
		h.g.core = core
		h.g.cfg.DeliveryLagBound = bound
		h.g.cfg.LimitsOff = true
		w := &lagWatch{g: h.g}
		bus.handle = h.batchHandler(w)
		w.sub.Store(parley.QueueWaiter(bus))
		go bus.run()
		defer func() { close(bus.queue); <-bus.done }()

		recv := connectFake(h, "v", map[string]int64{testConv: 0})
		sr := &recorder{}
		s := newSession(h.g, &parley.Principal{UserID: "u", DeviceID: "d", ExpiresAt: time.Now().Add(time.Hour)})
		s.setConn(sr)
		h.g.sessions.Add(1)
		h.begin(s)
		h.finish(s, map[string]int64{})

		sent := 0
		deadline := time.Now().Add(60 * time.Second)
		for {
			acked, delivered := sr.count(FrameAck), recv.count(FrameMessage)
			maxAhead = max(maxAhead, acked-delivered)
			maxWait = max(maxWait, bus.QueueWait())
			if delivered == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 60 s: sent %d, acked %d, delivered %d", sent, acked, delivered)
			}
			for sent < n && sent-acked < window {
				sent++
				s.receive(websocket.TextMessage, fmt.Appendf(nil, `{"type":"send","id":"%d","conversation_id":%q,"client_msg_id":"m%d","body":"x"}`, sent, testConv, sent))
			}
			time.Sleep(500 * time.Microsecond)
		}
		if got, want := recv.seqs(t), seqRange(1, n); !slices.Equal(got, want) {
			t.Fatalf("delivered %d seqs, not 1..%d once each in order: %v", len(got), n, got)
		}
		if a := sr.count(FrameAck); a != n {
			t.Fatalf("%d acks, want %d", a, n)
		}
		return maxWait, maxAhead
	}
	var freeWait, heldWait time.Duration
	var freeAhead, heldAhead int
	t.Run("unbounded", func(t *testing.T) { freeWait, freeAhead = run(t, -1) })
	t.Run("bounded", func(t *testing.T) { heldWait, heldAhead = run(t, bound) })
	t.Logf("events waited at most %v unbounded, %v with a %v bound; acks ran ahead of deliveries by at most %d and %d", freeWait, heldWait, bound, freeAhead, heldAhead)
	// Bounded, acks stay within the events the bound stands for and a
	// few windows (about 80 on a quiet machine, against about 560
	// unbounded); a machine that stalls the handler (CI at full load saw
	// 168 against 535) adds more, so the check is against the unbounded
	// run of the same machine: at most half as far ahead. Counted in
	// events, not time.
	if heldAhead > freeAhead/2 {
		t.Errorf("with a %v bound acks ran ahead of deliveries by up to %d, unbounded %d: want at most half", bound, heldAhead, freeAhead)
	}
	if freeAhead < n/2 {
		t.Errorf("unbounded, acks ran ahead of deliveries by at most %d: the test did not overload delivery", freeAhead)
	}
	if heldWait > freeWait/2 {
		t.Errorf("events waited up to %v with the bound, %v without", heldWait, freeWait)
	}
}

// TestPressureHoldReleases: a held send goes on when the pressure falls,
// and after maxSendHold at the latest; with none it is not held at all.
func TestPressureHoldReleases(t *testing.T) {
	var p pressure
	if d := p.hold(context.Background()); d != 0 {
		t.Fatalf("held %v with no pressure", d)
	}
	p.raise()
	p.raise()
	var wg sync.WaitGroup
	var held time.Duration
	wg.Add(1)
	go func() { defer wg.Done(); held = p.hold(context.Background()) }()
	time.Sleep(30 * time.Millisecond)
	p.lower() // one subscription still lags
	time.Sleep(30 * time.Millisecond)
	p.lower()
	wg.Wait()
	if held < 50*time.Millisecond || held > maxSendHold {
		t.Fatalf("held %v, want until both subscriptions caught up (about 60ms)", held)
	}
	p.raise()
	defer p.lower()
	start := time.Now()
	p.hold(context.Background())
	if d := time.Since(start); d < maxSendHold || d > maxSendHold+time.Second {
		t.Fatalf("a hold that nothing released took %v, want %v", d, maxSendHold)
	}
}
