package jstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/spawn"
)

// TestE2EEInterop: the Go SDK and the TypeScript SDK (in Node, through
// clients/sdk/test/e2ee-chat.mjs) in the same end-to-end encrypted
// conversations through the real parleyd, both ways: a direct one between
// alice (a Go laptop and a TypeScript phone: the third device) and bob
// (TypeScript), and a group of three with carol (Go). Every device reads
// every message sent to it, the sender's other device included, and both
// SDKs compute the same safety number.
func TestE2EEInterop(t *testing.T) {
	npmRun(t, "sdk", "build")
	srv, err := spawn.Start(parleydBin, t.TempDir(), nil, "--presence-grace", "200ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Kill()
		if t.Failed() {
			t.Logf("server log:\n%s", srv.Logs())
		}
	})
	// Every client talks to the server through a tap that records both
	// directions of every connection: what a network observer inside TLS,
	// or the server, sees of the frames and REST bodies.
	tp := startTap(t, strings.TrimPrefix(srv.Base, "http://"))
	base := "http://" + tp.addr
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const password = "correct horse battery staple"
	state := t.TempDir()

	// node runs one e2ee-chat.mjs session and returns its JSON lines.
	node := func(handle, storage string, args ...string) []map[string]any {
		t.Helper()
		full := append([]string{filepath.Join(clientsDir, "sdk", "test", "e2ee-chat.mjs"), "--server", base,
			"--handle", handle, "--password", password, "--storage", filepath.Join(state, storage), "--timeout", "60"}, args...)
		cmd := exec.CommandContext(ctx, "node", full...)
		cmd.Dir = clientsDir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		t.Logf("TS %s (%s) %s:\n%s", handle, storage, strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("e2ee-chat.mjs %s: %v\n%s", handle, err, stderr.String())
		}
		var lines []map[string]any
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			var l map[string]any
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("e2ee-chat.mjs printed %q", sc.Text())
			}
			lines = append(lines, l)
		}
		return lines
	}
	// decrypted reports whether the lines show a decrypted message with
	// this body in conv.
	decrypted := func(lines []map[string]any, conv, body string) bool {
		for _, l := range lines {
			st, _ := l["e2ee"].(map[string]any)
			if (l["event"] == "message" || l["event"] == "message_changed") && l["conversation_id"] == conv &&
				l["body"] == body && st["state"] == "decrypted" {
				return true
			}
		}
		return false
	}
	event := func(lines []map[string]any, name string) map[string]any {
		for _, l := range lines {
			if l["event"] == name {
				return l
			}
		}
		t.Fatalf("no %s line", name)
		return nil
	}

	// Go devices: alice's laptop and carol's browser.
	goDevice := func(handle, name string) (*client.Client, *goEvents) {
		ev := &goEvents{wake: make(chan struct{}, 1)}
		c := client.New(client.Config{Server: base, KeyStore: &client.MemoryKeyStore{}, OnEvent: ev.add})
		if _, err := c.Register(ctx, handle, password, handle); err != nil && !client.IsCode(err, parley.CodeConflict) {
			t.Fatalf("register %s: %v", handle, err)
		}
		if err := c.Login(ctx, handle, password, name); err != nil {
			t.Fatalf("login %s: %v", handle, err)
		}
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, ev
	}
	aliceGo, aliceEv := goDevice("alice", "go-laptop")
	carolGo, carolEv := goDevice("carol", "go-web")
	// TypeScript devices publish their keys at login: bob's phone, and
	// alice's phone (her second device).
	bobID, _ := event(node("bob", "bob.json", "--register"), "ready")["user_id"].(string)
	node("alice", "alice-phone.json")

	direct, err := aliceGo.CreateDirectE2EE(ctx, bobID)
	if err != nil {
		t.Fatal(err)
	}
	group, err := aliceGo.CreateGroupE2EE(ctx, "trio", bobID, carolGo.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	send := func(c *client.Client, conv, text string) {
		t.Helper()
		if _, err := c.Send(ctx, conv, text); err != nil {
			t.Fatalf("send %q: %v", text, err)
		}
	}
	// Each TypeScript run resumes its device from its storage, sync
	// position included, and prints the messages of one conversation:
	// what it reads must arrive after its previous run.
	send(aliceGo, direct.ID, "Go to TypeScript: hello bob")
	bobDirect := node("bob", "bob.json", "--conversation", direct.ID, "--send", "TypeScript to Go: hello alice", "--wait-for", "1")
	if !decrypted(bobDirect, direct.ID, "Go to TypeScript: hello bob") {
		t.Fatal("bob (TS) did not read alice's (Go) direct message")
	}
	send(aliceGo, group.ID, "in the group from alice (Go)")
	send(carolGo, group.ID, "in the group from carol (Go)")
	bobGroup := node("bob", "bob.json", "--conversation", group.ID, "--send", "in the group from bob (TypeScript)", "--wait-for", "2")
	for _, text := range []string{"in the group from alice (Go)", "in the group from carol (Go)"} {
		if !decrypted(bobGroup, group.ID, text) {
			t.Fatalf("bob (TS) did not read %q", text)
		}
	}
	// Alice's TypeScript phone reads bob's answer and what her Go laptop
	// sent (sealed to her other devices too).
	alicePhone := node("alice", "alice-phone.json", "--conversation", direct.ID, "--wait-for", "1")
	for _, text := range []string{"Go to TypeScript: hello bob", "TypeScript to Go: hello alice"} {
		if !decrypted(alicePhone, direct.ID, text) {
			t.Fatalf("alice's TS phone did not read %q", text)
		}
	}
	// The Go devices read the TypeScript messages.
	aliceEv.wait(t, "alice (Go) reading bob's (TS) direct message", direct.ID, "TypeScript to Go: hello alice")
	aliceEv.wait(t, "alice (Go) reading bob's (TS) group message", group.ID, "in the group from bob (TypeScript)")
	carolEv.wait(t, "carol (Go) reading bob's (TS) group message", group.ID, "in the group from bob (TypeScript)")

	// Both SDKs compute the same safety number for alice and bob.
	var tsNumber string
	for _, l := range bobDirect {
		if l["event"] == "safety_number" && l["user_id"] == aliceGo.Tokens().UserID {
			tsNumber, _ = l["number"].(string)
		}
	}
	goNumber, _, err := aliceGo.SafetyNumber(ctx, bobID)
	if err != nil || tsNumber == "" || goNumber != tsNumber {
		t.Fatalf("safety numbers: Go %q (%v), TypeScript %q", goNumber, err, tsNumber)
	}
	t.Logf("safety number of alice and bob, Go and TypeScript alike: %s", goNumber)

	// A control: a plaintext conversation's text is in the capture, so the
	// capture can see text when there is text to see.
	plain, err := aliceGo.CreateDirect(ctx, bobID)
	if err != nil {
		t.Fatal(err)
	}
	send(aliceGo, plain.ID, "a plaintext control message") // its ack has passed the tap
	captured := tp.text(t)
	if !strings.Contains(captured, "a plaintext control message") {
		t.Fatal("the capture misses a plaintext message: it proves nothing")
	}
	// No e2ee text crossed the wire, either way, on any connection, nor
	// reached the server's log.
	for _, text := range []string{"hello bob", "hello alice", "from alice (Go)", "from carol (Go)", "from bob (TypeScript)"} {
		if strings.Contains(captured, text) {
			t.Errorf("the frames and REST bodies hold %q", text)
		}
		if strings.Contains(srv.Logs(), text) {
			t.Errorf("the server log holds %q", text)
		}
	}
	t.Logf("captured %d connections, %d bytes of frames and bodies: no e2ee text in them", tp.conns(), len(captured))
	if os.Getenv("PARLEY_TEST_KEEP") != "" {
		t.Logf("state in %s", state)
	}
}

