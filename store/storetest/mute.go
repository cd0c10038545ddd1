package storetest

import (
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// sameMute reports whether two views' mutes are equal: both absent, or
// the same time at millisecond precision.
func sameMute(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return sameTime(*a, *b)
}

// wantMute fails unless a view's mute is until (nil: none).
func wantMute(tb testing.TB, v *parley.ConversationView, until *time.Time, what string) {
	tb.Helper()
	if !sameMute(v.MutedUntil, until) {
		tb.Fatalf("%s: MutedUntil %v, want %v", what, v.MutedUntil, until)
	}
}

// testMute: a mute is the member's own, shows in every view read (one
// conversation, the list, sync) only while it ends after now, raises the
// member's change stamp when set or cleared, and goes with the
// membership.
func testMute(t *testing.T, f *fixture) {
	a, b, stranger := f.user(), f.user(), f.user()
	g := f.group(a, b)
	other := f.group(a, b)
	f.send(g, a, "hi")
	wantMute(t, f.view(g.ID, b), nil, "view before any mute")

	// views reads g's view for b at now three ways: alone, in the list,
	// and from a sync from 0; all must agree.
	views := func(now time.Time, want *time.Time, what string) {
		t.Helper()
		v, err := f.s.ConversationView(f.ctx, g.ID, b.ID, now)
		if err != nil {
			t.Fatalf("%s: ConversationView: %v", what, err)
		}
		wantMute(t, v, want, what+": ConversationView")
		list, err := f.s.ConversationViews(f.ctx, b.ID, now)
		if err != nil {
			t.Fatalf("%s: ConversationViews: %v", what, err)
		}
		for i := range list {
			switch list[i].ID {
			case g.ID:
				wantMute(t, &list[i], want, what+": ConversationViews")
			case other.ID:
				wantMute(t, &list[i], nil, what+": ConversationViews of the other conversation")
			}
		}
		page, err := f.s.Sync(f.ctx, b.ID, parley.SyncQuery{Conversations: 10}, now)
		if err != nil {
			t.Fatalf("%s: Sync: %v", what, err)
		}
		for i := range page.Conversations {
			if sc := &page.Conversations[i]; sc.View.ID == g.ID {
				wantMute(t, &sc.View, want, what+": Sync")
			}
		}
	}

	pos := f.syncOnce(b, 0).until
	until := f.now.Add(time.Hour)
	if err := f.s.SetMute(f.ctx, g.ID, b.ID, until); err != nil {
		t.Fatalf("SetMute: %v", err)
	}
	views(f.now, &until, "muted")
	views(until.Add(-time.Millisecond), &until, "just before the mute ends")
	views(until, nil, "when the mute ends")
	views(until.Add(time.Hour), nil, "after the mute ended")
	wantMute(t, f.view(g.ID, a), nil, "another member's view")

	// Setting it raised the member's stamp: b's other devices learn it.
	pass := f.syncOnce(b, pos)
	wantConversations(t, pass, "sync after SetMute", g.ID)
	synced := pass.convs[g.ID]
	f.checkSyncView(synced, b)
	wantMute(t, &synced.View, &until, "synced view after SetMute")
	pos = pass.until

	// So does clearing it, with the zero time.
	if err := f.s.SetMute(f.ctx, g.ID, b.ID, time.Time{}); err != nil {
		t.Fatalf("SetMute(zero): %v", err)
	}
	views(f.now, nil, "unmuted")
	pass = f.syncOnce(b, pos)
	wantConversations(t, pass, "sync after unmuting", g.ID)
	synced = pass.convs[g.ID]
	wantMute(t, &synced.View, nil, "synced view after unmuting")

	// A mute that has ended already is no mute.
	if err := f.s.SetMute(f.ctx, g.ID, b.ID, f.now.Add(-time.Minute)); err != nil {
		t.Fatalf("SetMute(past): %v", err)
	}
	views(f.now, nil, "muted until a time past")

	wantCode(t, f.s.SetMute(f.ctx, g.ID, stranger.ID, until), parley.CodeConversationNotFound, "SetMute(non-member)")
	wantCode(t, f.s.SetMute(f.ctx, parley.NewID(), b.ID, until), parley.CodeConversationNotFound, "SetMute(unknown conversation)")

	// The mute goes with the membership: added again, b is not muted.
	if err := f.s.SetMute(f.ctx, g.ID, b.ID, until); err != nil {
		t.Fatal(err)
	}
	if err := removeMember(f, g.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.s.SetMute(f.ctx, g.ID, b.ID, until), parley.CodeConversationNotFound, "SetMute(removed member)")
	if err := addMember(f, g.ID, parley.Member{UserID: b.ID}); err != nil {
		t.Fatal(err)
	}
	wantMute(t, f.view(g.ID, b), nil, "view after being added again")
}

// testDND: do-not-disturb is set and cleared on the user, and User and
// UserByHandle read it back.
func testDND(t *testing.T, f *fixture) {
	u, other := f.user(), f.user()
	check := func(want time.Time, what string) {
		t.Helper()
		for name, get := range map[string]func() (*parley.User, error){
			"User":         func() (*parley.User, error) { return f.s.User(f.ctx, u.ID) },
			"UserByHandle": func() (*parley.User, error) { return f.s.UserByHandle(f.ctx, u.Handle) },
		} {
			got, err := get()
			if err != nil {
				t.Fatalf("%s: %s: %v", what, name, err)
			}
			if !sameTime(got.DNDUntil, want) || got.DNDUntil.IsZero() != want.IsZero() {
				t.Fatalf("%s: %s: DNDUntil %v, want %v", what, name, got.DNDUntil, want)
			}
		}
	}
	check(time.Time{}, "new user")
	until := f.now.Add(8 * time.Hour)
	if err := f.s.SetDND(f.ctx, u.ID, until); err != nil {
		t.Fatalf("SetDND: %v", err)
	}
	check(until, "after SetDND")
	if got, err := f.s.User(f.ctx, other.ID); err != nil || !got.DNDUntil.IsZero() {
		t.Fatalf("another user: %+v, %v; want no DND", got, err)
	}
	if err := f.s.SetDND(f.ctx, u.ID, time.Time{}); err != nil {
		t.Fatalf("SetDND(zero): %v", err)
	}
	check(time.Time{}, "after SetDND(zero)")
	wantCode(t, f.s.SetDND(f.ctx, parley.NewID(), until), parley.CodeNotFound, "SetDND(unknown user)")
}
