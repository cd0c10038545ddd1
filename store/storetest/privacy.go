package storetest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/parleychat/parley"
)

// testBlocks: SetBlock records a block once with the direct
// conversation's last_seq, Blocks lists it, Relations sees it from both
// sides (and only among a conversation's members when one is named), and
// unblocking lifts it.
func testBlocks(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	dm, _ := f.direct(a, b)
	f.send(dm, a, "one")
	f.send(dm, b, "two")
	if err := f.s.SetBlock(f.ctx, a.ID, b.ID, true, f.now); err != nil {
		t.Fatalf("SetBlock: %v", err)
	}
	f.send(dm, b, "three")
	// Blocking again keeps the first record (and its seq).
	if err := f.s.SetBlock(f.ctx, a.ID, b.ID, true, f.now.Add(1e9)); err != nil {
		t.Fatalf("SetBlock again: %v", err)
	}
	if err := f.s.SetBlock(f.ctx, a.ID, c.ID, true, f.now.Add(2e9)); err != nil {
		t.Fatalf("SetBlock c: %v", err)
	}
	wantCode(t, f.s.SetBlock(f.ctx, a.ID, a.ID, true, f.now), parley.CodeInvalidRequest, "blocking oneself")
	wantCode(t, f.s.SetBlock(f.ctx, a.ID, parley.NewID(), true, f.now), parley.CodeNotFound, "blocking no one")

	blocks, err := f.s.Blocks(f.ctx, a.ID)
	if err != nil {
		t.Fatalf("Blocks: %v", err)
	}
	if len(blocks) != 2 || blocks[0].UserID != b.ID || blocks[1].UserID != c.ID || !sameTime(blocks[0].CreatedAt, f.now) {
		t.Fatalf("Blocks = %+v, want b then c, b at %v", blocks, f.now)
	}
	if got, err := f.s.Blocks(f.ctx, b.ID); err != nil || len(got) != 0 {
		t.Fatalf("Blocks(b) = %v, %v; want none", got, err)
	}

	r, err := f.s.Relations(f.ctx, a.ID, "")
	if err != nil {
		t.Fatalf("Relations: %v", err)
	}
	if want := map[string]int64{b.ID: 2, c.ID: 0}; !maps.Equal(r.Blocks, want) || len(r.BlockedBy) != 0 || r.Kind != "" {
		t.Fatalf("Relations(a) = %+v, want blocks %v", r, want)
	}
	r, err = f.s.Relations(f.ctx, b.ID, dm.ID)
	if err != nil {
		t.Fatalf("Relations(b, dm): %v", err)
	}
	if want := map[string]int64{a.ID: 2}; !maps.Equal(r.BlockedBy, want) || len(r.Blocks) != 0 || r.Kind != parley.KindDirect || !r.Blocking(a.ID) {
		t.Fatalf("Relations(b, dm) = %+v, want blocked by %v in a direct conversation", r, want)
	}
	// c is not in the direct conversation: not listed for it.
	r, err = f.s.Relations(f.ctx, a.ID, dm.ID)
	if err != nil {
		t.Fatalf("Relations(a, dm): %v", err)
	}
	if want := map[string]int64{b.ID: 2}; !maps.Equal(r.Blocks, want) {
		t.Fatalf("Relations(a, dm).Blocks = %v, want %v", r.Blocks, want)
	}

	if err := f.s.SetBlock(f.ctx, a.ID, b.ID, false, f.now); err != nil {
		t.Fatalf("unblock: %v", err)
	}
	if err := f.s.SetBlock(f.ctx, a.ID, b.ID, false, f.now); err != nil {
		t.Fatalf("unblock again: %v", err)
	}
	r, err = f.s.Relations(f.ctx, b.ID, "")
	if err != nil || len(r.BlockedBy) != 0 {
		t.Fatalf("Relations(b) after unblock = %+v, %v; want none", r, err)
	}
}