// tap is a TCP relay that records both directions of every connection.
type tap struct {
	addr    string
	mu      sync.Mutex
	streams []*tapStream
}

type tapStream struct {
	mu       sync.Mutex
	up, down bytes.Buffer // client to server, server to client
}

func (s *tapStream) writer(b *bytes.Buffer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return b.Write(p)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func startTap(t *testing.T, target string) *tap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			s := &tapStream{}
			tp.mu.Lock()
			tp.streams = append(tp.streams, s)
			tp.mu.Unlock()
			go func() {
				io.Copy(io.MultiWriter(s.writer(&s.up), u), c) // recorded before it is passed on
				u.Close()
			}()
			go func() {
				io.Copy(io.MultiWriter(s.writer(&s.down), c), u)
				c.Close()
			}()
		}
	}()
	return tp
}

func (tp *tap) conns() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.streams)
}

// text is everything recorded, readable: REST requests and answers as
// they are, server frames as sent (unmasked), and client frames unmasked
// (RFC 6455 masks them: a search of the raw bytes would find nothing).
func (tp *tap) text(t *testing.T) string {
	t.Helper()
	tp.mu.Lock()
	streams := append([]*tapStream(nil), tp.streams...)
	tp.mu.Unlock()
	var out strings.Builder
	for _, s := range streams {
		s.mu.Lock()
		up, down := bytes.Clone(s.up.Bytes()), bytes.Clone(s.down.Bytes())
		s.mu.Unlock()
		out.Write(down)
		if !bytes.HasPrefix(up, []byte("GET /v1/ws")) {
			out.Write(up)
			continue
		}
		head := bytes.Index(up, []byte("\r\n\r\n"))
		if head < 0 {
			continue
		}
		out.Write(up[:head])
		r := bytes.NewReader(up[head+4:])
		for r.Len() > 0 {
			f, err := ws.ReadFrame(r)
			if err != nil {
				break // a frame cut by the end of the test
			}
			out.Write(ws.UnmaskFrameInPlace(f).Payload)
		}
	}
	return out.String()
}

// goEvents collects a Go client's decrypted messages.
type goEvents struct {
	mu   sync.Mutex
	seen []client.Event
	wake chan struct{}
}

func (g *goEvents) add(e client.Event) {
	g.mu.Lock()
	g.seen = append(g.seen, e)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *goEvents) wait(t *testing.T, what, conv, body string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		g.mu.Lock()
		for _, e := range g.seen {
			if (e.Kind == client.EventMessage || e.Kind == client.EventMessageChanged) && e.ConversationID == conv &&
				e.Message.Body == body && e.E2EE.Decrypted() {
				g.mu.Unlock()
				t.Logf("%s: seq %d, %q", what, e.Message.Seq, body)
				return
			}
		}
		g.mu.Unlock()
		select {
		case <-g.wake:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out: %s", what)
		}
	}
}
