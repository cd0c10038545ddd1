package push

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"  ", 0}, {"2", 2 * time.Second}, {"0", 0}, {"-5", 0}, {"soon", 0},
		{"999999999", 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(c.in, now); got != c.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestClassifyStatus(t *testing.T) {
	for status, want := range map[int]Outcome{
		200: Accepted, 201: Accepted, 404: Unregistered, 410: Unregistered, 429: Retry, 500: Retry, 503: Retry,
		401: Retry, 403: Retry, 400: Rejected, 413: Rejected,
	} {
		if got := classifyStatus(status); got != want {
			t.Errorf("classifyStatus(%d) = %v, want %v", status, got, want)
		}
	}
}

// TestBackoff: exponential from the base, jittered between half and all
// of the step, capped, and never below Retry-After.
func TestBackoff(t *testing.T) {
	w := &Worker{cfg: WorkerConfig{RetryBase: time.Second, RetryMax: time.Minute}}
	for attempt := range 12 {
		step := min(time.Second<<attempt, time.Minute)
		for range 50 {
			d := w.backoff(attempt, 0)
			if d < step/2 || d > step {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, step/2, step)
			}
		}
	}
	if d := w.backoff(0, 30*time.Second); d != 30*time.Second {
		t.Fatalf("Retry-After 30s gave %v", d)
	}
}

func testNotification(kind string) *Notification {
	return &Notification{Kind: kind, ConversationID: "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b", Seq: 7, Count: 3, Badge: 5,
		SenderID: "01936f4e-7b19-7a2c-8e0f-1b3c4d5e6f70", SenderName: "Alice", TraceID: "t", Expires: time.Now().Add(time.Hour)}
}

// TestAPNsPayload: a message is an alert collapsed per conversation with
// the badge; a read update is a silent background push.
func TestAPNsPayload(t *testing.T) {
	reg := &parley.PushRegistration{Provider: parley.PushAPNs, Token: "abc", Topic: "com.example.app", Environment: "production"}
	n := apnsNotification(reg, testNotification(KindMessage))
	var p map[string]map[string]any
	if err := json.Unmarshal(n.Payload.([]byte), &p); err != nil {
		t.Fatal(err)
	}
	if n.PushType != "alert" || n.Priority != 10 || n.CollapseID != testNotification("").ConversationID || n.Topic != "com.example.app" ||
		p["aps"]["badge"] != float64(5) || p["aps"]["mutable-content"] != float64(1) || p["parley"]["count"] != "3" || p["parley"]["seq"] != "7" {
		t.Fatalf("message: %+v %s", n, n.Payload)
	}
	if alert := p["aps"]["alert"].(map[string]any); alert["title"] != "Alice" || alert["body"] != "3 new messages" {
		t.Fatalf("alert: %v", alert)
	}
	n = apnsNotification(reg, testNotification(KindRead))
	p = nil
	_ = json.Unmarshal(n.Payload.([]byte), &p)
	if n.PushType != "background" || n.Priority != 5 || n.CollapseID != "" || p["aps"]["content-available"] != float64(1) || p["aps"]["alert"] != nil ||
		p["parley"]["type"] != "read" {
		t.Fatalf("read: %+v %s", n, n.Payload)
	}
	// A preview replaces the generic text; without one, no content.
	withPreview := testNotification(KindMessage)
	withPreview.Preview = "see you at 8"
	n = apnsNotification(reg, withPreview)
	if !strings.Contains(string(n.Payload.([]byte)), "see you at 8") {
		t.Fatalf("preview missing: %s", n.Payload)
	}
}

