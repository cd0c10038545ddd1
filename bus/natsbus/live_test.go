package natsbus

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestLiveDevices: the push role asks the nodes that the presence mirror
// names for a user's live devices; a user with no records costs no
// question; a node that does not answer makes the answer an error (its
// users' devices are unknown), with the other nodes' devices kept.
func TestLiveDevices(t *testing.T) {
	b, bucket := presenceBus(t)
	ctx := context.Background()
	open := func(node string) *Presence {
		p, err := NewPresence(ctx, b, PresenceOptions{Bucket: bucket, Node: node, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	a, bn, asker := open("node-a"), open("node-b"), open("push-node")
	sub, err := a.ServeLive(func(users []string) []string {
		var out []string
		for _, u := range users {
			if u == "alice" {
				out = append(out, "alice-phone", "alice-laptop")
			}
		}
		return out
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if _, err := a.Join(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(asker.Online([]string{"alice"})) == 1 })

	live, err := asker.LiveDevices(ctx, []string{"alice", "bob"})
	if err != nil || !live["alice-phone"] || !live["alice-laptop"] || len(live) != 2 {
		t.Fatalf("live %v, %v", live, err)
	}
	if live, err := asker.LiveDevices(ctx, []string{"bob"}); err != nil || len(live) != 0 {
		t.Fatalf("nobody online: %v, %v", live, err)
	}

	// Node b holds a session of carol but does not answer (it is hung):
	// alice's devices still come back, and the error says carol's are
	// unknown.
	if _, err := bn.Join(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(asker.Online([]string{"carol"})) == 1 })
	start := time.Now()
	live, err = asker.LiveDevices(ctx, []string{"alice", "carol"})
	if err == nil || !live["alice-phone"] {
		t.Fatalf("with a silent node: %v, %v", live, err)
	}
	if took := time.Since(start); took > 3*liveTimeout {
		t.Fatalf("a silent node held the question %v", took)
	}
	keys := make([]string, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	t.Logf("with node b silent: %v (%v)", keys, err)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
