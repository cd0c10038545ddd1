package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/storetest"
)

// newTestSealer is the contract suite's sealer.
func newTestSealer(tb testing.TB) *storetest.Sealer { return storetest.NewSealer(tb) }

// openStore opens a store at path and closes it when the test ends.
func openStore(tb testing.TB, path string, sealer parley.Sealer) *Store {
	tb.Helper()
	s, err := Open(context.Background(), path, Options{Sealer: sealer})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(tb testing.TB) parley.Store {
		return openStore(tb, filepath.Join(tb.TempDir(), "parley.db"), newTestSealer(tb))
	})
}

// seed creates two users in a group and returns them with the group.
func seed(tb testing.TB, s *Store, now time.Time) (a, b *parley.User, g *parley.Conversation) {
	tb.Helper()
	ctx := context.Background()
	a = &parley.User{ID: parley.NewID(), Handle: "alice", CreatedAt: now}
	b = &parley.User{ID: parley.NewID(), Handle: "bob", CreatedAt: now}
	for _, u := range []*parley.User{a, b} {
		if err := s.CreateUser(ctx, u); err != nil {
			tb.Fatal(err)
		}
	}
	g, _, err := s.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, Title: "g",
		CreatedAt: now, Members: []parley.Member{{UserID: a.ID, Role: parley.MemberRoleOwner}, {UserID: b.ID}}})
	if err != nil {
		tb.Fatal(err)
	}
	return a, b, g
}

// TestReopen proves that everything acknowledged survives closing and
// opening the database: users, sessions, conversations, seqs, and the
// idempotency keys.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	sealer := newTestSealer(t)
	now := time.Now().UTC().Truncate(time.Millisecond)

	s := openStore(t, path, sealer)
	a, b, g := seed(t, s, now)
	d := &parley.Device{ID: parley.NewID(), UserID: a.ID, Platform: parley.PlatformWeb, Name: "web", SessionID: "s1", CreatedAt: now}
	if err := s.CreateSession(ctx, d, &parley.RefreshToken{Hash: "h1", ExpiresAt: now.Add(time.Hour)}, 0); err != nil {
		t.Fatal(err)
	}
	var sent []*parley.Message
	for i := range 3 {
		m, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: d.ID,
			ClientMsgID: "c" + string(rune('0'+i)), Type: parley.MessageText, Body: "before restart", CreatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
	}
	if _, err := s.MarkRead(ctx, g.ID, b.ID, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openStore(t, path, sealer)
	if u, err := s.UserByHandle(ctx, "bob"); err != nil || u.ID != b.ID {
		t.Fatalf("UserByHandle after reopen = %v, %v", u, err)
	}
	v, err := s.ConversationView(ctx, g.ID, b.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	if v.LastSeq != 3 || v.ReadSeq != 2 || v.UnreadCount != 1 || v.LastMessage == nil || v.LastMessage.ID != sent[2].ID {
		t.Fatalf("view after reopen = %+v", v)
	}
	// A retry after the restart is recognized.
	retry, created, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: d.ID,
		ClientMsgID: "c1", Type: parley.MessageText, Body: "retry", CreatedAt: now})
	if err != nil || created || retry.ID != sent[1].ID || retry.Seq != 2 || retry.Body != "before restart" {
		t.Fatalf("retry after reopen = %+v, created=%v, %v; want the original seq 2", retry, created, err)
	}
	next, created, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: d.ID,
		ClientMsgID: "c9", Type: parley.MessageText, Body: "after restart", CreatedAt: now})
	if err != nil || !created || next.Seq != 4 {
		t.Fatalf("append after reopen = %+v, %v; want seq 4", next, err)
	}
	if _, err := s.RotateRefreshToken(ctx, "h1", &parley.RefreshToken{Hash: "h2", ExpiresAt: now.Add(time.Hour)}, now); err != nil {
		t.Fatalf("RotateRefreshToken after reopen: %v", err)
	}
}

