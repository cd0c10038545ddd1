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

// testDeviceCapCountsLiveSessions: only devices with a refresh token
// unexpired at the login's time count against the cap, so sessions that
// ran out (reinstalled apps, scripted logins) cannot lock the user out
// before the purge has run; a device whose token was rotated counts by
// its newest token.
func testDeviceCapCountsLiveSessions(t *testing.T, f *fixture) {
	const maxDevices = 2
	u := f.user()
	login := func(at time.Time, ttl time.Duration) (*parley.Device, *parley.RefreshToken, error) {
		d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: parley.PlatformCLI, Name: "x",
			CreatedAt: at, LastSeenAt: at, SessionID: parley.NewID()}
		tok := &parley.RefreshToken{Hash: d.ID + "-1", CreatedAt: at, ExpiresAt: at.Add(ttl)}
		return d, tok, f.s.CreateSession(f.ctx, d, tok, maxDevices)
	}
	kept, keptTok, err := login(f.now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := login(f.now, time.Hour); err != nil {
		t.Fatal(err)
	}
	_, _, err = login(f.now.Add(30*time.Minute), time.Hour)
	wantCode(t, err, parley.CodeLimitExceeded, "login past the cap while both sessions live")
	// kept refreshes: its used token expires with the other session, its
	// new one lives on.
	next := &parley.RefreshToken{Hash: kept.ID + "-2", CreatedAt: f.now.Add(30 * time.Minute), ExpiresAt: f.now.Add(3 * time.Hour)}
	if _, err := f.s.RotateRefreshToken(f.ctx, keptTok.Hash, next, f.now.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// An hour later the second session has expired, unpurged: it no
	// longer counts, kept does.
	later := f.now.Add(2 * time.Hour)
	if _, _, err := login(later, time.Hour); err != nil {
		t.Fatalf("login after a session expired: %v", err)
	}
	_, _, err = login(later, time.Hour)
	wantCode(t, err, parley.CodeLimitExceeded, "login past the cap with two live sessions and one expired")
	// Once every session has expired, a login succeeds however many dead
	// devices there are.
	for i := range 3 {
		if _, _, err := login(f.now.Add(time.Duration(24+i)*time.Hour), time.Minute); err != nil {
			t.Fatalf("login after every session expired: %v", err)
		}
	}
}

// testPurgeDeadDevices: PurgeExpired deletes the devices it leaves with no
// refresh token (their sessions have ended for good), with their push
// registrations and delivery cursors; devices with a live token stay.
func testPurgeDeadDevices(t *testing.T, f *fixture) {
	u, other := f.user(), f.user()
	g := f.group(u, other)
	f.send(g, other, "hi")
	session := func(ttl time.Duration) *parley.Device {
		d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: parley.PlatformCLI, Name: "x",
			CreatedAt: f.now, LastSeenAt: f.now, SessionID: parley.NewID()}
		tok := &parley.RefreshToken{Hash: d.ID + "-1", CreatedAt: f.now, ExpiresAt: f.now.Add(ttl)}
		if err := f.s.CreateSession(f.ctx, d, tok, 0); err != nil {
			t.Fatal(err)
		}
		f.register(u, d)
		if _, _, err := f.s.MarkDelivered(f.ctx, g.ID, u.ID, d.ID, 1); err != nil {
			t.Fatal(err)
		}
		return d
	}
	dead, live := session(time.Hour), session(3*time.Hour)
	rotated := session(time.Hour)
	next := &parley.RefreshToken{Hash: rotated.ID + "-2", CreatedAt: f.now, ExpiresAt: f.now.Add(3 * time.Hour)}
	if _, err := f.s.RotateRefreshToken(f.ctx, rotated.ID+"-1", next, f.now); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.PurgeExpired(f.ctx, f.now.Add(2*time.Hour), 100); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.Device(f.ctx, dead.ID)
	wantCode(t, err, parley.CodeNotFound, "Device(dead device after the purge)")
	_, err = f.s.Push(f.ctx, dead.ID)
	wantCode(t, err, parley.CodeNotFound, "Push(dead device after the purge)")
	for _, d := range []*parley.Device{live, rotated} {
		if _, err := f.s.Device(f.ctx, d.ID); err != nil {
			t.Fatalf("Device(live device after the purge): %v", err)
		}
		if _, err := f.s.Push(f.ctx, d.ID); err != nil {
			t.Fatalf("Push(live device after the purge): %v", err)
		}
	}
	devices, err := f.s.Devices(f.ctx, u.ID)
	if err != nil || len(devices) != 2 {
		t.Fatalf("Devices after the purge = %d, %v; want 2", len(devices), err)
	}
	targets, err := f.s.PushTargets(f.ctx, g.ID, other.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.DeviceID == dead.ID {
			t.Fatalf("the purged device is still a push target: %+v", tg)
		}
	}
	if len(targets) != 2 {
		t.Fatalf("push targets after the purge: %+v, want the 2 live devices", targets)
	}
}
