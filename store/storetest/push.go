package storetest

import (
	"testing"

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