// TestBodiesEncryptedAtRest sends a distinctive body and proves that its
// bytes appear in none of the database's files, while it reads back.
func TestBodiesEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "parley.db")
	sealer := newTestSealer(t)
	now := time.Now().UTC()
	secret := "the-eagle-lands-at-midnight-" + parley.NewID()

	s := openStore(t, path, sealer)
	a, _, g := seed(t, s, now)
	m, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: "d",
		ClientMsgID: "x", Type: parley.MessageText, Body: secret, CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	edit := *m
	edit.Body, edit.EditedAt = secret+"-edited", now
	if err := updateMessage(s, &edit); err != nil {
		t.Fatal(err)
	}
	got, err := s.Message(ctx, g.ID, m.Seq, now)
	if err != nil || got.Body != edit.Body {
		t.Fatalf("Message = %+v, %v; want body %q", got, err, edit.Body)
	}
	// A media filename is user content too.
	media := &parley.Media{ID: parley.NewID(), UploaderID: a.ID, ConversationID: g.ID, State: parley.MediaUploading,
		Filename: secret + ".jpg", CreatedAt: now}
	if err := s.CreateMedia(ctx, media); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Media(ctx, media.ID); err != nil || got.Filename != media.Filename {
		t.Fatalf("Media = %+v, %v; want filename %q", got, err, media.Filename)
	}

	// While open (WAL and shm exist), and after Close.
	checkFiles := func(when string) {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, e.Name())
			if bytes.Contains(data, []byte("the-eagle-lands")) {
				t.Fatalf("%s: plaintext body found in %s", when, e.Name())
			}
		}
		t.Logf("%s: checked %s", when, strings.Join(names, ", "))
	}
	checkFiles("open")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkFiles("closed")

	// The ciphertext is bound to its row: moved to another message it does
	// not open.
	s = openStore(t, path, sealer)
	if _, err := s.wconn.ExecContext(ctx, `UPDATE messages SET id = ? WHERE seq = 1`, parley.NewID()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Message(ctx, g.ID, 1, now); err == nil || parley.ErrorCode(err) != parley.CodeInternal {
		t.Fatalf("Message with a moved ciphertext: %v, want an internal error", err)
	}
}

func TestSchemaVersion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	sealer := newTestSealer(t)
	latest, err := latestVersion()
	if err != nil || latest < 1 {
		t.Fatalf("latestVersion = %d, %v", latest, err)
	}

	s := openStore(t, path, sealer)
	if v, err := s.SchemaVersion(ctx); err != nil || v != latest {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, latest)
	}
	s.Close()

	// Opening again applies nothing and keeps the version.
	s = openStore(t, path, sealer)
	if v, err := s.SchemaVersion(ctx); err != nil || v != latest {
		t.Fatalf("SchemaVersion after reopen = %d, %v; want %d", v, err, latest)
	}
	s.Close()

	// A database from a newer binary is refused.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA user_version = 999`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(ctx, path, Options{Sealer: sealer}); err == nil {
		s.Close()
		t.Fatal("Open accepted a database with a newer schema")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open: %v, want a schema version error", err)
	}
}

func TestMigrationsNumbered(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.version != i+1 || strings.TrimSpace(m.sql) == "" {
			t.Fatalf("migration %d: %+v", i, m)
		}
	}
}

func TestPragmas(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "parley.db"), newTestSealer(t))
	for _, p := range []struct {
		db interface {
			QueryRowContext(context.Context, string, ...any) *sql.Row
		}
		name  string
		want  string
		where string
	}{
		{s.wconn, "journal_mode", "wal", "writer"},
		{s.wconn, "synchronous", "2", "writer"}, // FULL
		{s.wconn, "foreign_keys", "1", "writer"},
		{s.wconn, "wal_autocheckpoint", "0", "writer"},
		{s.ckpt.db, "synchronous", "2", "checkpointer"},
		{s.readDB, "query_only", "1", "reader"},
		{s.readDB, "journal_mode", "wal", "reader"},
	} {
		var got string
		if err := p.db.QueryRowContext(ctx, "PRAGMA "+p.name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != p.want {
			t.Errorf("%s PRAGMA %s = %s, want %s", p.where, p.name, got, p.want)
		}
	}
	if _, err := s.readDB.ExecContext(ctx, `DELETE FROM users`); err == nil {
		t.Error("a reader connection could write")
	}
}

