package push

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/bus/natsbus"
)

func testQueue(t *testing.T) *Queue {
	t.Helper()
	emb, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: filepath.Join(t.TempDir(), "nats")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	bus, err := natsbus.ConnectEmbedded(emb, natsbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	q, err := OpenQueue(context.Background(), bus.Conn(), QueueConfig{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

// TestClaims: the per-device state that keeps notifications single and
// clears right.
func TestClaims(t *testing.T) {
	q := testQueue(t)
	ctx := context.Background()
	now := time.Now()
	const dev, conv = "d", "c"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Nothing held yet: no clear.
	if err := q.claimClear(ctx, dev, conv, 5, now); !errors.Is(err, errCovered) {
		t.Fatalf("clear with nothing held: %v", err)
	}
	// A send up to 3 is claimed; a second send waits for it, even one
	// for a newer message (one at a time, so the older cannot land last).
	must(q.claimNotify(ctx, dev, conv, 1, 3, now))
	if err := q.claimNotify(ctx, dev, conv, 4, 4, now); !errors.Is(err, errClaimed) {
		t.Fatalf("second claim: %v", err)
	}
	// A read meanwhile: the clear waits for the send too.
	if err := q.claimClear(ctx, dev, conv, 3, now); !errors.Is(err, errClaimed) {
		t.Fatalf("clear during a send: %v", err)
	}
	must(q.finishNotify(ctx, dev, conv, 3, true))
	// Seqs up to 3 are covered; 4 gets its own.
	if err := q.claimNotify(ctx, dev, conv, 2, 3, now); !errors.Is(err, errCovered) {
		t.Fatalf("covered: %v", err)
	}
	if held, _ := q.holdsNotification(ctx, dev, conv, now); !held {
		t.Fatal("a sent notification is not held")
	}
	must(q.claimClear(ctx, dev, conv, 3, now))
	must(q.finishClear(ctx, dev, conv, 3, true))
	if held, _ := q.holdsNotification(ctx, dev, conv, now); held {
		t.Fatal("still held after the clear")
	}
	// A claim whose worker died (never finished) lapses after claimTTL;
	// what it may have sent counts as held, so a read clears it.
	must(q.claimNotify(ctx, dev, conv, 4, 4, now))
	later := now.Add(claimTTL + time.Second)
	if held, _ := q.holdsNotification(ctx, dev, conv, later); !held {
		t.Fatal("an unfinished claim is not counted as held")
	}
	must(q.claimClear(ctx, dev, conv, 4, later))
	must(q.finishClear(ctx, dev, conv, 4, true))
	must(q.claimNotify(ctx, dev, conv, 5, 5, later)) // the lapsed claim does not block
	// A claim dated far in the future (a fast clock elsewhere) does not
	// hold others up.
	must(q.finishNotify(ctx, dev, conv, 5, true))
	must(q.claimNotify(ctx, dev, conv, 6, 6, now.Add(time.Hour)))
	must(q.claimNotify(ctx, dev, conv, 7, 7, later))
}

// TestHeal: streams and buckets deleted under a running queue (an
// operator's mistake, a NATS server back without its storage) are made
// again, and the job that found them gone is published after all.
func TestHeal(t *testing.T) {
	q := testQueue(t)
	ctx := context.Background()
	for _, name := range []string{q.n.stream, q.n.dead, "KV_" + q.n.state, "KV_" + q.n.trace} {
		if err := q.js.DeleteStream(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	q.MessageCommitted(&parley.Message{ID: parley.NewID(), ConversationID: "c", Seq: 1, SenderID: "u", CreatedAt: time.Now()})
	deadline := time.Now().Add(10 * time.Second)
	for {
		jobs, _, err := q.Depth(ctx)
		if err == nil && jobs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job never landed: %d jobs, %v", jobs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := q.js.KeyValue(ctx, q.n.state); err != nil {
		t.Fatalf("the state bucket was not made again: %v", err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(q.claimNotify(ctx, "d", "c", 1, 1, time.Now()))
}

// TestAwaitedMirror: the queue mirrors which devices have a fetch
// awaited, so a sync or history call of any other device costs no NATS
// request; the fetch is recorded in the trace and the device leaves the
// mirror.
func TestAwaitedMirror(t *testing.T) {
	q := testQueue(t)
	ctx := context.Background()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitUntil("the mirror up", q.mirrored.Load)
	phone, laptop, msg := parley.NewID(), parley.NewID(), parley.NewID()
	if q.mayAwait(phone) || q.mayAwait(laptop) {
		t.Fatal("awaited before any send")
	}
	q.appendTrace(ctx, &parley.PushTrace{MessageID: msg, ConversationID: "c", Seq: 1}, traceEvent("sent"))
	q.awaitFetch(ctx, phone, msg)
	waitUntil("the phone awaited", func() bool { return q.mayAwait(phone) })
	if q.mayAwait(laptop) {
		t.Fatal("the laptop is awaited too")
	}
	q.Fetched(laptop) // dropped at once
	q.Fetched(phone)
	waitUntil("the phone's fetch recorded", func() bool {
		tr, err := q.Trace(ctx, msg)
		return err == nil && tr.Events[len(tr.Events)-1].Stage == "fetched" && tr.Events[len(tr.Events)-1].DeviceID == phone
	})
	waitUntil("the phone no longer awaited", func() bool { return !q.mayAwait(phone) })
}
