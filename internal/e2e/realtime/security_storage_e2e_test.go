package realtime_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // read the database file as an attacker with a copy would

	"github.com/parleychat/parley/internal/e2e"
)

// TestInvisibleCharactersRefused: display names, group titles and device
// names that would display as something else (a right-to-left override, a
// zero-width space inside a name) are refused with invalid_request through
// the real binary; a name with an emoji sequence (which uses a zero-width
// joiner) is not.
func TestInvisibleCharactersRefused(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), nil)
	for _, name := range []string{"Alice\u202Eecila", "ad\u200Bmin", "bob\u2066x\u2069", "\uFEFFeve"} {
		code, out := e2e.API(t, http.DefaultClient, "POST", p.Base+"/v1/accounts", "", map[string]any{"handle": "mallory", "password": "correct horse battery", "display_name": name})
		if code != 400 || refusalCode(out) != "invalid_request" {
			t.Errorf("register with display name %q: %d %v, want 400 invalid_request", name, code, out)
		}
	}
	e2e.MustAPI(t, 201, "POST", p.Base+"/v1/accounts", "", map[string]any{"handle": "alice", "password": "correct horse battery", "display_name": "Alice 👩\u200D💻"})
	code, out := e2e.API(t, http.DefaultClient, "POST", p.Base+"/v1/sessions", "", map[string]any{"handle": "alice", "password": "correct horse battery",
		"device": map[string]any{"platform": "cli", "name": "work\u202Elaptop"}})
	if code != 400 || refusalCode(out) != "invalid_request" {
		t.Errorf("login with a device name holding an override: %d %v", code, out)
	}
	tok := e2e.MustAPI(t, 200, "POST", p.Base+"/v1/sessions", "", map[string]any{"handle": "alice", "password": "correct horse battery",
		"device": map[string]any{"platform": "cli", "name": "laptop 💻"}})["access_token"].(string)
	bobID, _ := e2e.Signup(t, p.Base, "bob")
	code, out = e2e.API(t, http.DefaultClient, "POST", p.Base+"/v1/conversations", tok, map[string]any{"kind": "group", "title": "team\u200Bchat", "members": []string{bobID}})
	if code != 400 || refusalCode(out) != "invalid_request" {
		t.Errorf("group title with a zero-width space: %d %v", code, out)
	}
	convs := e2e.MustAPI(t, 200, "GET", p.Base+"/v1/conversations", tok, nil)
	if n := len(convs["conversations"].([]any)); n != 0 {
		t.Errorf("a refused create left %d conversations", n)
	}
}

// TestDeletedMessageLeavesNoCiphertext: a message a user deleted leaves no
// piece of its sealed body in the database files once the server stopped
// (secure_delete); the files are readable by their owner only.
func TestDeletedMessageLeavesNoCiphertext(t *testing.T) {
	data := t.TempDir()
	p := e2e.StartParleyd(t, data, nil)
	_, tok := e2e.Signup(t, p.Base, "alice")
	bobID, _ := e2e.Signup(t, p.Base, "bob")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", tok, map[string]any{"kind": "direct", "members": []string{bobID}})
	convID := conv["conversation"].(map[string]any)["id"].(string)
	for i := range 30 {
		e2e.SendText(t, p.Base, tok, convID, fmt.Sprint("c", i), fmt.Sprintf("message %d, a body long enough to be found again", i+1))
	}
	dbPath := filepath.Join(data, "parley.db")
	for _, f := range []string{dbPath, dbPath + "-wal", dbPath + "-shm"} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", filepath.Base(f), fi.Mode(), err)
		}
	}
	p.Stop(20 * time.Second) // the last checkpoint writes every page into parley.db
	sealed := map[int64][]byte{}
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: dbPath, RawQuery: "mode=ro"}).String())
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []int64{10, 20} {
		var b []byte
		if err := db.QueryRowContext(context.Background(), `SELECT body FROM messages WHERE conversation_id = ? AND seq = ?`, convID, seq).Scan(&b); err != nil {
			t.Fatal(err)
		}
		sealed[seq] = b
	}
	db.Close()
	if raw, _ := os.ReadFile(dbPath); !bytes.Contains(raw, sealed[10]) {
		t.Fatal("the sealed body is not in the file before the delete: the test cannot see what it checks")
	}

	p = e2e.StartParleyd(t, data, nil)
	e2e.MustAPI(t, 200, "DELETE", fmt.Sprintf("%s/v1/conversations/%s/messages/10", p.Base, convID), tok, nil)
	e2e.MustAPI(t, 200, "PATCH", fmt.Sprintf("%s/v1/conversations/%s/messages/20", p.Base, convID), tok, map[string]any{"body": "edited"})
	p.Stop(20 * time.Second)
	for _, f := range []string{dbPath, dbPath + "-wal"} {
		raw, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		for seq, b := range sealed {
			for off := 0; off+12 <= len(b); off += 6 {
				if bytes.Contains(raw, b[off:off+12]) {
					t.Errorf("%s holds bytes %d-%d of message %d's former sealed body", filepath.Base(f), off, off+12, seq)
					break
				}
			}
		}
	}
}

// TestMasterKeyFileOutsideData: with --master-key-file the key lives
// outside the data directory (a copy of the data alone reads nothing), is
// created 0600, and is what a restart reads; a key file inside the data
// directory, one left behind in it, or both the file and the environment
// variable are refused at start.
func TestMasterKeyFileOutsideData(t *testing.T) {
	data, secrets := t.TempDir(), t.TempDir()
	keyFile := filepath.Join(secrets, "parley-master.key")
	p := e2e.StartParleyd(t, data, nil, "--master-key-file", keyFile)
	_, tok := e2e.Signup(t, p.Base, "alice")
	bobID, _ := e2e.Signup(t, p.Base, "bob")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", tok, map[string]any{"kind": "direct", "members": []string{bobID}})
	convID := conv["conversation"].(map[string]any)["id"].(string)
	e2e.SendText(t, p.Base, tok, convID, "k1", "kept under a key outside the data")
	p.Stop(20 * time.Second)
	if _, err := os.Stat(filepath.Join(data, "master.key")); !os.IsNotExist(err) {
		t.Fatalf("master.key in the data directory: %v", err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi, err)
	}
	p = e2e.StartParleyd(t, data, nil, "--master-key-file", keyFile)
	out := e2e.MustAPI(t, 200, "GET", p.Base+"/v1/conversations/"+convID+"/messages", tok, nil)
	if msgs := out["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["body"] != "kept under a key outside the data" {
		t.Fatalf("after restart: %v", out)
	}
	p.Stop(20 * time.Second)

	e2e.MustFail(t, nil, []string{"inside the data directory"}, "--data", data, "--listen", "127.0.0.1:0", "--master-key-file", filepath.Join(data, "k"))
	e2e.MustFail(t, []string{"PARLEY_MASTER_KEY=" + strings.Repeat("A", 43) + "="}, []string{"give one"}, "--data", data, "--listen", "127.0.0.1:0", "--master-key-file", keyFile)
	raw, _ := os.ReadFile(keyFile)
	os.WriteFile(filepath.Join(data, "master.key"), raw, 0o600)
	e2e.MustFail(t, nil, []string{"still in the data directory"}, "--data", data, "--listen", "127.0.0.1:0", "--master-key-file", keyFile)
}

// refusalCode is the error code of an error answer, "" if there is none.
func refusalCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}
