package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// checkMembers fails unless c has exactly the given users with the given
// roles.
func checkMembers(tb testing.TB, c *parley.Conversation, roles map[string]parley.MemberRole) {
	tb.Helper()
	if len(c.Members) != len(roles) {
		tb.Fatalf("%d members %+v, want %d", len(c.Members), c.Members, len(roles))
	}
	for user, role := range roles {
		m := c.MemberOf(user)
		if m == nil {
			tb.Fatalf("user %s is not a member; members %+v", user, c.Members)
		}
		if m.Role != role {
			tb.Fatalf("user %s has role %q, want %q", user, m.Role, role)
		}
	}
}

func testCreateGroup(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	c := f.group(a, b)
	got := f.conversation(c.ID)
	if got.ID != c.ID || got.Kind != parley.KindGroup || got.Title != c.Title || got.LastSeq != 0 ||
		!sameTime(got.CreatedAt, c.CreatedAt) {
		t.Fatalf("Conversation:\n got %+v\nwant %+v", *got, *c)
	}
	checkMembers(t, got, map[string]parley.MemberRole{a.ID: parley.MemberRoleOwner, b.ID: parley.MemberRoleMember})
	for _, m := range got.Members {
		if m.ReadSeq != 0 || !sameTime(m.JoinedAt, f.now) {
			t.Fatalf("member %+v: want read_seq 0 and joined at %v", m, f.now)
		}
	}
	_, err := f.s.Conversation(f.ctx, parley.NewID())
	wantCode(t, err, parley.CodeConversationNotFound, "Conversation(unknown)")
}

func testCreateConversationUnknownUser(t *testing.T, f *fixture) {
	a := f.user()
	c := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, Title: "g", CreatedAt: f.now, Members: []parley.Member{
		{UserID: a.ID, Role: parley.MemberRoleOwner, JoinedAt: f.now},
		{UserID: parley.NewID(), Role: parley.MemberRoleMember, JoinedAt: f.now},
	}}
	_, _, err := f.s.CreateConversation(f.ctx, c)
	wantCode(t, err, parley.CodeNotFound, "CreateConversation(unknown member)")
	_, err = f.s.Conversation(f.ctx, c.ID)
	wantCode(t, err, parley.CodeConversationNotFound, "Conversation(rejected)")
	if views, _ := f.s.ConversationViews(f.ctx, a.ID, f.now); len(views) != 0 {
		t.Fatalf("the rejected conversation is listed: %+v", views)
	}
}

func testDirectUnique(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	first, created := f.direct(a, b)
	if !created || first.Kind != parley.KindDirect {
		t.Fatalf("first direct: created=%v kind=%q", created, first.Kind)
	}
	for name, pair := range map[string][2]*parley.User{"same order": {a, b}, "reversed": {b, a}} {
		again, created := f.direct(pair[0], pair[1])
		if created || again.ID != first.ID {
			t.Fatalf("%s: created=%v id=%s, want the existing %s", name, created, again.ID, first.ID)
		}
		checkMembers(t, again, map[string]parley.MemberRole{a.ID: parley.MemberRoleMember, b.ID: parley.MemberRoleMember})
	}
	other, created := f.direct(a, c)
	if !created || other.ID == first.ID {
		t.Fatalf("a direct with another user: created=%v id=%s", created, other.ID)
	}
	if views, err := f.s.ConversationViews(f.ctx, a.ID, f.now); err != nil || len(views) != 2 {
		t.Fatalf("ConversationViews = %d views, %v; want 2", len(views), err)
	}

	// Concurrent creations of one pair make one conversation.
	d, e := f.user(), f.user()
	const n = 16
	ids := make([]string, n)
	createdBy := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			x, y := d, e
			if i%2 == 1 {
				x, y = e, d
			}
			c := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: f.now, Members: []parley.Member{
				{UserID: x.ID, Role: parley.MemberRoleMember}, {UserID: y.ID, Role: parley.MemberRoleMember}}}
			got, created, err := f.s.CreateConversation(f.ctx, c)
			if err != nil {
				t.Errorf("concurrent CreateConversation: %v", err)
				return
			}
			ids[i], createdBy[i] = got.ID, created
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	creations := 0
	for i := range n {
		if ids[i] != ids[0] {
			t.Fatalf("concurrent creations returned %s and %s", ids[0], ids[i])
		}
		if createdBy[i] {
			creations++
		}
	}
	if creations != 1 {
		t.Fatalf("%d concurrent creations reported created, want 1", creations)
	}
}

