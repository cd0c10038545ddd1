package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// testChangeMembersAtomic: decide sees the state it changes. Concurrent
// ownership transfers, each deciding "only if I am the owner", leave
// exactly one owner; a failing decide changes nothing.
func testChangeMembersAtomic(t *testing.T, f *fixture) {
	owner := f.user()
	others := []*parley.User{f.user(), f.user(), f.user(), f.user()}
	g := f.group(owner, others...)
	var wg sync.WaitGroup
	for _, u := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = f.s.ChangeMembers(f.ctx, g.ID, func(c *parley.Conversation) (parley.MemberChange, error) {
				if c.MemberOf(owner.ID).Role != parley.MemberRoleOwner {
					return parley.MemberChange{}, parley.Errorf(parley.CodeForbidden, "no longer the owner")
				}
				return parley.MemberChange{Roles: map[string]parley.MemberRole{u.ID: parley.MemberRoleOwner, owner.ID: parley.MemberRoleAdmin}}, nil
			})
		}()
	}
	wg.Wait()
	owners := 0
	for _, m := range f.conversation(g.ID).Members {
		if m.Role == parley.MemberRoleOwner {
			owners++
		}
	}
	if owners != 1 {
		t.Fatalf("%d owners after concurrent transfers, want 1", owners)
	}

	before := f.conversation(g.ID)
	_, err := f.s.ChangeMembers(f.ctx, g.ID, func(c *parley.Conversation) (parley.MemberChange, error) {
		return parley.MemberChange{Remove: []string{others[0].ID}, Add: []parley.Member{{UserID: parley.NewID()}}}, nil
	})
	wantCode(t, err, parley.CodeNotFound, "ChangeMembers(add unknown user)")
	if after := f.conversation(g.ID); len(after.Members) != len(before.Members) {
		t.Fatalf("a failed change removed a member: %d members, want %d", len(after.Members), len(before.Members))
	}
	_, err = f.s.ChangeMembers(f.ctx, parley.NewID(), func(c *parley.Conversation) (parley.MemberChange, error) {
		t.Error("decide called for a missing conversation") // not Fatal: this runs on the store's goroutine
		return parley.MemberChange{}, parley.Errorf(parley.CodeInternal, "unexpected")
	})
	wantCode(t, err, parley.CodeConversationNotFound, "ChangeMembers(unknown conversation)")

	// An added member's read_seq is clamped to last_seq.
	f.send(g, owner, "one")
	late := f.user()
	c, err := f.s.ChangeMembers(f.ctx, g.ID, func(*parley.Conversation) (parley.MemberChange, error) {
		return parley.MemberChange{Add: []parley.Member{{UserID: late.ID, ReadSeq: 99, JoinedAt: f.now}}}, nil
	})
	if err != nil || c.MemberOf(late.ID) == nil || c.MemberOf(late.ID).ReadSeq != 1 {
		t.Fatalf("add with read_seq 99: %v, %+v", err, c)
	}
}

// testUpdateSeesTombstone: the change function sees the stored state, so
// an edit decided after a delete sees the tombstone.
func testUpdateSeesTombstone(t *testing.T, f *fixture) {
	a := f.user()
	g := f.group(a)
	m := f.send(g, a, "hello")
	del := *m
	del.Deleted, del.Body, del.EditedAt = true, "", f.now
	if err := updateMessage(f, &del); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.UpdateMessage(f.ctx, g.ID, m.Seq, f.now, func(stored *parley.Message) error {
		if !stored.Deleted {
			t.Error("change saw a live message after the delete")
		}
		return parley.Errorf(parley.CodeConflict, "deleted")
	})
	wantCode(t, err, parley.CodeConflict, "UpdateMessage(after delete)")
	got, err := f.s.Message(f.ctx, g.ID, m.Seq, f.now)
	if err != nil || !got.Deleted || got.Body != "" {
		t.Fatalf("tombstone after a refused edit: %+v, %v", got, err)
	}
	// An expired message cannot be updated.
	e := f.message(g, a, "short")
	e.ExpiresAt = f.now.Add(time.Minute)
	e = f.append(e)
	_, err = f.s.UpdateMessage(f.ctx, g.ID, e.Seq, e.ExpiresAt, func(*parley.Message) error { return nil })
	wantCode(t, err, parley.CodeNotFound, "UpdateMessage(expired)")
}

