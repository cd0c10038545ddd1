package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// TestDeletedBodiesLeaveNothing: a deleted message's and an edited
// message's former sealed bodies are not left in the database file or its
// WAL once the store is closed (secure_delete), so a copy of the file (a
// backup, a stolen disk) does not keep what users deleted.
func TestDeletedBodiesLeaveNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	s := openStore(t, path, newTestSealer(t))
	now := time.Now().UTC().Truncate(time.Millisecond)
	a, _, g := seed(t, s, now)
	d := &parley.Device{ID: parley.NewID(), UserID: a.ID, Platform: parley.PlatformWeb, Name: "web", SessionID: "s1", CreatedAt: now}
	if err := s.CreateSession(ctx, d, &parley.RefreshToken{Hash: "h1", ExpiresAt: now.Add(time.Hour)}, 0); err != nil {
		t.Fatal(err)
	}
	// Twenty messages share pages; the fifth is deleted and the tenth
	// edited, so their cells are freed in the middle of a page.
	var sealed [][]byte
	for i := range 20 {
		m, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, SenderDeviceID: d.ID,
			ClientMsgID: fmt.Sprint("c", i), Type: parley.MessageText, Body: fmt.Sprintf("message %d, long enough to be found in the file", i+1), CreatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		if err := s.readDB.QueryRowContext(ctx, `SELECT body FROM messages WHERE conversation_id = ? AND seq = ?`, g.ID, m.Seq).Scan(&b); err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, b)
	}
	// Put the sealed bodies into the main file before they change, as
	// the checkpointer does under load.
	checkpoint := func() {
		t.Helper()
		if err := s.ckpt.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(new(int), new(int), new(int)); err != nil {
			t.Fatal(err)
		}
	}
	checkpoint()
	if raw, _ := os.ReadFile(path); !bytes.Contains(raw, sealed[4]) || !bytes.Contains(raw, sealed[9]) {
		t.Fatal("the sealed bodies are not in the file after a checkpoint: the test cannot see what it checks")
	}
	if _, err := s.UpdateMessage(ctx, g.ID, 5, now, func(m *parley.Message) error { m.Deleted = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMessage(ctx, g.ID, 10, now, func(m *parley.Message) error { m.Body = "edited"; return nil }); err != nil {
		t.Fatal(err)
	}
	checkpoint()
	gone := map[int]bool{4: true, 9: true}
	if raw, _ := os.ReadFile(path); !bytes.Contains(raw, sealed[0]) {
		t.Fatal("an untouched message's sealed body is not in the file")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		raw, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range sealed {
			if !gone[i] {
				continue
			}
			// A later cell may overwrite part of a freed one: any piece
			// left is a leak.
			for off := 0; off+leakPiece <= len(b); off += leakPiece / 2 {
				if bytes.Contains(raw, b[off:off+leakPiece]) {
					t.Errorf("%s still holds bytes %d-%d of message %d's former sealed body", filepath.Base(p), off, off+leakPiece, i+1)
					break
				}
			}
		}
	}
}

// leakPiece is the length of a piece of a sealed body that counts as a
// leak when found (random bytes: 12 match by chance nowhere in a small file).
const leakPiece = 12

// TestDatabaseOwnerOnly: the database is created 0600 whatever the umask,
// and a file an older version left 0644 is tightened on open.
func TestDatabaseOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh.db")
	openStore(t, fresh, newTestSealer(t))
	old := filepath.Join(dir, "old.db")
	if err := os.WriteFile(old, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(old, 0o644)
	openStore(t, old, newTestSealer(t))
	for _, p := range []string{fresh, fresh + "-wal", old, old + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
}
