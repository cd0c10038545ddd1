package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/spawn"
)

// The built binaries: the CLI under test and the server it talks to.
var parleyBin, parleydBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	parleyBin, parleydBin = filepath.Join(dir, "parley"), filepath.Join(dir, "parleyd")
	for bin, pkg := range map[string]string{parleyBin: ".", parleydBin: "../parleyd"} {
		if err := spawn.Build(bin, pkg, false); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// term is one user's terminal: their own config directory.
type term struct {
	t      *testing.T
	server string
	config string
}

func newTerm(t *testing.T, server string) *term {
	return &term{t: t, server: server, config: t.TempDir()}
}

func (tm *term) cmd(args ...string) *exec.Cmd {
	c := exec.Command(parleyBin, append([]string{"--server", tm.server, "--config", tm.config}, args...)...)
	c.Env = append(os.Environ(), "PARLEY_PASSWORD=a long enough password")
	return c
}

// run runs the CLI and returns stdout, stderr and the exit code.
func (tm *term) run(args ...string) (string, string, int) {
	tm.t.Helper()
	c := tm.cmd(args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		tm.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// ok runs the CLI and fails the test unless it exits 0.
func (tm *term) ok(args ...string) string {
	tm.t.Helper()
	out, errs, code := tm.run(args...)
	if code != 0 {
		tm.t.Fatalf("parley %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// okJSON runs the CLI with --json and decodes its output.
func (tm *term) okJSON(v any, args ...string) {
	tm.t.Helper()
	out := tm.ok(append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		tm.t.Fatalf("parley --json %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func startServer(t *testing.T) *spawn.Process {
	p, err := spawn.Start(parleydBin, t.TempDir(), nil, "--presence-grace", "200ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// TestTwoTerminals: what the README walks through. Alice and Bob register
// and log in (tokens saved 0600), find each other, chat with send and
// chat, and Bob's tail prints what arrives; history, read and the unread
// counts agree.
func TestTwoTerminals(t *testing.T) {
	srv := startServer(t)
	alice, bob := newTerm(t, srv.Base), newTerm(t, srv.Base)
	alice.ok("register", "alice", "--display-name", "Alice")
	bob.ok("register", "bob")
	alice.ok("login", "alice", "--device", "laptop")
	// --password-stdin instead of the environment.
	c := bob.cmd("login", "bob", "--password-stdin")
	c.Env = os.Environ()
	c.Stdin = strings.NewReader("a long enough password\n")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("login with --password-stdin: %v\n%s", err, out)
	}
	st, err := os.Stat(filepath.Join(alice.config, "config.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("saved login: %v %v", st, err)
	}
	if out := alice.ok("whoami"); !strings.Contains(out, "alice (Alice)") {
		t.Fatalf("whoami: %s", out)
	}
	var found struct{ User struct{ ID, Handle string } }
	alice.okJSON(&found, "users", "find", "bob")
	if found.User.Handle != "bob" || found.User.ID == "" {
		t.Fatalf("users find: %+v", found)
	}

	// Bob tails; what alice sends shows up there.
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
	// tail ignores what arrives before its first sync ends (history,
	// not news): send only once it says it is connected.
	waitConnected(t, &tailErr)
	alice.ok("send", "@bob", "hello", "bob")
	if l := waitFor("hello bob"); !strings.Contains(l, "alice: hello bob") || !strings.Contains(l, "#1") {
		t.Fatalf("tail line: %q", l)
	}
	// chat: two lines typed, each sent once; the command ends when both are acked.
	ch := alice.cmd("chat", "@bob")
	ch.Stdin = strings.NewReader("line one\nline two\n")
	if out, err := ch.CombinedOutput(); err != nil || !strings.Contains(string(out), "#1") {
		t.Fatalf("chat: %v\n%s", err, out)
	}
	waitFor("alice: line one")
	waitFor("alice: line two")

	var hist struct {
		ConversationID string `json:"conversation_id"`
		Messages       []struct {
			Seq  int64
			Body string
		}
	}
	bob.okJSON(&hist, "history", "@alice", "--limit", "10")
	if len(hist.Messages) != 3 || hist.Messages[0].Body != "hello bob" || hist.Messages[2].Body != "line two" || hist.Messages[2].Seq != 3 {
		t.Fatalf("history: %+v", hist)
	}
	var list struct {
		Conversations []struct {
			ID          string
			UnreadCount int64 `json:"unread_count"`
		}
	}
	bob.okJSON(&list, "conversations", "list")
	if len(list.Conversations) != 1 || list.Conversations[0].UnreadCount != 3 {
		t.Fatalf("conversations before read: %+v", list)
	}
	bob.ok("read", hist.ConversationID)
	waitFor("bob read up to #3") // bob's own read receipt reaches his tail
	bob.okJSON(&list, "conversations", "list")
	if list.Conversations[0].UnreadCount != 0 {
		t.Fatalf("conversations after read: %+v", list)
	}

	// Groups: create, add, remove.
	carol := newTerm(t, srv.Base)
	carol.ok("register", "carol")
	var g struct{ Conversation struct{ ID string } }
	alice.okJSON(&g, "conversations", "create", "--group", "climbing", "bob")
	alice.ok("conversations", "add", g.Conversation.ID, "carol")
	waitFor("conversation created")
	alice.ok("conversations", "remove", g.Conversation.ID, "carol")
	if out := alice.ok("conversations", "list"); !strings.Contains(out, "climbing") || !strings.Contains(out, "@bob") {
		t.Fatalf("list: %s", out)
	}
}

// TestErrors: the server's code and message, exit status 1, nothing on
// stdout.
func TestErrors(t *testing.T) {
	srv := startServer(t)
	tm := newTerm(t, srv.Base)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"whoami"}, "unauthorized: not logged in"},
		{[]string{"login", "nobody"}, "unauthorized: "},
		{[]string{"register", "x"}, "invalid_request: "},
		{[]string{"frobnicate"}, `invalid_request: unknown command "frobnicate"`},
	} {
		out, errs, code := tm.run(tc.args...)
		if code != 1 || out != "" || !strings.Contains(errs, "parley: "+tc.want) {
			t.Errorf("parley %v: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.args, code, out, errs, tc.want)
		}
	}
	tm.ok("register", "alice")
	tm.ok("login", "alice")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"send", "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b", "hi"}, "conversation_not_found: "},
		{[]string{"send", "@nobody", "hi"}, "not_found: "},
		{[]string{"history", "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b", "--limit", "500"}, "invalid_request: limit"},
		{[]string{"read", "@alice", "x"}, "invalid_request: "},
	} {
		out, errs, code := tm.run(tc.args...)
		if code != 1 || out != "" || !strings.Contains(errs, "parley: "+tc.want) {
			t.Errorf("parley %v: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.args, code, out, errs, tc.want)
		}
	}
	// Logged out: the saved tokens are gone.
	tm.ok("logout")
	if _, errs, code := tm.run("whoami"); code != 1 || !strings.Contains(errs, "not logged in") {
		t.Fatalf("whoami after logout: %d %s", code, errs)
	}
}
