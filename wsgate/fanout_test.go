package wsgate

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// atLeastProcs runs the test with GOMAXPROCS at least n, so that a large
// fan-out has several writers even on a one-core runner.
func atLeastProcs(t *testing.T, n int) {
	t.Helper()
	if was := runtime.GOMAXPROCS(0); was < n {
		runtime.GOMAXPROCS(n)
		t.Cleanup(func() { runtime.GOMAXPROCS(was) })
	}
}

// connectGroup attaches n sessions with raw recorders, members of
// testConv, as users u0, u1, ...
func connectGroup(h *hub, n int) ([]*session, []*rawRecorder) {
	ss := make([]*session, n)
	rs := make([]*rawRecorder, n)
	for i := range n {
		ss[i], rs[i] = connectRaw(h, fmt.Sprint("u", i), map[string]int64{testConv: 0})
		rs[i].writes = nil // the ready frame
	}
	return ss, rs
}

func receiptEvent(t testing.TB, seq int64) []byte {
	t.Helper()
	data, err := json.Marshal(service.Event{Kind: service.EventReceipt, ConversationID: testConv, UserID: "reader", DeviceID: "reader-dev", Receipt: "read", Seq: seq})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// streamItem is one frame a session got, reduced to what order checks
// need: "m5" message 5, "r5" receipt 5, "p:ID" a pong.
func streamItems(t *testing.T, payloads []string) []string {
	t.Helper()
	out := make([]string, 0, len(payloads))
	for _, p := range payloads {
		var f struct {
			Type    string
			ID      string
			Seq     int64
			Message parley.Message
		}
		if err := json.Unmarshal([]byte(p), &f); err != nil {
			t.Fatalf("frame %q: %v", p, err)
		}
		switch f.Type {
		case FrameMessage:
			out = append(out, fmt.Sprint("m", f.Message.Seq))
		case FrameReceipt:
			out = append(out, fmt.Sprint("r", f.Seq))
		case FramePong:
			out = append(out, "p:"+f.ID)
		default:
			out = append(out, f.Type)
		}
	}
	return out
}

// TestFanOutOrderConcurrent: a group past fanOutMin, with messages (some
// out of order, so that gaps are held and filled, some in bursts, some
// alone), receipts from a second subscription, and acks written by other
// goroutines, all at once. Every session gets every message once and in
// seq order, the receipts in order, each goroutine's acks in order, and
// an ack written after a message was handed to the hub after that
// message; no frame is torn or mixed with another session's.
func TestFanOutOrderConcurrent(t *testing.T) {
	atLeastProcs(t, 4)
	h := newCoalesceHub(t)
	const members, msgs = fanOutMin + 72, 120
	h.g.core.(*fakeCore).messages[testConv] = storeMessages(msgs)
	ss, rs := connectGroup(h, members)

	// Messages in seq order but for some swapped pairs (k+1 before k).
	order := seqRange(1, msgs)
	for i := 3; i+1 < len(order); i += 7 {
		order[i], order[i+1] = order[i+1], order[i]
	}
	msgEvents := make([][]byte, len(order))
	for i, seq := range order {
		msgEvents[i] = messageEvent(t, parley.Message{ConversationID: testConv, Seq: seq, Body: strings.Repeat("m", 20+int(seq))})
	}
	receipts := make([][]byte, msgs)
	for i := range receipts {
		receipts[i] = receiptEvent(t, int64(i+1))
	}
	key := mustKey(t, testConv)
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { // the conversations subscription
		defer wg.Done()
		handle := h.batchHandler(&lagWatch{g: h.g})
		rng := rand.New(rand.NewPCG(1, 2))
		for i, data := range msgEvents {
			handle("", data, i+1 < len(order) && rng.IntN(3) > 0)
			// What the hub has handed out so far: an ack written now
			// must reach u0 after it.
			h.mu.Lock()
			delivered := h.convs[key].delivered
			h.mu.Unlock()
			ss[0].writeFrame(PongFrame{Type: FramePong, ID: fmt.Sprint("d", delivered)})
		}
	}()
	go func() { // a second subscription: receipts to the whole group
		defer wg.Done()
		handle := h.batchHandler(&lagWatch{g: h.g})
		rng := rand.New(rand.NewPCG(3, 4))
		for i, data := range receipts {
			handle("", data, i+1 < msgs && rng.IntN(2) > 0)
		}
	}()
	for _, w := range []int{1, 2} { // acks and replies of two sessions
		go func() {
			defer wg.Done()
			for i := 1; i <= msgs; i++ {
				ss[w].writeFrame(PongFrame{Type: FramePong, ID: fmt.Sprint("a", i)})
			}
		}()
	}
	wg.Wait()

	deadline := time.Now().Add(10 * time.Second)
	for i, r := range rs {
		var items []string
		for {
			p, _ := r.payloads(t)
			items = streamItems(t, p)
			if count(items, "m") >= msgs || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		var want []string
		for seq := int64(1); seq <= msgs; seq++ {
			want = append(want, fmt.Sprint("m", seq))
		}
		if got := only(items, "m"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("session %d: messages %v; want 1..%d once each, in order", i, got, msgs)
		}
		if got, want := only(items, "r"), strings.ReplaceAll(fmt.Sprint(want), "m", "r"); fmt.Sprint(got) != want {
			t.Fatalf("session %d: receipts %v; want %s", i, got, want)
		}
		switch i {
		case 0:
			pos := map[string]int{}
			for j, it := range items {
				pos[it] = j
			}
			for j, it := range items {
				if d, ok := strings.CutPrefix(it, "p:d"); ok && d != "0" {
					if at, ok := pos["m"+d]; !ok || at > j {
						t.Fatalf("session 0: the ack written after message %s was handed out came before it: %v", d, items)
					}
				}
			}
		case 1, 2:
			var acks []string
			for _, it := range items {
				if a, ok := strings.CutPrefix(it, "p:"); ok {
					acks = append(acks, a)
				}
			}
			for j, a := range acks {
				if a != fmt.Sprint("a", j+1) {
					t.Fatalf("session %d: acks %v; want a1..a%d in order", i, acks, msgs)
				}
			}
			if len(acks) != msgs {
				t.Fatalf("session %d: %d acks; want %d", i, len(acks), msgs)
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fan != nil || h.open.Load() != 0 || len(h.dirty) != 0 {
		t.Fatalf("afterwards: fan %v, open %d, dirty %d", h.fan != nil, h.open.Load(), len(h.dirty))
	}
	for i, s := range ss {
		s.mu.Lock()
		held := s.out != nil || s.shared
		s.mu.Unlock()
		if held {
			t.Fatalf("session %d still holds frames", i)
		}
	}
}

func mustKey(t *testing.T, id string) convKey {
	k, ok := keyOf(id)
	if !ok {
		t.Fatalf("bad id %q", id)
	}
	return k
}

// only returns the items with the prefix.
func only(items []string, prefix string) []string {
	var out []string
	for _, it := range items {
		if strings.HasPrefix(it, prefix) && !strings.HasPrefix(it, "p:") {
			out = append(out, it)
		}
	}
	return out
}

func count(items []string, prefix string) int { return len(only(items, prefix)) }

// probeConn is a rawRecorder that notes, for each write, whether the
// hub's lock was held, and how many of its kind wrote at once.
type probeConn struct {
	*rawRecorder
	p *probe
}

type probe struct {
	h                *hub
	armed            atomic.Bool // counting (not the ready frames)
	mu               sync.Mutex  // one TryLock at a time
	underLock, free  atomic.Int32
	active, most     atomic.Int32
	wait             bool          // the first writer waits for a second
	waited           atomic.Bool   // (at most waitFor)
	waitFor          time.Duration //
	direct, rawCount atomic.Int32
}

func (p *probe) enter() {
	p.mu.Lock()
	if p.h.mu.TryLock() {
		p.h.mu.Unlock()
		p.free.Add(1)
	} else {
		p.underLock.Add(1)
	}
	p.mu.Unlock()
	n := p.active.Add(1)
	for m := p.most.Load(); n > m && !p.most.CompareAndSwap(m, n); m = p.most.Load() {
	}
	if p.wait && p.waited.CompareAndSwap(false, true) {
		for end := time.Now().Add(p.waitFor); p.most.Load() < 2 && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
	}
}

func (p *probe) leave() { p.active.Add(-1) }

func (c *probeConn) WriteMessage(mt websocket.MessageType, data []byte) error {
	if c.p.armed.Load() {
		c.p.enter()
		defer c.p.leave()
		c.p.direct.Add(1)
	}
	return c.rawRecorder.WriteMessage(mt, data)
}

func (c *probeConn) raw() io.Writer {
	return rawFunc(func(b []byte) {
		if c.p.armed.Load() {
			c.p.enter()
			defer c.p.leave()
			c.p.rawCount.Add(1)
		}
		c.rawRecorder.writeRaw(b)
	})
}

func connectProbe(h *hub, p *probe, userID string, seqs map[string]int64) *rawRecorder {
	r := &rawRecorder{}
	s := newSession(h.g, &parley.Principal{UserID: userID, DeviceID: userID + "-dev", ExpiresAt: h.g.core.Now().Add(1 << 40)})
	s.setConn(&probeConn{rawRecorder: r, p: p})
	h.g.sessions.Add(1)
	h.begin(s)
	h.finish(s, seqs)
	r.writes = nil
	return r
}

// TestFanOutAfterHubLock: a lone message to a group of fanOutMin members
// is written after the hub's lock is released, one raw write per
// session, by writers running beside each other, all before the handler
// returns; in a conversation of two it is written at once under the
// lock, frame by frame, as before.
func TestFanOutAfterHubLock(t *testing.T) {
	atLeastProcs(t, 4)
	h := newCoalesceHub(t)
	const small = "01936f4e-8c2a-7b3d-9f10-000000000002"
	big := &probe{h: h, wait: true, waitFor: 5 * time.Second}
	var rs []*rawRecorder
	for i := range fanOutMin {
		rs = append(rs, connectProbe(h, big, fmt.Sprint("u", i), map[string]int64{testConv: 0}))
	}
	big.armed.Store(true)
	handle := h.batchHandler(&lagWatch{g: h.g})
	handle("", messageEvent(t, parley.Message{ConversationID: testConv, Seq: 1, Body: "to all"}), false)
	for i, r := range rs {
		p, n := r.payloads(t)
		if got := msgSeqs(t, p); fmt.Sprint(got) != "[1]" || n != 1 || !r.writes[0].raw {
			t.Fatalf("session %d right after the handler: seqs %v in %d writes; want [1] in one raw write", i, got, n)
		}
	}
	if big.underLock.Load() != 0 || big.free.Load() != fanOutMin || big.direct.Load() != 0 {
		t.Fatalf("%d writes under the hub's lock, %d after it, %d direct; want all %d after it, raw", big.underLock.Load(), big.free.Load(), big.direct.Load(), fanOutMin)
	}
	if big.most.Load() < 2 {
		t.Fatalf("at most %d writer at once; want several", big.most.Load())
	}

	two := &probe{h: h}
	ra := connectProbe(h, two, "alice", map[string]int64{small: 0})
	connectProbe(h, two, "bob", map[string]int64{small: 0})
	two.armed.Store(true)
	handle("", messageEvent(t, parley.Message{ConversationID: small, Seq: 1, Body: "to two"}), false)
	if two.underLock.Load() != 2 || two.rawCount.Load() != 0 || len(ra.writes) != 1 {
		t.Fatalf("conversation of two: %d writes under the lock, %d raw, alice %d; want 2 direct writes under it", two.underLock.Load(), two.rawCount.Load(), len(ra.writes))
	}
}

// TestFanOutBurstCoalesces: a burst to a large group still leaves in one
// write per session; a frame joining a fan-out's shared framing (an ack)
// goes to a copy, not into what the other sessions hold (two sessions'
// acks do not overwrite each other).
func TestFanOutBurstCoalesces(t *testing.T) {
	atLeastProcs(t, 4)
	h := newCoalesceHub(t)
	ss, rs := connectGroup(h, fanOutMin+1)
	handle := h.batchHandler(&lagWatch{g: h.g})
	for seq := int64(1); seq <= 3; seq++ {
		handle("", messageEvent(t, parley.Message{ConversationID: testConv, Seq: seq, Body: "b"}), seq < 3)
	}
	for i, r := range rs {
		if p, n := r.payloads(t); fmt.Sprint(msgSeqs(t, p)) != "[1 2 3]" || n != 1 {
			t.Fatalf("session %d: seqs %v in %d writes; want [1 2 3] in one", i, msgSeqs(t, p), n)
		}
		r.writes = nil
	}

	// Held for the fan-out, then an ack for one session joins it.
	f := &outFrame{data: []byte(`{"type":"message","message":{"seq":4}}`)}
	h.mu.Lock()
	fan := h.fanList(h.conv(testConv))
	for _, s := range ss {
		s.put(f, fan)
	}
	if b := f.framed; cap(b) != len(b) {
		t.Fatalf("the shared framing has room for %d more bytes: an append to one session's copy would write into it", cap(b)-len(b))
	}
	ss[0].writeFrame(PongFrame{Type: FramePong, ID: "ack0"})
	ss[1].writeFrame(PongFrame{Type: FramePong, ID: "ack1"})
	h.unlock()
	for i, r := range rs {
		p, n := r.payloads(t)
		want := `[{"type":"message","message":{"seq":4}}]`
		if i < 2 {
			want = fmt.Sprintf(`[{"type":"message","message":{"seq":4}} {"type":"pong","id":"ack%d"}]`, i)
		}
		if fmt.Sprint(p) != want || n != 1 {
			t.Fatalf("session %d: %v in %d writes; want %s in one", i, p, n, want)
		}
	}
}

// TestSmallBurstStaysSerial: a burst over many small conversations (130
// sessions, two to a conversation) is written one session after another
// by the handler, as before large fan-outs were spread: only a burst
// that holds a large group's frame is written by several goroutines.
func TestSmallBurstStaysSerial(t *testing.T) {
	atLeastProcs(t, 4)
	h := newCoalesceHub(t)
	p := &probe{h: h, wait: true, waitFor: 200 * time.Millisecond}
	var convs []string
	for i := range 65 {
		conv := fmt.Sprintf("01936f4e-8c2a-7b3d-9f10-%012d", i+10)
		convs = append(convs, conv)
		connectProbe(h, p, fmt.Sprint("a", i), map[string]int64{conv: 0})
		connectProbe(h, p, fmt.Sprint("b", i), map[string]int64{conv: 0})
	}
	p.armed.Store(true)
	handle := h.batchHandler(&lagWatch{g: h.g})
	for i, conv := range convs {
		handle("", messageEvent(t, parley.Message{ConversationID: conv, Seq: 1, Body: "m"}), i+1 < len(convs))
	}
	if p.rawCount.Load() != 130 || p.underLock.Load() != 0 || p.most.Load() != 1 {
		t.Fatalf("%d raw writes (%d under the hub's lock), at most %d at once; want 130, none under it, one at a time", p.rawCount.Load(), p.underLock.Load(), p.most.Load())
	}
}
