package push

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/bus/natsbus"
)

// viewStore is an in-memory ViewStore.
type viewStore struct {
	mu      sync.Mutex
	devices map[string]string   // device -> user
	convs   map[string][]string // conversation -> members
	fail    error               // PushDevices fails with it
	during  func()              // called once by the next PushDevices before it reads
	loads   int
}

func (s *viewStore) PushDevices(_ context.Context, each func(userID, deviceID string) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads++
	if s.during != nil {
		s.during()
		s.during = nil
	}
	if s.fail != nil {
		return s.fail
	}
	for d, u := range s.devices {
		if err := each(u, d); err != nil {
			return err
		}
	}
	return nil
}

func (s *viewStore) Conversation(_ context.Context, id string) (*parley.Conversation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	users, ok := s.convs[id]
	if !ok {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	c := &parley.Conversation{ID: id}
	for _, u := range users {
		c.Members = append(c.Members, parley.Member{UserID: u})
	}
	return c, nil
}

func (s *viewStore) set(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// viewNode is one node's queue and view on a shared NATS.
type viewNode struct {
	q   *Queue
	v   *View
	reg *prometheus.Registry
}

func startViewNodes(t *testing.T, store *viewStore, n int) []*viewNode {
	t.Helper()
	emb, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: filepath.Join(t.TempDir(), "nats")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []*viewNode
	for range n {
		bus, err := natsbus.ConnectEmbedded(emb, natsbus.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close() })
		reg := prometheus.NewRegistry()
		q, err := OpenQueue(context.Background(), bus.Conn(), QueueConfig{}, NewMetrics(reg), log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(q.Close)
		q.UseBus(bus)
		v := NewView(q, store, bus, ViewConfig{Reload: time.Hour}, log)
		q.UseView(v)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { v.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		nodes = append(nodes, &viewNode{q: q, v: v, reg: reg})
	}
	for _, nd := range nodes {
		waitFor(t, "the view loaded", func() bool { return nd.metric("parley_push_view_ready") == 1 })
	}
	return nodes
}

func (nd *viewNode) metric(name string) float64 {
	mfs, _ := nd.reg.Gather()
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

// jobs lists the message jobs on the queue, by their dedup ids.
func (nd *viewNode) jobs(t *testing.T) []string {
	t.Helper()
	info, err := nd.q.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := nd.q.stream.GetMsg(context.Background(), seq)
		if err != nil {
			continue
		}
		ids = append(ids, m.Header.Get("Nats-Msg-Id"))
	}
	return ids
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func commit(nd *viewNode, conv, sender string, seq int64) {
	nd.q.MessageCommitted(&parley.Message{ID: parley.NewID(), ConversationID: conv, SenderID: sender, Seq: seq,
		Type: parley.MessageText, CreatedAt: time.Now()})
}

func jobID(conv string, seq int64) string {
	return (&MessageJob{ConversationID: conv, Seq: seq}).msgID()
}

// waitJobs waits until the queue holds exactly want (in any order) and
// checks it still does a moment later.
func waitJobs(t *testing.T, nd *viewNode, want ...string) {
	t.Helper()
	slices.Sort(want)
	same := func() bool {
		got := nd.jobs(t)
		slices.Sort(got)
		return slices.Equal(got, want)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !same() {
		if time.Now().After(deadline) {
			t.Fatalf("jobs on the queue: %v, want %v", nd.jobs(t), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if !same() {
		t.Fatalf("jobs on the queue: %v, want %v", nd.jobs(t), want)
	}
}

// TestViewSparesUnneededJobs: a message none of whose other members has
// a registration gets no job once the view knows the conversation (its
// first message is enqueued while the members are read); the sender's
// own registration does not count; a member's does, at once on every
// node, and a message judged on one node just before it heard of the
// registration is enqueued after all.
func TestViewSparesUnneededJobs(t *testing.T) {
	alice, bob, carol := parley.NewID(), parley.NewID(), parley.NewID()
	direct, group := parley.NewID(), parley.NewID()
	aliceDevice := parley.NewID()
	store := &viewStore{devices: map[string]string{aliceDevice: alice},
		convs: map[string][]string{direct: {alice, bob}, group: {alice, bob, carol}}}
	nodes := startViewNodes(t, store, 2)
	a, b := nodes[0], nodes[1]

	commit(a, direct, alice, 1) // unknown conversation: enqueued, members read
	waitFor(t, "the members read", func() bool {
		a.v.mu.Lock()
		defer a.v.mu.Unlock()
		return a.v.convs[direct] != nil
	})
	commit(a, direct, alice, 2) // bob has no registration; alice's own does not count
	commit(a, direct, alice, 3)
	waitJobs(t, a, jobID(direct, 1))
	if n := a.metric("parley_push_jobs_avoided_total"); n != 2 {
		t.Fatalf("avoided %v jobs, want 2", n)
	}
	commit(a, direct, bob, 4) // alice is registered: bob's message needs a job
	waitJobs(t, a, jobID(direct, 1), jobID(direct, 4))

	// Bob registers through node b: node a hears it on the bus and
	// enqueues seq 5 of the direct conversation (judged without it), but
	// not seq 3 (seq 5 is newer: its notification covers it).
	bobPhone := parley.NewID()
	commit(a, direct, alice, 5)
	store.set(func() { store.devices[bobPhone] = bob })
	if err := b.q.PushRegistered(bob, bobPhone); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, a, jobID(direct, 1), jobID(direct, 4), jobID(direct, 5))
	if n := a.metric("parley_push_jobs_revisited_total"); n != 1 {
		t.Fatalf("revisited %v, want 1", n)
	}
	commit(a, direct, alice, 6)
	waitJobs(t, a, jobID(direct, 1), jobID(direct, 4), jobID(direct, 5), jobID(direct, 6))
	if n := a.metric("parley_push_view_users"); n != 2 {
		t.Fatalf("view users %v, want 2", n)
	}
	// In the group, alice and bob are registered: every message needs a
	// job.
	commit(a, group, bob, 1)
	waitFor(t, "the group's members read", func() bool {
		a.v.mu.Lock()
		defer a.v.mu.Unlock()
		return a.v.convs[group] != nil
	})
	commit(a, group, carol, 2) // alice and bob are registered
	waitJobs(t, a, jobID(direct, 1), jobID(direct, 4), jobID(direct, 5), jobID(direct, 6), jobID(group, 1), jobID(group, 2))
}

// TestViewMembershipChange: a conversation whose membership changed is
// read again, and its newest message judged without the change is
// enqueued.
func TestViewMembershipChange(t *testing.T) {
	alice, bob, dave := parley.NewID(), parley.NewID(), parley.NewID()
	group := parley.NewID()
	davePhone := parley.NewID()
	store := &viewStore{devices: map[string]string{davePhone: dave}, convs: map[string][]string{group: {alice, bob}}}
	nd := startViewNodes(t, store, 1)[0]
	commit(nd, group, alice, 1)
	waitFor(t, "the members read", func() bool {
		nd.v.mu.Lock()
		defer nd.v.mu.Unlock()
		return nd.v.convs[group] != nil
	})
	commit(nd, group, alice, 2)
	commit(nd, group, bob, 3)
	waitJobs(t, nd, jobID(group, 1))
	// Dave (registered) joins; this node hears of it after seq 3 was
	// judged: seq 3 is enqueued, and the next message too (the members
	// are read again).
	store.set(func() { store.convs[group] = []string{alice, bob, dave} })
	nd.q.ConversationChanged(group)
	waitJobs(t, nd, jobID(group, 1), jobID(group, 3))
	commit(nd, group, alice, 4)
	waitJobs(t, nd, jobID(group, 1), jobID(group, 3), jobID(group, 4))
	waitFor(t, "the members read again", func() bool {
		nd.v.mu.Lock()
		defer nd.v.mu.Unlock()
		return nd.v.convs[group] != nil
	})
	commit(nd, group, alice, 5)
	waitJobs(t, nd, jobID(group, 1), jobID(group, 3), jobID(group, 4), jobID(group, 5))
}

// TestViewGap: after a gap in the bus every message is enqueued until
// the registrations are read again, the messages judged just before are
// enqueued, and a reload that fails keeps it so.
func TestViewGap(t *testing.T) {
	alice, bob := parley.NewID(), parley.NewID()
	direct := parley.NewID()
	store := &viewStore{devices: map[string]string{}, convs: map[string][]string{direct: {alice, bob}}}
	nd := startViewNodes(t, store, 1)[0]
	commit(nd, direct, alice, 1)
	waitFor(t, "the members read", func() bool {
		nd.v.mu.Lock()
		defer nd.v.mu.Unlock()
		return nd.v.convs[direct] != nil
	})
	commit(nd, direct, alice, 2)
	waitJobs(t, nd, jobID(direct, 1))

	store.set(func() { store.fail = errors.New("store away") })
	nd.v.Gap()
	waitJobs(t, nd, jobID(direct, 1), jobID(direct, 2)) // revisited
	if nd.metric("parley_push_view_ready") != 0 {
		t.Fatal("the view is ready after a gap, before a reload")
	}
	commit(nd, direct, alice, 3) // not ready: enqueued
	waitJobs(t, nd, jobID(direct, 1), jobID(direct, 2), jobID(direct, 3))
	store.set(func() { store.fail = nil })
	waitFor(t, "the reload after the gap", func() bool { return nd.metric("parley_push_view_ready") == 1 })
	commit(nd, direct, alice, 4) // members read again after the gap: enqueued
	waitFor(t, "the members read", func() bool {
		nd.v.mu.Lock()
		defer nd.v.mu.Unlock()
		return nd.v.convs[direct] != nil
	})
	commit(nd, direct, alice, 5)
	waitJobs(t, nd, jobID(direct, 1), jobID(direct, 2), jobID(direct, 3), jobID(direct, 4))
}

// TestViewLoadKeepsAddsDuringIt: a registration heard while a reload
// reads the store is kept although the read missed it.
func TestViewLoadKeepsAddsDuringIt(t *testing.T) {
	alice, bob := parley.NewID(), parley.NewID()
	direct := parley.NewID()
	store := &viewStore{devices: map[string]string{}, convs: map[string][]string{direct: {alice, bob}}}
	nd := startViewNodes(t, store, 1)[0]
	bobPhone := parley.NewID()
	var loads int
	store.set(func() {
		loads = store.loads
		store.during = func() { nd.v.registered(bob, bobPhone) } // the store's read has begun without it
	})
	nd.v.reload()
	waitFor(t, "the reload", func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		return store.loads > loads
	})
	waitFor(t, "the reload done", func() bool {
		nd.v.mu.Lock()
		defer nd.v.mu.Unlock()
		return !nd.v.reloading
	})
	commit(nd, direct, alice, 1)
	waitFor(t, "the members read", func() bool {
		nd.v.mu.Lock()
		defer nd.v.mu.Unlock()
		return nd.v.convs[direct] != nil
	})
	commit(nd, direct, alice, 2) // bob is registered: a job
	waitJobs(t, nd, jobID(direct, 1), jobID(direct, 2))
}