func testAddMember(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	g := f.group(a, b)
	if err := addMember(f, g.ID, parley.Member{UserID: c.ID, Role: parley.MemberRoleAdmin, JoinedAt: f.now}); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	checkMembers(t, f.conversation(g.ID), map[string]parley.MemberRole{
		a.ID: parley.MemberRoleOwner, b.ID: parley.MemberRoleMember, c.ID: parley.MemberRoleAdmin})
	wantCode(t, addMember(f, g.ID, parley.Member{UserID: c.ID, Role: parley.MemberRoleMember, JoinedAt: f.now}),
		parley.CodeConflict, "AddMember(already a member)")
	wantCode(t, addMember(f, g.ID, parley.Member{UserID: parley.NewID(), Role: parley.MemberRoleMember, JoinedAt: f.now}),
		parley.CodeNotFound, "AddMember(unknown user)")
	wantCode(t, addMember(f, parley.NewID(), parley.Member{UserID: c.ID, Role: parley.MemberRoleMember, JoinedAt: f.now}),
		parley.CodeConversationNotFound, "AddMember(unknown conversation)")
	// The new member can send.
	f.send(g, c, "hello from c")
}

func testRemoveMember(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	if err := removeMember(f, g.ID, b.ID); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	checkMembers(t, f.conversation(g.ID), map[string]parley.MemberRole{a.ID: parley.MemberRoleOwner})
	wantCode(t, removeMember(f, g.ID, b.ID), parley.CodeNotFound, "RemoveMember(again)")
	_, err := f.s.ConversationView(f.ctx, g.ID, b.ID, f.now)
	wantCode(t, err, parley.CodeConversationNotFound, "ConversationView(removed member)")
	if views, _ := f.s.ConversationViews(f.ctx, b.ID, f.now); len(views) != 0 {
		t.Fatalf("a removed member still lists the conversation: %+v", views)
	}
}

func testSetMemberRoles(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	g := f.group(a, b, c)
	// Ownership transfer: two changes at once.
	transfer := map[string]parley.MemberRole{a.ID: parley.MemberRoleAdmin, b.ID: parley.MemberRoleOwner}
	if err := setMemberRoles(f, g.ID, transfer); err != nil {
		t.Fatalf("SetMemberRoles: %v", err)
	}
	want := map[string]parley.MemberRole{a.ID: parley.MemberRoleAdmin, b.ID: parley.MemberRoleOwner, c.ID: parley.MemberRoleMember}
	checkMembers(t, f.conversation(g.ID), want)
	// One bad user: nothing changes.
	bad := map[string]parley.MemberRole{a.ID: parley.MemberRoleOwner, c.ID: parley.MemberRoleAdmin, parley.NewID(): parley.MemberRoleMember}
	wantCode(t, setMemberRoles(f, g.ID, bad), parley.CodeNotFound, "SetMemberRoles(a non-member)")
	checkMembers(t, f.conversation(g.ID), want)
}

