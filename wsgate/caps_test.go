package wsgate

import (
	"strings"
	"testing"
	"time"

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
	if !h.userFull(&parley.Principal{UserID: "u", DeviceID: "C"}) || h.userFull(&parley.Principal{UserID: "u", DeviceID: "A"}) {
		t.Fatal("userFull: want C refused at the handshake and A let through (it replaces)")
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
