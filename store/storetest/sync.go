package storetest

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// syncPass is the outcome of one whole sync: every page of one range.
type syncPass struct {
	until   int64
	convs   map[string]parley.SyncConversation // the last of each conversation
	all     []parley.SyncConversation          // everything the pages gave, in order
	order   []string                           // conversation ids in the order the pages gave them
	repeats []string                           // ids that came more than once
}

// syncAll runs one whole sync of u from since, pages of pageSize
// conversations with up to messages messages each, and calls between (if
// not nil) after every page but the last, with the page's number from 0
// and the conversation ids given so far. It fails if a page breaks the
// paging contract: Until changes, or the cursor is missing, outside the
// range or goes back. A conversation that comes twice is recorded in
// repeats: only one that changed during the pass may.
func (f *fixture) syncAll(u *parley.User, since int64, pageSize, messages int, between func(page int, seen []string)) syncPass {
	f.tb.Helper()
	pass := syncPass{convs: make(map[string]parley.SyncConversation)}
	q := parley.SyncQuery{Since: since, Conversations: pageSize, Messages: messages}
	for page := 0; ; page++ {
		got, err := f.s.Sync(f.ctx, u.ID, q, f.now)
		if err != nil {
			f.tb.Fatalf("Sync(%+v): %v", q, err)
		}
		if page == 0 {
			pass.until = got.Until
		} else if got.Until != pass.until {
			f.tb.Fatalf("page %d: Until %d, want the first page's %d", page, got.Until, pass.until)
		}
		if len(got.Conversations) > pageSize {
			f.tb.Fatalf("page %d: %d conversations, want at most %d", page, len(got.Conversations), pageSize)
		}
		for _, c := range got.Conversations {
			if _, dup := pass.convs[c.View.ID]; dup {
				pass.repeats = append(pass.repeats, c.View.ID)
			}
			pass.convs[c.View.ID] = c
			pass.all = append(pass.all, c)
			pass.order = append(pass.order, c.View.ID)
		}
		if !got.HasMore {
			return pass
		}
		if len(got.Conversations) == 0 || got.NextID == "" || got.NextStamp <= since || got.NextStamp > pass.until {
			f.tb.Fatalf("page %d: HasMore with %d conversations and cursor (%d, %q) outside (%d, %d]",
				page, len(got.Conversations), got.NextStamp, got.NextID, since, pass.until)
		}
		if got.NextStamp < q.AfterStamp || got.NextStamp == q.AfterStamp && got.NextID <= q.AfterID {
			f.tb.Fatalf("page %d: cursor (%d, %q) is not after the previous (%d, %q)", page, got.NextStamp, got.NextID, q.AfterStamp, q.AfterID)
		}
		if last := got.Conversations[len(got.Conversations)-1].View.ID; last != got.NextID {
			f.tb.Fatalf("page %d: cursor id %s, want the page's last conversation %s", page, got.NextID, last)
		}
		if between != nil {
			between(page, slices.Clone(pass.order))
		}
		q.Until, q.AfterStamp, q.AfterID = pass.until, got.NextStamp, got.NextID
	}
}

// syncOnce is syncAll with pages large enough for any test here, the most
// messages per conversation, and nothing in between: no conversation may
// come twice.
func (f *fixture) syncOnce(u *parley.User, since int64) syncPass {
	f.tb.Helper()
	pass := f.syncAll(u, since, parley.MaxSyncConversations, parley.MaxHistoryLimit, nil)
	wantNoRepeats(f.tb, pass)
	return pass
}

// wantNoRepeats fails if a conversation came twice in pass.
func wantNoRepeats(tb testing.TB, pass syncPass) {
	tb.Helper()
	if len(pass.repeats) > 0 {
		tb.Fatalf("conversations %v came twice in a pass where nothing changed (order %v)", pass.repeats, pass.order)
	}
}

