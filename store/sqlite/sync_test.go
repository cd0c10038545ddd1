package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// rowStamp reads the stamp column of one row on the writer's connection
// (the test must not race a write).
func rowStamp(tb testing.TB, s *Store, query string, args ...any) int64 {
	tb.Helper()
	var stamp int64
	if err := s.wconn.QueryRowContext(context.Background(), query, args...).Scan(&stamp); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return stamp
}

// TestSyncMigratesOldRows: a database from before change stamps (schema
// 3) opens with every existing row syncable from 0 and none of them new
// to a position this binary hands out.
func TestSyncMigratesOldRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	sealer := newTestSealer(t)
	now := time.Now().UTC().Truncate(time.Millisecond)

	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(path, roleWriter))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:3] {
		if _, err := db.Exec(m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	userA, userB, conv, msgID := parley.NewID(), parley.NewID(), parley.NewID(), parley.NewID()
	keyID, body, err := sealer.Seal([]byte("from before"), []byte(msgID))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		query string
		args  []any
	}{
		{`INSERT INTO users (id, handle, display_name, role, state, password_hash, created_at) VALUES (?, 'a', '', 'user', 'active', '', ?), (?, 'b', '', 'user', 'active', '', ?)`,
			[]any{userA, engine.Millis(now), userB, engine.Millis(now)}},
		{`INSERT INTO conversations (id, kind, title, last_seq, created_at, updated_at) VALUES (?, 'group', 'old', 1, ?, ?)`,
			[]any{conv, engine.Millis(now), engine.Millis(now)}},
		{`INSERT INTO members (conversation_id, user_id, role, read_seq, joined_at) VALUES (?, ?, 'owner', 0, ?), (?, ?, 'member', 0, ?)`,
			[]any{conv, userA, engine.Millis(now), conv, userB, engine.Millis(now)}},
		{`INSERT INTO messages (conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, type,
			body, body_key, created_at, expires_at, edited_at, deleted) VALUES (?, 1, ?, ?, 'd', 'c1', 'text', ?, ?, ?, NULL, NULL, 0)`,
			[]any{conv, msgID, userA, body, int64(keyID), engine.Millis(now)}},
		{`PRAGMA user_version = 3`, nil},
	} {
		if _, err := db.Exec(q.query, q.args...); err != nil {
			t.Fatalf("%s: %v", q.query, err)
		}
	}
	db.Close()

	s := openStore(t, path, sealer)
	page, err := s.Sync(ctx, userB, parley.SyncQuery{Conversations: 10, Messages: 10}, now)
	if err != nil {
		t.Fatal(err)
	}
	if page.Until != 1 || len(page.Conversations) != 1 || page.Conversations[0].View.ID != conv ||
		len(page.Conversations[0].Messages) != 1 || page.Conversations[0].Messages[0].Body != "from before" {
		t.Fatalf("full sync after the migration = %+v", page)
	}
	if page, err := s.Sync(ctx, userB, parley.SyncQuery{Since: page.Until, Conversations: 10}, now); err != nil || len(page.Conversations) != 0 {
		t.Fatalf("sync from the migration's position = %+v, %v; want nothing", page, err)
	}
	m, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: conv, SenderID: userA, SenderDeviceID: "d", ClientMsgID: "c2",
		Type: parley.MessageText, Body: "after", CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	page, err = s.Sync(ctx, userB, parley.SyncQuery{Since: 1, Conversations: 10, Messages: 10}, now)
	if err != nil || len(page.Conversations) != 1 || len(page.Conversations[0].Messages) != 1 || page.Conversations[0].Messages[0].ID != m.ID {
		t.Fatalf("sync after a new message = %+v, %v; want only seq 2", page, err)
	}
}

