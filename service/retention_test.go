package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// TestRetention: with a Retention, the purge takes every message older
// than it, in batches, and nothing newer; without one, nothing.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	start := time.Now().UTC().Truncate(time.Millisecond)
	u := createUser(t, st, "keeper")
	c := createGroup(t, st, start, u)
	// 1,500 messages a day old (more than one purge batch), 3 from now.
	const old, recent = 1500, 3
	for i := range old + recent {
		created := start.Add(-24 * time.Hour)
		if i >= old {
			created = start
		}
		if _, _, err := st.AppendMessage(ctx, &parley.Message{ConversationID: c.ID, SenderID: u.ID, SenderDeviceID: "d",
			Type: parley.MessageText, Body: "x", CreatedAt: created}); err != nil {
			t.Fatal(err)
		}
	}
	now := func() time.Time { return start }

	forever := newService(st, service.Config{Now: now})
	if n := forever.PurgeHistory(ctx); n != 0 {
		t.Fatalf("PurgeHistory without a retention purged %d", n)
	}
	week := newService(st, service.Config{Now: now, Retention: 7 * 24 * time.Hour})
	if n := week.PurgeHistory(ctx); n != 0 {
		t.Fatalf("PurgeHistory with a week's retention purged %d of day-old messages", n)
	}
	hour := newService(st, service.Config{Now: now, Retention: time.Hour})
	if n := hour.PurgeHistory(ctx); n != old {
		t.Fatalf("PurgeHistory with an hour's retention purged %d, want %d", n, old)
	}
	history := func() []parley.Message {
		t.Helper()
		msgs, err := st.Messages(ctx, c.ID, parley.HistoryQuery{Forward: true, Limit: parley.MaxHistoryLimit}, start)
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	if msgs := history(); len(msgs) != recent || msgs[0].Seq != old+1 {
		t.Fatalf("history after retention: %d messages from seq %d; want %d from %d", len(msgs), msgs[0].Seq, recent, old+1)
	}

	// Run's tick purges too.
	if _, _, err := st.AppendMessage(ctx, &parley.Message{ConversationID: c.ID, SenderID: u.ID, SenderDeviceID: "d",
		Type: parley.MessageText, Body: "late import", CreatedAt: start.Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ticking := newService(st, service.Config{Now: now, Retention: time.Hour, PurgeInterval: 5 * time.Millisecond})
	go ticking.Run(runCtx)
	deadline := time.Now().Add(10 * time.Second)
	for len(history()) != recent {
		if time.Now().After(deadline) {
			t.Fatalf("Run did not purge the message past the retention: %d messages", len(history()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
