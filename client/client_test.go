package client_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/spawn"
)

// parleydBin is the real server, built once for these tests.
var parleydBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-client-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	parleydBin = filepath.Join(dir, "parleyd")
	if err := spawn.Build(parleydBin, "../cmd/parleyd", false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func startServer(t *testing.T, args ...string) *spawn.Process {
	t.Helper()
	p, err := spawn.Start(parleydBin, t.TempDir(), nil, append([]string{"--presence-grace", "200ms"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("server log:\n%s", p.Logs())
		}
	})
	return p
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// user registers and logs in a device.
func user(t *testing.T, server, handle, device string, cfg client.Config) *client.Client {
	t.Helper()
	cfg.Server = server
	c := client.New(cfg)
	ctx := ctxFor(t, 30*time.Second)
	if _, err := c.Register(ctx, handle, "a long enough password", handle); err != nil && !client.IsCode(err, parley.CodeConflict) {
		t.Fatalf("register %s: %v", handle, err)
	}
	if err := c.Login(ctx, handle, "a long enough password", device); err != nil {
		t.Fatalf("login %s: %v", handle, err)
	}
	return c
}

// collector gathers one client's events.
type collector struct {
	mu     sync.Mutex
	events []client.Event
	wake   chan struct{}
}

func collect(c *client.Client) *collector {
	col := newCollector()
	go func() {
		for e := range c.Events() {
			col.add(e)
		}
	}()
	return col
}

func newCollector() *collector { return &collector{wake: make(chan struct{}, 1)} }

// add records an event; it is also a Config.OnEvent callback.
func (col *collector) add(e client.Event) {
	col.mu.Lock()
	col.events = append(col.events, e)
	col.mu.Unlock()
	select {
	case col.wake <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds over the events so far.
func (col *collector) waitFor(t *testing.T, d time.Duration, what string, cond func([]client.Event) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		col.mu.Lock()
		ok := cond(col.events)
		col.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-col.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// messages returns the seqs of the EventMessage events of a conversation.
func (col *collector) messages(conv string) []int64 {
	col.mu.Lock()
	defer col.mu.Unlock()
	var seqs []int64
	for _, e := range col.events {
		if e.Kind == client.EventMessage && e.ConversationID == conv {
			seqs = append(seqs, e.Message.Seq)
		}
	}
	return seqs
}

func countMessages(conv string, n int) func([]client.Event) bool {
	return func(es []client.Event) bool {
		k := 0
		for _, e := range es {
			if e.Kind == client.EventMessage && e.ConversationID == conv {
				k++
			}
		}
		return k >= n
	}
}

// checkOneToN fails unless seqs is exactly 1..n.
func checkOneToN(t *testing.T, who string, seqs []int64, n int) {
	t.Helper()
	if len(seqs) != n {
		t.Fatalf("%s got %d messages, want %d: %v", who, len(seqs), n, seqs)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("%s: message %d has seq %d (lost, duplicated or reordered): %v", who, i, s, seqs)
		}
	}
}

// TestChatBetweenTwoUsers: live delivery both ways, acks after commit,
// delivered reports turning into receipts at the sender, and read state
// moving to the reader's other device.
func TestChatBetweenTwoUsers(t *testing.T) {
	srv := startServer(t)
	alice := user(t, srv.Base, "alice", "phone", client.Config{DeliveredDelay: -1})
	bob := user(t, srv.Base, "bob", "phone", client.Config{DeliveredDelay: -1})
	bobLaptop := user(t, srv.Base, "bob", "laptop", client.Config{})
	ctx := ctxFor(t, 60*time.Second)
	bu, err := alice.FindUser(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	conv, err := alice.CreateDirect(ctx, bu.ID)
	if err != nil {
		t.Fatal(err)
	}
	ae, be, le := collect(alice), collect(bob), collect(bobLaptop)
	for _, c := range []*client.Client{alice, bob, bobLaptop} {
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	for i := range 5 {
		m, err := alice.Send(ctx, conv.ID, fmt.Sprintf("hello %d", i))
		if err != nil || m.Seq != int64(i+1) {
			t.Fatalf("send %d: %+v %v", i, m, err)
		}
	}
	be.waitFor(t, 10*time.Second, "bob's phone to get 5 messages", countMessages(conv.ID, 5))
	le.waitFor(t, 10*time.Second, "bob's laptop to get 5 messages", countMessages(conv.ID, 5))
	ae.waitFor(t, 10*time.Second, "alice's own copies", countMessages(conv.ID, 5))
	checkOneToN(t, "bob", be.messages(conv.ID), 5)
	checkOneToN(t, "bob laptop", le.messages(conv.ID), 5)
	checkOneToN(t, "alice", ae.messages(conv.ID), 5)
	// Bob's devices report delivery by themselves; alice sees it.
	ae.waitFor(t, 10*time.Second, "a delivered receipt for seq 5", func(es []client.Event) bool {
		for _, e := range es {
			if e.Kind == client.EventReceipt && e.Receipt.UserID == bu.ID && e.Receipt.Kind == "delivered" && e.Receipt.Seq == 5 {
				return true
			}
		}
		return false
	})
	// Bob reads on his phone; the laptop learns it.
	if err := bob.MarkRead(ctx, conv.ID, 5); err != nil {
		t.Fatal(err)
	}
	le.waitFor(t, 10*time.Second, "bob's own read receipt on the laptop", func(es []client.Event) bool {
		for _, e := range es {
			if e.Kind == client.EventReceipt && e.Receipt.UserID == bu.ID && e.Receipt.Kind == "read" && e.Receipt.Seq == 5 {
				return true
			}
		}
		return false
	})
	// A reply the other way.
	if _, err := bob.Send(ctx, conv.ID, "hi alice"); err != nil {
		t.Fatal(err)
	}
	ae.waitFor(t, 10*time.Second, "bob's reply", countMessages(conv.ID, 6))
	checkOneToN(t, "alice", ae.messages(conv.ID), 6)
	// A refused send fails for good and leaves the outbox.
	_, err = alice.Send(ctx, "00000000-0000-7000-8000-000000000000", "nowhere")
	if !client.IsCode(err, parley.CodeConversationNotFound) {
		t.Fatalf("send to an unknown conversation: %v", err)
	}
	// A body of characters JSON would escape goes as it is (30 kB, not
	// 180 kB); one over the frame limit is refused here, not sent (the
	// server would close the connection), and the connection lives on.
	if m, err := alice.Send(ctx, conv.ID, strings.Repeat("<&>", 10000)); err != nil || len(m.Body) != 30000 {
		t.Fatalf("send of 30 kB of <&>: %v", err)
	}
	if _, err := alice.Send(ctx, conv.ID, strings.Repeat("x", 140000)); !client.IsCode(err, parley.CodePayloadTooLarge) {
		t.Fatalf("send of a 140 kB body: %v", err)
	}
	if _, err := alice.Send(ctx, conv.ID, "still here"); err != nil {
		t.Fatal(err)
	}
	if st, _ := alice.State(ctx); len(st.Outbox) != 0 {
		t.Fatalf("outbox after the refusals: %+v", st.Outbox)
	}
	if n := alice.Stats().Connects.Load(); n != 1 {
		t.Fatalf("alice connected %d times; the refusals must not cost the connection", n)
	}
}

// TestOutboxSurvivesServerRestarts: messages queued while the server is
// killed and restarted twice are all committed exactly once, and the
// receiver gets every one, once, in order.
func TestOutboxSurvivesServerRestarts(t *testing.T) {
	srv := startServer(t)
	fast := client.Config{BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond}
	alice := user(t, srv.Base, "alice", "phone", fast)
	bob := user(t, srv.Base, "bob", "phone", fast)
	ctx := ctxFor(t, 90*time.Second)
	bu, _ := alice.FindUser(ctx, "bob")
	conv, err := alice.CreateDirect(ctx, bu.ID)
	if err != nil {
		t.Fatal(err)
	}
	be := collect(bob)
	for _, c := range []*client.Client{alice, bob} {
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	const n = 120
	var pending []*client.Pending
	for i := range n {
		if i == 80 {
			// Killed before m80 is enqueued: enqueued first, m80 could be
			// sent, committed and acked before the kill, and the outbox
			// checked below would be empty.
			srv.Kill()
		}
		pending = append(pending, alice.Enqueue(conv.ID, fmt.Sprintf("m%d", i)))
		switch i {
		case 40:
			if err := srv.Restart(); err != nil { // SIGKILL: acks in flight are lost
				t.Fatal(err)
			}
			// Let alice come back before the next kill: on a loaded machine
			// her backoff (up to 500 ms after the attempts made while the
			// server was starting) could outlast the 40 sends until then,
			// and the test would count one reconnect for two restarts.
			for deadline := time.Now().Add(30 * time.Second); alice.Stats().Connects.Load() < 2; {
				if time.Now().After(deadline) {
					t.Fatal("alice did not reconnect after the first restart")
				}
				time.Sleep(20 * time.Millisecond)
			}
		case 80:
			// Down: the outbox keeps what is not acknowledged, and says so.
			time.Sleep(300 * time.Millisecond)
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := alice.State(sctx)
			cancel()
			if err != nil || len(st.Outbox) == 0 || st.Outbox[len(st.Outbox)-1].Body != "m80" {
				t.Fatalf("state while the server is down: %v, outbox %d", err, len(st.Outbox))
			}
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	seen := map[int64]bool{}
	for i, p := range pending {
		m, err := p.Wait(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if seen[m.Seq] {
			t.Fatalf("message %d acked with seq %d twice", i, m.Seq)
		}
		seen[m.Seq] = true
	}
	be.waitFor(t, 30*time.Second, "bob to get every message", countMessages(conv.ID, n))
	checkOneToN(t, "bob", be.messages(conv.ID), n)
	// The server holds each message once: the retries were idempotent.
	after := int64(0)
	hist, err := bob.History(ctx, conv.ID, client.HistoryQuery{After: &after, Limit: 200})
	if err != nil || len(hist) != n {
		t.Fatalf("history: %d messages, %v", len(hist), err)
	}
	bodies := map[string]bool{}
	for _, m := range hist {
		if bodies[m.Body] {
			t.Fatalf("%q stored twice", m.Body)
		}
		bodies[m.Body] = true
	}
	if st := alice.Stats(); st.Connects.Load() < 3 {
		t.Fatalf("alice connected %d times, want at least 3 (two restarts)", st.Connects.Load())
	}
}

// TestResumeAfterOffline: a device that was away while 150 messages
// arrived in three conversations resumes from its saved state (position,
// held seqs, tokens) and gets exactly the missing ones, each once, in
// order, past the sync's 50-per-conversation limit (backfill).
func TestResumeAfterOffline(t *testing.T) {
	srv := startServer(t, "--limits", "off") // 150 REST sends in a row
	alice := user(t, srv.Base, "alice", "phone", client.Config{})
	var saved client.Tokens
	var mu sync.Mutex
	bob := user(t, srv.Base, "bob", "phone", client.Config{OnTokens: func(tk client.Tokens) { mu.Lock(); saved = tk; mu.Unlock() }})
	carol := user(t, srv.Base, "carol", "phone", client.Config{})
	ctx := ctxFor(t, 90*time.Second)
	bu, _ := alice.FindUser(ctx, "bob")
	cu, _ := alice.FindUser(ctx, "carol")
	direct, _ := alice.CreateDirect(ctx, bu.ID)
	group, err := alice.CreateGroup(ctx, "trio", bu.ID, cu.ID)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := carol.CreateDirect(ctx, bu.ID)

	// Bob online for the first 10 messages of the direct conversation.
	be := collect(bob)
	if err := bob.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := alice.SendREST(ctx, direct.ID, fmt.Sprint("early ", i)); err != nil {
			t.Fatal(err)
		}
	}
	be.waitFor(t, 10*time.Second, "the first 10", countMessages(direct.ID, 10))
	be.waitFor(t, 10*time.Second, "synced", func(es []client.Event) bool {
		for _, e := range es {
			if e.Kind == client.EventSynced {
				return true
			}
		}
		return false
	})
	state, err := bob.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bob.Close()
	if state.Held[direct.ID] != 10 || state.Position == "" {
		t.Fatalf("saved state %+v", state)
	}

	// Away: 60 more in the direct conversation, 60 in the group, 30 from carol.
	for i := range 60 {
		if _, err := alice.SendREST(ctx, direct.ID, fmt.Sprint("d", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendREST(ctx, group.ID, fmt.Sprint("g", i)); err != nil {
			t.Fatal(err)
		}
		if i < 30 {
			if _, err := carol.SendREST(ctx, other.ID, fmt.Sprint("c", i)); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Back, as a new process would: saved tokens and state.
	mu.Lock()
	tk := saved
	mu.Unlock()
	bob2 := client.New(client.Config{Server: srv.Base, Tokens: &tk, State: &state})
	b2 := collect(bob2)
	if err := bob2.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer bob2.Close()
	b2.waitFor(t, 20*time.Second, "synced", func(es []client.Event) bool {
		for _, e := range es {
			if e.Kind == client.EventSynced {
				return true
			}
		}
		return false
	})
	got := b2.messages(direct.ID)
	if len(got) != 60 || got[0] != 11 || got[59] != 70 {
		t.Fatalf("direct conversation after resume: %d messages %v", len(got), got)
	}
	for i, s := range got {
		if s != int64(11+i) {
			t.Fatalf("direct: out of order or duplicated: %v", got)
		}
	}
	// The device knew the other two conversations (empty) before it
	// went away, so it gets all of each, past the sync's limit of 50.
	checkOneToN(t, "group", b2.messages(group.ID), 60)
	checkOneToN(t, "carol's conversation", b2.messages(other.ID), 30)
	if st := bob2.Stats(); st.Backfills.Load() == 0 {
		t.Fatal("no backfill, yet 60 > the sync limit of 50")
	}
}

// TestTokenRenewedInBand: with 6-second access tokens the connection stays
// up (renewed with auth before expiry, twice in the 8 s) and keeps
// delivering. (3 s tokens left a renewal under 2 s on a loaded machine.)
func TestTokenRenewedInBand(t *testing.T) {
	srv := startServer(t, "--access-token-ttl", "6s", "--ping-interval", "1s", "--idle-timeout", "5s")
	alice := user(t, srv.Base, "alice", "phone", client.Config{})
	be := newCollector() // events by callback here, not by channel
	bob := user(t, srv.Base, "bob", "phone", client.Config{OnEvent: be.add})
	ctx := ctxFor(t, 60*time.Second)
	bu, _ := alice.FindUser(ctx, "bob")
	conv, _ := alice.CreateDirect(ctx, bu.ID)
	if err := bob.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	for i := range 8 {
		if _, err := alice.SendREST(ctx, conv.ID, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	be.waitFor(t, 10*time.Second, "8 messages", countMessages(conv.ID, 8))
	checkOneToN(t, "bob", be.messages(conv.ID), 8)
	if n := bob.Stats().Connects.Load(); n != 1 {
		t.Fatalf("bob connected %d times over 8 s of 6 s tokens; want 1 (renewed in band)", n)
	}
}

// TestStateWhileTheAppIsBusy: State answers while the app is not reading
// Events (the connection loop never waits for the app), and the events
// are all there, in order, once it reads.
func TestStateWhileTheAppIsBusy(t *testing.T) {
	srv := startServer(t)
	alice := user(t, srv.Base, "alice", "phone", client.Config{})
	bob := user(t, srv.Base, "bob", "phone", client.Config{EventBuffer: 1})
	ctx := ctxFor(t, 60*time.Second)
	bu, _ := alice.FindUser(ctx, "bob")
	conv, _ := alice.CreateDirect(ctx, bu.ID)
	if err := bob.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	for i := range 20 {
		if _, err := alice.SendREST(ctx, conv.ID, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := bob.State(sctx)
		cancel()
		if err != nil {
			t.Fatalf("State while the app reads nothing: %v", err)
		}
		if st.Held[conv.ID] == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("held %d of 20", st.Held[conv.ID])
		}
		time.Sleep(50 * time.Millisecond)
	}
	var seqs []int64
	for e := range bob.Events() {
		if e.Kind == client.EventMessage {
			seqs = append(seqs, e.Message.Seq)
			if len(seqs) == 20 {
				break
			}
		}
	}
	checkOneToN(t, "bob", seqs, 20)
}

// TestKnownDeviceLogin: the SDK keeps the known-device token of its login
// (across refreshes) and sends it with the next login, which then passes
// while a stranger's guesses from the same address are refused.
func TestKnownDeviceLogin(t *testing.T) {
	p := startServer(t, "--login-rate", "0.001", "--login-burst", "2")
	ctx := ctxFor(t, 30*time.Second)
	owner := user(t, p.Base, "alice", "laptop", client.Config{})
	known := owner.Tokens().DeviceToken
	if known == "" {
		t.Fatal("no device token after login")
	}
	if err := owner.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := owner.Tokens().DeviceToken; got != known {
		t.Fatalf("device token after refresh %q, want %q", got, known)
	}
	stranger := client.New(client.Config{Server: p.Base})
	for i := 0; i < 2; i++ {
		if err := stranger.Login(ctx, "alice", "wrong password!", "x"); parley.ErrorCode(err) != parley.CodeUnauthorized {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// (The SDK waits out a Retry-After within its context: give it little.)
	// (3 s: the request itself must reach the server and come back first.)
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := stranger.Login(short, "alice", "a long enough password", "x"); parley.ErrorCode(err) != parley.CodeRateLimited {
		t.Fatalf("stranger after 2 guesses: %v, want rate_limited", err)
	}
	if err := owner.Login(ctx, "alice", "a long enough password", "laptop"); err != nil {
		t.Fatalf("owner's known device: %v", err)
	}
	// A fresh client given the saved token is known too.
	again := client.New(client.Config{Server: p.Base, DeviceToken: owner.Tokens().DeviceToken})
	if err := again.Login(ctx, "alice", "a long enough password", "laptop"); err != nil {
		t.Fatalf("a client resumed with the device token: %v", err)
	}
}