// TestStampSurvivesReopen: the stamp is read back at open, so positions
// handed out before a restart stay valid and new writes stamp above them.
func TestStampSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	sealer := newTestSealer(t)
	now := time.Now()
	s := openStore(t, path, sealer)
	a, b, g := seed(t, s, now)
	if _, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: "d", Type: parley.MessageText, Body: "x"}); err != nil {
		t.Fatal(err)
	}
	before := s.stamp.Load()
	if before < 2 {
		t.Fatalf("stamp after writes = %d", before)
	}
	// Writes that change nothing a member sees take no stamp.
	if err := s.CreateUser(ctx, &parley.User{ID: parley.NewID(), Handle: "carol", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if got := s.stamp.Load(); got != before {
		t.Fatalf("CreateUser moved the stamp from %d to %d", before, got)
	}
	s.Close()

	s = openStore(t, path, sealer)
	if got := s.stamp.Load(); got != before {
		t.Fatalf("stamp after reopen = %d, want %d", got, before)
	}
	if _, err := s.MarkRead(ctx, g.ID, b.ID, 1); err != nil {
		t.Fatal(err)
	}
	if got := rowStamp(t, s, `SELECT stamp FROM members WHERE conversation_id = ? AND user_id = ?`, g.ID, b.ID); got != before+1 {
		t.Fatalf("member stamp after reopen = %d, want %d", got, before+1)
	}
}

// TestReceiptsLeaveConversationRow: receipts stamp the member row, never
// the conversation row that appends update; edits and membership changes
// stamp the conversation.
func TestReceiptsLeaveConversationRow(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "parley.db"), newTestSealer(t))
	now := time.Now()
	a, b, g := seed(t, s, now)
	d := &parley.Device{ID: parley.NewID(), UserID: b.ID, Platform: parley.PlatformWeb, Name: "web", SessionID: "s", CreatedAt: now}
	if err := s.CreateSession(ctx, d, &parley.RefreshToken{Hash: "h", ExpiresAt: now.Add(time.Hour)}, 0); err != nil {
		t.Fatal(err)
	}
	m, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: "d", Type: parley.MessageText, Body: "x"})
	if err != nil {
		t.Fatal(err)
	}
	convStamp := func() int64 { return rowStamp(t, s, `SELECT stamp FROM conversations WHERE id = ?`, g.ID) }
	memberStamp := func() int64 {
		return rowStamp(t, s, `SELECT stamp FROM members WHERE conversation_id = ? AND user_id = ?`, g.ID, b.ID)
	}
	appended := convStamp()
	if msgStamp := rowStamp(t, s, `SELECT stamp FROM messages WHERE conversation_id = ? AND seq = 1`, g.ID); msgStamp != appended {
		t.Fatalf("message stamp %d, conversation stamp %d: want the append's one stamp", msgStamp, appended)
	}
	if _, err := s.MarkRead(ctx, g.ID, b.ID, 1); err != nil {
		t.Fatal(err)
	}
	read := memberStamp()
	if _, _, err := s.MarkDelivered(ctx, g.ID, b.ID, d.ID, 1); err != nil {
		t.Fatal(err)
	}
	delivered := memberStamp()
	if convStamp() != appended || read <= appended || delivered <= read {
		t.Fatalf("stamps: conversation %d (appended %d), member after read %d, after delivered %d", convStamp(), appended, read, delivered)
	}
	if _, err := s.UpdateMessage(ctx, g.ID, m.Seq, now, func(m *parley.Message) error { m.Body = "y"; return nil }); err != nil {
		t.Fatal(err)
	}
	if edited := convStamp(); edited <= delivered {
		t.Fatalf("conversation stamp after an edit = %d, want above %d", edited, delivered)
	}
}

// TestSyncPagesWithinOneStamp: writes committed in one group share a
// stamp; paging through them one at a time still gives each once.
func TestSyncPagesWithinOneStamp(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "parley.db"), newTestSealer(t))
	now := time.Now()
	a, b, _ := seed(t, s, now)
	const n = 9
	ids := make([]string, n)
	for i := range ids {
		c, _, err := s.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, CreatedAt: now,
			Members: []parley.Member{{UserID: a.ID}, {UserID: b.ID}}})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = c.ID
		if _, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: c.ID, SenderID: a.ID, SenderDeviceID: "d", Type: parley.MessageText, Body: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	pos := s.stamp.Load()

	// Hold the writer so that the receipts queue up and commit together.
	hold, held := make(chan struct{}), make(chan struct{})
	go s.write(ctx, true, func(*txn) error { close(held); <-hold; return nil })
	<-held
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if _, err := s.MarkRead(ctx, id, b.ID, 1); err != nil {
				t.Error(err)
			}
		})
	}
	for len(s.jobs) < n {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	wg.Wait()
	if got := s.stamp.Load(); got != pos+1 {
		t.Fatalf("stamp after one group of receipts = %d, want %d", got, pos+1)
	}

	seen := make(map[string]int)
	q := parley.SyncQuery{Since: pos, Conversations: 1}
	for page := 0; ; page++ {
		got, err := s.Sync(ctx, a.ID, q, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range got.Conversations {
			seen[c.View.ID]++
		}
		if !got.HasMore {
			break
		}
		if got.NextStamp != pos+1 || page > n {
			t.Fatalf("page %d: cursor (%d, %s)", page, got.NextStamp, got.NextID)
		}
		q.Until, q.AfterStamp, q.AfterID = got.Until, got.NextStamp, got.NextID
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("conversation %s came %d times, want once (%v)", id, seen[id], seen)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d conversations synced, want %d", len(seen), n)
	}
}
