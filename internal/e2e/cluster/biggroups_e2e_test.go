package cluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/wstest"
)

// bigConvFrame is a conversation frame with the members the change is
// about (paged conversations).
type bigConvFrame struct {
	Action       string              `json:"action"`
	Conversation parley.Conversation `json:"conversation"`
	UserIDs      []string            `json:"user_ids"`
	Members      []parley.Member     `json:"members"`
}

// TestBigGroupPaged runs the binary with a tiny inline limit and checks
// a group above it end to end: conversation frames without a member list
// (the changed members instead), sync entries with me and the receipts
// summary, the members endpoint, receipt frames only to the member's own
// devices, and no presence through the group.
func TestBigGroupPaged(t *testing.T) {
	p := e2e.StartRealtime(t, "--max-e2ee-members", "2", "--max-inline-members", "3", "--message-requests", "off")
	base := p.Base
	names := []string{"alice", "bob", "carol", "dave", "erin"}
	for _, h := range names {
		e2e.Signup(t, base, h)
	}
	dev := map[string]e2e.Device{}
	for _, h := range names {
		dev[h] = e2e.LoginDevice(t, base, h, "phone")
	}
	a, b := dev["alice"], dev["bob"]
	ac, bc := e2e.Connect(t, base, a), e2e.Connect(t, base, b)

	created := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", a.Token, map[string]any{"kind": "group", "title": "all hands",
		"members": []string{b.User, dev["carol"].User, dev["dave"].User}})["conversation"].(map[string]any)
	g := created["id"].(string)
	if created["members"] != nil || created["members_paged"] != true || created["member_count"].(float64) != 4 {
		t.Fatalf("created over REST: %v", created)
	}
	for name, c := range map[string]*wstest.Conn{"alice": ac, "bob": bc} {
		var f bigConvFrame
		if err := c.Expect("conversation", "presence").Decode(&f); err != nil || f.Action != "created" || f.Conversation.ID != g ||
			f.Conversation.MemberCount != 4 || !f.Conversation.MembersPaged || f.Conversation.Members != nil || f.Conversation.Me != nil ||
			f.UserIDs != nil || f.Members != nil {
			t.Fatalf("%s: created frame %+v, %v", name, f, err)
		}
	}

	ac.MustWrite(map[string]any{"type": "send", "id": "s1", "conversation_id": g, "client_msg_id": "m1", "body": "hello all"})
	ac.Expect("ack", "message")
	if m := e2e.ExpectMessage(t, bc); m.Seq != 1 {
		t.Fatalf("bob got %+v", m)
	}
	// Bob's receipts reach bob's own devices, not alice's.
	bc.MustWrite(map[string]any{"type": "delivered", "conversation_id": g, "seq": 1})
	bc.MustWrite(map[string]any{"type": "read", "conversation_id": g, "seq": 1})
	e2e.ExpectReceipt(t, bc, "read", b.User)
	ac.Quiet(300*time.Millisecond, "receipt")

	// A member added: one frame alike for all, with the new entry.
	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations/"+g+"/members", a.Token, map[string]any{"user_id": dev["erin"].User})
	var f bigConvFrame
	if err := bc.Expect("conversation", "presence", "receipt").Decode(&f); err != nil || f.Action != "member_added" || f.Conversation.MemberCount != 5 ||
		f.Conversation.Members != nil || !slices.Equal(f.UserIDs, []string{dev["erin"].User}) || len(f.Members) != 1 ||
		f.Members[0].UserID != dev["erin"].User || f.Members[0].ReadSeq != 1 {
		t.Fatalf("bob: member_added %+v, %v", f, err)
	}

	// Sync: me and the summary, no list.
	res := e2e.DoSync(t, bc, "", 0)
	var found bool
	for _, c := range res.Conversations {
		if c.Conversation.ID != g {
			continue
		}
		found = true
		conv := c.Conversation
		if conv.Members != nil || !conv.MembersPaged || conv.MemberCount != 5 || conv.Me == nil || conv.Me.UserID != b.User || conv.Me.ReadSeq != 1 {
			t.Fatalf("sync entry: %+v", conv)
		}
		r := conv.Receipts
		// bob read 1; erin joined with 1 read; alice sent it.
		if r == nil || r.FromSeq != 1 || !slices.Equal(r.Delivered, []int{2}) || !slices.Equal(r.Read, []int{2}) {
			t.Fatalf("sync summary: %+v", r)
		}
	}
	if !found {
		t.Fatalf("sync has no big group: %+v", res)
	}

	// The members, two a page.
	var ids []string
	after := ""
	for range 5 {
		page := e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/conversations/%s/members?limit=2&after=%s", base, g, after), b.Token, nil)
		for _, m := range page["members"].([]any) {
			ids = append(ids, m.(map[string]any)["user_id"].(string))
		}
		next, _ := page["next"].(string)
		if next == "" {
			break
		}
		after = next
	}
	var want []string
	for _, h := range names {
		want = append(want, dev[h].User)
	}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("members pages: %v, want %v", ids, want)
	}

	// Presence does not flow through the big group.
	cc := e2e.Connect(t, base, dev["carol"])
	defer cc.Close()
	ac.Quiet(500*time.Millisecond, "presence")
	cc.Quiet(300*time.Millisecond, "presence")
}
