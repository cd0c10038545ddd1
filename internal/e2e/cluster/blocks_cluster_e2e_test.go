package cluster_test

import (
	"strconv"
	"testing"

	"github.com/parleychat/parley/internal/e2e"
)

// TestBlockAcrossNodes: two nodes on one PostgreSQL and NATS. Mallory
// writes to Alice through node 2, whose relations cache then holds "no
// block" for him there. Alice blocks him through node 1: once node 2 has
// the block's event (Alice's laptop on node 2 gets the block frame, which
// node 2 handles after applying the event to its caches), Mallory's next
// message through node 2 is withheld; after she unblocks, likewise, his
// next one is not.
func TestBlockAcrossNodes(t *testing.T) {
	env := e2e.ClusterEnv(t)
	n1 := e2e.StartParleyd(t, t.TempDir(), env)
	n2 := e2e.StartParleyd(t, t.TempDir(), env)
	e2e.Signup(t, n1.Base, "alice")
	e2e.Signup(t, n1.Base, "mallory")
	phone, laptop := e2e.LoginDevice(t, n1.Base, "alice", "phone"), e2e.LoginDevice(t, n2.Base, "alice", "laptop")
	m := e2e.LoginDevice(t, n2.Base, "mallory", "phone")
	alice, mallory := phone.User, m.User
	dm := e2e.MustAPI(t, 201, "POST", n2.Base+"/v1/conversations", m.Token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	al := e2e.Connect(t, n2.Base, laptop)

	withheld := func(seq int64) bool {
		t.Helper()
		msg := e2e.MustAPI(t, 200, "GET", n1.Base+"/v1/conversations/"+dm+"/messages/"+strconv.FormatInt(seq, 10), phone.Token, nil)["message"].(map[string]any)
		return msg["withheld"] == true
	}
	hits := e2e.MetricValue(t, n2.Base, "parley_relations_cache_hits_total")
	for _, id := range []string{"m1", "m2"} {
		if seq := e2e.SendText(t, n2.Base, m.Token, dm, id, "hello"); withheld(seq) {
			t.Fatalf("message %s withheld before any block", id)
		}
	}
	if e2e.MetricValue(t, n2.Base, "parley_relations_cache_hits_total") <= hits {
		t.Fatal("node 2 read the relations of the second send from the store: no cache to test")
	}

	e2e.MustAPI(t, 204, "PUT", n1.Base+"/v1/blocks/"+mallory, phone.Token, nil)
	e2e.UntilFrame(t, al, "block")
	if seq := e2e.SendText(t, n2.Base, m.Token, dm, "m3", "spam"); !withheld(seq) {
		t.Fatal("node 2 let the blocked user's message through after the block's event")
	}

	e2e.MustAPI(t, 204, "DELETE", n1.Base+"/v1/blocks/"+mallory, phone.Token, nil)
	e2e.UntilFrame(t, al, "block")
	if seq := e2e.SendText(t, n2.Base, m.Token, dm, "m4", "sorry"); withheld(seq) {
		t.Fatal("node 2 still withheld after the unblock's event")
	}
}