func testDeleteConversation(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	kept := f.group(a, b)
	f.send(g, a, "one")
	f.send(g, b, "two")
	keptMsg := f.send(kept, a, "kept")
	if err := deleteConversation(f, g.ID); err != nil {
		t.Fatalf("DeleteConversation: %v", err)
	}
	_, err := f.s.Conversation(f.ctx, g.ID)
	wantCode(t, err, parley.CodeConversationNotFound, "Conversation(deleted)")
	_, err = f.s.ConversationView(f.ctx, g.ID, a.ID, f.now)
	wantCode(t, err, parley.CodeConversationNotFound, "ConversationView(deleted)")
	_, err = f.s.Message(f.ctx, g.ID, 1, f.now)
	wantCode(t, err, parley.CodeNotFound, "Message(deleted conversation)")
	if msgs, err := f.s.Messages(f.ctx, g.ID, parley.HistoryQuery{Limit: 10}, f.now); err == nil && len(msgs) != 0 {
		t.Fatalf("Messages(deleted conversation) = %d messages", len(msgs))
	}
	_, _, err = f.s.AppendMessage(f.ctx, f.message(g, a, "late"))
	wantCode(t, err, parley.CodeConversationNotFound, "AppendMessage(deleted conversation)")
	wantCode(t, deleteConversation(f, g.ID), parley.CodeConversationNotFound, "DeleteConversation(again)")
	views, err := f.s.ConversationViews(f.ctx, a.ID, f.now)
	if err != nil || len(views) != 1 || views[0].ID != kept.ID {
		t.Fatalf("ConversationViews after delete = %+v, %v; want only %s", views, err, kept.ID)
	}
	got, err := f.s.Message(f.ctx, kept.ID, 1, f.now)
	if err != nil {
		t.Fatalf("Message in another conversation: %v", err)
	}
	checkMessage(t, got, keptMsg)
}

func testMarkRead(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	g := f.group(a, b)
	for range 5 {
		f.send(g, a, "hi")
	}
	for _, step := range []struct {
		seq, want int64
		raised    bool
	}{
		{3, 3, true},
		{2, 3, false},  // never lowers
		{0, 3, false},  // never lowers
		{100, 5, true}, // clamped to last_seq
		{4, 5, false},
		{5, 5, false},
	} {
		got, err := f.s.MarkRead(f.ctx, g.ID, b.ID, step.seq)
		if err != nil || got.Seq != step.want || got.Raised != step.raised {
			t.Fatalf("MarkRead(%d) = %+v, %v; want %d raised=%v", step.seq, got, err, step.want, step.raised)
		}
	}
	if v := f.view(g.ID, b); v.ReadSeq != 5 || v.UnreadCount != 0 {
		t.Fatalf("view: read_seq %d unread %d, want 5, 0", v.ReadSeq, v.UnreadCount)
	}
	if m := f.conversation(g.ID).MemberOf(a.ID); m.ReadSeq != 0 {
		t.Fatalf("another member's read_seq moved to %d", m.ReadSeq)
	}
	_, err := f.s.MarkRead(f.ctx, g.ID, c.ID, 1)
	wantCode(t, err, parley.CodeConversationNotFound, "MarkRead(non-member)")
	_, err = f.s.MarkRead(f.ctx, parley.NewID(), b.ID, 1)
	wantCode(t, err, parley.CodeConversationNotFound, "MarkRead(unknown conversation)")
}

func testUnreadCount(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	g := f.group(a, b, c)
	fromA := []*parley.Message{f.send(g, a, "a1"), f.send(g, a, "a2"), f.send(g, a, "a3")} // seqs 1-3
	f.send(g, b, "b1")                                                                     // seq 4
	f.send(g, c, "c1")                                                                     // seq 5
	unread := func(u *parley.User) int64 { t.Helper(); return f.view(g.ID, u).UnreadCount }
	if got := unread(c); got != 4 {
		t.Fatalf("c's unread = %d, want 4 (own message excluded)", got)
	}
	if got := unread(a); got != 2 {
		t.Fatalf("a's unread = %d, want 2", got)
	}
	del := *fromA[1]
	del.Deleted, del.Body, del.EditedAt = true, "", f.now
	if err := updateMessage(f, &del); err != nil {
		t.Fatalf("UpdateMessage(delete): %v", err)
	}
	if got := unread(c); got != 3 {
		t.Fatalf("c's unread after a delete = %d, want 3", got)
	}
	if _, err := f.s.MarkRead(f.ctx, g.ID, c.ID, 3); err != nil {
		t.Fatal(err)
	}
	if got := unread(c); got != 1 {
		t.Fatalf("c's unread after reading to 3 = %d, want 1", got)
	}
}

