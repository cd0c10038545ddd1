// Package bustest is the contract suite every parley.Bus engine passes.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// Run runs the suite. connect returns a new connection to one shared bus
// network each time it is called (so events cross connections, as they
// cross nodes); Run closes what it gets. Subjects are prefixed with a
// random token so runs against a shared server do not see each other.
func Run(t *testing.T, connect func(tb testing.TB) parley.Bus) {
	tests := []struct {
		name string
		fn   func(t *testing.T, connect func(tb testing.TB) parley.Bus, prefix string)
	}{
		{"DeliversAcrossConnections", testDelivers},
		{"OrderPerPublisher", testOrder},
		{"Wildcards", testWildcards},
		{"EverySubscriberGetsEvery", testFanOut},
		{"ClosedSubscriptionStops", testUnsubscribe},
		{"PublishAfterClose", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b [6]byte
			_, _ = rand.Read(b[:])
			tc.fn(t, func(tb testing.TB) parley.Bus {
				bus := connect(tb)
				tb.Cleanup(func() { bus.Close() })
				return bus
			}, "test"+hex.EncodeToString(b[:]))
		})
	}
}

// collector gathers events delivered to a subscription.
type collector struct {
	mu     sync.Mutex
	events []string // subject + " " + data
	notify chan struct{}
}

func newCollector() *collector { return &collector{notify: make(chan struct{}, 1)} }

func (c *collector) handle(subject string, data []byte) {
	c.mu.Lock()
	c.events = append(c.events, subject+" "+string(data)) // copies data: handlers must not keep it
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// wait waits until n events arrived and returns them.
func (c *collector) wait(tb testing.TB, n int) []string {
	tb.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		got := append([]string(nil), c.events...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-c.notify:
		case <-deadline:
			tb.Fatalf("got %d events within 10s, want %d: %v", len(got), n, got)
		}
	}
}

// quiet checks that no more than n events arrive within a short while.
func (c *collector) quiet(tb testing.TB, n int) {
	tb.Helper()
	time.Sleep(200 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.events) != n {
		tb.Fatalf("got %d events, want exactly %d: %v", len(c.events), n, c.events)
	}
}

func testDelivers(t *testing.T, connect func(tb testing.TB) parley.Bus, prefix string) {
	sub, pub := connect(t), connect(t)
	c := newCollector()
	if _, err := sub.Subscribe(prefix+".conv.a", c.handle); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), prefix+".conv.a", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), prefix+".conv.b", []byte("not for you")); err != nil {
		t.Fatal(err)
	}
	if got := c.wait(t, 1); got[0] != prefix+".conv.a hello" {
		t.Fatalf("got %q", got[0])
	}
	c.quiet(t, 1)
}

func testOrder(t *testing.T, connect func(tb testing.TB) parley.Bus, prefix string) {
	sub, pub := connect(t), connect(t)
	c := newCollector()
	if _, err := sub.Subscribe(prefix+".order", c.handle); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i := 0; i < n; i++ {
		if err := pub.Publish(context.Background(), prefix+".order", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	got := c.wait(t, n)
	for i, e := range got {
		if want := fmt.Sprintf("%s.order %d", prefix, i); e != want {
			t.Fatalf("event %d is %q, want %q", i, e, want)
		}
	}
}

func testWildcards(t *testing.T, connect func(tb testing.TB) parley.Bus, prefix string) {
	b := connect(t)
	one, all := newCollector(), newCollector()
	if _, err := b.Subscribe(prefix+".user.*", one.handle); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(prefix+".>", all.handle); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{".user.u1", ".user.u1.device", ".conv.c1"} {
		if err := b.Publish(context.Background(), prefix+s, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if got := one.wait(t, 1); got[0] != prefix+".user.u1 x" {
		t.Fatalf("user.* got %v", got)
	}
	all.wait(t, 3)
	one.quiet(t, 1)
	all.quiet(t, 3)
}

func testFanOut(t *testing.T, connect func(tb testing.TB) parley.Bus, prefix string) {
	pub := connect(t)
	var cs []*collector
	for i := 0; i < 3; i++ {
		c := newCollector()
		cs = append(cs, c)
		if _, err := connect(t).Subscribe(prefix+".fan", c.handle); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		if err := pub.Publish(context.Background(), prefix+".fan", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cs {
		c.wait(t, 10)
		c.quiet(t, 10)
	}
}

func testUnsubscribe(t *testing.T, connect func(tb testing.TB) parley.Bus, prefix string) {
	b := connect(t)
	c := newCollector()
	s, err := b.Subscribe(prefix+".x", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	b.Publish(context.Background(), prefix+".x", []byte("1"))
	c.wait(t, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	b.Publish(context.Background(), prefix+".x", []byte("2"))
	c.quiet(t, 1)
}

func testClosed(t *testing.T, connect func(tb testing.TB) parley.Bus, prefix string) {
	b := connect(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	err := b.Publish(context.Background(), prefix+".x", []byte("late"))
	if parley.ErrorCode(err) != parley.CodeUnavailable {
		t.Fatalf("publish after close: %v, want code unavailable", err)
	}
}
