package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/testenv"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/service"
	"github.com/parleychat/parley/store/postgres"
)

// eachEngine runs f on a SQLite store and on a PostgreSQL one (skipped
// without PostgreSQL, as testenv says).
func eachEngine(t *testing.T, f func(t *testing.T, st parley.Store)) {
	t.Run("sqlite", func(t *testing.T) { f(t, openStore(t)) })
	t.Run("postgres", func(t *testing.T) {
		dsn := testenv.Postgres(t)
		kr, err := seal.NewKeyring([][]byte{bytes.Repeat([]byte{3}, 32)})
		if err != nil {
			t.Fatal(err)
		}
		st, err := postgres.Open(context.Background(), dsn, postgres.Options{Sealer: kr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, st)
	})
}

// countingStore counts Store.Relations calls.
type countingStore struct {
	parley.Store
	relations atomic.Int64
}

func (s *countingStore) Relations(ctx context.Context, userID, conversationID string) (*parley.Relations, error) {
	s.relations.Add(1)
	return s.Store.Relations(ctx, userID, conversationID)
}

// nodesBus is the bus of a test cluster: it holds what is published
// until deliver hands it to every node, as each node's gateway would
// (Service.ObserveEvent for every event about a conversation or a block).
type nodesBus struct {
	mu      sync.Mutex
	nodes   []*service.Service
	pending [][]byte
}

func (b *nodesBus) Publish(_ context.Context, _ string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, bytes.Clone(data))
	return nil
}
func (b *nodesBus) Subscribe(string, func(string, []byte)) (parley.Subscription, error) {
	return nil, nil
}
func (b *nodesBus) Close() error { return nil }

// deliver hands every event published so far to every node.
func (b *nodesBus) deliver(tb testing.TB) {
	tb.Helper()
	b.mu.Lock()
	pending := b.pending
	b.pending = nil
	b.mu.Unlock()
	for _, data := range pending {
		var e service.Event
		if err := json.Unmarshal(data, &e); err != nil {
			tb.Fatal(err)
		}
		if e.ConversationID == "" && e.Kind != service.EventBlock {
			continue
		}
		for _, n := range b.nodes {
			n.ObserveEvent(&e)
		}
	}
}

// drop loses every event published so far.
func (b *nodesBus) drop() {
	b.mu.Lock()
	b.pending = nil
	b.mu.Unlock()
}

// blockFixture is two nodes (services on one store and a nodesBus), and
// a direct conversation between Alice and Mallory.
type blockFixture struct {
	st             *countingStore
	bus            *nodesBus
	nodes          [2]*service.Service
	alice, mallory *parley.Principal
	dm             string
	sent           int
}

var fixtures atomic.Int64 // for unique handles

func newBlockFixture(t *testing.T, st parley.Store) *blockFixture {
	f := &blockFixture{st: &countingStore{Store: st}, bus: &nodesBus{}}
	for i := range f.nodes {
		f.nodes[i] = newService(f.st, service.Config{})
		f.nodes[i].UseBus(f.bus)
		f.bus.nodes = append(f.bus.nodes, f.nodes[i])
	}
	n := fixtures.Add(1)
	a, m := createUser(t, st, fmt.Sprint("alice", n)), createUser(t, st, fmt.Sprint("mallory", n))
	f.alice, f.mallory = &parley.Principal{UserID: a.ID, DeviceID: "a1"}, &parley.Principal{UserID: m.ID, DeviceID: "m1"}
	now := time.Now().UTC().Truncate(time.Millisecond)
	c, _, err := st.CreateConversation(context.Background(), &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: now,
		Members: []parley.Member{{UserID: a.ID, Role: parley.MemberRoleMember}, {UserID: m.ID, Role: parley.MemberRoleMember}}})
	if err != nil {
		t.Fatal(err)
	}
	f.dm = c.ID
	return f
}

