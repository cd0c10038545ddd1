package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// testDeviceCap: CreateSession with maxDevices refuses the device past
// the cap with CodeLimitExceeded and stores nothing of it, even when
// logins race; the cap is per user; a removed device frees its place.
func testDeviceCap(t *testing.T, f *fixture) { deviceCap(t, []*fixture{f}) }

// deviceCap is testDeviceCap with the racing logins spread over the
// stores of fs (nodes sharing one database).
func deviceCap(t *testing.T, fs []*fixture) {
	f := fs[0]
	const maxDevices, logins = 3, 12
	u, other := f.user(), f.user()
	newSession := func(userID string) (*parley.Device, *parley.RefreshToken) {
		d := &parley.Device{ID: parley.NewID(), UserID: userID, Platform: parley.PlatformCLI, Name: "x",
			CreatedAt: f.now, LastSeenAt: f.now, SessionID: parley.NewID()}
		return d, &parley.RefreshToken{Hash: d.ID + "-1", CreatedAt: f.now, ExpiresAt: f.now.Add(time.Hour)}
	}
	var wg sync.WaitGroup
	errs := make([]error, logins)
	toks := make([]*parley.RefreshToken, logins)
	for i := range logins {
		d, tok := newSession(u.ID)
		toks[i] = tok
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fs[i%len(fs)].s.CreateSession(f.ctx, d, tok, maxDevices)
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch parley.ErrorCode(err) {
		case "":
			ok++
		case parley.CodeLimitExceeded:
			// Nothing of a refused login stays: its token is unknown.
			_, rerr := f.s.RotateRefreshToken(f.ctx, toks[i].Hash, f.nextToken(parley.NewID()), f.now)
			wantCode(t, rerr, parley.CodeUnauthorized, "refresh token of a refused login")
		default:
			t.Fatalf("concurrent login %d: %v", i, err)
		}
	}
	devices, err := f.s.Devices(f.ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ok != maxDevices || len(devices) != maxDevices {
		t.Fatalf("%d concurrent logins with a cap of %d: %d succeeded, %d devices stored", logins, maxDevices, ok, len(devices))
	}
	d, tok := newSession(other.ID)
	if err := f.s.CreateSession(f.ctx, d, tok, maxDevices); err != nil {
		t.Fatalf("another user's login: %v", err)
	}
	d, tok = newSession(u.ID)
	wantCode(t, f.s.CreateSession(f.ctx, d, tok, maxDevices), parley.CodeLimitExceeded, "login past the cap")
	if err := f.s.DeleteDevice(f.ctx, u.ID, devices[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := f.s.CreateSession(f.ctx, d, tok, maxDevices); err != nil {
		t.Fatalf("login after a device was removed: %v", err)
	}
	d, tok = newSession(u.ID)
	if err := f.s.CreateSession(f.ctx, d, tok, 0); err != nil {
		t.Fatalf("maxDevices 0 (no cap): %v", err)
	}
}