// testIdempotencyAfterPurge: a client_msg_id stays taken after its message
// expired and was purged; a retry is refused, nothing new is stored.
func testIdempotencyAfterPurge(t *testing.T, f *fixture) {
	a := f.user()
	g := f.group(a)
	m := f.message(g, a, "ephemeral")
	m.ExpiresAt = f.now.Add(time.Minute)
	orig := f.append(m)
	f.now = f.now.Add(2 * time.Minute)
	if n, err := f.s.PurgeExpired(f.ctx, f.now, 100); err != nil || n != 1 {
		t.Fatalf("PurgeExpired = %d, %v", n, err)
	}
	retry := f.message(g, a, "ephemeral")
	retry.ClientMsgID = orig.ClientMsgID
	_, created, err := f.s.AppendMessage(f.ctx, retry)
	wantCode(t, err, parley.CodeConflict, "retry after purge")
	if created || f.conversation(g.ID).LastSeq != 1 {
		t.Fatalf("retry after purge stored a message (last_seq %d)", f.conversation(g.ID).LastSeq)
	}
	// Once the horizon has passed, the row goes, and the id is free again.
	f.now = f.now.Add(parley.IdempotencyHorizon)
	if _, err := f.s.PurgeExpired(f.ctx, f.now, 100); err != nil {
		t.Fatal(err)
	}
	again := f.message(g, a, "new life")
	again.ClientMsgID = orig.ClientMsgID
	got, created, err := f.s.AppendMessage(f.ctx, again)
	if err != nil || !created || got.Seq != 2 {
		t.Fatalf("append after the horizon: created=%v seq=%v err=%v; want a new message at seq 2", created, got, err)
	}
}

// testNonMemberReplayElsewhere: a non-member replaying an id they used in
// another conversation learns nothing: conversation_not_found.
func testNonMemberReplayElsewhere(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	mine := f.group(a)
	theirs := f.group(b)
	m := f.send(mine, a, "hi")
	retry := f.message(theirs, a, "hi")
	retry.ClientMsgID = m.ClientMsgID
	_, _, err := f.s.AppendMessage(f.ctx, retry)
	wantCode(t, err, parley.CodeConversationNotFound, "non-member replay in another conversation")
}

// testSuspendEndsSessions: suspension deletes the user's devices in the
// same write.
func testSuspendEndsSessions(t *testing.T, f *fixture) {
	u := f.user()
	d, _ := f.session(u)
	if err := f.s.SetUserState(f.ctx, u.ID, parley.UserSuspended); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.Device(f.ctx, d.ID)
	wantCode(t, err, parley.CodeNotFound, "Device after suspension")
}

// testMember: one membership by key; a non-member and a missing
// conversation get the same answer.
func testMember(t *testing.T, f *fixture) {
	a, b, outsider := f.user(), f.user(), f.user()
	g := f.group(a, b)
	m, err := f.s.Member(f.ctx, g.ID, a.ID)
	if err != nil || m.UserID != a.ID || m.Role != parley.MemberRoleOwner || !sameTime(m.JoinedAt, f.now) {
		t.Fatalf("Member(owner) = %+v, %v", m, err)
	}
	_, err = f.s.Member(f.ctx, g.ID, outsider.ID)
	wantCode(t, err, parley.CodeConversationNotFound, "Member(non-member)")
	_, err = f.s.Member(f.ctx, parley.NewID(), a.ID)
	wantCode(t, err, parley.CodeConversationNotFound, "Member(missing conversation)")
}

