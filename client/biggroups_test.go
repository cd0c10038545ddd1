package client_test

import (
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// TestBigGroup: against a server with a tiny inline limit, the SDK
// handles a paged conversation: sync gives the user's own entry and the
// receipts summary, a live change names the changed members (and the
// user's own entry when it is about the user), and Members pages through
// everyone.
func TestBigGroup(t *testing.T) {
	srv := startServer(t, "--max-e2ee-members", "2", "--max-inline-members", "3", "--message-requests", "off")
	ctx := ctxFor(t, 60*time.Second)
	names := []string{"alice", "bob", "carol", "dave", "erin"}
	cs := map[string]*client.Client{}
	for _, h := range names {
		cs[h] = user(t, srv.Base, h, "phone", client.Config{})
	}
	id := func(h string) string { return cs[h].Tokens().UserID }
	alice, bob, erin := cs["alice"], cs["bob"], cs["erin"]
	conv, err := alice.CreateGroup(ctx, "all hands", id("bob"), id("carol"), id("dave"))
	if err != nil {
		t.Fatal(err)
	}
	if !conv.MembersPaged || conv.Members != nil || conv.Size() != 4 || conv.MemberOf(id("alice")) == nil || conv.MemberOf(id("alice")).Role != parley.MemberRoleOwner {
		t.Fatalf("created: %+v", conv)
	}
	if _, err := alice.SendREST(ctx, conv.ID, "hello"); err != nil {
		t.Fatal(err)
	}

	// A big group created while connected: the created frame names no one,
	// bob is in it and gets its messages live.
	be, ee := collect(bob), collect(erin)
	for _, c := range []*client.Client{bob, erin} {
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	be.waitFor(t, 10*time.Second, "bob's sync of the big group", func(es []client.Event) bool {
		for _, e := range es {
			if e.Kind == client.EventConversation && e.Conversation.Action == "synced" && e.ConversationID == conv.ID {
				c := e.Conversation.Conversation
				me := c.MemberOf(id("bob"))
				return c.MembersPaged && c.Size() == 4 && me != nil && me.Role == parley.MemberRoleMember &&
					c.Receipts != nil && c.Receipts.FromSeq == 1 && len(c.Receipts.Delivered) == 1
			}
		}
		return false
	})

	second, err := alice.CreateGroup(ctx, "second", id("bob"), id("carol"), id("dave"))
	if err != nil {
		t.Fatal(err)
	}
	be.waitFor(t, 10*time.Second, "bob's entry in the new big group", func(es []client.Event) bool {
		for _, e := range es {
			if e.Kind == client.EventConversation && e.Conversation.Action == "created" && e.ConversationID == second.ID {
				me := e.Conversation.Conversation.MemberOf(id("bob"))
				return me != nil && me.Role == parley.MemberRoleMember
			}
		}
		return false
	})
	if _, err := alice.SendREST(ctx, second.ID, "first"); err != nil {
		t.Fatal(err)
	}
	be.waitFor(t, 10*time.Second, "bob's live message in the new big group", countMessages(second.ID, 1))

	if err := alice.AddMember(ctx, conv.ID, id("erin")); err != nil {
		t.Fatal(err)
	}
	be.waitFor(t, 10*time.Second, "bob told of erin", func(es []client.Event) bool {
		for _, e := range es {
			if e.Kind == client.EventConversation && e.Conversation.Action == "member_added" {
				ch := e.Conversation
				return ch.Conversation.Size() == 5 && len(ch.Members) == 1 && ch.Members[0].UserID == id("erin") && ch.Conversation.Me == nil
			}
		}
		return false
	})
	ee.waitFor(t, 10*time.Second, "erin's own entry", func(es []client.Event) bool {
		for _, e := range es {
			if e.Kind == client.EventConversation && e.Conversation.Action == "member_added" {
				me := e.Conversation.Conversation.MemberOf(id("erin"))
				return me != nil && me.ReadSeq == 1
			}
		}
		return false
	})

	all, err := bob.AllMembers(ctx, conv.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, m := range all {
		got = append(got, m.UserID)
	}
	for _, h := range names {
		want = append(want, id(h))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("AllMembers: %v, want %v", got, want)
	}
	page, err := bob.Members(ctx, conv.ID, "", 2)
	if err != nil || len(page.Members) != 2 || page.Next != page.Members[1].UserID || page.MemberCount != 5 {
		t.Fatalf("a page of 2: %+v, %v", page, err)
	}
}
