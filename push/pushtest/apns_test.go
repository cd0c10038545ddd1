package pushtest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/parleychat/parley/push/pushtest"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
)

// newAPNsClient builds an apns2 client as production code does, from the
// fake's .p8 file, pointed at the fake. apns2.NewTokenClient makes its own
// x/net *http2.Transport (DialTLS = apns2.DialTLS, no TLSClientConfig, so
// the system roots, and ReadIdleTimeout = apns2.ReadIdleTimeout); the test
// swaps in the standard library's equivalent trusting the fake: HTTP/2
// only, pinging an idle connection alike. (x/net v0.62.0 deprecates
// http2.Transport in favour of this.)
func newAPNsClient(t *testing.T, fake *pushtest.APNs) *apns2.Client {
	t.Helper()
	key, err := token.AuthKeyFromFile(fake.KeyFile())
	if err != nil {
		t.Fatalf("AuthKeyFromFile: %v", err)
	}
	client := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: fake.KeyID(), TeamID: fake.TeamID()})
	client.Host = fake.URL()
	tr := fake.Transport()
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: apns2.ReadIdleTimeout}
	client.HTTPClient.Transport = tr
	t.Cleanup(client.CloseIdleConnections)
	return client
}

func push(t *testing.T, client *apns2.Client, n *apns2.Notification) *apns2.Response {
	t.Helper()
	resp, err := client.Push(n)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	return resp
}

func TestAPNsAcceptsApns2(t *testing.T) {
	fake := pushtest.NewAPNs(t)
	client := newAPNsClient(t, fake)
	device := fake.NewToken()

	resp := push(t, client, &apns2.Notification{
		DeviceToken: device,
		Topic:       "chat.parley.app",
		CollapseID:  "conv-1",
		Priority:    apns2.PriorityHigh,
		Expiration:  time.Now().Add(time.Hour),
		Payload:     []byte(`{"aps":{"alert":{"title":"Ann","body":"hi"},"mutable-content":1},"conversation":"conv-1"}`),
	})
	if resp.StatusCode != http.StatusOK || !resp.Sent() || resp.ApnsID == "" {
		t.Fatalf("response %+v, want 200 with an apns-id", resp)
	}
	firstID := resp.ApnsID
	const id = "123e4567-e89b-12d3-a456-426655440000"
	resp = push(t, client, &apns2.Notification{
		DeviceToken: device, Topic: "chat.parley.app", ApnsID: id,
		PushType: apns2.PushTypeBackground, Priority: apns2.PriorityLow,
		Payload: map[string]any{"aps": map[string]any{"content-available": 1}},
	})
	if resp.StatusCode != http.StatusOK || resp.ApnsID != id {
		t.Fatalf("response %+v, want 200 echoing apns-id %s", resp, id)
	}

	got := fake.Wait(t, 2, 5*time.Second)
	first := got[0]
	if first.Proto != "HTTP/2.0" || first.Method != http.MethodPost || first.Path != "/3/device/"+device || first.Token != device {
		t.Errorf("request line: %s %s %s token %s", first.Proto, first.Method, first.Path, first.Token)
	}
	if first.Topic != "chat.parley.app" || first.PushType != "alert" || first.Priority != 10 || first.CollapseID != "conv-1" {
		t.Errorf("headers: topic %q push type %q priority %d collapse %q", first.Topic, first.PushType, first.Priority, first.CollapseID)
	}
	if first.Headers["apns-expiration"] == "" || first.Headers["apns-topic"] != "chat.parley.app" {
		t.Errorf("apns-* headers %v", first.Headers)
	}
	if first.Payload["conversation"] != "conv-1" || first.Payload["aps"].(map[string]any)["mutable-content"] != float64(1) {
		t.Errorf("payload %v", first.Payload)
	}
	if first.Status != 200 || first.Reason != "" || first.ApnsID != firstID {
		t.Errorf("recorded answer %d %q %q", first.Status, first.Reason, first.ApnsID)
	}
	if second := got[1]; second.PushType != "background" || second.Priority != 5 || second.ApnsID != id {
		t.Errorf("second: push type %q priority %d apns-id %q", second.PushType, second.Priority, second.ApnsID)
	}

	// Requests returns copies.
	got[0].Payload["conversation"] = "changed"
	if fake.Requests()[0].Payload["conversation"] != "conv-1" {
		t.Error("changing a returned request changed the fake's record")
	}
}

