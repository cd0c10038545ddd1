package wsgate

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// fakeCore serves the hub's store reads from memory. Methods the hub does
// not call come from the nil embedded interface and would panic.
// ObserveEvent: the fake has no history cache.
func (c *fakeCore) ObserveEvent(*service.Event) {}

type fakeCore struct {
	Core
	mu       sync.Mutex
	messages map[string][]parley.Message // by conversation, seq order
	reads    int
	now      time.Time
}

func (f *fakeCore) LiveMessages(_ context.Context, conv string, after int64, limit int) ([]parley.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	var out []parley.Message
	for _, m := range f.messages[conv] {
		if m.Seq > after && len(out) < limit {
			out = append(out, m)
		}
	}
	return out, nil
}

func (f *fakeCore) Presence(context.Context, string, bool, time.Time) error { return nil }
func (f *fakeCore) Now() time.Time                                          { return f.now }

// recorder is a wsConn that keeps what was written.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
	closed int
}

func (r *recorder) WriteMessage(_ websocket.MessageType, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, append([]byte(nil), data...))
	return nil
}
func (r *recorder) WriteClose(code int, _ string) error { r.closed = code; return nil }
func (r *recorder) Close() error                        { return nil }

// seqs returns the seqs of the message frames received so far.
func (r *recorder) seqs(t *testing.T) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int64
	for _, f := range r.frames {
		var m struct {
			Type    string
			Message parley.Message
		}
		if err := json.Unmarshal(f, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type == FrameMessage {
			out = append(out, m.Message.Seq)
		}
	}
	return out
}

const testConv = "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b"

func newTestHub(t testing.TB, core *fakeCore) *hub {
	t.Helper()
	if core.now.IsZero() {
		core.now = time.Now()
	}
	g := &Gateway{core: core, log: slog.New(slog.NewTextHandler(io.Discard, nil)), stop: make(chan struct{})}
	g.cfg.GapWait = 20 * time.Millisecond
	g.cfg.setDefaults()
	g.hub = newHub(g)
	return g.hub
}

// connectFake attaches a session of userID with a recorder.
func connectFake(h *hub, userID string, seqs map[string]int64) *recorder {
	r := &recorder{}
	s := newSession(h.g, &parley.Principal{UserID: userID, DeviceID: userID + "-dev", ExpiresAt: time.Now().Add(time.Hour)})
	s.setConn(r)
	h.g.sessions.Add(1)
	h.begin(s)
	if seqs == nil {
		seqs = map[string]int64{}
	}
	h.finish(s, seqs)
	return r
}

func messageEvent(t testing.TB, m parley.Message) []byte {
	t.Helper()
	data, err := json.Marshal(service.Event{Kind: service.EventMessage, ConversationID: m.ConversationID, Message: &m})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func storeMessages(n int) []parley.Message {
	ms := make([]parley.Message, n)
	for i := range ms {
		ms[i] = parley.Message{ConversationID: testConv, Seq: int64(i + 1), Body: "m"}
	}
	return ms
}

func waitSeqs(t *testing.T, r *recorder, n int) []int64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := r.seqs(t)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestHubReorders: events published out of order reach the session in seq
// order, without a store read when the gap closes by itself.
func TestHubReorders(t *testing.T) {
	core := &fakeCore{messages: map[string][]parley.Message{testConv: storeMessages(3)}}
	h := newTestHub(t, core)
	// A gap held longer than any descheduling of this goroutine between
	// the events (with the usual 20 ms a loaded machine fired the fill
	// before 1 arrived); the check below waits past it, so a timer that
	// fires after the gap closed must not read the store either.
	h.g.cfg.GapWait = time.Second
	r := connectFake(h, "u1", map[string]int64{testConv: 0})
	for _, seq := range []int{3, 2, 1} {
		h.onEvent("", messageEvent(t, core.messages[testConv][seq-1]))
	}
	if got := r.seqs(t); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("got %v, want 1 2 3", got)
	}
	time.Sleep(1500 * time.Millisecond)
	if core.reads != 0 {
		t.Fatalf("%d store reads for a gap that closed by itself", core.reads)
	}
}

// TestHubFillsLostEvents: an event lost on the bus is read from the store
// after GapWait, and held successors follow it in order.
func TestHubFillsLostEvents(t *testing.T) {
	core := &fakeCore{messages: map[string][]parley.Message{testConv: storeMessages(5)}}
	h := newTestHub(t, core)
	r := connectFake(h, "u1", map[string]int64{testConv: 0})
	for _, seq := range []int{1, 3, 5} { // 2 and 4 are lost
		h.onEvent("", messageEvent(t, core.messages[testConv][seq-1]))
	}
	if got := waitSeqs(t, r, 5); !slices.Equal(got, seqRange(1, 5)) {
		t.Fatalf("got %v, want 1..5", got)
	}
}