// TestFCMMessage: data-only for Android with the collapse key; the apns
// block mirrors what APNs gets.
func TestFCMMessage(t *testing.T) {
	reg := &parley.PushRegistration{Provider: parley.PushFCM, Token: "tok"}
	// The body as sent: no notification block, the names of FCM's reference.
	body := func(m *fcmMessageJSON) map[string]any {
		b, err := json.Marshal(fcmSendRequest{Message: m})
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Message map[string]any }
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out.Message
	}
	m := fcmMessage(reg, testNotification(KindMessage))
	aps := m.APNs.Payload.APS
	if m.Token != "tok" || m.Android.CollapseKey != testNotification("").ConversationID || m.Android.Priority != "high" ||
		m.Data["badge"] != "5" || m.APNs.Headers["apns-push-type"] != "alert" || *aps.Badge != 5 || aps.ThreadID != testNotification("").ConversationID {
		t.Fatalf("message: %+v", m)
	}
	if ttl, err := time.ParseDuration(m.Android.TTL); err != nil || ttl <= 0 || ttl > time.Hour {
		t.Fatalf("ttl %q: %v", m.Android.TTL, err)
	}
	if b := body(m); b["notification"] != nil || b["android"].(map[string]any)["collapse_key"] != testNotification("").ConversationID {
		t.Fatalf("body: %v", b)
	}
	m = fcmMessage(reg, testNotification(KindRead))
	aps = m.APNs.Payload.APS
	if m.Android.Priority != "normal" || m.APNs.Headers["apns-push-type"] != "background" || aps.ContentAvailable != 1 || aps.Alert != nil || *aps.Badge != 5 {
		t.Fatalf("read: %+v", m)
	}
	// A badge of 0 is sent (it clears the icon), not left out.
	n := testNotification(KindRead)
	n.Badge = 0
	if p := body(fcmMessage(reg, n))["apns"].(map[string]any)["payload"].(map[string]any)["aps"].(map[string]any); p["badge"] != float64(0) {
		t.Fatalf("badge 0: %v", p)
	}
}

func TestWebPushTopic(t *testing.T) {
	if got := webPushTopic("01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b"); got != "01936f4e8c2a7b3d9f102c4d5e6f7a8b" {
		t.Fatalf("topic %q", got)
	}
}

// FuzzDecodeJob: a job from the queue decodes or is refused as
// undecodable (dropped, never retried); never a panic.
func FuzzDecodeJob(f *testing.F) {
	for _, s := range []string{`{"conversation_id":"c","seq":1}`, `{"kind":"message","device_id":"d","conversation_id":"c"}`,
		`{"user_id":"u","conversation_id":"c"}`, `{}`, `[]`, `nul`, `{"seq":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range []any{&MessageJob{}, &ReadJob{}, &DeviceJob{}} {
			if err := decodeJob(data, v); err != nil {
				if _, ok := err.(*decodeError); !ok {
					t.Fatalf("%q: %T %v", data, err, err)
				}
			}
		}
	})
}

func TestValidNamespace(t *testing.T) {
	for ns, want := range map[string]bool{"main": true, "eu-1": true, "a_b": true, "": false, "a.b": false, "a>": false, "a b": false,
		strings.Repeat("x", 32): true, strings.Repeat("x", 33): false} {
		if validNamespace(ns) != want {
			t.Errorf("validNamespace(%q) != %v", ns, want)
		}
	}
}

// TestMessageRequestNotification: a notification of a message request
// says so, in the alert and the data, with no preview.
func TestMessageRequestNotification(t *testing.T) {
	n := &Notification{Kind: KindMessage, ConversationID: "c", Seq: 3, Count: 3, Request: true}
	if got := n.alertText(); got != "Message request" {
		t.Fatalf("alert %q, want Message request", got)
	}
	if d := n.Data(); d["request"] != "true" {
		t.Fatalf("data %v, want request=true", d)
	}
	n.Request = false
	if got := n.alertText(); got != "3 new messages" {
		t.Fatalf("alert %q", got)
	}
	if _, ok := n.Data()["request"]; ok {
		t.Fatal("request in the data of an ordinary notification")
	}
}

// TestNotificationCarriesMessageTypeOnly: a message notification says the
// message's type and nothing of its attachments (no URL, no filename, no
// media id).
func TestNotificationCarriesMessageTypeOnly(t *testing.T) {
	n := &Notification{Kind: KindMessage, ConversationID: "c", Seq: 1, Count: 1, MessageType: "image"}
	d := n.Data()
	if d["message_type"] != "image" {
		t.Fatalf("data %v, want message_type image", d)
	}
	for k, v := range d {
		if strings.Contains(k, "url") || strings.Contains(k, "media") || strings.Contains(k, "filename") || strings.Contains(v, "/m/") {
			t.Fatalf("data %v carries %s", d, k)
		}
	}
	if _, ok := (&Notification{Kind: KindRead, MessageType: "image"}).Data()["message_type"]; ok {
		t.Fatal("a read update carries a message type")
	}
}
