package storetest

import (
	"cmp"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

func testPush(t *testing.T, f *fixture) {
	u, other := f.user(), f.user()
	d, _ := f.session(u)
	_, err := f.s.Push(f.ctx, d.ID)
	wantCode(t, err, parley.CodeNotFound, "Push of a device without one")

	fcm := &parley.PushRegistration{Provider: parley.PushFCM, Token: "token-1", UpdatedAt: f.now}
	if err := f.s.SetPush(f.ctx, u.ID, d.ID, fcm); err != nil {
		t.Fatalf("SetPush: %v", err)
	}
	got, err := f.s.Push(f.ctx, d.ID)
	if err != nil || got.Provider != parley.PushFCM || got.Token != "token-1" || !sameTime(got.UpdatedAt, f.now) {
		t.Fatalf("Push: %+v, %v", got, err)
	}
	// Replaced by the next registration, of another provider.
	wp := &parley.PushRegistration{Provider: parley.PushWebPush, Subscription: &parley.WebPushSubscription{Endpoint: "https://push.example/x"}, UpdatedAt: f.now}
	wp.Subscription.Keys.P256dh, wp.Subscription.Keys.Auth = "p", "a"
	if err := f.s.SetPush(f.ctx, u.ID, d.ID, wp); err != nil {
		t.Fatalf("SetPush again: %v", err)
	}
	got, err = f.s.Push(f.ctx, d.ID)
	if err != nil || got.Provider != parley.PushWebPush || got.Token != "" || got.Subscription == nil || got.Subscription.Endpoint != "https://push.example/x" || got.Subscription.Keys.Auth != "a" {
		t.Fatalf("Push after replacing: %+v, %v", got, err)
	}
	// Only the device's own user may set or delete it.
	wantCode(t, f.s.SetPush(f.ctx, other.ID, d.ID, fcm), parley.CodeNotFound, "SetPush on another user's device")
	wantCode(t, f.s.DeletePush(f.ctx, other.ID, d.ID), parley.CodeNotFound, "DeletePush on another user's device")
	wantCode(t, f.s.SetPush(f.ctx, u.ID, parley.NewID(), fcm), parley.CodeNotFound, "SetPush on no device")
	if err := f.s.DeletePush(f.ctx, u.ID, d.ID); err != nil {
		t.Fatalf("DeletePush: %v", err)
	}
	_, err = f.s.Push(f.ctx, d.ID)
	wantCode(t, err, parley.CodeNotFound, "Push after DeletePush")
	if err := f.s.DeletePush(f.ctx, u.ID, d.ID); err != nil {
		t.Fatalf("DeletePush of none: %v", err)
	}
	// Deleting the device (logout, removal, suspension) deletes it.
	if err := f.s.SetPush(f.ctx, u.ID, d.ID, fcm); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteDevice(f.ctx, u.ID, d.ID); err != nil {
		t.Fatalf("DeleteDevice with a push registration: %v", err)
	}
	_, err = f.s.Push(f.ctx, d.ID)
	wantCode(t, err, parley.CodeNotFound, "Push after the device was deleted")
	d2, _ := f.session(u)
	if err := f.s.SetPush(f.ctx, u.ID, d2.ID, fcm); err != nil {
		t.Fatal(err)
	}
	if err := f.s.SetUserState(f.ctx, u.ID, parley.UserSuspended); err != nil {
		t.Fatalf("suspending a user with a push registration: %v", err)
	}
	_, err = f.s.Push(f.ctx, d2.ID)
	wantCode(t, err, parley.CodeNotFound, "Push after suspension")
}

// testPushDevices: every registered device with its user, once, and
// none whose registration was removed, replaced away or whose device is
// gone; an error of the callback ends the listing with it.
func testPushDevices(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	a1, _ := f.session(a)
	a2, _ := f.session(a)
	a3, _ := f.session(a) // never registered
	b1, _ := f.session(b)
	b2, _ := f.session(b)
	c1, _ := f.session(c)
	for _, r := range []struct {
		u *parley.User
		d *parley.Device
	}{{a, a1}, {a, a2}, {b, b1}, {b, b2}, {c, c1}, {a, a1}} { // a1 twice: replaced
		f.register(r.u, r.d)
	}
	if err := f.s.DeletePush(f.ctx, b.ID, b1.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteDevice(f.ctx, c.ID, c1.ID); err != nil {
		t.Fatal(err)
	}
	mine := map[string]bool{a.ID: true, b.ID: true, c.ID: true}
	var got []string
	if err := f.s.PushDevices(f.ctx, func(userID, deviceID string) error {
		if mine[userID] {
			got = append(got, userID+"/"+deviceID)
		}
		return nil
	}); err != nil {
		t.Fatalf("PushDevices: %v", err)
	}
	want := []string{a.ID + "/" + a1.ID, a.ID + "/" + a2.ID, b.ID + "/" + b2.ID}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("PushDevices: %v, want %v (a3 %s never registered)", got, want, a3.ID)
	}
	stop := errors.New("enough")
	calls := 0
	err := f.s.PushDevices(f.ctx, func(string, string) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("PushDevices with a failing callback: %v after %d calls, want the callback's error after 1", err, calls)
	}
}

// register gives d (a device of u) an FCM registration whose token is
// the device id.
func (f *fixture) register(u *parley.User, d *parley.Device) {
	f.tb.Helper()
	r := &parley.PushRegistration{Provider: parley.PushFCM, Token: "token-" + d.ID, UpdatedAt: f.now}
	if err := f.s.SetPush(f.ctx, u.ID, d.ID, r); err != nil {
		f.tb.Fatalf("SetPush: %v", err)
	}
}

// checkTarget fails unless got is want in every field; want's
// Registration is checked only by its token.
func checkTarget(tb testing.TB, got, want parley.PushTarget) {
	tb.Helper()
	if got.UserID != want.UserID || got.DeviceID != want.DeviceID || got.ReadSeq != want.ReadSeq ||
		got.DeliveredSeq != want.DeliveredSeq || got.LastSeq != want.LastSeq ||
		!sameTime(got.MutedUntil, want.MutedUntil) || got.MutedUntil.IsZero() != want.MutedUntil.IsZero() ||
		!sameTime(got.DNDUntil, want.DNDUntil) || got.DNDUntil.IsZero() != want.DNDUntil.IsZero() ||
		got.Registration == nil || got.Registration.Provider != parley.PushFCM || got.Registration.Token != "token-"+want.DeviceID {
		tb.Fatalf("push target:\n got %+v (registration %+v)\nwant %+v", got, got.Registration, want)
	}
}

// wantTargets fails unless got is want, in order.
func wantTargets(tb testing.TB, got, want []parley.PushTarget, what string) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("%s: %d targets %+v, want %d", what, len(got), got, len(want))
	}
	for i := range want {
		checkTarget(tb, got[i], want[i])
	}
}