// TestHubSkipsVanishedSeqs: a seq the store no longer returns (expired or
// purged) is skipped, not waited for; a message that expired while held
// is not delivered.
func TestHubSkipsVanishedSeqs(t *testing.T) {
	now := time.Now()
	ms := storeMessages(4)
	ms[3].ExpiresAt = now.Add(-time.Second)                                                             // 4 expired while in flight
	core := &fakeCore{now: now, messages: map[string][]parley.Message{testConv: {ms[0], ms[2], ms[3]}}} // 2 is gone
	h := newTestHub(t, core)
	r := connectFake(h, "u1", map[string]int64{testConv: 0})
	h.onEvent("", messageEvent(t, ms[0]))
	h.onEvent("", messageEvent(t, ms[3]))
	h.onEvent("", messageEvent(t, ms[2]))
	// The fill runs from the GapWait timer: wait until it has delivered 3
	// and skipped 4 (on a loaded machine the timer can be late).
	key := mustKey(t, testConv)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		h.mu.Lock()
		delivered := h.convs[key].delivered
		h.mu.Unlock()
		if delivered >= 4 || time.Now().After(deadline) {
			break
		}
	}
	if got := r.seqs(t); !slices.Equal(got, []int64{1, 3}) {
		t.Fatalf("got %v, want 1 3", got)
	}
	// The next message goes straight out.
	m5 := parley.Message{ConversationID: testConv, Seq: 5}
	h.onEvent("", messageEvent(t, m5))
	if got := r.seqs(t); !slices.Equal(got, []int64{1, 3, 5}) {
		t.Fatalf("got %v, want 1 3 5", got)
	}
}

// TestHubShuffledLossyStream: 500 messages shuffled with 10% lost and
// duplicates; two sessions each see 1..500 exactly once, in order.
func TestHubShuffledLossyStream(t *testing.T) {
	const n = 500
	core := &fakeCore{messages: map[string][]parley.Message{testConv: storeMessages(n)}}
	h := newTestHub(t, core)
	r1 := connectFake(h, "u1", map[string]int64{testConv: 0})
	r2 := connectFake(h, "u2", map[string]int64{testConv: 0})
	rng := rand.New(rand.NewPCG(1, 2))
	// Shuffle within windows of 20, as a bus with several publishers
	// would reorder.
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	for w := 0; w < n; w += 20 {
		win := idx[w:min(w+20, n)]
		rng.Shuffle(len(win), func(a, b int) { win[a], win[b] = win[b], win[a] })
	}
	for _, i := range idx {
		if rng.IntN(10) == 0 {
			continue // lost
		}
		ev := messageEvent(t, core.messages[testConv][i])
		h.onEvent("", ev)
		if rng.IntN(20) == 0 {
			h.onEvent("", ev) // duplicate
		}
	}
	for name, r := range map[string]*recorder{"u1": r1, "u2": r2} {
		if got := waitSeqs(t, r, n); !slices.Equal(got, seqRange(1, n)) {
			t.Fatalf("%s got %d messages, first %v", name, len(got), got[:min(len(got), 20)])
		}
	}
}

// TestHubMembership: a removed member gets the conversation frame and
// nothing after it; an added member gets what follows the add.
func TestHubMembership(t *testing.T) {
	core := &fakeCore{messages: map[string][]parley.Message{testConv: storeMessages(4)}}
	h := newTestHub(t, core)
	alice := connectFake(h, "alice", map[string]int64{testConv: 0})
	bob := connectFake(h, "bob", map[string]int64{testConv: 0})
	carol := connectFake(h, "carol", nil)
	conv := &parley.Conversation{ID: testConv, Kind: parley.KindGroup, LastSeq: 1}
	event := func(e service.Event) {
		data, _ := json.Marshal(e)
		h.onEvent("", data)
	}
	h.onEvent("", messageEvent(t, core.messages[testConv][0]))
	event(service.Event{Kind: service.EventConversation, ConversationID: testConv, Action: service.ActionMemberRemoved, Conversation: conv, Users: []string{"bob"}})
	event(service.Event{Kind: service.EventConversation, ConversationID: testConv, Action: service.ActionMemberAdded, Conversation: conv, Users: []string{"carol"}})
	h.onEvent("", messageEvent(t, core.messages[testConv][1]))
	if got := alice.seqs(t); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("alice %v", got)
	}
	if got := bob.seqs(t); !slices.Equal(got, []int64{1}) {
		t.Fatalf("bob (removed after 1) got %v", got)
	}
	if got := carol.seqs(t); !slices.Equal(got, []int64{2}) {
		t.Fatalf("carol (added after 1) got %v", got)
	}
	var types []string
	for _, f := range bob.frames {
		var x struct{ Type string }
		_ = json.Unmarshal(f, &x)
		types = append(types, x.Type)
	}
	if !slices.Contains(types, FrameConversation) {
		t.Fatalf("bob got no conversation frame: %v", types)
	}
}