func TestAPNsScriptedAnswers(t *testing.T) {
	fake := pushtest.NewAPNs(t)
	client := newAPNsClient(t, fake)
	tests := []struct {
		name       string
		answer     pushtest.Answer
		wantStatus int
		wantReason string
	}{
		{"unregistered", pushtest.Answer{Status: 410}, 410, apns2.ReasonUnregistered},
		{"expired token by reason", pushtest.Answer{Reason: apns2.ReasonExpiredToken}, 410, apns2.ReasonExpiredToken},
		{"too many requests", pushtest.Answer{Status: 429, RetryAfter: 7}, 429, apns2.ReasonTooManyRequests},
		{"internal error", pushtest.Answer{Status: 500}, 500, apns2.ReasonInternalServerError},
		{"unavailable", pushtest.Answer{Reason: apns2.ReasonServiceUnavailable}, 503, apns2.ReasonServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.Reset()
			device := fake.NewToken()
			fake.Fail(device, tt.answer)
			n := &apns2.Notification{DeviceToken: device, Topic: "chat.parley.app", Payload: []byte(`{"aps":{"alert":"hi"}}`)}
			resp := push(t, client, n)
			if resp.StatusCode != tt.wantStatus || resp.Reason != tt.wantReason {
				t.Fatalf("response %d %q, want %d %q", resp.StatusCode, resp.Reason, tt.wantStatus, tt.wantReason)
			}
			if tt.wantStatus == 410 && time.Since(resp.Timestamp.Time) > time.Minute {
				t.Errorf("410 timestamp %v, want about now", resp.Timestamp)
			}
			if resp := push(t, client, n); resp.StatusCode != 200 {
				t.Fatalf("after the script: %d %q, want 200", resp.StatusCode, resp.Reason)
			}
			got := fake.Wait(t, 2, 5*time.Second)
			if got[0].Status != tt.wantStatus || got[0].Reason != tt.wantReason || got[0].Detail != "scripted" || got[1].Status != 200 {
				t.Errorf("records: %+v / %+v", got[0], got[1])
			}
		})
	}
}

// TestAPNsRetryAfter reads the header with a bare HTTP/2 request, since
// apns2.Response carries no headers.
func TestAPNsRetryAfter(t *testing.T) {
	fake := pushtest.NewAPNs(t)
	client := newAPNsClient(t, fake)
	device := fake.NewToken()
	fake.Fail(device, pushtest.Answer{Status: 429, RetryAfter: 7})

	req, _ := http.NewRequest(http.MethodPost, fake.URL()+"/3/device/"+device, strings.NewReader(`{"aps":{}}`))
	req.Header.Set("authorization", "bearer "+client.Token.GenerateIfExpired())
	req.Header.Set("apns-topic", "chat.parley.app")
	resp, err := client.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || resp.Header.Get("apns-id") == "" {
		t.Fatalf("answer %d Retry-After %q apns-id %q, want 429, 7 and an id", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("apns-id"))
	}
}