// send sends as Mallory through node i and reports whether the store
// keeps the message withheld.
func (f *blockFixture) send(t *testing.T, i int) bool {
	t.Helper()
	ctx := context.Background()
	f.sent++
	m, _, err := f.nodes[i].Send(ctx, f.mallory, service.SendRequest{ConversationID: f.dm, ClientMsgID: fmt.Sprint("m", f.sent), Body: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := f.st.Message(ctx, f.dm, m.Seq, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return stored.Withheld
}

// TestBlockTakesEffectOnEveryNode: with the relations cache, a block
// withholds the blocked user's next send at once on the node that made
// it and, on another node, as soon as the block's event reaches it (or
// the bus is known to have lost events); unblocking likewise. Sends
// between them read no relations from the store.
func TestBlockTakesEffectOnEveryNode(t *testing.T) {
	eachEngine(t, func(t *testing.T, st parley.Store) {
		ctx := context.Background()
		f := newBlockFixture(t, st)
		// Both nodes hold Mallory's answer: no block.
		for i := range f.nodes {
			if f.send(t, i) {
				t.Fatalf("node %d withheld a message before any block", i)
			}
		}
		reads := f.st.relations.Load()
		for i := range f.nodes {
			if f.send(t, i) {
				t.Fatalf("node %d withheld a message before any block", i)
			}
		}
		if n := f.st.relations.Load() - reads; n != 0 {
			t.Fatalf("cached sends read relations %d times, want 0", n)
		}

		// Alice blocks Mallory on node 0: node 0's next send is withheld
		// before any event is delivered.
		if err := f.nodes[0].Block(ctx, f.alice, f.mallory.UserID); err != nil {
			t.Fatal(err)
		}
		if !f.send(t, 0) {
			t.Fatal("the blocking node let the blocked user's next message through")
		}
		// Node 1 once the event reached it.
		f.bus.deliver(t)
		if !f.send(t, 1) {
			t.Fatal("another node let the blocked user's message through after the block's event")
		}
		for i := range f.nodes {
			if !f.send(t, i) {
				t.Fatalf("node %d let a blocked user's message through", i)
			}
		}

		// Unblocking on node 1: its next send goes through, node 0's once
		// it heard.
		if err := f.nodes[1].Unblock(ctx, f.alice, f.mallory.UserID); err != nil {
			t.Fatal(err)
		}
		if f.send(t, 1) {
			t.Fatal("the unblocking node still withheld")
		}
		f.bus.deliver(t)
		if f.send(t, 0) {
			t.Fatal("another node still withheld after the unblock's event")
		}

		// A block whose event is lost: a node that learns the bus lost
		// events (Service.ClearHistoryCache) reads relations again.
		if f.send(t, 1) {
			t.Fatal("withheld without a block")
		}
		if err := f.nodes[0].Block(ctx, f.alice, f.mallory.UserID); err != nil {
			t.Fatal(err)
		}
		f.bus.drop()
		f.nodes[1].ClearHistoryCache()
		if !f.send(t, 1) {
			t.Fatal("after a gap in the bus a node let the blocked user's message through")
		}
	})
}

// TestBlockRacesSends: while the blocked user sends without pause on the
// node that takes the block, every send that begins after Block returned
// is withheld: the relations cache never serves an answer from before the
// block. (One begun before may commit after it unwithheld, as with a read
// of the store before the append.)
func TestBlockRacesSends(t *testing.T) {
	eachEngine(t, func(t *testing.T, st parley.Store) {
		ctx := context.Background()
		for round := range 5 {
			f := newBlockFixture(t, st)
			svc := f.nodes[0]
			var blocked atomic.Bool
			var wg sync.WaitGroup
			var bad atomic.Int64
			stop := make(chan struct{})
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						after := blocked.Load()
						m, _, err := svc.Send(ctx, f.mallory, service.SendRequest{ConversationID: f.dm, ClientMsgID: fmt.Sprintf("r%d-g%d-%d", round, g, n), Body: "hi"})
						if err != nil {
							t.Error(err)
							return
						}
						if after {
							stored, err := st.Message(ctx, f.dm, m.Seq, time.Now())
							if err != nil {
								t.Error(err)
								return
							}
							if !stored.Withheld {
								bad.Add(1)
							}
						}
					}
				}()
			}
			time.Sleep(20 * time.Millisecond)
			err := svc.Block(ctx, f.alice, f.mallory.UserID)
			blocked.Store(true)
			time.Sleep(20 * time.Millisecond)
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if n := bad.Load(); n > 0 {
				t.Fatalf("round %d: %d sends begun after the block returned were not withheld", round, n)
			}
		}
	})
}