// sortTargets orders targets as PushTargets returns them: by user id,
// then device id.
func sortTargets(targets []parley.PushTarget) []parley.PushTarget {
	slices.SortFunc(targets, func(a, b parley.PushTarget) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.DeviceID, b.DeviceID))
	})
	return targets
}

// testPushTargets: every registered device of every other member, with
// the member's read_seq, mute and do-not-disturb, the device's own
// delivered cursor and the conversation's last_seq; devices without a
// registration, deleted ones and non-members' are not targets.
func testPushTargets(t *testing.T, f *fixture) {
	a, b, c, stranger := f.user(), f.user(), f.user(), f.user()
	g := f.group(a, b, c)
	a1, _ := f.session(a)
	b1, _ := f.session(b)
	b2, _ := f.session(b)
	b3, _ := f.session(b) // never registered
	c1, _ := f.session(c)
	s1, _ := f.session(stranger)
	for _, r := range []struct {
		u *parley.User
		d *parley.Device
	}{{a, a1}, {b, b1}, {b, b2}, {c, c1}, {stranger, s1}} {
		f.register(r.u, r.d)
	}
	for range 3 {
		f.send(g, a, "hi")
	}
	if _, err := f.s.MarkRead(f.ctx, g.ID, b.ID, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.s.MarkDelivered(f.ctx, g.ID, b.ID, b1.ID, 2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.s.MarkDelivered(f.ctx, g.ID, b.ID, b3.ID, 3); err != nil {
		t.Fatal(err)
	}
	muted, dnd := f.now.Add(time.Hour), f.now.Add(2*time.Hour)
	if err := f.s.SetMute(f.ctx, g.ID, c.ID, muted); err != nil {
		t.Fatal(err)
	}
	if err := f.s.SetDND(f.ctx, b.ID, dnd); err != nil {
		t.Fatal(err)
	}

	targetA1 := parley.PushTarget{UserID: a.ID, DeviceID: a1.ID, LastSeq: 3, ReadSeq: 0}
	targetB1 := parley.PushTarget{UserID: b.ID, DeviceID: b1.ID, LastSeq: 3, ReadSeq: 1, DeliveredSeq: 2, DNDUntil: dnd}
	targetB2 := parley.PushTarget{UserID: b.ID, DeviceID: b2.ID, LastSeq: 3, ReadSeq: 1, DNDUntil: dnd}
	targetC1 := parley.PushTarget{UserID: c.ID, DeviceID: c1.ID, LastSeq: 3, MutedUntil: muted}
	targets := func(except *parley.User) []parley.PushTarget {
		t.Helper()
		exceptID := ""
		if except != nil {
			exceptID = except.ID
		}
		got, err := f.s.PushTargets(f.ctx, g.ID, exceptID)
		if err != nil {
			t.Fatalf("PushTargets: %v", err)
		}
		return got
	}
	wantTargets(t, targets(a), sortTargets([]parley.PushTarget{targetB1, targetB2, targetC1}), "targets but the sender")
	wantTargets(t, targets(nil), sortTargets([]parley.PushTarget{targetA1, targetB1, targetB2, targetC1}), "every target")

	// Each target alone, as PushTargets gives it.
	for _, want := range []parley.PushTarget{targetA1, targetB1, targetB2, targetC1} {
		got, err := f.s.PushTarget(f.ctx, g.ID, want.DeviceID)
		if err != nil {
			t.Fatalf("PushTarget(%s): %v", want.DeviceID, err)
		}
		checkTarget(t, *got, want)
	}

	// A device that deletes its registration, or is deleted, is no target.
	if err := f.s.DeletePush(f.ctx, b.ID, b1.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteDevice(f.ctx, b.ID, b2.ID); err != nil {
		t.Fatal(err)
	}
	wantTargets(t, targets(a), []parley.PushTarget{targetC1}, "targets after b's devices went")

	// A conversation without targets has none; a missing one is an error.
	alone := f.group(a)
	if got, err := f.s.PushTargets(f.ctx, alone.ID, a.ID); err != nil || len(got) != 0 {
		t.Fatalf("PushTargets(only the sender) = %+v, %v; want none", got, err)
	}
	_, err := f.s.PushTargets(f.ctx, parley.NewID(), a.ID)
	wantCode(t, err, parley.CodeConversationNotFound, "PushTargets(unknown conversation)")
}

// testPushTarget: one device's target fails with NotFound when the device
// has no registration (or is gone), and with ConversationNotFound when
// the conversation is gone or the device's user is not a member.
func testPushTarget(t *testing.T, f *fixture) {
	a, b, stranger := f.user(), f.user(), f.user()
	g := f.group(a, b)
	b1, _ := f.session(b)
	b2, _ := f.session(b) // never registered
	s1, _ := f.session(stranger)
	f.register(b, b1)
	f.register(stranger, s1)
	f.send(g, a, "hi")

	got, err := f.s.PushTarget(f.ctx, g.ID, b1.ID)
	if err != nil {
		t.Fatalf("PushTarget: %v", err)
	}
	checkTarget(t, *got, parley.PushTarget{UserID: b.ID, DeviceID: b1.ID, LastSeq: 1})

	_, err = f.s.PushTarget(f.ctx, g.ID, b2.ID)
	wantCode(t, err, parley.CodeNotFound, "PushTarget(no registration)")
	_, err = f.s.PushTarget(f.ctx, g.ID, parley.NewID())
	wantCode(t, err, parley.CodeNotFound, "PushTarget(no device)")
	_, err = f.s.PushTarget(f.ctx, g.ID, s1.ID)
	wantCode(t, err, parley.CodeConversationNotFound, "PushTarget(a non-member's device)")
	_, err = f.s.PushTarget(f.ctx, parley.NewID(), b1.ID)
	wantCode(t, err, parley.CodeConversationNotFound, "PushTarget(unknown conversation)")

	if err := removeMember(f, g.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.s.PushTarget(f.ctx, g.ID, b1.ID)
	wantCode(t, err, parley.CodeConversationNotFound, "PushTarget(removed member)")
	if got, err := f.s.PushTargets(f.ctx, g.ID, a.ID); err != nil || len(got) != 0 {
		t.Fatalf("PushTargets after the member was removed = %+v, %v; want none", got, err)
	}

	if err := deleteConversation(f, g.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.s.PushTarget(f.ctx, g.ID, s1.ID)
	wantCode(t, err, parley.CodeConversationNotFound, "PushTarget(deleted conversation)")
	_, err = f.s.PushTargets(f.ctx, g.ID, "")
	wantCode(t, err, parley.CodeConversationNotFound, "PushTargets(deleted conversation)")

	if err := f.s.DeleteDevice(f.ctx, b.ID, b1.ID); err != nil {
		t.Fatal(err)
	}
	other := f.group(a, b)
	_, err = f.s.PushTarget(f.ctx, other.ID, b1.ID)
	wantCode(t, err, parley.CodeNotFound, "PushTarget(deleted device)")
}

// testPushTargetRequest: a member whose membership is a message request
// is a target marked Request (its notifications say "Message request",
// with no preview), in PushTargets and PushTarget alike; the member who
// made the conversation is not; accepting clears the mark.
func testPushTargetRequest(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	dm := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: f.now, Members: []parley.Member{
		{UserID: a.ID, Role: parley.MemberRoleMember, JoinedAt: f.now},
		{UserID: b.ID, Role: parley.MemberRoleMember, JoinedAt: f.now, Request: true},
	}}
	if _, _, err := f.s.CreateConversation(f.ctx, dm); err != nil {
		t.Fatalf("CreateConversation: %v", err)
	}
	a1, _ := f.session(a)
	b1, _ := f.session(b)
	f.register(a, a1)
	f.register(b, b1)
	f.send(dm, a, "hi, stranger here")
	request := func(except *parley.User, device *parley.Device) (inList, alone bool) {
		t.Helper()
		got, err := f.s.PushTargets(f.ctx, dm.ID, except.ID)
		if err != nil || len(got) != 1 || got[0].DeviceID != device.ID {
			t.Fatalf("PushTargets(except %s) = %+v, %v; want %s's device", except.ID, got, err, device.ID)
		}
		one, err := f.s.PushTarget(f.ctx, dm.ID, device.ID)
		if err != nil {
			t.Fatalf("PushTarget(%s): %v", device.ID, err)
		}
		return got[0].Request, one.Request
	}
	if inList, alone := request(a, b1); !inList || !alone {
		t.Fatalf("the requested member's target: Request %v (PushTargets), %v (PushTarget); want true", inList, alone)
	}
	if inList, alone := request(b, a1); inList || alone {
		t.Fatalf("the requester's target: Request %v (PushTargets), %v (PushTarget); want false", inList, alone)
	}
	if ok, err := f.s.AcceptConversation(f.ctx, dm.ID, b.ID); err != nil || !ok {
		t.Fatalf("AcceptConversation = %v, %v", ok, err)
	}
	if inList, alone := request(a, b1); inList || alone {
		t.Fatalf("after accepting: Request %v (PushTargets), %v (PushTarget); want false", inList, alone)
	}
}

// testPushFanOut: several conversations' targets at once, each as
// PushTargets lists it and with its user's unread counts as Unread
// counts them; an unknown conversation is an answer without targets,
// not an error; too many requests are refused.
func testPushFanOut(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	g := f.group(a, b, c)
	other := f.group(a, b)
	alone := f.group(a)
	b1, _ := f.session(b)
	b2, _ := f.session(b)
	c1, _ := f.session(c)
	for _, r := range []struct {
		u *parley.User
		d *parley.Device
	}{{b, b1}, {b, b2}, {c, c1}} {
		f.register(r.u, r.d)
	}
	for range 3 {
		f.send(g, a, "hi")
	}
	for range 2 {
		f.send(other, a, "elsewhere")
	}
	f.send(other, b, "b's own: not unread for b")
	if _, err := f.s.MarkRead(f.ctx, g.ID, b.ID, 1); err != nil {
		t.Fatal(err)
	}

	reqs := []parley.PushFanOutRequest{
		{ConversationID: g.ID, ExceptUserID: a.ID},
		{ConversationID: parley.NewID(), ExceptUserID: a.ID},
		{ConversationID: alone.ID, ExceptUserID: a.ID},
		{ConversationID: other.ID, ExceptUserID: a.ID},
		{ConversationID: g.ID, ExceptUserID: c.ID},
	}
	got, err := f.s.PushFanOut(f.ctx, reqs, f.now)
	if err != nil {
		t.Fatalf("PushFanOut: %v", err)
	}
	if len(got) != len(reqs) {
		t.Fatalf("PushFanOut: %d answers, want %d", len(got), len(reqs))
	}
	for i, req := range reqs {
		want, err := f.s.PushTargets(f.ctx, req.ConversationID, req.ExceptUserID)
		if parley.ErrorCode(err) == parley.CodeConversationNotFound {
			if got[i].Found || len(got[i].Targets) != 0 {
				t.Fatalf("PushFanOut answer %d (unknown conversation) = %+v; want not found", i, got[i])
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !got[i].Found {
			t.Fatalf("PushFanOut answer %d: not found; want found", i)
		}
		wantTargets(t, got[i].Targets, want, "PushFanOut's targets")
		for _, tg := range got[i].Targets {
			if !tg.Counted {
				t.Fatalf("PushFanOut answer %d, device %s: not counted (%d users)", i, tg.DeviceID, len(got[i].Targets))
			}
			conv, total, err := f.s.Unread(f.ctx, tg.UserID, req.ConversationID, f.now)
			if err != nil {
				t.Fatal(err)
			}
			if tg.Unread != conv || tg.Badge != total {
				t.Fatalf("PushFanOut answer %d, device %s: unread %d badge %d; Unread says %d, %d", i, tg.DeviceID, tg.Unread, tg.Badge, conv, total)
			}
		}
	}
	// The counts themselves: b read 1 of g's 3 and has 2 unread in
	// other (its own message is not unread); c has g's 3.
	for _, tg := range got[0].Targets {
		want := [2]int64{2, 4}
		if tg.UserID == c.ID {
			want = [2]int64{3, 3}
		}
		if [2]int64{tg.Unread, tg.Badge} != want {
			t.Fatalf("PushFanOut: %s's unread %d and badge %d; want %v", tg.UserID, tg.Unread, tg.Badge, want)
		}
	}
	if len(got[0].Targets) != 3 || len(got[3].Targets) != 2 || len(got[4].Targets) != 2 || len(got[2].Targets) != 0 {
		t.Fatalf("PushFanOut: %d, %d, %d, %d targets; want 3, 2, 2, 0", len(got[0].Targets), len(got[3].Targets), len(got[4].Targets), len(got[2].Targets))
	}

	// A large group: the first PushFanOutCounted users (in the targets'
	// order) are counted, the others not.
	var many []*parley.User
	for range parley.PushFanOutCounted + 2 {
		u := f.user()
		d, _ := f.session(u)
		f.register(u, d)
		many = append(many, u)
	}
	big := f.group(a, many...)
	f.send(big, a, "to many")
	got, err = f.s.PushFanOut(f.ctx, []parley.PushFanOutRequest{{ConversationID: big.ID, ExceptUserID: a.ID}}, f.now)
	if err != nil || len(got) != 1 || len(got[0].Targets) != parley.PushFanOutCounted+2 {
		t.Fatalf("PushFanOut(a large group) = %+v, %v", got, err)
	}
	for j, tg := range got[0].Targets {
		if want := j < parley.PushFanOutCounted; tg.Counted != want || (want && (tg.Unread != 1 || tg.Badge != 1)) {
			t.Fatalf("PushFanOut(a large group), target %d: counted %v (unread %d, badge %d); want counted %v with 1, 1",
				j, tg.Counted, tg.Unread, tg.Badge, want)
		}
	}

	if got, err := f.s.PushFanOut(f.ctx, nil, f.now); err != nil || len(got) != 0 {
		t.Fatalf("PushFanOut(nothing) = %+v, %v", got, err)
	}
	_, err = f.s.PushFanOut(f.ctx, make([]parley.PushFanOutRequest, parley.MaxPushFanOut+1), f.now)
	wantCode(t, err, parley.CodeInvalidRequest, "PushFanOut of too many")
}
