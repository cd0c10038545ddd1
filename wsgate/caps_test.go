package wsgate

import (
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

func connectDevice(h *hub, userID, deviceID string) *recorder {
	r := &recorder{}
	s := newSession(h.g, &parley.Principal{UserID: userID, DeviceID: deviceID, ExpiresAt: time.Now().Add(time.Hour)})
	s.setConn(r)
	h.g.sessions.Add(1)
	h.begin(s)
	h.finish(s, map[string]int64{})
	return r
}

func (r *recorder) closeCode() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *recorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, f := range r.frames {
		b.Write(f)
	}
	return b.String()
}

// TestConnectionCaps: one device past its cap replaces its oldest
// connection (4004); a user past the cap is refused (error frame
// limit_exceeded, then 4008), except by a device at its own cap, which
// replaces instead.
func TestConnectionCaps(t *testing.T) {
	h := newTestHub(t, &fakeCore{})
	h.g.cfg.MaxConnsPerDevice, h.g.cfg.MaxConnsPerUser = 2, 3
	a1, a2, a3 := connectDevice(h, "u", "A"), connectDevice(h, "u", "A"), connectDevice(h, "u", "A")
	if a1.closeCode() != CloseReplaced || a2.closeCode() != 0 || a3.closeCode() != 0 {
		t.Fatalf("third connection of a device with cap 2: close codes %d %d %d, want the oldest replaced", a1.closeCode(), a2.closeCode(), a3.closeCode())
	}
	b := connectDevice(h, "u", "B")
	if b.closeCode() != 0 || h.g.Sessions() != 3 {
		t.Fatalf("B: closed %d, %d sessions", b.closeCode(), h.g.Sessions())
	}
	if !h.admit(&parley.Principal{UserID: "u", DeviceID: "C"}) || h.admit(&parley.Principal{UserID: "u", DeviceID: "A"}) {
		t.Fatal("admit: want C refused at the handshake and A let through (it replaces)")
	}
	c := connectDevice(h, "u", "C")
	if c.closeCode() != CloseTooManyConnections || !strings.Contains(c.text(), `"code":"limit_exceeded"`) || strings.Contains(c.text(), `"ready"`) {
		t.Fatalf("C over the user cap: close %d, frames %s", c.closeCode(), c.text())
	}
	a4 := connectDevice(h, "u", "A")
	if a2.closeCode() != CloseReplaced || a3.closeCode() != 0 || a4.closeCode() != 0 || b.closeCode() != 0 {
		t.Fatalf("A at the user cap: close codes a2 %d a3 %d a4 %d b %d, want a2 replaced", a2.closeCode(), a3.closeCode(), a4.closeCode(), b.closeCode())
	}
	if n := h.g.Sessions(); n != 3 {
		t.Fatalf("%d sessions, want 3", n)
	}
	// Another user is not affected.
	if o := connectDevice(h, "other", "X"); o.closeCode() != 0 {
		t.Fatalf("another user refused: %d", o.closeCode())
	}
}

// TestRateLimitedCarriesRetryAfter: the per-connection limiter answers
// rate_limited with retry_after, as the per-user one (and REST's
// Retry-After) does; other errors carry none.
func TestRateLimitedCarriesRetryAfter(t *testing.T) {
	h := newTestHub(t, &fakeCore{})
	h.g.cfg.SendRate, h.g.cfg.SendBurst = 0.001, 1
	s := newSession(h.g, &parley.Principal{UserID: "u", DeviceID: "d", ExpiresAt: time.Now().Add(time.Hour)})
	f := ClientFrame{Type: FrameSend, ID: "1"}
	if d := s.allow(&f); d != 0 {
		t.Fatalf("first send refused (%v)", d)
	}
	d := s.allow(&f)
	if d <= 0 {
		t.Fatal("second send within a burst of 1 allowed")
	}
	frame := ErrorFrameFor("2", &service.RetryError{RetryAfter: d, Err: parley.Errorf(parley.CodeRateLimited, "slow down")})
	data, _ := Encode(frame)
	if frame.Error.RetryAfter < 1 || !strings.Contains(string(data), `"retry_after":`) {
		t.Fatalf("rate_limited frame %s", data)
	}
	if data, _ := Encode(ErrorFrameFor("3", parley.Errorf(parley.CodeInvalidRequest, "bad"))); strings.Contains(string(data), "retry_after") {
		t.Fatalf("an invalid_request frame carries retry_after: %s", data)
	}
}

// TestAdmitSharesStrings: a device's next connection keeps the strings
// the hub already holds (the user entry's id, the first session's device
// and session ids), not the copies decoded from its token, and a role
// read from the store becomes the constant.
func TestAdmitSharesStrings(t *testing.T) {
	h := newTestHub(t, &fakeCore{})
	s := newSession(h.g, &parley.Principal{UserID: "user-1", DeviceID: "device-1", SessionID: "session-1", ExpiresAt: time.Now().Add(time.Hour)})
	s.setConn(&recorder{})
	h.g.sessions.Add(1)
	h.begin(s)
	h.finish(s, map[string]int64{})

	fresh := func(v string) string { return string([]byte(v)) } // equal, not the same bytes
	p := &parley.Principal{UserID: fresh("user-1"), DeviceID: fresh("device-1"), SessionID: fresh("session-1"), Role: parley.SystemRole(fresh("user"))}
	if h.admit(p) {
		t.Fatal("admit refused a second connection")
	}
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	if !same(p.UserID, s.p.UserID) || !same(p.DeviceID, s.p.DeviceID) || !same(p.SessionID, s.p.SessionID) || !same(string(p.Role), string(parley.SystemRoleUser)) {
		t.Fatal("admit kept the token's copies of the strings")
	}
	// Another session of the device (a new login) shares the device id only.
	q := &parley.Principal{UserID: fresh("user-1"), DeviceID: fresh("device-1"), SessionID: fresh("session-2")}
	h.admit(q)
	if !same(q.DeviceID, s.p.DeviceID) || q.SessionID != "session-2" {
		t.Fatalf("new session of the device: device shared %v, session %q", same(q.DeviceID, s.p.DeviceID), q.SessionID)
	}
	// Another user's strings are left alone.
	o := &parley.Principal{UserID: fresh("user-2"), DeviceID: fresh("device-1")}
	h.admit(o)
	if same(o.DeviceID, s.p.DeviceID) || o.UserID != "user-2" {
		t.Fatal("admit shared strings across users")
	}
}

// TestSessionOfWaits: the shared upgrader's handlers find the session set
// after the upgrade returned, waiting for it if a frame came first, and
// give up (nil) when it never comes.
func TestSessionOfWaits(t *testing.T) {
	h := newTestHub(t, &fakeCore{})
	g := h.g
	u := websocket.NewUpgrader()
	c := websocket.NewServerConn(u, &frameSink{}, "", false, false)
	if s := g.sessionOf(c, 20*time.Millisecond); s != nil {
		t.Fatal("a session before one was set")
	}
	want := newSession(g, &parley.Principal{UserID: "u", DeviceID: "d"})
	go func() {
		time.Sleep(30 * time.Millisecond)
		c.SetSession(want)
	}()
	if s := g.sessionOf(c, 5*time.Second); s != want {
		t.Fatalf("sessionOf = %p, want %p", s, want)
	}
	if s := g.sessionOf(c, 0); s != want {
		t.Fatal("sessionOf without waiting missed a set session")
	}
}
