package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// TestBackupWhileWriting takes a backup while writers append, restores it
// into another directory, and finds every message committed before the
// backup began, gap-free, with its body.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sealer := newTestSealer(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	s := openStore(t, filepath.Join(dir, "parley.db"), sealer)
	a, _, g := seed(t, s, now)
	if err := s.UpdateSecrets(ctx, "k/", func(map[string][]byte) (map[string][]byte, []string, error) {
		return map[string][]byte{"k/1": []byte("signing key")}, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	appendOne := func(id string) *parley.Message {
		m, _, err := s.AppendMessage(ctx, &parley.Message{ConversationID: g.ID, SenderID: a.ID, ClientMsgID: id,
			Type: parley.MessageText, Body: "body " + id, CreatedAt: now})
		if err != nil {
			t.Error(err)
			return nil
		}
		return m
	}
	for i := range 50 {
		appendOne(fmt.Sprint("before-", i))
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				appendOne(fmt.Sprintf("live-%d-%d", w, i))
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	before, err := s.ConversationView(ctx, g.ID, a.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup.db")
	info, err := Backup(ctx, filepath.Join(dir, "parley.db"), backup)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	latest, _ := latestVersion()
	if info.SchemaVersion != latest || info.Users != 2 || info.Conversations != 1 || info.Secrets != 1 ||
		info.Messages < before.LastSeq || info.ChangeStamp < 2 || info.Bytes <= 0 {
		t.Fatalf("BackupInfo = %+v; want schema %d, 2 users, 1 conversation, 1 secret, at least %d messages", info, latest, before.LastSeq)
	}

	restored := filepath.Join(t.TempDir(), "parley.db")
	rinfo, err := Restore(ctx, backup, restored, false)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if *rinfo != *info {
		t.Errorf("Restore's BackupInfo = %+v, Backup's %+v", rinfo, info)
	}
	r := openStore(t, restored, sealer)
	var msgs []parley.Message
	for {
		page, err := r.Messages(ctx, g.ID, parley.HistoryQuery{After: int64(len(msgs)), Forward: true, Limit: parley.MaxHistoryLimit}, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		msgs = append(msgs, page...)
	}
	if int64(len(msgs)) != info.Messages || int64(len(msgs)) < before.LastSeq {
		t.Fatalf("restored %d messages; backup said %d, %d were committed before it began", len(msgs), info.Messages, before.LastSeq)
	}
	t.Logf("%d messages committed before the backup began, %d in it", before.LastSeq, len(msgs))
	for i, m := range msgs {
		if m.Seq != int64(i+1) || m.Body != "body "+m.ClientMsgID {
			t.Fatalf("restored message %d: seq %d, body %q", i, m.Seq, m.Body)
		}
	}
	if err := r.UpdateSecrets(ctx, "k/", func(cur map[string][]byte) (map[string][]byte, []string, error) {
		if string(cur["k/1"]) != "signing key" {
			t.Errorf("restored secrets = %q", cur)
		}
		return nil, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreReplaces installs a backup over an existing database only when
// asked to, and removes that database's stale -wal and -shm (which SQLite
// would otherwise apply to the new file). A cleanly closed database file,
// WAL mode and all, is a backup too.
func TestRestoreReplaces(t *testing.T) {
	ctx := context.Background()
	sealer := newTestSealer(t)
	now := time.Now().UTC().Truncate(time.Millisecond)

	src := filepath.Join(t.TempDir(), "parley.db")
	s := openStore(t, src, sealer)
	seed(t, s, now)
	s.Close()

	dbPath := filepath.Join(t.TempDir(), "parley.db")
	other := openStore(t, dbPath, sealer)
	other.Close()
	for _, stale := range []string{"-wal", "-shm"} {
		if err := os.WriteFile(dbPath+stale, []byte("stale, from the database being replaced"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Restore(ctx, src, dbPath, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Restore over an existing database without replace: %v, want fs.ErrExist", err)
	}
	if _, err := Restore(ctx, src, dbPath, true); err != nil {
		t.Fatalf("Restore with replace: %v", err)
	}
	for _, stale := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(dbPath + stale); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after restore: %v", stale, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(dbPath))
	if len(entries) != 1 {
		t.Errorf("directory after restore holds %v, want parley.db alone", entries)
	}
	r := openStore(t, dbPath, sealer)
	if _, err := r.UserByHandle(ctx, "alice"); err != nil {
		t.Fatalf("restored database: %v", err)
	}
}

// TestRestoreRefusesBadFiles: nothing is installed from a file that is not
// a Parley database this binary can open.
func TestRestoreRefusesBadFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	s := openStore(t, filepath.Join(dir, "parley.db"), newTestSealer(t))
	seed(t, s, time.Now())
	if _, err := Backup(ctx, filepath.Join(dir, "parley.db"), good); err != nil {
		t.Fatal(err)
	}
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withVersion := func(name string, v int) string {
		p := write(name, goodBytes)
		db, err := sql.Open("sqlite", p)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	damaged := append([]byte(nil), goodBytes...)
	damaged[len(damaged)-4096] = 0xff // the last page's type: no such b-tree page
	withWAL := write("with-wal.db", goodBytes)
	write("with-wal.db-wal", []byte("frames that are not in the file"))

	latest, _ := latestVersion()
	for _, tc := range []struct {
		name, src, want string
	}{
		{"text", write("notes.txt", []byte(strings.Repeat("not a database ", 100))), "is not a SQLite database"},
		{"empty", write("empty.db", nil), "not a Parley one"},
		{"newer schema", withVersion("newer.db", latest+1), "newer than this binary's"},
		{"damaged", write("damaged.db", damaged), "damaged.db is damaged: integrity check"},
		{"with a WAL beside it", withWAL, "write-ahead log"},
		{"missing", filepath.Join(dir, "missing.db"), "no such file"},
		{"the database itself", filepath.Join(dir, "parley.db"), "the database itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "parley.db")
			if tc.name == "the database itself" {
				target = filepath.Join(dir, "parley.db")
			}
			_, err := Restore(ctx, tc.src, target, true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore: %v, want an error saying %q", err, tc.want)
			}
			t.Log(err)
			if tc.name == "the database itself" {
				return
			}
			if entries, _ := os.ReadDir(filepath.Dir(target)); len(entries) != 0 {
				t.Errorf("a refused restore left %v", entries)
			}
		})
	}

	if _, err := Backup(ctx, filepath.Join(dir, "parley.db"), filepath.Join(dir, "parley.db")); err == nil || !strings.Contains(err.Error(), "the database itself") {
		t.Fatalf("Backup onto the database: %v", err)
	}
	if _, err := Backup(ctx, filepath.Join(dir, "none.db"), filepath.Join(dir, "b.db")); err == nil || !strings.Contains(err.Error(), "no database") {
		t.Fatalf("Backup of a missing database: %v", err)
	}
}

// TestRestoreRefusesOpenDatabase: while another process has the database
// open, even idle, Restore fails with ErrInUse and changes nothing; once it
// has closed it, Restore goes ahead. (The other process must be another
// one: POSIX record locks do not conflict within a process.)
func TestRestoreRefusesOpenDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "parley.db")
	s := openStore(t, dbPath, newTestSealer(t))
	seed(t, s, time.Now())
	backup := filepath.Join(t.TempDir(), "backup.db")
	if _, err := Backup(ctx, dbPath, backup); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldOpenHelper$")
	cmd.Env = append(os.Environ(), "PARLEY_SQLITE_HOLD_OPEN="+dbPath)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "open\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}

	if _, err := Restore(ctx, backup, dbPath, true); !errors.Is(err, ErrInUse) {
		t.Fatalf("Restore while another process has the database open: %v, want ErrInUse", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if _, err := Restore(ctx, backup, dbPath, true); err != nil {
		t.Fatalf("Restore once the other process closed the database: %v", err)
	}
}

// TestHoldOpenHelper is the other process of TestRestoreRefusesOpenDatabase:
// it opens the store at $PARLEY_SQLITE_HOLD_OPEN, says "open", and keeps it
// open, idle, until its stdin closes.
func TestHoldOpenHelper(t *testing.T) {
	path := os.Getenv("PARLEY_SQLITE_HOLD_OPEN")
	if path == "" {
		t.Skip("run by TestRestoreRefusesOpenDatabase")
	}
	s := openStore(t, path, newTestSealer(t))
	if _, err := s.UserByHandle(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("open")
	io.Copy(io.Discard, os.Stdin)
	s.Close()
}
