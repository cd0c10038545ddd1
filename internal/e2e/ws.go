package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/wstest"
)

// UntilFrame reads frames until one of type typ and returns it, failing if
// a frame of a type in forbidden comes first. Events of one conversation
// reach a session in the order they were published, so a frame the test
// causes after an action is a barrier: what the action would have sent
// comes before it.
func UntilFrame(t testing.TB, c *wstest.Conn, typ string, forbidden ...string) wstest.Frame {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := c.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for a %s frame: %v", typ, err)
		}
		for _, bad := range forbidden {
			if f.Type == bad {
				t.Fatalf("got %s before the %s frame", f.Raw, typ)
			}
		}
		if f.Type == typ {
			return f
		}
	}
}

// MemberOf is userID's entry in a conversation's members.
func MemberOf(t testing.TB, conv map[string]any, userID string) map[string]any {
	t.Helper()
	for _, m := range conv["members"].([]any) {
		if mm := m.(map[string]any); mm["user_id"] == userID {
			return mm
		}
	}
	t.Fatalf("no member %s in %v", userID, conv)
	return nil
}

// Device is one logged-in device of a test user.
type Device struct {
	User, ID, Token, Refresh string
}

// LoginDevice logs handle in on a new "cli" device named name.
func LoginDevice(t testing.TB, base, handle, name string) Device {
	t.Helper()
	s := MustAPI(t, 200, "POST", base+"/v1/sessions", "", map[string]any{"handle": handle, "password": "correct horse battery", "device": map[string]any{"platform": "cli", "name": name}})
	return Device{User: s["user_id"].(string), ID: s["device_id"].(string), Token: s["access_token"].(string), Refresh: s["refresh_token"].(string)}
}

// WSURL is the WebSocket endpoint of the server at base.
func WSURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/v1/ws" }

// Connect dials and waits for the ready frame.
func Connect(t testing.TB, base string, d Device) *wstest.Conn {
	t.Helper()
	c := wstest.MustDial(t, WSURL(base), d.Token)
	var ready struct {
		UserID   string `json:"user_id"`
		DeviceID string `json:"device_id"`
	}
	if err := c.Expect("ready").Decode(&ready); err != nil || ready.UserID != d.User || ready.DeviceID != d.ID {
		t.Fatalf("ready frame %+v, %v; want user %s device %s", ready, err, d.User, d.ID)
	}
	return c
}

// MsgFrame is a message frame.
type MsgFrame struct {
	Message parley.Message `json:"message"`
}

// ReceiptFrame is a receipt frame.
type ReceiptFrame struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	DeviceID       string `json:"device_id"`
	Kind           string `json:"kind"`
	Seq            int64  `json:"seq"`
}

// ExpectMessage waits for the next message frame, skipping frames of the
// types in skip and presence, typing, receipt and conversation frames.
func ExpectMessage(t testing.TB, c *wstest.Conn, skip ...string) parley.Message {
	t.Helper()
	var m MsgFrame
	if err := c.Expect("message", append(skip, "presence", "typing", "receipt", "conversation")...).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m.Message
}

// ExpectReceipt waits for a receipt of kind from user.
func ExpectReceipt(t testing.TB, c *wstest.Conn, kind, user string) ReceiptFrame {
	t.Helper()
	for {
		var r ReceiptFrame
		if err := c.Expect("receipt", "message", "presence", "typing", "ack", "conversation").Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.Kind == kind && r.UserID == user {
			return r
		}
	}
}

// StartRealtime runs parleyd on a new data directory without limits and
// with a presence grace of 300 ms.
func StartRealtime(t *testing.T, args ...string) *Proc {
	t.Helper()
	return StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off"}, append([]string{"--presence-grace", "300ms"}, args...)...)
}

// SyncResult is a decoded sync_result frame.
type SyncResult struct {
	ID            string `json:"id"`
	Position      string `json:"position"`
	HasMore       bool   `json:"has_more"`
	Conversations []struct {
		Conversation parley.Conversation `json:"conversation"`
		Removed      bool                `json:"removed"`
		ReadSeq      int64               `json:"read_seq"`
		UnreadCount  int64               `json:"unread_count"`
		Messages     []parley.Message    `json:"messages"`
		MoreMessages bool                `json:"more_messages"`
	} `json:"conversations"`
}

// DoSync sends a sync frame from position and waits for its result.
func DoSync(t testing.TB, c *wstest.Conn, position string, limit int) SyncResult {
	t.Helper()
	req := map[string]any{"type": "sync", "id": "sync", "position": position}
	if limit > 0 {
		req["limit"] = limit
	}
	c.MustWrite(req)
	var res SyncResult
	if err := c.Expect("sync_result", "*").Decode(&res); err != nil {
		t.Fatal(err)
	}
	return res
}

// GetText is the body of a GET of url.
func GetText(t testing.TB, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// GrepLines is the lines of text that contain sub.
func GrepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