// TestClose checks that Close commits what is queued, and that every call
// after it fails with CodeUnavailable.
func TestClose(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	sealer := newTestSealer(t)
	s := openStore(t, path, sealer)
	now := time.Now()
	a, _, g := seed(t, s, now)
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for range 50 {
		wg.Go(func() {
			_, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: "d",
				Type: parley.MessageText, Body: "x"})
			if err == nil {
				mu.Lock()
				acked++
				mu.Unlock()
			} else if parley.ErrorCode(err) != parley.CodeUnavailable {
				t.Errorf("AppendMessage during Close: %v", err)
			}
		})
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, Body: "late"})
	if parley.ErrorCode(err) != parley.CodeUnavailable {
		t.Fatalf("AppendMessage after Close: %v", err)
	}
	_, err = s.Messages(ctx, g.ID, parley.HistoryQuery{Limit: 10}, now)
	if parley.ErrorCode(err) != parley.CodeUnavailable {
		t.Fatalf("Messages after Close: %v", err)
	}
	if err := s.Ping(ctx); parley.ErrorCode(err) != parley.CodeUnavailable {
		t.Fatalf("Ping after Close: %v", err)
	}

	s = openStore(t, path, sealer)
	c, err := s.Conversation(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.LastSeq != int64(acked) {
		t.Fatalf("last_seq %d after Close, %d appends acked", c.LastSeq, acked)
	}
}

// TestCanceledBeforePickup checks that a caller whose ctx is done gets
// ctx.Err() and its write does not happen.
func TestCanceledBeforePickup(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "parley.db"), newTestSealer(t))
	now := time.Now()
	a, _, g := seed(t, s, now)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, Body: "never"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("AppendMessage with a canceled ctx: %v", err)
	}
	if c, _ := s.Conversation(context.Background(), g.ID); c.LastSeq != 0 {
		t.Fatalf("last_seq = %d, want 0", c.LastSeq)
	}
}

// TestObserve checks that every operation reports its latency.
func TestObserve(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	ops := map[string]int{}
	s, err := Open(ctx, filepath.Join(t.TempDir(), "parley.db"), Options{
		Sealer: newTestSealer(t),
		Observe: func(op string, d time.Duration) {
			mu.Lock()
			ops[op]++
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	a, _, g := seed(t, s, now)
	if _, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, Body: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Messages(ctx, g.ID, parley.HistoryQuery{Limit: 1}, now); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for op, n := range map[string]int{"create_user": 2, "create_conversation": 1, "append_message": 1, "messages": 1} {
		if ops[op] != n {
			t.Errorf("Observe saw %q %d times, want %d (all: %v)", op, ops[op], n, ops)
		}
	}
}

// TestWALRestarts checks that under a steady stream of writes the WAL does
// not grow without bound: the checkpointer catches up and the WAL restarts.
func TestWALRestarts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "parley.db"), newTestSealer(t))
	s.ckpt.restartPages, s.ckpt.nextRestart = 64, 64 // before the first write
	s.ckpt.kickEvery = 1                             // or the WAL overshoots 64 pages by up to kickEvery batches
	a, _, g := seed(t, s, time.Now())
	storetest.Parallel(t, 3000, func(i int) error {
		_, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: "d",
			Type: parley.MessageText, Body: strings.Repeat("x", 150)})
		return err
	})
	fi, err := os.Stat(filepath.Join(dir, "parley.db-wal"))
	if err != nil {
		t.Fatal(err)
	}
	// Without restarts the WAL would hold every page written: several MiB.
	if fi.Size() > 2<<20 {
		t.Fatalf("WAL is %d bytes after restarts at 64 pages", fi.Size())
	}
	if c, err := s.Conversation(ctx, g.ID); err != nil || c.LastSeq != 3000 {
		t.Fatalf("Conversation = %+v, %v; want last_seq 3000", c, err)
	}
}

