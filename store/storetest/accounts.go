package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

func testUsers(t *testing.T, f *fixture) {
	u := f.user()
	for name, get := range map[string]func() (*parley.User, error){
		"User":         func() (*parley.User, error) { return f.s.User(f.ctx, u.ID) },
		"UserByHandle": func() (*parley.User, error) { return f.s.UserByHandle(f.ctx, u.Handle) },
	} {
		got, err := get()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.ID != u.ID || got.Handle != u.Handle || got.DisplayName != u.DisplayName || got.Role != u.Role ||
			got.State != u.State || got.PasswordHash != u.PasswordHash || !sameTime(got.CreatedAt, u.CreatedAt) {
			t.Fatalf("%s:\n got %+v\nwant %+v", name, *got, *u)
		}
	}
	_, err := f.s.User(f.ctx, parley.NewID())
	wantCode(t, err, parley.CodeNotFound, "User(unknown)")
	_, err = f.s.UserByHandle(f.ctx, "nobody")
	wantCode(t, err, parley.CodeNotFound, "UserByHandle(unknown)")
}

func testUserConflict(t *testing.T, f *fixture) {
	u := f.user()
	dup := &parley.User{ID: parley.NewID(), Handle: u.Handle, DisplayName: "Other", Role: parley.SystemRoleUser,
		State: parley.UserActive, CreatedAt: f.now, PasswordHash: "x"}
	wantCode(t, f.s.CreateUser(f.ctx, dup), parley.CodeConflict, "CreateUser(taken handle)")
	_, err := f.s.User(f.ctx, dup.ID)
	wantCode(t, err, parley.CodeNotFound, "User(rejected)")
}

func testUserRoleAndState(t *testing.T, f *fixture) {
	u := f.user()
	if err := f.s.SetUserRole(f.ctx, u.ID, parley.SystemRoleAdmin); err != nil {
		t.Fatalf("SetUserRole: %v", err)
	}
	if err := f.s.SetUserState(f.ctx, u.ID, parley.UserSuspended); err != nil {
		t.Fatalf("SetUserState: %v", err)
	}
	got, err := f.s.User(f.ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Role != parley.SystemRoleAdmin || got.State != parley.UserSuspended {
		t.Fatalf("role %q state %q, want admin, suspended", got.Role, got.State)
	}
	wantCode(t, f.s.SetUserRole(f.ctx, parley.NewID(), parley.SystemRoleAdmin), parley.CodeNotFound, "SetUserRole(unknown)")
	wantCode(t, f.s.SetUserState(f.ctx, parley.NewID(), parley.UserSuspended), parley.CodeNotFound, "SetUserState(unknown)")
}

// session creates a device of u and its first refresh token (hash
// "<device id>-1"), valid for a day after f.now.
func (f *fixture) session(u *parley.User) (*parley.Device, *parley.RefreshToken) {
	f.tb.Helper()
	d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: parley.PlatformCLI, Name: "laptop",
		CreatedAt: f.now, LastSeenAt: f.now, SessionID: parley.NewID()}
	tok := &parley.RefreshToken{Hash: d.ID + "-1", UserID: u.ID, DeviceID: d.ID, SessionID: d.SessionID,
		CreatedAt: f.now, ExpiresAt: f.now.Add(24 * time.Hour)}
	if err := f.s.CreateSession(f.ctx, d, tok, 0); err != nil {
		f.tb.Fatalf("CreateSession: %v", err)
	}
	return d, tok
}

// nextToken returns a token to rotate to, valid for a day after f.now.
func (f *fixture) nextToken(hash string) *parley.RefreshToken {
	return &parley.RefreshToken{Hash: hash, CreatedAt: f.now, ExpiresAt: f.now.Add(24 * time.Hour)}
}

func testSessions(t *testing.T, f *fixture) {
	u := f.user()
	d1, _ := f.session(u)
	f.now = f.now.Add(time.Second)
	d2, _ := f.session(u)
	got, err := f.s.Device(f.ctx, d1.ID)
	if err != nil {
		t.Fatalf("Device: %v", err)
	}
	if got.ID != d1.ID || got.UserID != u.ID || got.Platform != d1.Platform || got.Name != d1.Name ||
		got.SessionID != d1.SessionID || !sameTime(got.CreatedAt, d1.CreatedAt) || !sameTime(got.LastSeenAt, d1.LastSeenAt) {
		t.Fatalf("Device:\n got %+v\nwant %+v", *got, *d1)
	}
	list, err := f.s.Devices(f.ctx, u.ID)
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	if len(list) != 2 || list[0].ID != d1.ID || list[1].ID != d2.ID {
		t.Fatalf("Devices = %+v, want %s then %s", list, d1.ID, d2.ID)
	}
	if list, err := f.s.Devices(f.ctx, parley.NewID()); err != nil || len(list) != 0 {
		t.Fatalf("Devices(unknown user) = %v, %v; want none", list, err)
	}
	_, err = f.s.Device(f.ctx, parley.NewID())
	wantCode(t, err, parley.CodeNotFound, "Device(unknown)")
}