func TestAPNsRejectsBadRequests(t *testing.T) {
	fake := pushtest.NewAPNs(t)
	client := newAPNsClient(t, fake)
	device := fake.NewToken()
	ok := func() *apns2.Notification {
		return &apns2.Notification{DeviceToken: device, Topic: "chat.parley.app", Payload: []byte(`{"aps":{"alert":"hi"}}`)}
	}
	tests := []struct {
		name       string
		change     func(*apns2.Notification)
		wantStatus int
		wantReason string
	}{
		{"no topic", func(n *apns2.Notification) { n.Topic = "" }, 400, apns2.ReasonMissingTopic},
		{"token not hex", func(n *apns2.Notification) { n.DeviceToken = "not-a-token" }, 400, apns2.ReasonBadDeviceToken},
		{"bad priority", func(n *apns2.Notification) { n.Priority = 7 }, 400, apns2.ReasonBadPriority},
		{"bad push type", func(n *apns2.Notification) { n.PushType = "sms" }, 400, apns2.ReasonInvalidPushType},
		{"long collapse id", func(n *apns2.Notification) { n.CollapseID = strings.Repeat("c", 65) }, 400, apns2.ReasonBadCollapseID},
		{"bad apns-id", func(n *apns2.Notification) { n.ApnsID = "42" }, 400, apns2.ReasonBadMessageID},
		{"no aps", func(n *apns2.Notification) { n.Payload = []byte(`{"alert":"hi"}`) }, 400, "BadPayload"},
		{"too large", func(n *apns2.Notification) {
			n.Payload = []byte(`{"aps":{"alert":"` + strings.Repeat("x", 4096) + `"}}`)
		}, 413, apns2.ReasonPayloadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := ok()
			tt.change(n)
			resp := push(t, client, n)
			if resp.StatusCode != tt.wantStatus || resp.Reason != tt.wantReason {
				t.Fatalf("response %d %q, want %d %q", resp.StatusCode, resp.Reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
	// apns2 cannot send an empty body (json.Marshal rejects the empty
	// output of Notification.MarshalJSON), so a bare request does.
	req, _ := http.NewRequest(http.MethodPost, fake.URL()+"/3/device/"+device, nil)
	req.Header.Set("authorization", "bearer "+client.Token.GenerateIfExpired())
	req.Header.Set("apns-topic", "chat.parley.app")
	resp, err := client.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"reason":"PayloadEmpty"`) {
		t.Errorf("empty body answered %d %s, want 400 PayloadEmpty", resp.StatusCode, body)
	}

	// voip payloads may be up to 5120 bytes.
	n := ok()
	n.PushType = apns2.PushTypeVOIP
	n.Payload = []byte(`{"aps":{},"call":"` + strings.Repeat("x", 4500) + `"}`)
	if resp := push(t, client, n); resp.StatusCode != 200 {
		t.Errorf("voip payload of 4.5 kB: %d %q, want 200", resp.StatusCode, resp.Reason)
	}
}

func TestAPNsRejectsBadProviderTokens(t *testing.T) {
	fake := pushtest.NewAPNs(t)
	device := fake.NewToken()
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fakeKey, err := token.AuthKeyFromFile(fake.KeyFile())
	if err != nil {
		t.Fatal(err)
	}
	sign := func(key *ecdsa.PrivateKey, kid, iss string, iat time.Time) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": iss, "iat": iat.Unix()})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name       string
		bearer     string // empty sends no authorization header
		wantReason string
	}{
		{"missing", "", apns2.ReasonMissingProviderToken},
		{"garbage", "not.a.jwt", apns2.ReasonInvalidProviderToken},
		{"wrong key", sign(otherKey, fake.KeyID(), fake.TeamID(), time.Now()), apns2.ReasonInvalidProviderToken},
		{"wrong kid", sign(fakeKey, "ABCDEFGHIJ", fake.TeamID(), time.Now()), apns2.ReasonInvalidProviderToken},
		{"wrong team", sign(fakeKey, fake.KeyID(), "ABCDEFGHIJ", time.Now()), apns2.ReasonInvalidProviderToken},
		{"issued two hours ago", sign(fakeKey, fake.KeyID(), fake.TeamID(), time.Now().Add(-2*time.Hour)), apns2.ReasonExpiredProviderToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := newAPNsClient(t, fake)
			client.Token = nil // no authorization header from apns2
			if tt.bearer != "" {
				// A token apns2 considers fresh, so it sends this bearer as is.
				client.Token = &token.Token{AuthKey: fakeKey, IssuedAt: time.Now().Unix(), Bearer: tt.bearer}
			}
			resp := push(t, client, &apns2.Notification{DeviceToken: device, Topic: "chat.parley.app", Payload: []byte(`{"aps":{}}`)})
			if resp.StatusCode != http.StatusForbidden || resp.Reason != tt.wantReason {
				t.Fatalf("response %d %q, want 403 %q", resp.StatusCode, resp.Reason, tt.wantReason)
			}
		})
	}
}

func TestAPNsRefusesHTTP1(t *testing.T) {
	fake := pushtest.NewAPNs(t)
	tr := fake.Transport()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	resp, err := (&http.Client{Transport: tr}).Post(fake.URL()+"/3/device/"+fake.NewToken(), "application/json", strings.NewReader(`{"aps":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusHTTPVersionNotSupported {
		t.Fatalf("HTTP/1.1 request answered %d, want 505", resp.StatusCode)
	}
	if got := fake.Wait(t, 1, 5*time.Second)[0]; got.Proto != "HTTP/1.1" || got.Status != 505 {
		t.Errorf("record: %s -> %d", got.Proto, got.Status)
	}
}

func TestAPNsConcurrentPushes(t *testing.T) {
	fake := pushtest.NewAPNs(t)
	client := newAPNsClient(t, fake)
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := client.Push(&apns2.Notification{DeviceToken: fake.NewToken(), Topic: "chat.parley.app", Payload: []byte(`{"aps":{}}`)})
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("push: %v %+v", err, resp)
			}
		})
	}
	wg.Wait()
	if got := len(fake.Wait(t, n, 5*time.Second)); got != n {
		t.Errorf("%d records, want %d", got, n)
	}
}

// TestAPNsDelay checks that a request is recorded on arrival and that the
// delayed answer outlasts a client's deadline.
func TestAPNsDelay(t *testing.T) {
	fake := pushtest.NewAPNs(t)
	client := newAPNsClient(t, fake)
	// The connection first, undelayed: a deadline that also had to cover
	// the dial and the TLS handshake could end before the request reached
	// the fake on a loaded machine (0 requests after 1 s, once in CI).
	push(t, client, &apns2.Notification{DeviceToken: fake.NewToken(), Topic: "chat.parley.app", Payload: []byte(`{"aps":{}}`)})
	fake.Reset()
	fake.SetDelay(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := client.PushWithContext(ctx, &apns2.Notification{DeviceToken: fake.NewToken(), Topic: "chat.parley.app", Payload: []byte(`{"aps":{}}`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("push with a 1 s deadline to a fake holding answers 10 s: %v, want deadline exceeded", err)
	}
	fake.Wait(t, 1, 5*time.Second)

	fake.Reset() // drops the delay too
	if len(fake.Requests()) != 0 {
		t.Fatal("Reset kept requests")
	}
	start := time.Now()
	push(t, client, &apns2.Notification{DeviceToken: fake.NewToken(), Topic: "chat.parley.app", Payload: []byte(`{"aps":{}}`)})
	if d := time.Since(start); d > time.Second {
		t.Errorf("push after Reset took %v", d)
	}
}

func TestAPNsKeyFile(t *testing.T) {
	fake := pushtest.NewAPNs(t)
	if len(fake.KeyID()) != 10 || len(fake.TeamID()) != 10 {
		t.Errorf("key id %q team id %q, want 10 characters each", fake.KeyID(), fake.TeamID())
	}
	if _, err := token.AuthKeyFromFile(fake.KeyFile()); err != nil {
		t.Errorf("AuthKeyFromFile: %v", err)
	}
	if !bytes.Contains(fake.CertPEM(), []byte("BEGIN CERTIFICATE")) {
		t.Error("CertPEM is not PEM")
	}
}