// TestHubMembershipDuringAttach: a membership change that lands between
// a session's snapshot and its going live is not lost: a removal is not
// undone by a stale snapshot, an add is not missed by an early one.
func TestHubMembershipDuringAttach(t *testing.T) {
	const other = "01936f4e-8c2a-7b3d-9f10-000000000002"
	core := &fakeCore{messages: map[string][]parley.Message{testConv: storeMessages(2), other: {{ConversationID: other, Seq: 1}}}}
	h := newTestHub(t, core)
	event := func(e service.Event) {
		data, _ := json.Marshal(e)
		h.onEvent("", data)
	}
	r := &recorder{}
	s := newSession(h.g, &parley.Principal{UserID: "bob", DeviceID: "bob-dev", ExpiresAt: time.Now().Add(time.Hour)})
	s.setConn(r)
	h.g.sessions.Add(1)
	h.begin(s)
	// While bob's snapshot is read: he leaves testConv and joins other.
	event(service.Event{Kind: service.EventConversation, ConversationID: testConv, Action: service.ActionMemberRemoved, Conversation: &parley.Conversation{ID: testConv}, Users: []string{"bob"}})
	event(service.Event{Kind: service.EventConversation, ConversationID: other, Action: service.ActionMemberAdded, Conversation: &parley.Conversation{ID: other}, Users: []string{"bob"}})
	h.finish(s, map[string]int64{testConv: 0}) // read before both changes
	h.onEvent("", messageEvent(t, core.messages[testConv][0]))
	h.onEvent("", messageEvent(t, core.messages[other][0]))
	var convs []string
	for _, f := range r.frames {
		var m struct {
			Type    string
			Message parley.Message
		}
		_ = json.Unmarshal(f, &m)
		if m.Type == FrameMessage {
			convs = append(convs, m.Message.ConversationID)
		}
	}
	if !slices.Equal(convs, []string{other}) {
		t.Fatalf("bob got messages of %v, want only %s", convs, other)
	}
}

// TestHubEditOvertakesMessage: an edit whose event arrives before the
// message's own event is not lost: the edited version goes out, once.
func TestHubEditOvertakesMessage(t *testing.T) {
	core := &fakeCore{messages: map[string][]parley.Message{testConv: storeMessages(1)}}
	core.messages[testConv][0].Body = "edited"
	h := newTestHub(t, core)
	r := connectFake(h, "u1", map[string]int64{testConv: 0})
	edited := core.messages[testConv][0]
	edited.EditedAt = time.Now()
	data, _ := json.Marshal(service.Event{Kind: service.EventMessageChanged, ConversationID: testConv, Message: &edited})
	h.onEvent("", data)
	original := parley.Message{ConversationID: testConv, Seq: 1, Body: "original"}
	h.onEvent("", messageEvent(t, original))
	time.Sleep(100 * time.Millisecond)
	var bodies []string
	for _, f := range r.frames {
		var m struct {
			Type    string
			Message parley.Message
		}
		_ = json.Unmarshal(f, &m)
		if m.Type == FrameMessage {
			bodies = append(bodies, m.Message.Body)
		}
	}
	if !slices.Equal(bodies, []string{"edited"}) {
		t.Fatalf("got %v, want the edited version once", bodies)
	}
}

