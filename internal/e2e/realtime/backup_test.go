package realtime_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/e2e"
)

// TestBackupRestore backs up the data directory of a running server while
// senders keep writing, restores the backup into a new data directory, and
// finds there, on a new server, every message acknowledged before the
// backup began (gap-free from seq 1, bodies readable), the old access token
// still valid (the signing keys came along) and login working. It also
// checks that restore refuses a directory a server is using and an existing
// database without --force.
func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	backup := filepath.Join(dir, "backups", "parley-backup.db")
	if err := os.MkdirAll(filepath.Dir(backup), 0o700); err != nil {
		t.Fatal(err)
	}

	p := e2e.StartParleyd(t, data, nil, "--limits", "off")
	_, aliceTok := e2e.Signup(t, p.Base, "alice")
	bobID, bobTok := e2e.Signup(t, p.Base, "bob")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", aliceTok, map[string]any{"kind": "direct", "members": []string{bobID}})
	convID := conv["conversation"].(map[string]any)["id"].(string)

	var mu sync.Mutex
	acked := map[int64]string{} // seq -> client_msg_id, every acked send
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(id string) {
		t.Helper()
		body := fmt.Sprintf(`{"client_msg_id":%q,"body":"body of %s"}`, id, id)
		req, _ := http.NewRequest("POST", p.Base+"/v1/conversations/"+convID+"/messages", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+aliceTok)
		res, err := client.Do(req)
		if err != nil {
			t.Errorf("send %s: %v", id, err)
			return
		}
		defer res.Body.Close()
		var out struct{ Message struct{ Seq int64 } }
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 201 {
			t.Errorf("send %s: %d %v", id, res.StatusCode, err)
			return
		}
		mu.Lock()
		acked[out.Message.Seq] = id
		mu.Unlock()
	}
	for i := range 100 {
		send(fmt.Sprintf("before-%d", i))
	}

	// Senders keep writing through the backup.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sentDuring atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				send(fmt.Sprintf("live-%d-%d", g, i))
				sentDuring.Add(1)
			}
		}()
	}
	for sentDuring.Load() < 20 { // the senders are going
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	ackedBefore := maps.Clone(acked)
	mu.Unlock()
	started := time.Now()
	out, errOut, err := e2e.RunParleyd(t, nil, "backup", "--data", data, backup)
	took := time.Since(started)
	liveAtEnd := sentDuring.Load()
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, errOut)
	}
	for _, want := range []string{"wrote " + backup, "schema version", "change stamp", "master key is not in the backup"} {
		if !strings.Contains(out, want) {
			t.Errorf("backup output lacks %q:\n%s", want, out)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("backup took %v; %d sends acked before it began, %d live sends acked by its end", took, len(ackedBefore), liveAtEnd)
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, %v; want mode 0600", fi, err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(backup), ".*")); len(leftovers) != 0 {
		t.Errorf("temporary files left beside the backup: %v", leftovers)
	}

	// A running server (still writing a moment ago, idle now) keeps a
	// restore out, even with --force.
	e2e.MustFail(t, nil, []string{"open in another process", "stop the parleyd"}, "restore", "--force", "--data", data, backup)
	p.Stop(20 * time.Second)

	restored := filepath.Join(dir, "restored")
	if err := os.MkdirAll(restored, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(data, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, "master.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	// Flags after FILE work too.
	out, errOut, err = e2e.RunParleyd(t, nil, "restore", backup, "--data", restored)
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, errOut)
	}
	if entries, _ := os.ReadDir(restored); len(entries) != 2 {
		t.Errorf("data directory after restore holds %v, want master.key and parley.db", entries)
	}
	for _, want := range []string{"restored " + backup, "schema version", filepath.Join(restored, "master.key")} {
		if !strings.Contains(out, want) {
			t.Errorf("restore output lacks %q:\n%s", want, out)
		}
	}
	e2e.MustFail(t, nil, []string{"already exists", "--force"}, "restore", "--data", restored, backup)

	p2 := e2e.StartParleyd(t, restored, nil, "--limits", "off")
	e2e.MustFail(t, nil, []string{"open in another process"}, "restore", "--force", "--data", restored, backup)

	// Every message acked before the backup began is there, gap-free from
	// seq 1, readable through the token the old server issued.
	var got []map[string]any
	for after := 0.0; ; {
		page := e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/conversations/%s/messages?after=%v&limit=200", p2.Base, convID, after), bobTok, nil)["messages"].([]any)
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			got = append(got, m.(map[string]any))
		}
		after = got[len(got)-1]["seq"].(float64)
	}
	for seq, id := range ackedBefore {
		if seq > int64(len(got)) {
			t.Fatalf("%s, acked at seq %d before the backup began, is missing: %d messages restored", id, seq, len(got))
		}
	}
	for i, m := range got {
		seq, id := int64(m["seq"].(float64)), m["client_msg_id"].(string)
		if seq != int64(i+1) {
			t.Fatalf("restored message %d has seq %d: a gap", i, seq)
		}
		if want, ok := acked[seq]; ok && want != id {
			t.Errorf("seq %d holds %q, the server acked %q", seq, id, want)
		}
		if body := m["body"]; body != "body of "+id {
			t.Errorf("seq %d: body %q", seq, body)
		}
	}
	t.Logf("restored %d messages (%d acked before the backup, %d acked in all)", len(got), len(ackedBefore), len(acked))

	// The signing keys came along: the old token verifies; login works.
	e2e.MustAPI(t, 200, "GET", p2.Base+"/v1/me", aliceTok, nil)
	e2e.MustAPI(t, 200, "POST", p2.Base+"/v1/sessions", "", map[string]any{"handle": "alice", "password": "correct horse battery", "device": map[string]any{"platform": "cli", "name": "after restore"}})
}

// TestBackupRestoreRefusals: restore of a file that is not a database, or
// not a Parley one, fails clearly and installs nothing; backup and restore
// with a PostgreSQL store point to pg_dump and pg_restore without
// connecting; backup of a directory without a database fails.
func TestBackupRestoreRefusals(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("not a database "), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "data")
	e2e.MustFail(t, nil, []string{junk + " is not a SQLite database"}, "restore", "--data", target, junk)
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("a refused restore left files behind: %v", entries)
	}

	empty := filepath.Join(dir, "empty.db") // SQLite reads an empty file as an empty database
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e2e.MustFail(t, nil, []string{"not a Parley one"}, "restore", "--data", target, empty)
	e2e.MustFail(t, nil, []string{"usage: parleyd restore"}, "restore", "--data", target)

	pgEnv := []string{"PARLEY_MASTER_KEY=" + strings.Repeat("A", 43) + "="}
	pg := "postgres://x@127.0.0.1:1/x"
	started := time.Now()
	e2e.MustFail(t, pgEnv, []string{"pg_dump", "docs/operations.md"}, "backup", "--store", pg, filepath.Join(dir, "pg.db"))
	e2e.MustFail(t, pgEnv, []string{"pg_restore", "docs/operations.md"}, "restore", "--store", pg, empty)
	if d := time.Since(started); d > 20*time.Second {
		t.Errorf("the PostgreSQL refusals took %v: did they try to connect?", d)
	}

	e2e.MustFail(t, nil, []string{"no database at"}, "backup", "--data", filepath.Join(dir, "nothing"), filepath.Join(dir, "b.db"))
	if _, err := os.Stat(filepath.Join(dir, "nothing")); err == nil {
		t.Error("backup of a missing data directory created it")
	}
}