// testSessionForSuspendedUser: a session cannot be created for a user who
// is suspended when it commits; nor can a suspended user be added.
func testSessionForSuspendedUser(t *testing.T, f *fixture) {
	owner, u := f.user(), f.user()
	g := f.group(owner)
	if err := f.s.SetUserState(f.ctx, u.ID, parley.UserSuspended); err != nil {
		t.Fatal(err)
	}
	d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: parley.PlatformIOS, Name: "x", SessionID: parley.NewID(), CreatedAt: f.now, LastSeenAt: f.now}
	tok := &parley.RefreshToken{Hash: fmt.Sprintf("hash-%d", f.next()), ExpiresAt: f.now.Add(time.Hour)}
	wantCode(t, f.s.CreateSession(f.ctx, d, tok, 0), parley.CodeSuspended, "CreateSession(suspended user)")
	wantCode(t, addMember(f, g.ID, parley.Member{UserID: u.ID, JoinedAt: f.now}), parley.CodeNotFound, "add a suspended user")
}

// testReplayOfPurgedWithEarlierClock: a retry whose clock is behind the
// purge's still gets a conflict, not the purged row.
func testReplayOfPurgedWithEarlierClock(t *testing.T, f *fixture) {
	a := f.user()
	g := f.group(a)
	m := f.message(g, a, "ephemeral")
	m.ExpiresAt = f.now.Add(time.Minute)
	orig := f.append(m)
	if _, err := f.s.PurgeExpired(f.ctx, f.now.Add(2*time.Minute), 100); err != nil {
		t.Fatal(err)
	}
	retry := f.message(g, a, "again")
	retry.ClientMsgID, retry.CreatedAt = orig.ClientMsgID, f.now.Add(time.Second)
	_, _, err := f.s.AppendMessage(f.ctx, retry)
	wantCode(t, err, parley.CodeConflict, "retry of a purged message with an earlier clock")
}

// testMarkDelivered: per-device and per-user delivered watermarks rise
// only, clamp to last_seq, and say when the first device passed a seq.
func testMarkDelivered(t *testing.T, f *fixture) {
	a, b, outsider := f.user(), f.user(), f.user()
	g := f.group(a, b)
	for range 5 {
		f.send(g, a, "hi")
	}
	phone, _ := f.session(b)
	laptop, _ := f.session(b)
	step := func(d *parley.Device, seq, wantDevice, wantUser int64, deviceRaised, userRaised bool) {
		t.Helper()
		dev, usr, err := f.s.MarkDelivered(f.ctx, g.ID, b.ID, d.ID, seq)
		if err != nil || dev != (parley.Watermark{Seq: wantDevice, Raised: deviceRaised}) || usr != (parley.Watermark{Seq: wantUser, Raised: userRaised}) {
			t.Fatalf("MarkDelivered(%d) = %+v %+v %v; want device %d/%v user %d/%v", seq, dev, usr, err, wantDevice, deviceRaised, wantUser, userRaised)
		}
	}
	step(phone, 3, 3, 3, true, true)
	step(laptop, 2, 2, 3, true, false) // the laptop lags: no new user receipt
	step(phone, 1, 3, 3, false, false) // never lowers
	step(laptop, 4, 4, 4, true, true)  // the laptop is first past 3
	step(phone, 99, 5, 5, true, true)  // clamped to last_seq
	if m := f.conversation(g.ID).MemberOf(b.ID); m.DeliveredSeq != 5 {
		t.Fatalf("member delivered_seq %d, want 5", m.DeliveredSeq)
	}
	_, _, err := f.s.MarkDelivered(f.ctx, g.ID, outsider.ID, phone.ID, 1)
	wantCode(t, err, parley.CodeConversationNotFound, "MarkDelivered(non-member)")
	other, _ := f.session(a)
	_, _, err = f.s.MarkDelivered(f.ctx, g.ID, b.ID, other.ID, 1)
	wantCode(t, err, parley.CodeNotFound, "MarkDelivered(someone else's device)")
	// A deleted device takes its cursors with it.
	if err := f.s.DeleteDevice(f.ctx, b.ID, phone.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.s.MarkDelivered(f.ctx, g.ID, b.ID, phone.ID, 1)
	wantCode(t, err, parley.CodeNotFound, "MarkDelivered(deleted device)")
}
