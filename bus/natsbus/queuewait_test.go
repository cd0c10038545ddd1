package natsbus

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// TestQueueWaitMeasuresBacklog: a handler that takes 20 ms an event,
// given 10 events at once, finds the last waiting about 180 ms; a lone
// event later waits about nothing.
func TestQueueWaitMeasuresBacklog(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	b, err := ConnectEmbedded(e, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const step = 20 * time.Millisecond
	var qw parley.QueueWaiter
	ready := make(chan struct{})
	waits := make(chan time.Duration, 16)
	sub, err := b.SubscribeBatch("wait.>", func(string, []byte, bool) {
		<-ready
		waits <- qw.QueueWait()
		time.Sleep(step)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	qw = sub.(parley.QueueWaiter)
	close(ready)
	ctx := context.Background()
	for i := range 10 {
		if err := b.Publish(ctx, "wait.x", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	var got []time.Duration
	for range 10 {
		got = append(got, <-waits)
	}
	// The last waited for the nine before it, less at most one step (an
	// arrival is stamped when the handler first sees it, up to one
	// event's handling late), and not wildly more (the race detector
	// and a loaded machine slow things).
	if last := got[9]; last < 8*step || last > 9*step+2*time.Second {
		t.Fatalf("the 10th event waited %v, want about %v (all: %v)", last, 9*step, got)
	}
	if got[0] > step {
		t.Fatalf("the first event waited %v (all: %v)", got[0], got)
	}
	time.Sleep(50 * time.Millisecond)
	if err := b.Publish(ctx, "wait.y", nil); err != nil {
		t.Fatal(err)
	}
	if w := <-waits; w > step {
		t.Fatalf("a lone event waited %v", w)
	}
}

// TestQueueWaitRing: the sampler gives each event the time its count was
// first seen, and errs long, never short, when the ring is full.
func TestQueueWaitRing(t *testing.T) {
	q := newQueueWait()
	if w := q.observe(1, 1); w > time.Millisecond {
		t.Fatalf("first event waited %v", w)
	}
	time.Sleep(5 * time.Millisecond)
	q.observe(2, 3) // events 2 and 3 arrived by now
	time.Sleep(5 * time.Millisecond)
	if w := q.observe(3, 3); w < 5*time.Millisecond {
		t.Fatalf("event 3 waited %v, want at least 5ms", w)
	}
	// Fill the ring past its size, a new count every 2 ms of made-up
	// time, while event 1 is still being handled: the newest slot takes
	// the later counts at its own time, so an event that arrived since
	// errs long (about 8 s here), never short.
	q = newQueueWait()
	q.base = time.Now().Add(-time.Hour)
	for i := range uint64(2 * waitSamples) {
		q.base = q.base.Add(-2 * time.Millisecond) // now moves 2 ms per sample
		q.observe(1, i+1)
	}
	if q.n != waitSamples {
		t.Fatalf("ring holds %d samples, want %d", q.n, waitSamples)
	}
	if w := q.observe(2*waitSamples, 2*waitSamples); w < 8*time.Second {
		t.Fatalf("event %d waited %v, want the newest slot's age (about 8s)", 2*waitSamples, w)
	}
}
