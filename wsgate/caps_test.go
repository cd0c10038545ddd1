package wsgate

import (
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
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