func testRefreshRotation(t *testing.T, f *fixture) {
	u := f.user()
	d, tok := f.session(u)
	f.now = f.now.Add(time.Minute)
	next := f.nextToken(d.ID + "-2")
	got, err := f.s.RotateRefreshToken(f.ctx, tok.Hash, next, f.now)
	if err != nil {
		t.Fatalf("RotateRefreshToken: %v", err)
	}
	if got.ID != d.ID || got.UserID != u.ID || got.SessionID != d.SessionID {
		t.Fatalf("RotateRefreshToken returned device %+v, want %+v", *got, *d)
	}
	if next.UserID != u.ID || next.DeviceID != d.ID || next.SessionID != d.SessionID {
		t.Fatalf("next token not filled from the old one: %+v", *next)
	}
	stored, err := f.s.Device(f.ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !sameTime(stored.LastSeenAt, f.now) {
		t.Fatalf("LastSeenAt = %v, want %v", stored.LastSeenAt, f.now)
	}
	// The chain goes on.
	f.now = f.now.Add(time.Minute)
	if _, err := f.s.RotateRefreshToken(f.ctx, next.Hash, f.nextToken(d.ID+"-3"), f.now); err != nil {
		t.Fatalf("second rotation: %v", err)
	}
}

func testRefreshReuse(t *testing.T, f *fixture) {
	u := f.user()
	d, tok := f.session(u)
	other, otherTok := f.session(u) // another login of the same user
	if _, err := f.s.RotateRefreshToken(f.ctx, tok.Hash, f.nextToken(d.ID+"-2"), f.now); err != nil {
		t.Fatalf("RotateRefreshToken: %v", err)
	}
	// A thief presents the used token.
	_, err := f.s.RotateRefreshToken(f.ctx, tok.Hash, f.nextToken(d.ID+"-thief"), f.now)
	wantCode(t, err, parley.CodeUnauthorized, "reuse")
	if !errors.Is(err, parley.ErrRefreshReuse) {
		t.Fatalf("reuse error %v does not wrap ErrRefreshReuse", err)
	}
	var reuse *parley.RefreshReuseError
	if !errors.As(err, &reuse) || reuse.UserID != u.ID || reuse.DeviceID != d.ID {
		t.Fatalf("reuse error %#v does not name the revoked device (user %s, device %s)", err, u.ID, d.ID)
	}
	// The whole family is gone: the device and the latest token.
	_, err = f.s.Device(f.ctx, d.ID)
	wantCode(t, err, parley.CodeNotFound, "Device(revoked)")
	_, err = f.s.RotateRefreshToken(f.ctx, d.ID+"-2", f.nextToken(d.ID+"-3"), f.now)
	wantCode(t, err, parley.CodeUnauthorized, "rotate the revoked family's latest token")
	if errors.Is(err, parley.ErrRefreshReuse) {
		t.Fatal("a revoked family's token reported as reuse; want unknown")
	}
	// Other sessions are untouched.
	if _, err := f.s.RotateRefreshToken(f.ctx, otherTok.Hash, f.nextToken(other.ID+"-2"), f.now); err != nil {
		t.Fatalf("other session: %v", err)
	}
}

func testRefreshExpiredAndUnknown(t *testing.T, f *fixture) {
	u := f.user()
	d, tok := f.session(u)
	_, err := f.s.RotateRefreshToken(f.ctx, "no-such-token", f.nextToken("x"), f.now)
	wantCode(t, err, parley.CodeUnauthorized, "unknown token")
	_, err = f.s.RotateRefreshToken(f.ctx, tok.Hash, f.nextToken(d.ID+"-2"), tok.ExpiresAt)
	wantCode(t, err, parley.CodeUnauthorized, "expired token")
	if errors.Is(err, parley.ErrRefreshReuse) {
		t.Fatal("expired token reported as reuse")
	}
	// Refusing an expired token revokes nothing.
	if _, err := f.s.Device(f.ctx, d.ID); err != nil {
		t.Fatalf("Device after expired refresh: %v", err)
	}
}

func testDeleteDevice(t *testing.T, f *fixture) {
	u, v := f.user(), f.user()
	d, tok := f.session(u)
	wantCode(t, f.s.DeleteDevice(f.ctx, v.ID, d.ID), parley.CodeNotFound, "DeleteDevice(another user's device)")
	wantCode(t, f.s.DeleteDevice(f.ctx, u.ID, parley.NewID()), parley.CodeNotFound, "DeleteDevice(unknown)")
	if err := f.s.DeleteDevice(f.ctx, u.ID, d.ID); err != nil {
		t.Fatalf("DeleteDevice: %v", err)
	}
	_, err := f.s.Device(f.ctx, d.ID)
	wantCode(t, err, parley.CodeNotFound, "Device(deleted)")
	_, err = f.s.RotateRefreshToken(f.ctx, tok.Hash, f.nextToken(d.ID+"-2"), f.now)
	wantCode(t, err, parley.CodeUnauthorized, "token of a deleted device")
	wantCode(t, f.s.DeleteDevice(f.ctx, u.ID, d.ID), parley.CodeNotFound, "DeleteDevice(again)")
}

func testDeleteDevices(t *testing.T, f *fixture) {
	u, v := f.user(), f.user()
	_, tok1 := f.session(u)
	_, tok2 := f.session(u)
	kept, _ := f.session(v)
	n, err := f.s.DeleteDevices(f.ctx, u.ID)
	if err != nil || n != 2 {
		t.Fatalf("DeleteDevices = %d, %v; want 2", n, err)
	}
	for _, tok := range []*parley.RefreshToken{tok1, tok2} {
		_, err := f.s.RotateRefreshToken(f.ctx, tok.Hash, f.nextToken(tok.Hash+"-next"), f.now)
		wantCode(t, err, parley.CodeUnauthorized, "token of a deleted device")
	}
	if list, _ := f.s.Devices(f.ctx, u.ID); len(list) != 0 {
		t.Fatalf("Devices after DeleteDevices = %v", list)
	}
	if _, err := f.s.Device(f.ctx, kept.ID); err != nil {
		t.Fatalf("another user's device: %v", err)
	}
	if n, err := f.s.DeleteDevices(f.ctx, u.ID); err != nil || n != 0 {
		t.Fatalf("DeleteDevices(again) = %d, %v; want 0", n, err)
	}
}