func updateMessage(s *Store, m *parley.Message) error {
	_, err := s.UpdateMessage(context.Background(), m.ConversationID, m.Seq, m.CreatedAt, func(stored *parley.Message) error {
		stored.Body, stored.EditedAt, stored.Deleted = m.Body, m.EditedAt, m.Deleted
		return nil
	})
	return err
}

// TestGroupCommit: concurrent appends share transactions (fewer commits
// than messages), and every one of them is answered committed.
func TestGroupCommit(t *testing.T) {
	groupCommit(t, openStore(t, filepath.Join(t.TempDir(), "parley.db"), newTestSealer(t)))
}

func groupCommit(t *testing.T, s *Store) {
	now := time.Now()
	a, _, g := seed(t, s, now)
	startBatches, startJobs := s.batches.Load(), s.batchJobs.Load()
	const senders, each = 64, 10
	var wg sync.WaitGroup
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				_, created, err := s.AppendMessage(context.Background(), &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: "d",
					ClientMsgID: fmt.Sprintf("%d-%d", i, j), Type: parley.MessageText, Body: "x", CreatedAt: now})
				if err != nil || !created {
					t.Errorf("append: %v %v", created, err)
				}
			}
		}()
	}
	wg.Wait()
	batches, jobs := s.batches.Load()-startBatches, s.batchJobs.Load()-startJobs
	if jobs != senders*each || batches >= jobs/2 {
		t.Fatalf("%d appends in %d transactions: want at least 2 per transaction on average", jobs, batches)
	}
	t.Logf("%d appends in %d transactions (%.1f per commit)", jobs, batches, float64(jobs)/float64(batches))
}

// TestAppendMessagesShareCommits: one caller's list of appends (a
// connection's pipelined sends) shares commits instead of taking one
// each, and its messages get seqs in its order.
func TestAppendMessagesShareCommits(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "parley.db"), newTestSealer(t))
	now := time.Now()
	a, _, g := seed(t, s, now)
	const n = 64
	ms := make([]*parley.Message, n)
	for i := range ms {
		ms[i] = &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: "d",
			ClientMsgID: fmt.Sprintf("p-%d", i), Type: parley.MessageText, Body: fmt.Sprint(i), CreatedAt: now}
	}
	startBatches := s.batches.Load()
	res := s.AppendMessages(context.Background(), ms, nil)
	batches := s.batches.Load() - startBatches
	var prev int64
	for i, r := range res {
		if r.Err != nil || !r.Created || r.Message.Seq <= prev || r.Message.Body != fmt.Sprint(i) {
			t.Fatalf("message %d: %+v (after seq %d)", i, r, prev)
		}
		prev = r.Message.Seq
	}
	// The writer may take the first ones before the rest are queued
	// (usually 1 or 2 commits); one commit each would be 64.
	if batches > n/8 {
		t.Fatalf("%d appends of one caller took %d commits, want at most %d", n, batches, n/8)
	}
	t.Logf("%d appends in %d commits", n, batches)
}

// TestPanicInJob: a panicking closure fails its own write and nothing
// else; the writer keeps serving.
func TestPanicInJob(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "parley.db"), newTestSealer(t))
	now := time.Now()
	a, b, g := seed(t, s, now)
	_, err := s.ChangeMembers(context.Background(), g.ID, func(*parley.Conversation) (parley.MemberChange, error) {
		var c *parley.Conversation
		_ = c.Members[0] // nil dereference
		return parley.MemberChange{}, nil
	})
	if err == nil || parley.ErrorCode(err) != parley.CodeInternal {
		t.Fatalf("panicking decide: %v, want an internal error", err)
	}
	if _, _, err := s.AppendMessage(context.Background(), &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: "d",
		ClientMsgID: "after-panic", Type: parley.MessageText, Body: "x", CreatedAt: now}); err != nil {
		t.Fatalf("append after a panicking job: %v", err)
	}
	if c, err := s.Conversation(context.Background(), g.ID); err != nil || c.MemberOf(b.ID) == nil {
		t.Fatalf("conversation after a panicking job: %+v, %v", c, err)
	}
}
