package natsbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/internal/testenv"
)

// presenceBus connects to the machine's NATS and names a bucket of the
// test's own, deleted (then the connection closed) when the test ends.
func presenceBus(t *testing.T) (*Bus, string) {
	t.Helper()
	url := testenv.Service(t, "PARLEY_TEST_NATS_URL", "nats://127.0.0.1:4222")
	b, err := Connect(url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	var r [4]byte
	rand.Read(r[:])
	bucket := "parley_presence_test_" + hex.EncodeToString(r[:])
	t.Cleanup(func() {
		if js, err := jetstream.New(b.nc); err == nil {
			js.DeleteKeyValue(context.Background(), bucket)
		}
	})
	return b, bucket
}

// TestPresenceAcrossNodes runs two directories (two nodes) on the
// machine's NATS, in a bucket of their own: a user is online while either
// node has them, first and last are told right, and a node that dies
// without leaving is forgotten once its records go stale.
func TestPresenceAcrossNodes(t *testing.T) {
	b, bucket := presenceBus(t)
	ctx := t.Context()
	// The bucket exists already, as an earlier version made it (in
	// memory): its settings cannot change in place, so it is made anew.
	js, err := jetstream.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	const ttl = time.Second
	var clock atomic.Int64 // ms added to the real clock
	now := func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Millisecond) }
	open := func(node string) *Presence {
		p, err := NewPresence(ctx, b, PresenceOptions{Bucket: bucket, Node: node, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		p.now = now
		t.Cleanup(func() { p.Close() })
		return p
	}
	n1, n2 := open("n1"), open("n2")
	seenBy := func(p *Presence, user string) bool {
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if slices.Contains(p.Online([]string{user}), user) {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	goneFor := func(p *Presence, user string) bool {
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if len(p.Online([]string{user})) == 0 {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}

	first, err := n1.Join(ctx, "alice")
	if err != nil || !first {
		t.Fatalf("alice's first node: first=%v, %v", first, err)
	}
	if !seenBy(n2, "alice") {
		t.Fatal("node 2 never saw alice online on node 1")
	}
	if first, err := n2.Join(ctx, "alice"); err != nil || first {
		t.Fatalf("alice's second node: first=%v, %v; want false", first, err)
	}
	if !seenBy(n1, "alice") {
		t.Fatal("node 1 lost alice")
	}
	// Node 1 must see node 2's record before it leaves, or it would
	// rightly think she is gone.
	deadline := time.Now().Add(3 * time.Second)
	for {
		n1.mu.Lock()
		_, ok := n1.seen["alice"]["n2"]
		n1.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node 1 never saw node 2's record")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if last, err := n1.Leave(ctx, "alice"); err != nil || last {
		t.Fatalf("alice leaves node 1 while on node 2: last=%v, %v; want false", last, err)
	}
	if !seenBy(n2, "alice") || !seenBy(n1, "alice") {
		t.Fatal("alice is still on node 2 but not online")
	}
	if last, err := n2.Leave(ctx, "alice"); err != nil || !last {
		t.Fatalf("alice leaves her last node: last=%v, %v; want true", last, err)
	}
	if !goneFor(n1, "alice") || !goneFor(n2, "alice") {
		t.Fatal("alice left everywhere but is online")
	}

	// A node that dies keeps no one online past the TTL; keepalives keep
	// a live node's users online beyond it.
	if _, err := n2.Join(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Join(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if !seenBy(n1, "bob") {
		t.Fatal("node 1 never saw bob")
	}
	clock.Add(ttl.Milliseconds() / 2)
	if err := n1.Keepalive(ctx, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	clock.Add(ttl.Milliseconds()/2 + 100)
	// Carol is online once the keepalive's echo reaches node 1's watcher;
	// bob's record can never be fresh again, so waiting hides nothing.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := n1.Online([]string{"bob", "carol"})
		if slices.Equal(got, []string{"carol"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("online after node 2 went quiet past the TTL: %v, want [carol]", got)
		}
	}
	if n1.Interval() != ttl/3 {
		t.Fatalf("Interval %v", n1.Interval())
	}
}

// TestPresenceRaces joins and leaves one user on two nodes at the same
// moment, many times: exactly one join says the user came online, and at
// least one leave says they went offline (two is a repeated offline,
// harmless; none would leave them online for good).
func TestPresenceRaces(t *testing.T) {
	b, bucket := presenceBus(t)
	ctx := t.Context()
	nodes := make([]*Presence, 2)
	for i := range nodes {
		p, err := NewPresence(ctx, b, PresenceOptions{Bucket: bucket, Node: fmt.Sprint("n", i), TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		nodes[i] = p
	}
	for round := range 20 {
		user := fmt.Sprint("u", round)
		var firsts, lasts atomic.Int32
		var wg sync.WaitGroup
		for _, p := range nodes {
			wg.Go(func() {
				first, err := p.Join(ctx, user)
				if err != nil {
					t.Error(err)
				}
				if first {
					firsts.Add(1)
				}
			})
		}
		wg.Wait()
		for _, p := range nodes {
			wg.Go(func() {
				last, err := p.Leave(ctx, user)
				if err != nil {
					t.Error(err)
				}
				if last {
					lasts.Add(1)
				}
			})
		}
		wg.Wait()
		if firsts.Load() != 1 || lasts.Load() < 1 {
			t.Fatalf("round %d: %d joins said first (want 1), %d leaves said last (want at least 1)", round, firsts.Load(), lasts.Load())
		}
	}
	// A refresh does not make a record look new: a user online on node 0
	// for a while, refreshed, is not "first" when node 1 joins.
	if first, err := nodes[0].Join(ctx, "v"); err != nil || !first {
		t.Fatalf("join on node 0: %v %v", first, err)
	}
	if err := nodes[0].Keepalive(ctx, []string{"v"}); err != nil {
		t.Fatal(err)
	}
	if first, err := nodes[1].Join(ctx, "v"); err != nil || first {
		t.Fatalf("join on node 1 after node 0's refresh: first=%v, %v; want false", first, err)
	}
}