// testWithheld: a withheld message is stored, numbered and read back as
// withheld by every read, and does not count as unread.
func testWithheld(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	dm, _ := f.direct(a, b)
	f.send(dm, b, "before")
	m := f.message(dm, b, "withheld")
	m.Withheld = true
	got := f.append(m)
	if got.Seq != 2 || !got.Withheld {
		t.Fatalf("append = seq %d withheld %v, want 2 true", got.Seq, got.Withheld)
	}
	f.send(dm, b, "after")
	h := f.history(dm.ID)
	if len(h) != 3 || h[0].Withheld || !h[1].Withheld || h[1].Body != "withheld" || h[2].Withheld {
		t.Fatalf("history = %+v, want only seq 2 withheld", h)
	}
	one, err := f.s.Message(f.ctx, dm.ID, 2, f.now)
	if err != nil || !one.Withheld {
		t.Fatalf("Message(2) = %+v, %v; want withheld", one, err)
	}
	if v := f.view(dm.ID, a); v.UnreadCount != 2 {
		t.Fatalf("unread of a = %d, want 2 (the withheld message does not count)", v.UnreadCount)
	}
	if conv, total, err := f.s.Unread(f.ctx, a.ID, dm.ID, f.now); err != nil || conv != 2 || total != 2 {
		t.Fatalf("Unread = %d, %d, %v; want 2, 2", conv, total, err)
	}
	// The retry of a withheld message returns it, withheld.
	again, created, err := f.s.AppendMessage(f.ctx, &parley.Message{ID: parley.NewID(), ConversationID: dm.ID, SenderID: b.ID,
		SenderDeviceID: m.SenderDeviceID, ClientMsgID: m.ClientMsgID, Type: parley.MessageText, Body: "withheld", CreatedAt: f.now})
	if err != nil || created || !again.Withheld || again.Seq != 2 {
		t.Fatalf("retry = %+v, created %v, %v; want the withheld original", again, created, err)
	}
	page, err := f.s.Sync(f.ctx, a.ID, parley.SyncQuery{Conversations: 10, Messages: 10}, f.now)
	if err != nil || len(page.Conversations) != 1 {
		t.Fatalf("Sync = %+v, %v", page, err)
	}
	if ms := page.Conversations[0].Messages; len(ms) != 3 || !ms[1].Withheld {
		t.Fatalf("sync messages = %+v, want seq 2 withheld", ms)
	}
}

// testPrivacy: settings read back with the user (defaults until set), and
// Peers lists the co-members whose settings are not the defaults.
func testPrivacy(t *testing.T, f *fixture) {
	a, b, c, d := f.user(), f.user(), f.user(), f.user()
	g := f.group(a, b, c)
	f.direct(a, d)
	u, err := f.s.User(f.ctx, b.ID)
	if err != nil || u.Privacy != parley.DefaultPrivacy {
		t.Fatalf("privacy of a new user = %+v, %v; want the defaults", u.Privacy, err)
	}
	if peers, err := f.s.Peers(f.ctx, a.ID, ""); err != nil || len(peers) != 0 {
		t.Fatalf("Peers with the defaults = %+v, %v; want none", peers, err)
	}
	pb := parley.Privacy{Presence: parley.VisibleNobody, ReadReceipts: parley.VisibleContacts}
	pd := parley.Privacy{Presence: parley.VisibleEveryone, ReadReceipts: parley.VisibleNobody}
	for id, p := range map[string]parley.Privacy{b.ID: pb, d.ID: pd} {
		if err := f.s.SetPrivacy(f.ctx, id, p); err != nil {
			t.Fatalf("SetPrivacy: %v", err)
		}
	}
	wantCode(t, f.s.SetPrivacy(f.ctx, parley.NewID(), pb), parley.CodeNotFound, "SetPrivacy of no one")
	if u, err := f.s.User(f.ctx, b.ID); err != nil || u.Privacy != pb {
		t.Fatalf("privacy of b = %+v, %v; want %+v", u.Privacy, err, pb)
	}
	peers := func(u *parley.User, conv string) map[string]parley.Peer {
		t.Helper()
		list, err := f.s.Peers(f.ctx, u.ID, conv)
		if err != nil {
			t.Fatalf("Peers: %v", err)
		}
		m := map[string]parley.Peer{}
		for _, p := range list {
			m[p.UserID] = p
		}
		return m
	}
	if got := peers(a, ""); len(got) != 2 || got[b.ID].Privacy != pb || got[d.ID].Privacy != pd || got[b.ID].Stranger {
		t.Fatalf("Peers(a) = %+v, want b and d", got)
	}
	if got := peers(a, g.ID); len(got) != 1 || got[b.ID].Privacy != pb {
		t.Fatalf("Peers(a, group) = %+v, want b", got)
	}
	if got := peers(c, ""); len(got) != 1 || got[b.ID].Privacy != pb {
		t.Fatalf("Peers(c) = %+v, want b", got)
	}
}

