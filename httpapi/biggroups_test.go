package httpapi_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/parleychat/parley/service"
)

// TestBigGroups: above the inline limit a conversation object carries
// member_count, the caller's me and a receipts summary instead of
// members, everywhere REST shows it; the members come from the paged
// endpoint; the privacy rules hold in both; small groups are unchanged.
func TestBigGroups(t *testing.T) {
	e := newEnvWith(t, func(c *service.Config) { c.MaxE2EEMembers, c.MaxInlineMembers = 2, 3 })
	a, b, c, d, x := e.user("alice"), e.user("bob"), e.user("carol"), e.user("dave"), e.user("xavier")

	small := e.must(201, "POST", "/v1/conversations", a.token, map[string]any{"kind": "group", "title": "small", "members": []string{b.id, c.id}})
	if num(small, "conversation", "member_count") != 3 || len(small["conversation"].(map[string]any)["members"].([]any)) != 3 ||
		small["conversation"].(map[string]any)["members_paged"] != nil || small["conversation"].(map[string]any)["me"] != nil {
		t.Fatalf("a group at the inline limit: %v", small)
	}

	g := e.must(201, "POST", "/v1/conversations", a.token, map[string]any{"kind": "group", "title": "big", "members": []string{b.id, c.id, d.id}})
	conv := g["conversation"].(map[string]any)
	if num(g, "conversation", "member_count") != 4 || conv["members_paged"] != true || conv["members"] != nil ||
		str(g, "conversation", "me", "user_id") != a.id || str(g, "conversation", "me", "role") != "owner" {
		t.Fatalf("a group above the inline limit: %v", g)
	}
	id := str(g, "conversation", "id")
	base := "/v1/conversations/" + id
	for i := 1; i <= 2; i++ {
		e.must(201, "POST", base+"/messages", a.token, map[string]any{"client_msg_id": fmt.Sprint(i), "body": "hi"})
	}
	e.must(200, "POST", base+"/read", b.token, map[string]any{"seq": 2})
	e.must(200, "PATCH", "/v1/me/privacy", c.token, map[string]any{"read_receipts": "nobody"})
	e.must(200, "POST", base+"/read", c.token, map[string]any{"seq": 1})

	summary := func(u user) (from float64, delivered, read []float64) {
		t.Helper()
		v := e.must(200, "GET", base, u.token, nil)["conversation"].(map[string]any)
		if v["members"] != nil || v["members_paged"] != true || num(v, "member_count") != 4 || str(v, "me", "user_id") != u.id {
			t.Fatalf("GET as %s: %v", u.handle, v)
		}
		r := v["receipts"].(map[string]any)
		for _, n := range r["delivered"].([]any) {
			delivered = append(delivered, n.(float64))
		}
		for _, n := range r["read"].([]any) {
			read = append(read, n.(float64))
		}
		return r["from_seq"].(float64), delivered, read
	}
	// Bob read 2, carol (who hides read receipts) 1: to alice carol
	// counts as delivered only.
	if from, del, read := summary(a); from != 1 || !slices.Equal(del, []float64{2, 1}) || !slices.Equal(read, []float64{1, 1}) {
		t.Errorf("alice's summary: from %v delivered %v read %v; want 1 [2 1] [1 1]", from, del, read)
	}
	// Carol sees no one's reads but her own.
	if _, del, read := summary(c); !slices.Equal(del, []float64{2, 1}) || !slices.Equal(read, []float64{1, 0}) {
		t.Errorf("carol's summary: delivered %v read %v; want [2 1] [1 0]", del, read)
	}
	// The exact counts of one message, as before.
	m := e.must(200, "GET", base+"/messages/1", a.token, nil)
	if num(m, "message", "delivered_count") != 2 || num(m, "message", "read_count") != 1 || num(m, "message", "member_count") != 3 {
		t.Errorf("message 1 as alice: %v", m)
	}

	// The list shows the same shape.
	list := e.must(200, "GET", "/v1/conversations", d.token, nil)["conversations"].([]any)
	for _, it := range list {
		v := it.(map[string]any)
		if v["id"] == id && (v["members"] != nil || v["members_paged"] != true || str(v, "me", "user_id") != d.id || v["receipts"] == nil) {
			t.Errorf("the list as dave: %v", v)
		}
	}

	// Members, two a page, by user id, carol's read hidden from alice.
	var got []string
	after := ""
	for pages := 0; pages < 4; pages++ {
		p := e.must(200, "GET", base+"/members?limit=2&after="+after, a.token, nil)
		if num(p, "member_count") != 4 {
			t.Fatalf("page: %v", p)
		}
		for _, it := range p["members"].([]any) {
			mb := it.(map[string]any)
			got = append(got, str(mb, "user_id"))
			if str(mb, "user_id") == c.id && (num(mb, "read_seq") != 0 || num(mb, "delivered_seq") != 1) {
				t.Errorf("carol as alice sees her: %v", mb)
			}
			if str(mb, "user_id") == b.id && num(mb, "read_seq") != 2 {
				t.Errorf("bob as alice sees him: %v", mb)
			}
		}
		if after = str(p, "next"); after == "" {
			break
		}
	}
	want := []string{a.id, b.id, c.id, d.id}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("paged members %v, want %v", got, want)
	}

	// Others learn nothing; bad queries read nothing.
	e.fails(404, "conversation_not_found", "GET", base+"/members", x.token, nil)
	e.fails(404, "conversation_not_found", "GET", "/v1/conversations/nope/members", a.token, nil)
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "after=nope", "limit=1&limit=2"} {
		e.fails(400, "invalid_request", "GET", base+"/members?"+q, a.token, nil)
	}

	// Adding a member answers in the paged shape too; a group that falls
	// to the limit lists its members again.
	added := e.must(201, "POST", base+"/members", a.token, map[string]any{"user_id": x.id})
	if num(added, "conversation", "member_count") != 5 || added["conversation"].(map[string]any)["members"] != nil {
		t.Errorf("add: %v", added)
	}
	e.must(204, "DELETE", base+"/members/"+x.id, a.token, nil)
	e.must(204, "DELETE", base+"/members/"+d.id, a.token, nil)
	v := e.must(200, "GET", base, a.token, nil)["conversation"].(map[string]any)
	if num(v, "member_count") != 3 || len(v["members"].([]any)) != 3 || v["me"] != nil || v["receipts"] != nil {
		t.Errorf("back at the limit: %v", v)
	}
}