// testUnread: Unread counts a conversation as its view's UnreadCount
// does (others' messages after read_seq, neither deleted nor expired),
// and the total over every membership of the user.
func testUnread(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	g := f.group(a, b, c)
	ab, _ := f.direct(a, b)
	bc := f.group(c, b)
	notB := f.group(a, c)
	f.send(g, a, "g1")
	f.send(g, a, "g2")
	f.send(g, a, "g3")
	f.send(g, b, "own") // seq 4: b's own
	expiring := f.message(g, c, "expires")
	expiring.ExpiresAt = f.now.Add(time.Minute)
	f.append(expiring)              // seq 5
	del := *f.send(g, a, "deleted") // seq 6
	del.Deleted, del.Body, del.EditedAt = true, "", f.now
	if err := updateMessage(f, &del); err != nil {
		t.Fatal(err)
	}
	f.send(ab, a, "ab1")
	f.send(ab, a, "ab2")
	f.send(bc, c, "bc1")
	f.send(notB, a, "not b's")

	// check asks Unread for b at now and compares with the views.
	check := func(conversationID string, now time.Time, wantConv, wantTotal int64, what string) {
		t.Helper()
		conv, total, err := f.s.Unread(f.ctx, b.ID, conversationID, now)
		if err != nil || conv != wantConv || total != wantTotal {
			t.Fatalf("%s: Unread = %d, %d, %v; want %d, %d", what, conv, total, err, wantConv, wantTotal)
		}
		views, err := f.s.ConversationViews(f.ctx, b.ID, now)
		if err != nil {
			t.Fatal(err)
		}
		sum := int64(0)
		for _, v := range views {
			sum += v.UnreadCount
			if v.ID == conversationID && v.UnreadCount != conv {
				t.Fatalf("%s: Unread of %s = %d, its view's UnreadCount %d", what, v.ID, conv, v.UnreadCount)
			}
		}
		if sum != total {
			t.Fatalf("%s: Unread total %d, the views' sum %d", what, total, sum)
		}
	}
	check(g.ID, f.now, 4, 7, "g: 1-3 and 5")
	check(ab.ID, f.now, 2, 7, "ab")
	check("", f.now, 0, 7, "no conversation")
	check(notB.ID, f.now, 0, 7, "a conversation b is not in")
	check(parley.NewID(), f.now, 0, 7, "an unknown conversation")
	if _, err := f.s.MarkRead(f.ctx, g.ID, b.ID, 2); err != nil {
		t.Fatal(err)
	}
	check(g.ID, f.now, 2, 5, "g after reading to 2")
	check(g.ID, expiring.ExpiresAt, 1, 4, "g once seq 5 expired")
	if _, err := f.s.MarkRead(f.ctx, ab.ID, b.ID, 99); err != nil {
		t.Fatal(err)
	}
	check(ab.ID, f.now, 0, 3, "ab read")
	if conv, total, err := f.s.Unread(f.ctx, parley.NewID(), g.ID, f.now); err != nil || conv != 0 || total != 0 {
		t.Fatalf("Unread(unknown user) = %d, %d, %v; want 0, 0", conv, total, err)
	}
}

