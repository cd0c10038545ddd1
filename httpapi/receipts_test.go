package httpapi_test

import (
	"fmt"
	"testing"

	"github.com/parleychat/parley"
)

// TestHistoryReceipts: each history item says how many of the other
// members have it delivered and read, by their watermarks; the sender is
// not counted.
func TestHistoryReceipts(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol, dave := e.user("alice"), e.user("bob"), e.user("carol"), e.user("dave")
	g := e.must(201, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "group", "title": "t", "members": []string{bob.id, carol.id}})
	base := "/v1/conversations/" + str(g, "conversation", "id")
	for i := 1; i <= 3; i++ {
		e.must(201, "POST", base+"/messages", alice.token, map[string]any{"client_msg_id": fmt.Sprint(i), "body": "hi"})
	}
	e.must(201, "POST", base+"/messages", bob.token, map[string]any{"client_msg_id": "b", "body": "from bob"}) // seq 4
	e.must(200, "POST", base+"/read", bob.token, map[string]any{"seq": 2})
	for _, d := range []struct {
		u   user
		seq int64
	}{{bob, 1}, {carol, 3}} {
		p := &parley.Principal{UserID: d.u.id, DeviceID: d.u.device}
		if _, _, err := e.svc.MarkDelivered(t.Context(), p, str(g, "conversation", "id"), d.seq); err != nil {
			t.Fatal(err)
		}
	}

	type counts struct{ delivered, read, members float64 }
	want := map[float64]counts{
		1: {2, 1, 2}, // both have it, bob read it
		2: {2, 1, 2}, // bob read it without reporting it delivered (reading implies it); carol has it
		3: {1, 0, 2}, // carol has it
		4: {0, 0, 2}, // bob's own: alice and carol, neither has it
	}
	items := e.must(200, "GET", base+"/messages", alice.token, nil)["messages"].([]any)
	if len(items) != len(want) {
		t.Fatalf("%d history items, want %d", len(items), len(want))
	}
	for _, it := range items {
		m := it.(map[string]any)
		seq := num(m, "seq")
		got := counts{num(m, "delivered_count"), num(m, "read_count"), num(m, "member_count")}
		if got != want[seq] || str(m, "id") == "" || str(m, "body") == "" {
			t.Errorf("seq %v: %v with counts %+v, want %+v", seq, m, got, want[seq])
		}
	}

	// A member who joins later counts, as having read (so having) what
	// came before.
	e.must(201, "POST", base+"/members", alice.token, map[string]any{"user_id": dave.id})
	first := e.must(200, "GET", base+"/messages?limit=1&after=0", alice.token, nil)["messages"].([]any)[0].(map[string]any)
	if got := (counts{num(first, "delivered_count"), num(first, "read_count"), num(first, "member_count")}); got != (counts{3, 2, 3}) {
		t.Fatalf("seq 1 after dave joined: counts %+v, want {3 2 3}", got)
	}
}