// TestHubPresenceAfterQuickReconnect: a user back within the grace period
// is still announced online, for contacts that attached meanwhile.
func TestHubPresenceAfterQuickReconnect(t *testing.T) {
	core := &fakeCore{messages: map[string][]parley.Message{}}
	h := newTestHub(t, core)
	seqs := map[string]int64{testConv: 0}
	// alice online, then her only connection drops.
	r := &recorder{}
	s := newSession(h.g, &parley.Principal{UserID: "alice", DeviceID: "a", ExpiresAt: time.Now().Add(time.Hour)})
	s.setConn(r)
	h.g.sessions.Add(1)
	h.begin(s)
	h.finish(s, seqs)
	h.presenceMu.Lock()
	h.presenceQ = nil
	h.presenceMu.Unlock()
	h.detach(s)
	// bob connects within the grace period: alice is not listed.
	bob := connectFake(h, "bob", seqs)
	// alice is back within the grace period: nothing is announced.
	_ = connectFake(h, "alice", seqs)
	h.presenceMu.Lock()
	queued := 0
	for _, n := range h.presenceQ {
		if n.userID == "alice" {
			queued++
		}
	}
	h.presenceMu.Unlock()
	sawAlice := false
	for _, f := range bob.frames {
		if strings.Contains(string(f), `"presence"`) && strings.Contains(string(f), `"alice"`) {
			sawAlice = true
		}
	}
	if !sawAlice && queued == 0 {
		t.Errorf("alice is online, but bob got no presence for her and none is queued: bob shows her offline until her next transition")
	}
}

func TestConvKey(t *testing.T) {
	id := parley.NewID()
	k, ok := keyOf(id)
	if !ok || k.String() != id {
		t.Fatalf("keyOf(%s) = %s, %v", id, k, ok)
	}
	for _, bad := range []string{"", "x", strings.ToUpper(id), id[:35] + "g", strings.Replace(id, "-", "0", 1), id + "0"} {
		if _, ok := keyOf(bad); ok {
			t.Errorf("keyOf(%q) accepted", bad)
		}
	}
}

// TestConvEntryMembers: the inline-two-then-overflow member set keeps
// every member exactly once through adds and removals in any order, and
// drops its extra part when the group shrinks back to two.
func TestConvEntryMembers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		var c convEntry
		users := make([]*userEntry, 1+rng.IntN(6))
		for i := range users {
			users[i] = &userEntry{id: string(rune('a' + i))}
		}
		want := map[*userEntry]bool{}
		for step := range 40 {
			u := users[rng.IntN(len(users))]
			if want[u] {
				c.remove(u)
				delete(want, u)
			} else {
				if !c.add(u) {
					t.Fatalf("round %d step %d: add of a new member refused", round, step)
				}
				want[u] = true
			}
			if want[u] && c.add(u) {
				t.Fatalf("round %d step %d: add of a member accepted", round, step)
			}
			got := map[*userEntry]bool{}
			for o := range c.all {
				if got[o] {
					t.Fatalf("round %d step %d: %s listed twice", round, step, o.id)
				}
				got[o] = true
			}
			if len(got) != len(want) || c.empty() != (len(want) == 0) {
				t.Fatalf("round %d step %d: %d members listed, want %d", round, step, len(got), len(want))
			}
			for o := range want {
				if !got[o] {
					t.Fatalf("round %d step %d: %s missing", round, step, o.id)
				}
			}
			if len(want) <= 2 && c.x != nil {
				t.Fatalf("round %d step %d: extra part kept with %d members", round, step, len(want))
			}
		}
	}
}

// fakeLocal hands over events by their bytes, as service.Service's
// loopback does for the events its node published.
type fakeLocal struct {
	mu     sync.Mutex
	events map[string]*service.Event
	taken  int
}

func (f *fakeLocal) KeepPublished(bool) {}
func (f *fakeLocal) TakePublished(data []byte) *service.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.events[string(data)]
	if e != nil {
		delete(f.events, string(data))
		f.taken++
	}
	return e
}

// TestHubTakesLocalEvents: an event the core hands over is delivered
// without decoding its bytes (these do not even decode), in order with
// the decoded ones; bytes it does not hold are decoded as before.
func TestHubTakesLocalEvents(t *testing.T) {
	core := &fakeCore{messages: map[string][]parley.Message{testConv: storeMessages(3)}}
	h := newTestHub(t, core)
	local := &fakeLocal{events: map[string]*service.Event{}}
	h.g.local = local
	r := connectFake(h, "u1", map[string]int64{testConv: 0})
	m2 := core.messages[testConv][1]
	local.events["not json: the local event"] = &service.Event{Kind: service.EventMessage, ConversationID: testConv, Message: &m2}
	h.onEvent("", messageEvent(t, core.messages[testConv][0]))
	h.onEvent("", []byte("not json: the local event"))
	h.onEvent("", messageEvent(t, core.messages[testConv][2]))
	if got := r.seqs(t); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("got %v, want 1 2 3", got)
	}
	if local.taken != 1 || core.reads != 0 {
		t.Fatalf("taken %d, store reads %d; want 1 and 0", local.taken, core.reads)
	}
}