func testConversationView(t *testing.T, f *fixture) {
	a, b, stranger := f.user(), f.user(), f.user()
	g := f.group(a, b)
	v := f.view(g.ID, b)
	if v.ID != g.ID || v.Kind != parley.KindGroup || v.Title != g.Title || v.LastSeq != 0 || v.ReadSeq != 0 ||
		v.UnreadCount != 0 || v.LastMessage != nil {
		t.Fatalf("empty view = %+v", *v)
	}
	checkMembers(t, &v.Conversation, map[string]parley.MemberRole{a.ID: parley.MemberRoleOwner, b.ID: parley.MemberRoleMember})
	f.send(g, a, "first")
	last := f.send(g, a, "second")
	v = f.view(g.ID, b)
	if v.LastSeq != 2 || v.UnreadCount != 2 {
		t.Fatalf("view: last_seq %d unread %d, want 2, 2", v.LastSeq, v.UnreadCount)
	}
	checkMessage(t, v.LastMessage, last)
	// A tombstone is still the last message, with an empty body.
	del := *last
	del.Deleted, del.Body, del.EditedAt = true, "", f.now.Add(time.Second)
	if err := updateMessage(f, &del); err != nil {
		t.Fatal(err)
	}
	v = f.view(g.ID, b)
	checkMessage(t, v.LastMessage, &del)
	if v.UnreadCount != 1 {
		t.Fatalf("unread with a tombstone = %d, want 1", v.UnreadCount)
	}
	_, err := f.s.ConversationView(f.ctx, g.ID, stranger.ID, f.now)
	wantCode(t, err, parley.CodeConversationNotFound, "ConversationView(non-member)")
	_, err = f.s.ConversationView(f.ctx, parley.NewID(), a.ID, f.now)
	wantCode(t, err, parley.CodeConversationNotFound, "ConversationView(unknown)")
}

func testConversationViewsOrder(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	start := f.now
	var convs []*parley.Conversation
	for i := range 3 {
		f.now = start.Add(time.Duration(i) * time.Second)
		convs = append(convs, f.group(a, b))
	}
	order := func(want ...int) {
		t.Helper()
		views, err := f.s.ConversationViews(f.ctx, b.ID, f.now)
		if err != nil {
			t.Fatalf("ConversationViews: %v", err)
		}
		if len(views) != len(want) {
			t.Fatalf("%d views, want %d", len(views), len(want))
		}
		for i, w := range want {
			if views[i].ID != convs[w].ID {
				t.Fatalf("view %d is %s, want conversation %d (%s)", i, views[i].ID, w, convs[w].ID)
			}
			checkMembers(t, &views[i].Conversation, map[string]parley.MemberRole{a.ID: parley.MemberRoleOwner, b.ID: parley.MemberRoleMember})
		}
	}
	order(2, 1, 0) // newest created first
	f.now = start.Add(10 * time.Second)
	m0 := f.send(convs[0], a, "wake up")
	order(0, 2, 1)
	f.now = start.Add(20 * time.Second)
	f.send(convs[1], a, "me too")
	order(1, 0, 2)
	views, _ := f.s.ConversationViews(f.ctx, b.ID, f.now)
	checkMessage(t, views[1].LastMessage, m0)
	if views[1].UnreadCount != 1 || views[2].LastMessage != nil {
		t.Fatalf("views %+v", views)
	}
}

// The membership primitives, as ChangeMembers calls that always decide
// the same.
func addMember(f *fixture, conversationID string, m parley.Member) error {
	return change(f, conversationID, parley.MemberChange{Add: []parley.Member{m}})
}

func removeMember(f *fixture, conversationID, userID string) error {
	return change(f, conversationID, parley.MemberChange{Remove: []string{userID}})
}

func setMemberRoles(f *fixture, conversationID string, roles map[string]parley.MemberRole) error {
	return change(f, conversationID, parley.MemberChange{Roles: roles})
}

func deleteConversation(f *fixture, conversationID string) error {
	return change(f, conversationID, parley.MemberChange{Delete: true})
}

func change(f *fixture, conversationID string, mc parley.MemberChange) error {
	_, err := f.s.ChangeMembers(f.ctx, conversationID, func(*parley.Conversation) (parley.MemberChange, error) { return mc, nil })
	return err
}