// wantConversations fails unless pass holds exactly the given
// conversations.
func wantConversations(tb testing.TB, pass syncPass, what string, ids ...string) {
	tb.Helper()
	got := slices.Sorted(maps.Keys(pass.convs))
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, want) {
		tb.Fatalf("%s: conversations %v, want %v", what, got, want)
	}
}

// checkSyncView fails unless a synced conversation's view is what
// ConversationView gives u at f.now.
func (f *fixture) checkSyncView(got parley.SyncConversation, u *parley.User) {
	f.tb.Helper()
	if got.Removed {
		f.tb.Fatalf("conversation %s is reported removed, want it current", got.View.ID)
	}
	want := f.view(got.View.ID, u)
	g := got.View
	if g.ID != want.ID || g.Kind != want.Kind || g.Title != want.Title || g.LastSeq != want.LastSeq ||
		g.ReadSeq != want.ReadSeq || g.UnreadCount != want.UnreadCount || !sameTime(g.CreatedAt, want.CreatedAt) {
		f.tb.Fatalf("synced view of %s:\n got %+v\nwant %+v", g.ID, g, *want)
	}
	if !sameMute(g.MutedUntil, want.MutedUntil) {
		f.tb.Fatalf("synced mute of %s = %v, want %v", g.ID, g.MutedUntil, want.MutedUntil)
	}
	if !slices.EqualFunc(g.Members, want.Members, func(a, b parley.Member) bool {
		return a.UserID == b.UserID && a.Role == b.Role && a.ReadSeq == b.ReadSeq && a.DeliveredSeq == b.DeliveredSeq && sameTime(a.JoinedAt, b.JoinedAt)
	}) {
		f.tb.Fatalf("synced members of %s:\n got %+v\nwant %+v", g.ID, g.Members, want.Members)
	}
	if (g.LastMessage == nil) != (want.LastMessage == nil) {
		f.tb.Fatalf("synced last message of %s = %+v, want %+v", g.ID, g.LastMessage, want.LastMessage)
	}
	if want.LastMessage != nil {
		checkMessage(f.tb, g.LastMessage, want.LastMessage)
	}
}

// syncedMember returns userID's entry in a synced view, or nil.
func syncedMember(sc parley.SyncConversation, userID string) *parley.Member {
	return sc.View.MemberOf(userID)
}

// wantMessages fails unless a synced conversation carries exactly want,
// in order, and MoreMessages is more.
func wantMessages(tb testing.TB, got parley.SyncConversation, more bool, want ...*parley.Message) {
	tb.Helper()
	if len(got.Messages) != len(want) {
		tb.Fatalf("conversation %s: messages %v, want %d messages", got.View.ID, seqs(got.Messages), len(want))
	}
	for i := range want {
		checkMessage(tb, &got.Messages[i], want[i])
	}
	if got.MoreMessages != more {
		tb.Fatalf("conversation %s: MoreMessages = %v, want %v", got.View.ID, got.MoreMessages, more)
	}
}

