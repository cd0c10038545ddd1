package main

import (
	"context"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/bus/natsbus"
	"github.com/parleychat/parley/push"
)

// TestPushGauges: the push queue's depth and the age of its oldest job
// as Prometheus reads them, and NaN for both, not 0, once NATS is gone:
// an unknown depth must not pass for an empty queue (parley bench waits
// for the queue to drain).
func TestPushGauges(t *testing.T) {
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
	q, err := push.OpenQueue(context.Background(), bus.Conn(), push.QueueConfig{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	reg := prometheus.NewRegistry()
	registerPushGauges(reg, q)
	gauges := func() (depth, oldest float64) {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		depth, oldest = -1, -1
		for _, f := range families {
			switch f.GetName() {
			case "parley_push_queue_depth":
				depth = f.GetMetric()[0].GetGauge().GetValue()
			case "parley_push_queue_oldest_seconds":
				oldest = f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return depth, oldest
	}
	if d, o := gauges(); d != 0 || o != 0 {
		t.Fatalf("empty queue: depth %v, oldest %v", d, o)
	}
	// No push role consumes here: a committed message's job stays.
	q.MessageCommitted(&parley.Message{ID: "m1", ConversationID: "c1", Seq: 1, SenderID: "u1", Type: parley.MessageText, CreatedAt: time.Now()})
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, o := gauges()
		if d == 1 && o >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("one job enqueued: depth %v, oldest %v", d, o)
		}
		time.Sleep(20 * time.Millisecond)
	}
	emb.Shutdown()
	if d, o := gauges(); !math.IsNaN(d) || !math.IsNaN(o) {
		t.Fatalf("NATS gone: depth %v, oldest %v; want NaN", d, o)
	}
}
