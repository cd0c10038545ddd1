package service_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/service"
	"github.com/parleychat/parley/store/sqlite"
)

// TestRetention: with a Retention, the purge takes every message older
// than it, in batches, and nothing newer; without one, nothing.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	kr, err := seal.NewKeyring([][]byte{bytes.Repeat([]byte{3}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "parley.db"), sqlite.Options{Sealer: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	start := time.Now().UTC().Truncate(time.Millisecond)
	u := &parley.User{ID: parley.NewID(), Handle: "keeper", Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: start}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	c, _, err := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, CreatedAt: start,
		Members: []parley.Member{{UserID: u.ID, Role: parley.MemberRoleOwner}}})
	if err != nil {
		t.Fatal(err)
	}
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
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := func() time.Time { return start }

	forever := service.New(st, nil, nil, service.Config{Now: now}, log, nil)
	if n := forever.PurgeHistory(ctx); n != 0 {
		t.Fatalf("PurgeHistory without a retention purged %d", n)
	}
	week := service.New(st, nil, nil, service.Config{Now: now, Retention: 7 * 24 * time.Hour}, log, nil)
	if n := week.PurgeHistory(ctx); n != 0 {
		t.Fatalf("PurgeHistory with a week's retention purged %d of day-old messages", n)
	}
	hour := service.New(st, nil, nil, service.Config{Now: now, Retention: time.Hour}, log, nil)
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
	ticking := service.New(st, nil, nil, service.Config{Now: now, Retention: time.Hour, PurgeInterval: 5 * time.Millisecond}, log, nil)
	go ticking.Run(runCtx)
	deadline := time.Now().Add(10 * time.Second)
	for len(history()) != recent {
		if time.Now().After(deadline) {
			t.Fatalf("Run did not purge the message past the retention: %d messages", len(history()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