// testRequests: a membership made as a request reads back as one
// everywhere, makes strangers of the two until accepted, and is accepted
// once.
func testRequests(t *testing.T, f *fixture) {
	a, b, c, loner := f.user(), f.user(), f.user(), f.user()
	f.group(a, c) // a and c are contacts
	dm := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: f.now, Members: []parley.Member{
		{UserID: a.ID, Role: parley.MemberRoleMember, JoinedAt: f.now},
		{UserID: b.ID, Role: parley.MemberRoleMember, JoinedAt: f.now, Request: true},
	}}
	if _, _, err := f.s.CreateConversation(f.ctx, dm); err != nil {
		t.Fatalf("CreateConversation: %v", err)
	}
	if m, err := f.s.Member(f.ctx, dm.ID, b.ID); err != nil || !m.Request {
		t.Fatalf("Member(b) = %+v, %v; want a request", m, err)
	}
	if m := f.conversation(dm.ID).MemberOf(b.ID); m == nil || !m.Request {
		t.Fatalf("Conversation: b is %+v, want a request", m)
	}
	if v := f.view(dm.ID, a); v.MemberOf(b.ID) == nil || !v.MemberOf(b.ID).Request || v.MemberOf(a.ID).Request {
		t.Fatalf("view members %+v, want b's a request", v.Members)
	}
	if r, err := f.s.Relations(f.ctx, b.ID, dm.ID); err != nil || !r.Pending {
		t.Fatalf("Relations(b, dm) = %+v, %v; want pending", r, err)
	}
	if r, err := f.s.Relations(f.ctx, a.ID, dm.ID); err != nil || r.Pending {
		t.Fatalf("Relations(a, dm) = %+v, %v; want not pending", r, err)
	}
	got, err := f.s.Strangers(f.ctx, a.ID, []string{b.ID, c.ID, loner.ID})
	if err != nil || len(got) != 2 || got[0] != b.ID || got[1] != loner.ID {
		t.Fatalf("Strangers = %v, %v; want b, loner", got, err)
	}
	peers, err := f.s.Peers(f.ctx, a.ID, "")
	if err != nil || len(peers) != 1 || peers[0].UserID != b.ID || !peers[0].Stranger || peers[0].Unaccepted || !peers[0].PeerUnaccepted {
		t.Fatalf("Peers(a) = %+v, %v; want b, a stranger who accepted nothing", peers, err)
	}
	peers, err = f.s.Peers(f.ctx, b.ID, dm.ID)
	if err != nil || len(peers) != 1 || peers[0].UserID != a.ID || !peers[0].Unaccepted || peers[0].PeerUnaccepted {
		t.Fatalf("Peers(b, dm) = %+v, %v; want a, whom b has not accepted", peers, err)
	}

	changed, err := f.s.AcceptConversation(f.ctx, dm.ID, b.ID)
	if err != nil || !changed {
		t.Fatalf("AcceptConversation = %v, %v; want changed", changed, err)
	}
	if changed, err := f.s.AcceptConversation(f.ctx, dm.ID, b.ID); err != nil || changed {
		t.Fatalf("AcceptConversation again = %v, %v; want no change", changed, err)
	}
	_, err = f.s.AcceptConversation(f.ctx, dm.ID, loner.ID)
	wantCode(t, err, parley.CodeConversationNotFound, "AcceptConversation by a non-member")
	if m, err := f.s.Member(f.ctx, dm.ID, b.ID); err != nil || m.Request {
		t.Fatalf("Member(b) after accepting = %+v, %v", m, err)
	}
	if peers, err := f.s.Peers(f.ctx, a.ID, ""); err != nil || len(peers) != 0 {
		t.Fatalf("Peers(a) after accepting = %+v, %v; want none", peers, err)
	}
	if got, err := f.s.Strangers(f.ctx, a.ID, []string{b.ID}); err != nil || len(got) != 0 {
		t.Fatalf("Strangers after accepting = %v, %v", got, err)
	}
	// An accept shows in sync: the member's stamp rose.
	page, err := f.s.Sync(f.ctx, a.ID, parley.SyncQuery{Conversations: 10, Messages: 1}, f.now)
	if err != nil {
		t.Fatal(err)
	}
	before := page.Until
	if _, err := f.s.ChangeMembers(f.ctx, dm.ID, func(c *parley.Conversation) (parley.MemberChange, error) {
		return parley.MemberChange{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	g := f.group(a)
	if _, err := f.s.ChangeMembers(f.ctx, g.ID, func(c *parley.Conversation) (parley.MemberChange, error) {
		return parley.MemberChange{Add: []parley.Member{{UserID: loner.ID, Role: parley.MemberRoleMember, JoinedAt: f.now, Request: true}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if m, err := f.s.Member(f.ctx, g.ID, loner.ID); err != nil || !m.Request {
		t.Fatalf("added as a request: %+v, %v", m, err)
	}
	if _, err := f.s.AcceptConversation(f.ctx, g.ID, loner.ID); err != nil {
		t.Fatal(err)
	}
	page, err = f.s.Sync(f.ctx, loner.ID, parley.SyncQuery{Since: before, Conversations: 10, Messages: 1}, f.now)
	if err != nil || len(page.Conversations) != 1 || page.Conversations[0].View.ID != g.ID {
		t.Fatalf("sync after accepting = %+v, %v; want the group", page, err)
	}
}

// testReports: reports read back newest first with their content, filter
// by state, page, and resolve.
func testReports(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	r1 := &parley.Report{ID: parley.NewID(), ReporterID: a.ID, UserID: b.ID, Reason: parley.ReasonHarassment, Comment: "again", CreatedAt: f.now}
	r2 := &parley.Report{ID: parley.NewID(), ReporterID: a.ID, UserID: b.ID, ConversationID: parley.NewID(), Seq: 7, MessageID: parley.NewID(),
		Reason: parley.ReasonSpam, Content: "buy now", ContentSource: "server", CreatedAt: f.now}
	if r1.ID > r2.ID { // ids order the reports; two minted in one millisecond may not
		r1.ID, r2.ID = r2.ID, r1.ID
	}
	for _, r := range []*parley.Report{r1, r2} {
		if err := f.s.CreateReport(f.ctx, r); err != nil {
			t.Fatalf("CreateReport: %v", err)
		}
	}
	got, err := f.s.Reports(f.ctx, parley.ReportQuery{Limit: 10})
	if err != nil || len(got) != 2 || got[0].ID != r2.ID || got[0].Content != "buy now" || got[0].Seq != 7 || got[0].State != parley.ReportOpen || got[1].Comment != "again" {
		t.Fatalf("Reports = %+v, %v", got, err)
	}
	if page, err := f.s.Reports(f.ctx, parley.ReportQuery{Limit: 10, BeforeID: r2.ID}); err != nil || len(page) != 1 || page[0].ID != r1.ID {
		t.Fatalf("Reports before r2 = %+v, %v", page, err)
	}
	res, err := f.s.ResolveReport(f.ctx, r1.ID, a.ID, "warned", f.now)
	if err != nil || res.State != parley.ReportResolved || res.Resolution != "warned" || res.ResolvedBy != a.ID || !sameTime(res.ResolvedAt, f.now) {
		t.Fatalf("ResolveReport = %+v, %v", res, err)
	}
	if open, err := f.s.Reports(f.ctx, parley.ReportQuery{State: parley.ReportOpen, Limit: 10}); err != nil || len(open) != 1 || open[0].ID != r2.ID {
		t.Fatalf("open reports = %+v, %v", open, err)
	}
	_, err = f.s.ResolveReport(f.ctx, parley.NewID(), a.ID, "", f.now)
	wantCode(t, err, parley.CodeNotFound, "resolving no report")
	_, err = f.s.Reports(f.ctx, parley.ReportQuery{Limit: 0})
	wantCode(t, err, parley.CodeInvalidRequest, "a page of 0")
}

// testContactPeers: ContactPeers lists every user who shares a
// conversation of at most maxMembers members with the user, each with
// its settings and flags over every conversation the two share, of any
// size: an exceptional one as Peers lists it.
func testContactPeers(t *testing.T, f *fixture) {
	a, b, c, d, e, x := f.user(), f.user(), f.user(), f.user(), f.user(), f.user()
	contactsOnly := parley.Privacy{Presence: parley.VisibleContacts, ReadReceipts: parley.VisibleEveryone}
	for _, u := range []*parley.User{b, c} {
		if err := f.s.SetPrivacy(f.ctx, u.ID, contactsOnly); err != nil {
			t.Fatalf("SetPrivacy: %v", err)
		}
	}
	big := f.group(a, b, c, x) // 4 members: big for maxMembers 3
	// a and c also share a direct conversation that c has not accepted:
	// over it alone c would be a stranger who accepted nothing.
	f.request(a, c)
	f.request(a, d) // d: a stranger with the default settings
	f.direct(a, e)  // e: a contact with the default settings

	want := func(u *parley.User, maxMembers int, peers ...parley.Peer) {
		t.Helper()
		got, err := f.s.ContactPeers(f.ctx, u.ID, maxMembers)
		if err != nil {
			t.Fatalf("ContactPeers: %v", err)
		}
		slices.SortFunc(got, func(p, q parley.Peer) int { return strings.Compare(p.UserID, q.UserID) })
		slices.SortFunc(peers, func(p, q parley.Peer) int { return strings.Compare(p.UserID, q.UserID) })
		if !slices.Equal(got, peers) {
			t.Fatalf("ContactPeers(%s, %d) =\n%+v\nwant\n%+v", u.Handle, maxMembers, got, peers)
		}
	}
	contact := func(u *parley.User) parley.Peer { return parley.Peer{UserID: u.ID, Privacy: parley.DefaultPrivacy} }
	wantC := parley.Peer{UserID: c.ID, Privacy: contactsOnly} // a contact through the big group
	wantD := parley.Peer{UserID: d.ID, Privacy: parley.DefaultPrivacy, Stranger: true, PeerUnaccepted: true}
	wantB := parley.Peer{UserID: b.ID, Privacy: contactsOnly}
	// Not b or x: they share only the big group with a.
	want(a, 3, wantC, wantD, contact(e))
	// Without a bound, or with one the big group fits, every co-member,
	// the exceptional ones as Peers lists them.
	all, err := f.s.Peers(f.ctx, a.ID, "")
	if err != nil {
		t.Fatalf("Peers: %v", err)
	}
	if len(all) != 3 {
		t.Fatalf("Peers(a) = %+v; want b, c and d", all)
	}
	for _, maxMembers := range []int{0, 4, -1} {
		want(a, maxMembers, append(slices.Clone(all), contact(e), contact(x))...)
		want(a, maxMembers, wantB, wantC, wantD, contact(e), contact(x))
	}
	// From c's side: a has the default settings and is a contact through
	// the big group, though c has not accepted the direct one.
	want(c, 3, contact(a))
	want(c, 0, contact(a), wantB, contact(x))
	want(x, 3) // x is only in the big group
	// Once c leaves the big group (3 members now: big for maxMembers 2),
	// the direct request is all the two share.
	if err := removeMember(f, big.ID, c.ID); err != nil {
		t.Fatal(err)
	}
	want(a, 2, parley.Peer{UserID: c.ID, Privacy: contactsOnly, Stranger: true, PeerUnaccepted: true}, wantD, contact(e))
	want(c, 2, parley.Peer{UserID: a.ID, Privacy: parley.DefaultPrivacy, Stranger: true, Unaccepted: true})
}

// testContactPeersSnapshot: while a group crosses the bound back and
// forth, each ContactPeers answer is the whole answer before a change or
// after it, never the contacts of one with the flags of the other (y
// listed with the defaults: y, who shows presence to nobody, would be
// seen online).
func testContactPeersSnapshot(t *testing.T, f *fixture) {
	a, w, y, z, e := f.user(), f.user(), f.user(), f.user(), f.user()
	nobody := parley.Privacy{Presence: parley.VisibleNobody, ReadReceipts: parley.VisibleEveryone}
	if err := f.s.SetPrivacy(f.ctx, y.ID, nobody); err != nil {
		t.Fatalf("SetPrivacy: %v", err)
	}
	const maxMembers = 3
	g := f.group(a, w, y) // 3 members; 4 with z: big
	f.direct(a, e)
	answer := func(peers []parley.Peer) string {
		slices.SortFunc(peers, func(p, q parley.Peer) int { return strings.Compare(p.UserID, q.UserID) })
		return fmt.Sprintf("%+v", peers)
	}
	small := answer([]parley.Peer{{UserID: w.ID, Privacy: parley.DefaultPrivacy}, {UserID: y.ID, Privacy: nobody}, {UserID: e.ID, Privacy: parley.DefaultPrivacy}})
	big := answer([]parley.Peer{{UserID: e.ID, Privacy: parley.DefaultPrivacy}})

	const rounds = 20
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < rounds && err == nil; i++ {
			if err = change(f, g.ID, parley.MemberChange{Add: []parley.Member{{UserID: z.ID, JoinedAt: f.now}}}); err == nil {
				err = removeMember(f, g.ID, z.ID)
			}
		}
		done <- err
	}()
	seen := map[string]int{}
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("changing the group: %v", err)
			}
			running = false
		default:
		}
		peers, err := f.s.ContactPeers(f.ctx, a.ID, maxMembers)
		if err != nil {
			t.Fatalf("ContactPeers: %v", err)
		}
		got := answer(peers)
		if got != small && got != big {
			t.Fatalf("ContactPeers while the group changes = %s; want the answer before a change or after one:\n%s (3 members)\n%s (4 members)", got, small, big)
		}
		seen[got]++
	}
	t.Logf("answers with the group small: %d, big: %d", seen[small], seen[big])
}
