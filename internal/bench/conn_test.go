package bench

import (
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// TestStreamChecks: the per-connection checks classify what a broken
// server would do: a repeated seq is a duplicate, a live seq that fills a
// hole late is reordered, a fetched one filling it is not, and a hole
// never filled is loss (delivered below expected).
func TestStreamChecks(t *testing.T) {
	b := &bench{res: &Result{Errors: map[string]int64{}}}
	for i := range b.shards {
		b.shards[i].ack, b.shards[i].e2e = newHist(), newHist()
	}
	k := &conn{b: b, dev: device{deviceID: "me"}, track: map[string]*seqTrack{}}
	msg := func(seq int64, from string) *parley.Message {
		return &parley.Message{ConversationID: "c", Seq: seq, SenderDeviceID: from, Body: b.body(time.Now())}
	}
	now := time.Now()
	for _, step := range []struct {
		seq                   int64
		from                  string
		live                  bool
		delivered, dups, reor int64
	}{
		{1, "other", true, 1, 0, 0},
		{2, "me", true, 1, 0, 0}, // own message: ordered, not a delivery
		{4, "other", true, 2, 0, 0},
		{3, "other", true, 3, 0, 1}, // late live: reordered
		{4, "other", true, 3, 1, 1}, // again: duplicate
		{7, "other", true, 4, 1, 1},
		{5, "other", false, 5, 1, 1}, // fetched into the hole: fine
		{2, "me", false, 5, 2, 1},
	} {
		k.onMessage(msg(step.seq, step.from), now, step.live)
		if b.delivered.Load() != step.delivered || b.dups.Load() != step.dups || b.reordered.Load() != step.reor {
			t.Fatalf("after seq %d: delivered %d dups %d reordered %d, want %d %d %d", step.seq,
				b.delivered.Load(), b.dups.Load(), b.reordered.Load(), step.delivered, step.dups, step.reor)
		}
	}
	b.res.Expected = 6 // 1, 3, 4, 5, 6, 7 from others: 6 never came
	b.finish()
	if b.res.Lost != 1 {
		t.Fatalf("lost %d, want 1", b.res.Lost)
	}
}