// testSyncFullState: from 0, every current membership with its view and
// newest messages, and nothing about other users' conversations or
// memberships that ended.
func testSyncFullState(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	ab := f.group(a, b)
	ac := f.group(a, c)
	bc := f.group(b, c) // not a's
	left := f.group(b, a)
	empty := f.group(a)
	var sent []*parley.Message
	for i := range 3 {
		sent = append(sent, f.send(ab, b, fmt.Sprintf("ab %d", i)))
	}
	f.send(ac, c, "ac")
	f.send(bc, b, "bc")
	if err := removeMember(f, left.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.MarkRead(f.ctx, ab.ID, a.ID, 1); err != nil {
		t.Fatal(err)
	}

	pass := f.syncOnce(a, 0)
	if pass.until <= 0 {
		t.Fatalf("Until = %d after writes, want > 0", pass.until)
	}
	wantConversations(t, pass, "full sync", ab.ID, ac.ID, empty.ID)
	for _, sc := range pass.convs {
		f.checkSyncView(sc, a)
	}
	wantMessages(t, pass.convs[ab.ID], false, sent...)
	if v := pass.convs[ab.ID].View; v.ReadSeq != 1 || v.UnreadCount != 2 || v.LastSeq != 3 {
		t.Fatalf("ab view: read_seq %d unread %d last_seq %d, want 1, 2, 3", v.ReadSeq, v.UnreadCount, v.LastSeq)
	}
	if len(pass.convs[empty.ID].Messages) != 0 || pass.convs[empty.ID].MoreMessages {
		t.Fatalf("empty conversation synced with messages: %+v", pass.convs[empty.ID])
	}

	// Messages per conversation are bounded: the newest, ascending.
	for _, tc := range []struct {
		limit int
		more  bool
		want  []*parley.Message
	}{
		{0, true, nil},
		{1, true, sent[2:]},
		{2, true, sent[1:]},
		{3, false, sent},
		{parley.MaxHistoryLimit, false, sent},
	} {
		pass := f.syncAll(a, 0, parley.MaxSyncConversations, tc.limit, nil)
		wantMessages(t, pass.convs[ab.ID], tc.more, tc.want...)
	}

	// A user with nothing gets an empty page, not an error.
	d := f.user()
	if pass := f.syncOnce(d, 0); len(pass.convs) != 0 {
		t.Fatalf("a user without conversations synced %v", pass.order)
	}
}

// testSyncIncremental: from a position, exactly the conversations a
// change touched since, each with the messages created, edited or deleted
// since; and nothing when nothing changed.
func testSyncIncremental(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	g1 := f.group(a, b)
	g2 := f.group(a, b, c)
	other := f.group(b, c) // not a's
	old := f.send(g1, a, "old")
	f.send(g2, a, "two")
	f.send(other, b, "elsewhere")

	pos := f.syncOnce(a, 0).until
	step := func(what string, do func(), want ...string) syncPass {
		t.Helper()
		do()
		pass := f.syncOnce(a, pos)
		if pass.until < pos {
			t.Fatalf("%s: Until went back from %d to %d", what, pos, pass.until)
		}
		wantConversations(t, pass, what, want...)
		for _, sc := range pass.convs {
			f.checkSyncView(sc, a)
		}
		pos = pass.until
		return pass
	}

	step("nothing changed", func() {})
	step("a change elsewhere", func() { f.send(other, c, "not for a") })

	var fresh *parley.Message
	pass := step("a new message", func() { fresh = f.send(g1, b, "new") }, g1.ID)
	wantMessages(t, pass.convs[g1.ID], false, fresh)

	edited := *old
	edited.Body, edited.EditedAt = "old, edited", f.now.Add(time.Second)
	pass = step("an edit of an old message", func() {
		if err := updateMessage(f, &edited); err != nil {
			t.Fatal(err)
		}
	}, g1.ID)
	wantMessages(t, pass.convs[g1.ID], false, &edited)

	deleted := edited
	deleted.Deleted, deleted.Body, deleted.EditedAt = true, "", f.now.Add(2*time.Second)
	pass = step("a delete", func() {
		if err := updateMessage(f, &deleted); err != nil {
			t.Fatal(err)
		}
	}, g1.ID)
	wantMessages(t, pass.convs[g1.ID], false, &deleted)

	pass = step("another member's read receipt", func() {
		if w, err := f.s.MarkRead(f.ctx, g1.ID, b.ID, 2); err != nil || !w.Raised {
			t.Fatalf("MarkRead = %+v, %v", w, err)
		}
	}, g1.ID)
	wantMessages(t, pass.convs[g1.ID], false)
	if m := syncedMember(pass.convs[g1.ID], b.ID); m == nil || m.ReadSeq != 2 {
		t.Fatalf("b's read_seq in the synced view: %+v, want 2", m)
	}
	step("a read receipt that raises nothing", func() {
		if w, err := f.s.MarkRead(f.ctx, g1.ID, b.ID, 1); err != nil || w.Raised {
			t.Fatalf("MarkRead = %+v, %v", w, err)
		}
	})

	phone, _ := f.session(c)
	pass = step("another member's delivered receipt", func() {
		if _, u, err := f.s.MarkDelivered(f.ctx, g2.ID, c.ID, phone.ID, 1); err != nil || !u.Raised {
			t.Fatalf("MarkDelivered = %+v, %v", u, err)
		}
	}, g2.ID)
	if m := syncedMember(pass.convs[g2.ID], c.ID); m == nil || m.DeliveredSeq != 1 {
		t.Fatalf("c's delivered_seq in the synced view: %+v, want 1", m)
	}
	laptop, _ := f.session(c)
	step("a second device catching up", func() {
		if d, u, err := f.s.MarkDelivered(f.ctx, g2.ID, c.ID, laptop.ID, 1); err != nil || !d.Raised || u.Raised {
			t.Fatalf("MarkDelivered = %+v %+v, %v", d, u, err)
		}
	})

	pass = step("a role change", func() {
		if err := setMemberRoles(f, g2.ID, map[string]parley.MemberRole{c.ID: parley.MemberRoleAdmin}); err != nil {
			t.Fatal(err)
		}
	}, g2.ID)
	if m := syncedMember(pass.convs[g2.ID], c.ID); m == nil || m.Role != parley.MemberRoleAdmin {
		t.Fatalf("c's role in the synced view: %+v, want admin", m)
	}

	created := f.group(c, a)
	pass = f.syncOnce(a, pos)
	wantConversations(t, pass, "a new conversation", created.ID)
	f.checkSyncView(pass.convs[created.ID], a)
}

// testSyncRemoval: a membership that ends is reported Removed (only the id
// set) from a position before it, not in a full sync, and not once the
// user is back; a deleted conversation is reported to every former member.
func testSyncRemoval(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	g := f.group(a, b)
	f.send(g, a, "before")
	posA, posB := f.syncOnce(a, 0).until, f.syncOnce(b, 0).until

	if err := removeMember(f, g.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	pass := f.syncOnce(b, posB)
	wantConversations(t, pass, "b after removal", g.ID)
	if got := pass.convs[g.ID]; !got.Removed || got.View.LastSeq != 0 || got.View.Members != nil || got.View.LastMessage != nil || got.Messages != nil {
		t.Fatalf("removed conversation reported as %+v, want only the id and Removed", got)
	}
	afterRemoval := pass.until
	if pass := f.syncOnce(b, 0); len(pass.convs) != 0 {
		t.Fatalf("full sync after removal lists %v", pass.order)
	}
	if pass := f.syncOnce(b, afterRemoval); len(pass.convs) != 0 {
		t.Fatalf("sync from after the removal lists %v", pass.order)
	}
	// The remaining member sees the membership change.
	pass = f.syncOnce(a, posA)
	wantConversations(t, pass, "a after b's removal", g.ID)
	f.checkSyncView(pass.convs[g.ID], a)
	if len(pass.convs[g.ID].View.Members) != 1 {
		t.Fatalf("members after removal: %+v", pass.convs[g.ID].View.Members)
	}

	// Added again: current again, from before and after the removal.
	if err := addMember(f, g.ID, parley.Member{UserID: b.ID, JoinedAt: f.now}); err != nil {
		t.Fatal(err)
	}
	for _, since := range []int64{posB, afterRemoval} {
		pass := f.syncOnce(b, since)
		wantConversations(t, pass, fmt.Sprintf("b re-added, from %d", since), g.ID)
		f.checkSyncView(pass.convs[g.ID], b)
	}
	posB = f.syncOnce(b, 0).until

	// Deleted: both former members hear it; a user who left before does
	// not hear it again.
	h := f.group(a, b, c)
	if err := removeMember(f, h.ID, c.ID); err != nil {
		t.Fatal(err)
	}
	posC := f.syncOnce(c, 0).until
	posA = f.syncOnce(a, 0).until
	if err := deleteConversation(f, g.ID); err != nil {
		t.Fatal(err)
	}
	if err := deleteConversation(f, h.ID); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*parley.User{a, b} {
		since := posA
		if u == b {
			since = posB
		}
		pass := f.syncOnce(u, since)
		wantConversations(t, pass, "after deletes", g.ID, h.ID)
		for _, sc := range pass.convs {
			if !sc.Removed {
				t.Fatalf("deleted conversation %s not reported removed: %+v", sc.View.ID, sc)
			}
		}
		if pass := f.syncOnce(u, 0); len(pass.convs) != 0 {
			t.Fatalf("full sync after deletes lists %v", pass.order)
		}
	}
	if pass := f.syncOnce(c, posC); len(pass.convs) != 0 {
		t.Fatalf("c, who had left, hears of the delete: %v", pass.order)
	}
}

// testSyncPaging: small pages deliver every changed conversation exactly
// once per pass, in (stamp, id) order; a conversation that changes while
// the client pages is in the next pass if not in this one.
func testSyncPaging(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	const n = 23
	convs := make([]*parley.Conversation, n)
	ids := make([]string, n)
	for i := range convs {
		convs[i] = f.group(a, b)
		ids[i] = convs[i].ID
		if i%2 == 0 {
			f.send(convs[i], b, "hi")
		}
	}
	// Several conversations in one stamp (a group commit) must page too.
	var wg sync.WaitGroup
	for i := range convs {
		wg.Go(func() {
			if _, err := f.s.MarkRead(f.ctx, convs[i].ID, a.ID, 1); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	for _, size := range []int{1, 4, n - 1, n, n + 1} {
		pass := f.syncAll(a, 0, size, 1, nil)
		wantNoRepeats(t, pass)
		wantConversations(t, pass, fmt.Sprintf("full sync in pages of %d", size), ids...)
	}

	pos := f.syncOnce(a, 0).until
	again := make(map[string]*parley.Message)
	for _, c := range convs {
		again[c.ID] = f.send(c, b, "again")
	}
	// Mid-pass, after the second page: change one conversation the pass
	// has given and one it has not, and create one.
	var early, late, added string
	sentWhilePaging := make(map[string]*parley.Message)
	pass := f.syncAll(a, pos, 4, 1, func(page int, seen []string) {
		if page != 1 {
			return
		}
		early = seen[0]
		for _, id := range slices.Backward(ids) {
			if !slices.Contains(seen, id) {
				late = id
				break
			}
		}
		sentWhilePaging[early] = f.send(conversationByID(convs, early), b, "while paging")
		sentWhilePaging[late] = f.send(conversationByID(convs, late), b, "while paging")
		added = f.group(b, a).ID
	})
	if early == "" || late == "" {
		t.Fatalf("the pass had fewer than three pages: %v", pass.order)
	}
	for _, id := range pass.repeats {
		if id != early && id != late && id != added {
			t.Fatalf("conversation %s, unchanged during the pass, came twice: %v", id, pass.order)
		}
	}
	// Every change before the top of the range is in the pass, the
	// conversation that changed again before the pass reached it included.
	for _, id := range ids {
		var got []*parley.Message
		for _, sc := range pass.all {
			if sc.View.ID == id {
				for _, m := range sc.Messages {
					got = append(got, &m)
				}
			}
		}
		if !slices.ContainsFunc(got, func(m *parley.Message) bool { return m.ID == again[id].ID }) {
			t.Fatalf("conversation %s: the pass lost the message sent before it (got %d messages)", id, len(got))
		}
	}
	next := f.syncOnce(a, pass.until)
	wantConversations(t, next, "the pass after", early, late, added)
	for _, id := range []string{early, late} {
		wantMessages(t, next.convs[id], false, sentWhilePaging[id])
	}
}

// conversationByID returns the conversation of convs with the given id.
func conversationByID(convs []*parley.Conversation, id string) *parley.Conversation {
	for _, c := range convs {
		if c.ID == id {
			return c
		}
	}
	panic("storetest: no conversation " + id)
}

// testSyncHidesExpiredAndPurged: expired and purged messages are never in
// a sync, neither as messages nor as the view's last message or unread
// count.
func testSyncHidesExpiredAndPurged(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	start := f.now
	old := f.send(g, b, "old") // purged by retention below
	f.now = start.Add(time.Minute)
	kept := f.send(g, b, "kept")
	short := f.message(g, b, "short-lived")
	short.ExpiresAt = f.now.Add(time.Minute)
	f.append(short)
	expiredEarlier := f.message(g, b, "purged by PurgeExpired")
	expiredEarlier.ExpiresAt = f.now.Add(time.Second)
	f.append(expiredEarlier)
	last := f.message(g, b, "newest, short-lived")
	last.ExpiresAt = f.now.Add(time.Minute)
	f.append(last)

	if n, err := f.s.PurgeExpired(f.ctx, f.now.Add(2*time.Second), 100); err != nil || n != 1 {
		t.Fatalf("PurgeExpired = %d, %v; want 1", n, err)
	}
	if n, err := f.s.PurgeHistory(f.ctx, start.Add(time.Second), 100); err != nil || n != 1 {
		t.Fatalf("PurgeHistory = %d, %v; want 1", n, err)
	}
	// Still before short and last expire: kept, short, last remain.
	pass := f.syncOnce(a, 0)
	wantMessages(t, pass.convs[g.ID], false, kept, short, last)
	f.checkSyncView(pass.convs[g.ID], a)
	if v := pass.convs[g.ID].View; v.UnreadCount != 3 || v.LastMessage == nil || v.LastMessage.Seq != last.Seq {
		t.Fatalf("view before expiry: unread %d, last message %+v; want 3 and seq %d", v.UnreadCount, v.LastMessage, last.Seq)
	}
	// Once they expire, without a purge.
	f.now = last.ExpiresAt
	pass = f.syncOnce(a, 0)
	wantMessages(t, pass.convs[g.ID], false, kept)
	if v := pass.convs[g.ID].View; v.UnreadCount != 1 || v.LastMessage == nil || v.LastMessage.Seq != kept.Seq {
		t.Fatalf("view after expiry: unread %d, last message %+v; want 1 and seq %d", v.UnreadCount, v.LastMessage, kept.Seq)
	}
	f.checkSyncView(pass.convs[g.ID], a)
	for _, m := range []*parley.Message{old, expiredEarlier} {
		if _, err := f.s.Message(f.ctx, g.ID, m.Seq, start); parley.ErrorCode(err) != parley.CodeNotFound {
			t.Fatalf("Message(purged seq %d) = %v, want not found", m.Seq, err)
		}
	}
}

// testPurgeHistory: retention blanks the oldest messages, up to the limit,
// whatever their TTL; they are never returned again, their client_msg_id
// stays taken, and newer messages stay.
func testPurgeHistory(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	start := f.now
	var old []*parley.Message
	for i := range 5 {
		f.now = start.Add(time.Duration(i) * time.Second)
		m := f.message(g, a, fmt.Sprintf("old %d", i))
		if i == 1 {
			m.ExpiresAt = start.Add(time.Hour) // a TTL does not save it
		}
		old = append(old, f.append(m))
	}
	f.now = start.Add(time.Minute)
	newer := f.send(g, a, "newer")
	cutoff := start.Add(10 * time.Second)

	for _, limit := range []int{0, -1} {
		_, err := f.s.PurgeHistory(f.ctx, cutoff, limit)
		wantCode(t, err, parley.CodeInvalidRequest, fmt.Sprintf("PurgeHistory(limit %d)", limit))
	}
	if n, err := f.s.PurgeHistory(f.ctx, cutoff, 2); err != nil || n != 2 {
		t.Fatalf("PurgeHistory(limit 2) = %d, %v; want 2", n, err)
	}
	// The oldest went first.
	if got := seqs(f.history(g.ID)); !slices.Equal(got, []int64{3, 4, 5, 6}) {
		t.Fatalf("history after purging 2: seqs %v, want [3 4 5 6]", got)
	}
	if n, err := f.s.PurgeHistory(f.ctx, cutoff, 100); err != nil || n != 3 {
		t.Fatalf("PurgeHistory(rest) = %d, %v; want 3", n, err)
	}
	if n, err := f.s.PurgeHistory(f.ctx, cutoff, 100); err != nil || n != 0 {
		t.Fatalf("PurgeHistory(nothing left) = %d, %v; want 0", n, err)
	}
	for _, m := range old {
		_, err := f.s.Message(f.ctx, g.ID, m.Seq, start)
		wantCode(t, err, parley.CodeNotFound, fmt.Sprintf("Message(purged seq %d)", m.Seq))
	}
	if got := f.history(g.ID); len(got) != 1 {
		t.Fatalf("history after retention: seqs %v, want [6]", seqs(got))
	} else {
		checkMessage(t, &got[0], newer)
	}
	for _, q := range []parley.HistoryQuery{{Forward: true, Limit: 10}, {After: 1, Limit: 10}, {Before: 6, Limit: 10}} {
		if got, err := f.s.Messages(f.ctx, g.ID, q, start); err != nil || len(got) != 0 && got[0].Seq != newer.Seq {
			t.Fatalf("Messages(%+v) = %v, %v; want no purged message", q, seqs(got), err)
		}
	}
	v := f.view(g.ID, b)
	if v.UnreadCount != 1 || v.LastSeq != 6 {
		t.Fatalf("view after retention: unread %d, last_seq %d; want 1, 6", v.UnreadCount, v.LastSeq)
	}
	checkMessage(t, v.LastMessage, newer)
	pass := f.syncOnce(b, 0)
	wantMessages(t, pass.convs[g.ID], false, newer)

	// A retry of a purged message is refused, not stored anew.
	retry := f.message(g, a, "retry")
	retry.ClientMsgID = old[0].ClientMsgID
	_, created, err := f.s.AppendMessage(f.ctx, retry)
	wantCode(t, err, parley.CodeConflict, "retry of a message purged by retention")
	if created || f.conversation(g.ID).LastSeq != 6 {
		t.Fatalf("retry after retention stored a message")
	}
	// Seqs go on.
	if got := f.send(g, a, "next"); got.Seq != 7 {
		t.Fatalf("seq after retention = %d, want 7", got.Seq)
	}
	// After the idempotency horizon the bodiless rows go, and the id is
	// free again.
	if _, err := f.s.PurgeExpired(f.ctx, cutoff.Add(parley.IdempotencyHorizon), 100); err != nil {
		t.Fatal(err)
	}
	again := f.message(g, a, "new life")
	again.ClientMsgID = old[0].ClientMsgID
	if got, created, err := f.s.AppendMessage(f.ctx, again); err != nil || !created || got.Seq != 8 {
		t.Fatalf("append after the horizon: created=%v %v; want a new message at seq 8", created, err)
	}
}

// testConversationIDs: exactly the user's current memberships.
func testConversationIDs(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g1, g2 := f.group(a, b), f.group(b, a)
	f.group(b) // not a's
	gone := f.group(a, b)
	if err := removeMember(f, gone.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	ids, err := f.s.ConversationIDs(f.ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(slices.Values(ids)), slices.Sorted(slices.Values([]string{g1.ID, g2.ID})); !slices.Equal(got, want) {
		t.Fatalf("ConversationIDs = %v, want %v", got, want)
	}
	if ids, err := f.s.ConversationIDs(f.ctx, f.user().ID); err != nil || len(ids) != 0 {
		t.Fatalf("ConversationIDs(no memberships) = %v, %v", ids, err)
	}
}

// testSyncQueryBounds: a query out of bounds is refused; a position beyond
// the store's (a client restored against an older store) gets an empty
// page whose Until is below it.
func testSyncQueryBounds(t *testing.T, f *fixture) {
	a := f.user()
	f.group(a)
	for _, q := range []parley.SyncQuery{
		{Conversations: 0},
		{Conversations: parley.MaxSyncConversations + 1},
		{Conversations: 1, Messages: -1},
		{Conversations: 1, Messages: parley.MaxHistoryLimit + 1},
		{Conversations: 1, Since: -1},
		{Conversations: 1, Until: -1},
	} {
		_, err := f.s.Sync(f.ctx, a.ID, q, f.now)
		wantCode(t, err, parley.CodeInvalidRequest, fmt.Sprintf("Sync(%+v)", q))
	}
	current := f.syncOnce(a, 0).until
	ahead := current + 1000
	page, err := f.s.Sync(f.ctx, a.ID, parley.SyncQuery{Since: ahead, Conversations: 10}, f.now)
	if err != nil || page.Until >= ahead || len(page.Conversations) != 0 || page.HasMore {
		t.Fatalf("Sync(since beyond the store) = %+v, %v; want an empty page with Until below %d", page, err, ahead)
	}
}

// testSyncSeesCommitted proves that the range's top is published only after
// the writes it covers have committed: a client that syncs over and over
// from its last Until, while others write, ends up with every message and
// every receipt, none lost in a gap between two ranges.
func testSyncSeesCommitted(t *testing.T, f *fixture) {
	a := f.user()
	senders := []*parley.User{f.user(), f.user(), f.user(), f.user()}
	convs := []*parley.Conversation{f.group(a, senders...), f.group(a, senders...)}
	const perSender = 40
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range senders {
		wg.Go(func() {
			for j := range perSender {
				c := convs[(i+j)%len(convs)]
				m := f.message(c, u, fmt.Sprintf("%d/%d", i, j))
				if _, _, err := f.s.AppendMessage(f.ctx, m); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.s.MarkRead(f.ctx, c.ID, u.ID, m.Seq); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()

	seen := make(map[string]map[int64]bool)
	reads := make(map[string]map[string]int64)
	var pos int64
	collect := func() {
		pass := f.syncAll(a, pos, 1, parley.MaxHistoryLimit, nil)
		for _, sc := range pass.all {
			id := sc.View.ID
			if sc.MoreMessages {
				t.Fatalf("more than %d messages in one sync of %s", parley.MaxHistoryLimit, id)
			}
			if seen[id] == nil {
				seen[id], reads[id] = make(map[int64]bool), make(map[string]int64)
			}
			for _, m := range sc.Messages {
				seen[id][m.Seq] = true
			}
			for _, m := range sc.View.Members {
				reads[id][m.UserID] = m.ReadSeq
			}
		}
		pos = pass.until
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		collect()
	}
	collect() // after the last write
	if t.Failed() {
		return
	}
	total := 0
	for _, c := range convs {
		final := f.conversation(c.ID)
		for seq := int64(1); seq <= final.LastSeq; seq++ {
			if !seen[c.ID][seq] {
				t.Fatalf("conversation %s: seq %d never came in a sync (last_seq %d)", c.ID, seq, final.LastSeq)
			}
		}
		total += int(final.LastSeq)
		for _, m := range final.Members {
			if reads[c.ID][m.UserID] != m.ReadSeq {
				t.Fatalf("conversation %s: synced read_seq of %s is %d, stored %d", c.ID, m.UserID, reads[c.ID][m.UserID], m.ReadSeq)
			}
		}
	}
	if total != len(senders)*perSender {
		t.Fatalf("%d messages stored, want %d", total, len(senders)*perSender)
	}
}
