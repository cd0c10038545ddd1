package bench

import (
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// TestStreamChecks: without Reconnect, the per-connection checks are
// strict and classify what a broken server would do: a repeated seq is a
// duplicate, a live seq that fills a hole late is reordered, a fetched one
// filling it is not, and a hole never filled is loss (delivered below
// expected).
func TestStreamChecks(t *testing.T) {
	b := &bench{res: &Result{Errors: map[string]int64{}}}
	b.newHists()
	k := &conn{b: b, dev: device{deviceID: "me"}, track: map[string]*seqTrack{}}
	msg := func(seq int64, from string) *parley.Message {
		return &parley.Message{ConversationID: "c", Seq: seq, SenderDeviceID: from, Body: b.body(time.Now())}
	}
	now := time.Now()
	for _, step := range []struct {
		seq                   int64
		from                  string
		live                  bool
		delivered, dups, reor int64
	}{
		{1, "other", true, 1, 0, 0},
		{2, "me", true, 1, 0, 0}, // own message: ordered, not a delivery
		{4, "other", true, 2, 0, 0},
		{3, "other", true, 3, 0, 1}, // late live: reordered
		{4, "other", true, 3, 1, 1}, // again: duplicate
		{7, "other", true, 4, 1, 1},
		{5, "other", false, 5, 1, 1}, // fetched into the hole: fine
		{2, "me", false, 5, 2, 1},
	} {
		k.onMessage(msg(step.seq, step.from), now, step.live)
		if b.delivered.Load() != step.delivered || b.dups.Load() != step.dups || b.reordered.Load() != step.reor {
			t.Fatalf("after seq %d: delivered %d dups %d reordered %d, want %d %d %d", step.seq,
				b.delivered.Load(), b.dups.Load(), b.reordered.Load(), step.delivered, step.dups, step.reor)
		}
	}
	b.res.Expected = 6 // 1, 3, 4, 5, 6, 7 from others: 6 never came
	b.finish()
	if b.res.Lost != 1 {
		t.Fatalf("lost %d, want 1", b.res.Lost)
	}
}

// reconnBench is a bench with Reconnect whose connections have no socket:
// the tests feed frames to the classification directly.
func reconnBench() *bench {
	b := &bench{o: Options{Reconnect: true}, res: &Result{Errors: map[string]int64{}}}
	b.newHists()
	return b
}

func reconnConn(b *bench, deviceID string) *conn {
	return &conn{b: b, dev: device{userID: "u-" + deviceID, deviceID: deviceID}, track: map[string]*seqTrack{},
		window: make(chan struct{}, 8), rc: newReconnState(25)}
}

// TestReconnectClassification: with Reconnect, what arrives twice across a
// reconnect (live, then again in the catch-up sync, or the other way) is
// dropped as a client drops it, not a duplicate; holes filled by sync or
// history are not reordered; a live message below a higher live seq of
// the same socket is; the same client_msg_id under two seqs is a
// duplicate (stored twice), whichever way the copies arrive.
func TestReconnectClassification(t *testing.T) {
	b := reconnBench()
	k := reconnConn(b, "me")
	msg := func(seq int64, from, cmid string) *parley.Message {
		return &parley.Message{ConversationID: "c", Seq: seq, SenderID: "u-" + from, SenderDeviceID: from, ClientMsgID: cmid, Body: b.body(time.Now())}
	}
	now := time.Now()
	for _, step := range []struct {
		name                        string
		epoch                       int // the socket it arrives on
		seq                         int64
		from, cmid                  string
		live                        bool
		delivered, dups, reor, redl int64
	}{
		{"live 1", 0, 1, "other", "a1", true, 1, 0, 0, 0},
		{"own live 2", 0, 2, "me", "m1", true, 1, 0, 0, 0},
		{"live 3", 0, 3, "other", "a2", true, 2, 0, 0, 0},
		// The socket drops; 4 and 5 commit while it is away.
		{"new socket: live 6 first", 1, 6, "other", "a5", true, 3, 0, 0, 0},
		{"sync brings 3 again", 1, 3, "other", "a2", false, 3, 0, 0, 1},
		{"sync fills 4", 1, 4, "other", "a3", false, 4, 0, 0, 1},
		{"sync fills 5", 1, 5, "other", "a4", false, 5, 0, 0, 1},
		{"sync brings 6 again", 1, 6, "other", "a5", false, 5, 0, 0, 2},
		{"history brings 5 again", 1, 5, "other", "a4", false, 5, 0, 0, 3},
		{"live 6 replayed on the socket", 1, 6, "other", "a5", true, 5, 0, 0, 4},
		{"live 8", 1, 8, "other", "a7", true, 6, 0, 0, 4},
		{"live 7 after live 8, same socket: reordered", 1, 7, "other", "a6", true, 7, 0, 1, 4},
		{"sync 10 (a9)", 1, 10, "other", "a9", false, 8, 0, 1, 4},
		{"sync 11 with a9 again: stored twice", 1, 11, "other", "a9", false, 9, 1, 1, 4},
		{"11 again: dropped, not another duplicate", 1, 11, "other", "a9", true, 9, 1, 1, 5},
		{"next socket: live 9 is not reordered by 11 fetched on the last", 2, 9, "other", "a8", true, 10, 1, 1, 5},
	} {
		k.rc.epoch = step.epoch
		k.onMessage(msg(step.seq, step.from, step.cmid), now, step.live)
		if b.delivered.Load() != step.delivered || b.dups.Load() != step.dups || b.reordered.Load() != step.reor || b.redelivered.Load() != step.redl {
			t.Fatalf("%s: delivered %d dups %d reordered %d redelivered %d, want %d %d %d %d", step.name,
				b.delivered.Load(), b.dups.Load(), b.reordered.Load(), b.redelivered.Load(), step.delivered, step.dups, step.reor, step.redl)
		}
	}
	if h := k.track["c"].heldUpto(); h != 11 {
		t.Fatalf("held_upto %d, want 11", h)
	}
}

// TestReconnectDeliveryCheck: an acked message that never reaches its
// recipient is lost, whatever else the recipient got; a message delivered
// that no ack accounts for, once every send was acked, is a copy stored
// twice; an ack whose client_msg_id arrived under another seq is a
// duplicate.
func TestReconnectDeliveryCheck(t *testing.T) {
	b := reconnBench()
	alice, bob := reconnConn(b, "alice"), reconnConn(b, "bob")
	members := []*conn{alice, bob}
	ack := func(k *conn, reqID string, seq int64, cmid string) {
		k.mu.Lock()
		k.rc.msgN++
		k.rc.inflight[reqID] = &outMsg{n: k.rc.msgN, conv: "c", clientMsgID: cmid, created: time.Now()}
		k.mu.Unlock()
		k.onAckReconnect(&client.InFrame{Type: "ack", ID: reqID, Message: &parley.Message{ConversationID: "c", Seq: seq,
			SenderID: k.dev.userID, SenderDeviceID: k.dev.deviceID, ClientMsgID: cmid}}, time.Now())
	}
	deliver := func(to, from *conn, seq int64, cmid string) {
		to.onMessage(&parley.Message{ConversationID: "c", Seq: seq, SenderID: from.dev.userID, SenderDeviceID: from.dev.deviceID,
			ClientMsgID: cmid}, time.Now(), true)
	}
	ack(alice, "s1", 1, "a1")
	ack(alice, "s2", 2, "a2")
	ack(bob, "s1", 3, "b1")
	deliver(bob, alice, 1, "a1")
	deliver(alice, bob, 3, "b1")
	// Alice's seq 2 never reaches Bob: lost, although Bob got others.
	if e, l, s := deliveryCheck("c", members); e != 3 || l != 1 || s != 0 {
		t.Fatalf("expected %d lost %d stray %d, want 3 1 0", e, l, s)
	}
	deliver(bob, alice, 2, "a2")
	if e, l, s := deliveryCheck("c", members); e != 3 || l != 0 || s != 0 {
		t.Fatalf("after the catch-up: expected %d lost %d stray %d, want 3 0 0", e, l, s)
	}
	// A copy of a3 committed at seq 4 whose ack was lost; the resend was
	// stored again at seq 5 and acked. Bob holds both.
	deliver(bob, alice, 4, "a3")
	ack(alice, "s4", 5, "a3")
	deliver(bob, alice, 5, "a3")
	if b.dups.Load() != 1 {
		t.Fatalf("a3 under seqs 4 and 5: %d duplicates, want 1", b.dups.Load())
	}
	if e, l, s := deliveryCheck("c", members); e != 4 || l != 0 || s != 1 {
		t.Fatalf("expected %d lost %d stray %d, want 4 0 1 (seq 4 is acked by no one)", e, l, s)
	}
	// While a send is unanswered, an unacked delivery may be its copy:
	// no stray is claimed.
	alice.mu.Lock()
	alice.rc.msgN++
	alice.rc.outbox = append(alice.rc.outbox, &outMsg{n: alice.rc.msgN, conv: "c", clientMsgID: "a4"})
	alice.mu.Unlock()
	if _, _, s := deliveryCheck("c", members); s != 0 {
		t.Fatalf("stray %d with a send outstanding, want 0", s)
	}
}

// TestReconnectSendRetry: a send refused with unavailable or rate_limited
// goes back to its place in the outbox with a backoff and is not failed;
// any other code fails it and frees its window slot.
func TestReconnectSendRetry(t *testing.T) {
	b := reconnBench()
	k := reconnConn(b, "01936f4e-7c20-7d31-9a44-5e6f708192a3")
	k.rc.up = false // nothing is written: no socket
	for range 3 {
		k.enqueue("c", time.Now())
	}
	k.mu.Lock()
	m1, m2 := k.rc.outbox[0], k.rc.outbox[1]
	k.rc.outbox = k.rc.outbox[2:]
	k.rc.inflight["s1"], k.rc.inflight["s2"] = m1, m2
	k.mu.Unlock()
	k.window <- struct{}{}
	k.window <- struct{}{}
	errFrame := func(id string, code parley.Code) *client.InFrame {
		return &client.InFrame{Type: "error", ID: id, Error: &parley.Error{Code: code, Message: "x"}}
	}
	before := time.Now() // the backoff (at least 50 ms) runs from after this
	if !k.onSendError(errFrame("s1", parley.CodeUnavailable)) {
		t.Fatal("the error of send s1 was not taken as a send's")
	}
	k.mu.Lock()
	if len(k.rc.outbox) != 2 || k.rc.outbox[0] != m1 || m1.attempts != 1 || m1.notBefore.Sub(before) < 50*time.Millisecond {
		t.Fatalf("after unavailable: outbox %d, head %p (m1 %p), attempts %d", len(k.rc.outbox), k.rc.outbox[0], m1, m1.attempts)
	}
	k.mu.Unlock()
	if len(k.window) != 2 {
		t.Fatalf("a retried send released its window slot")
	}
	if !k.onSendError(errFrame("s2", parley.CodeConflict)) {
		t.Fatal("the error of send s2 was not taken as a send's")
	}
	if len(k.window) != 1 || k.inFlight() != 2 {
		t.Fatalf("after conflict: window %d, in flight %d; want 1, 2 (failed, not retried)", len(k.window), k.inFlight())
	}
	if k.onSendError(errFrame("r9", parley.CodeUnavailable)) {
		t.Fatal("an error of a request that is not a send was taken as a send's")
	}
	for n, want := range map[int][2]time.Duration{0: {50 * time.Millisecond, 100 * time.Millisecond},
		2: {200 * time.Millisecond, 400 * time.Millisecond}, 9: {time.Second, 2 * time.Second}} {
		for range 100 {
			if d := backoff(n); d < want[0] || d > want[1] {
				t.Fatalf("backoff(%d) = %v, want within %v", n, d, want)
			}
		}
	}
}
