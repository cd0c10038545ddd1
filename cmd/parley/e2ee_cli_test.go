package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestE2EETerminals: end-to-end encryption from the command line. Login
// makes the device's keys (kept 0600 in the config directory);
// conversations create --e2ee makes an encrypted conversation; send,
// send-file, history, chat and tail encrypt and decrypt; a device that
// was not there when a message was sent prints it as undecryptable;
// verify prints the same safety number on both sides and --mark marks
// the contact verified.
func TestE2EETerminals(t *testing.T) {
	srv := startServer(t)
	alice, bob := newTerm(t, srv.Base), newTerm(t, srv.Base)
	alice.ok("register", "alice")
	bob.ok("register", "bob")
	alice.ok("login", "alice", "--device", "laptop")
	bob.ok("login", "bob", "--device", "phone")
	keys, _ := filepath.Glob(filepath.Join(alice.config, "keys", "e2ee-*.json"))
	if len(keys) != 1 {
		t.Fatalf("alice's keystore: %v", keys)
	}
	if st, err := os.Stat(keys[0]); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keystore mode: %v %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(alice.config, "keys")); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("keys directory mode: %v %v", st, err)
	}

	var created struct {
		Conversation struct {
			ID   string
			E2EE bool
		}
	}
	alice.okJSON(&created, "conversations", "create", "--e2ee", "--direct", "@bob")
	conv := created.Conversation.ID
	if !created.Conversation.E2EE {
		t.Fatalf("created %+v", created)
	}
	if out := alice.ok("conversations", "list"); !strings.Contains(out, "direct e2ee") {
		t.Fatalf("list: %s", out)
	}

	// Bob tails; alice sends: the text comes out decrypted.
	tail := bob.cmd("tail")
	stdout, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var tailErr lockedBuffer // written by exec's copier while the test reads it
	tail.Stderr = &tailErr
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tail.Process.Kill(); _ = tail.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor := func(what string) string {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("tail ended before %q; stderr: %s", what, tailErr.String())
				}
				if strings.Contains(l, what) {
					return l
				}
			case <-deadline:
				t.Fatalf("tail never printed %q; stderr: %s", what, tailErr.String())
			}
		}
	}
	waitConnected(t, &tailErr)
	alice.ok("send", conv, "the", "secret", "plan")
	if l := waitFor("secret plan"); !strings.Contains(l, "alice: the secret plan") {
		t.Fatalf("tail: %q", l)
	}
	ch := alice.cmd("chat", conv)
	ch.Stdin = strings.NewReader("typed in chat\n")
	if out, err := ch.CombinedOutput(); err != nil || !strings.Contains(string(out), "alice: the secret plan") {
		t.Fatalf("chat: %v\n%s", err, out)
	}
	waitFor("alice: typed in chat")

	// A file: encrypted on alice's side, decrypted on bob's.
	path := filepath.Join(t.TempDir(), "plan.txt")
	if err := os.WriteFile(path, []byte("step one: do not tell the server\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := alice.ok("send-file", conv, path, "--caption", "the details")
	m := regexp.MustCompile(`plan\.txt (\S+)\]`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("send-file: %s", out)
	}
	if l := waitFor("the details"); !strings.Contains(l, "plan.txt") {
		t.Fatalf("tail: %q", l)
	}
	dest := filepath.Join(t.TempDir(), "got.txt")
	bob.ok("download", m[1], dest, "--conv", conv)
	if data, err := os.ReadFile(dest); err != nil || string(data) != "step one: do not tell the server\n" {
		t.Fatalf("downloaded %q %v", data, err)
	}

	hist := bob.ok("history", conv)
	for _, want := range []string{"alice: the secret plan", "alice: typed in chat", "the details [file"} {
		if !strings.Contains(hist, want) {
			t.Fatalf("history lacks %q:\n%s", want, hist)
		}
	}
	// Bob's second device was not there when these were sent.
	tablet := newTerm(t, srv.Base)
	tablet.ok("login", "bob", "--device", "tablet")
	if h := tablet.ok("history", conv); strings.Count(h, "[undecryptable: no_key]") != 3 || strings.Contains(h, "secret plan") {
		t.Fatalf("the new device's history:\n%s", h)
	}
	// Bob's phone hears of the tablet.
	waitForErr := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(tailErr.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("tail's stderr never said %q: %s", what, tailErr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitForErr("@bob added a new device")

	// Safety numbers: the same on both sides; --mark verifies.
	number := regexp.MustCompile(`(\d{5} ){3}\d{5}\n  (\d{5} ){3}\d{5}\n  (\d{5} ){3}\d{5}`)
	a := alice.ok("verify", "@bob")
	b := bob.ok("verify", "@alice")
	if number.FindString(a) == "" || number.FindString(a) != number.FindString(b) || !strings.Contains(a, "not verified") {
		t.Fatalf("safety numbers:\n%s\n%s", a, b)
	}
	if out := alice.ok("verify", "@bob", "--mark"); !strings.Contains(out, "@bob is verified") {
		t.Fatalf("verify --mark: %s", out)
	}
	// Bob adds a device: the number changes, and alice is told.
	watch := newTerm(t, srv.Base)
	watch.ok("login", "bob", "--device", "watch")
	if out := alice.ok("verify", "@bob"); !strings.Contains(out, "CHANGED") || number.FindString(out) == number.FindString(a) {
		t.Fatalf("verify after a new device: %s", out)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and readers at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitConnected waits until a live command (tail, chat) has said on
// stderr that its first sync is done: what arrives before that is taken
// as history and not printed.
func waitConnected(t *testing.T, stderr *lockedBuffer) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "parley: connected"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the live command never said it was connected; stderr: %s", stderr.String())
		}
	}
}