// TestMembersOfDirectBlocked: the members page clamps the watermarks of a
// member who blocks the caller, as the conversation view does.
func TestMembersOfDirectBlocked(t *testing.T) {
	e := newEnv(t)
	a, b := e.user("alice"), e.user("bob")
	d := e.must(201, "POST", "/v1/conversations", a.token, map[string]any{"kind": "direct", "members": []string{b.id}})
	base := "/v1/conversations/" + str(d, "conversation", "id")
	e.must(201, "POST", base+"/messages", a.token, map[string]any{"client_msg_id": "1", "body": "hi"})
	e.must(204, "PUT", "/v1/blocks/"+a.id, b.token, nil)
	e.must(201, "POST", base+"/messages", a.token, map[string]any{"client_msg_id": "2", "body": "still there?"})
	e.must(200, "POST", base+"/read", b.token, map[string]any{"seq": 2})
	view := e.must(200, "GET", base, a.token, nil)["conversation"].(map[string]any)
	page := e.must(200, "GET", base+"/members", a.token, nil)
	var inView, inPage float64 = -1, -1
	for _, m := range view["members"].([]any) {
		if mb := m.(map[string]any); mb["user_id"] == b.id {
			inView = num(mb, "read_seq")
		}
	}
	for _, m := range page["members"].([]any) {
		if mb := m.(map[string]any); mb["user_id"] == b.id {
			inPage = num(mb, "read_seq")
		}
	}
	if inView != 1 || inPage != 1 {
		t.Fatalf("bob's read_seq as alice sees it: view %v, members page %v; want 1 (clamped at the block)", inView, inPage)
	}
}
