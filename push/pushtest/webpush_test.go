package pushtest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/SherClockHolmes/webpush-go"
	"github.com/golang-jwt/jwt/v5"
	"github.com/parleychat/parley/push/pushtest"
)

// vapidKeys returns a new VAPID key pair in webpush-go's format. Mind the
// order: GenerateVAPIDKeys returns the private key first. The private key
// is the raw 32-byte scalar and the public key the 65-byte uncompressed
// point, both base64url without padding.
func vapidKeys(t *testing.T) (private, public string) {
	t.Helper()
	private, public, err := webpush.GenerateVAPIDKeys()
	if err != nil {
		t.Fatal(err)
	}
	return private, public
}

func toLibrary(s pushtest.Subscription) *webpush.Subscription {
	return &webpush.Subscription{Endpoint: s.Endpoint, Keys: webpush.Keys{Auth: s.Keys.Auth, P256dh: s.Keys.P256dh}}
}

func send(t *testing.T, payload []byte, sub pushtest.Subscription, opts *webpush.Options) *http.Response {
	t.Helper()
	resp, err := webpush.SendNotification(payload, toLibrary(sub), opts)
	if err != nil {
		t.Fatalf("SendNotification: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestWebPushAcceptsWebpushGo(t *testing.T) {
	fake := pushtest.NewWebPush(t)
	private, public := vapidKeys(t)
	fake.SetVAPIDPublicKey(public)
	sub := fake.NewSubscription()
	payload := []byte(`{"conversation":"conv-1","title":"Ann","body":"hi"}`)

	resp := send(t, payload, sub, &webpush.Options{
		// Not "mailto:ops@example.com": webpush-go prefixes "mailto:" to any
		// Subscriber that does not start with "https:".
		Subscriber:      "ops@example.com",
		VAPIDPublicKey:  public,
		VAPIDPrivateKey: private,
		TTL:             3600,
		Topic:           "conv1",
		Urgency:         webpush.UrgencyHigh,
		HTTPClient:      fake.Client(),
	})
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") == "" || resp.Header.Get("TTL") != "3600" {
		t.Fatalf("answer %d Location %q TTL %q, want 201 with both", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("TTL"))
	}
	r := fake.Wait(t, 1, 5*time.Second)[0]
	if string(r.Payload) != string(payload) {
		t.Errorf("decrypted payload %q, want %q", r.Payload, payload)
	}
	if r.Proto != "HTTP/2.0" || r.Endpoint != sub.Endpoint || r.ID != sub.ID || r.Status != 201 {
		t.Errorf("record: %s %s id %s status %d", r.Proto, r.Endpoint, r.ID, r.Status)
	}
	if r.TTL != 3600 || r.Topic != "conv1" || r.Urgency != "high" {
		t.Errorf("TTL %d Topic %q Urgency %q", r.TTL, r.Topic, r.Urgency)
	}
	if r.Subscriber != "mailto:ops@example.com" || r.VAPIDKey != public {
		t.Errorf("sub %q k %q", r.Subscriber, r.VAPIDKey)
	}
	if r.Header.Get("Content-Encoding") != "aes128gcm" {
		t.Errorf("Content-Encoding %q", r.Header.Get("Content-Encoding"))
	}
}

func TestWebPushScriptedAnswers(t *testing.T) {
	fake := pushtest.NewWebPush(t)
	private, public := vapidKeys(t)
	fake.SetVAPIDPublicKey(public)
	opts := &webpush.Options{Subscriber: "https://parley.example.com", VAPIDPublicKey: public, VAPIDPrivateKey: private, TTL: 60, HTTPClient: fake.Client()}
	tests := []struct {
		name       string
		byID       bool
		answer     pushtest.Answer
		wantStatus int
		wantBody   string
		retryAfter string
	}{
		{"gone", false, pushtest.Answer{Status: 410}, 410, "push subscription has unsubscribed or expired.\n", ""},
		{"too many requests", true, pushtest.Answer{Status: 429, RetryAfter: 12}, 429, "Too Many Requests\n", "12"},
		{"internal", false, pushtest.Answer{Status: 500, Reason: "boom"}, 500, "boom", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.Reset()
			sub := fake.NewSubscription()
			if tt.byID {
				fake.Fail(sub.ID, tt.answer)
			} else {
				fake.Fail(sub.Endpoint, tt.answer)
			}
			resp, err := webpush.SendNotification([]byte("hello"), toLibrary(sub), opts)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody || resp.Header.Get("Retry-After") != tt.retryAfter {
				t.Fatalf("answer %d %q Retry-After %q, want %d %q %q", resp.StatusCode, body, resp.Header.Get("Retry-After"), tt.wantStatus, tt.wantBody, tt.retryAfter)
			}
			if resp := send(t, []byte("hello"), sub, opts); resp.StatusCode != 201 {
				t.Fatalf("after the script: %d, want 201", resp.StatusCode)
			}
			got := fake.Wait(t, 2, 5*time.Second)
			if got[0].Status != tt.wantStatus || got[0].Detail != "scripted" || string(got[0].Payload) != "hello" || got[1].Status != 201 {
				t.Errorf("records %+v", got)
			}
		})
	}
}

func TestWebPushRejectsBadRequests(t *testing.T) {
	fake := pushtest.NewWebPush(t)
	private, public := vapidKeys(t)
	otherPrivate, otherPublic := vapidKeys(t)
	fake.SetVAPIDPublicKey(public)
	sub := fake.NewSubscription()
	good := func() *webpush.Options {
		return &webpush.Options{Subscriber: "ops@example.com", VAPIDPublicKey: public, VAPIDPrivateKey: private, TTL: 60, HTTPClient: fake.Client()}
	}
	tests := []struct {
		name       string
		sub        pushtest.Subscription
		change     func(*webpush.Options)
		payload    int
		wantStatus int
		wantDetail string
	}{
		{"subscriber already mailto", sub, func(o *webpush.Options) { o.Subscriber = "mailto:ops@example.com" }, 10, 401, "mailto:mailto:"},
		{"another application server key", sub, func(o *webpush.Options) {
			o.VAPIDPublicKey, o.VAPIDPrivateKey = otherPublic, otherPrivate
		}, 10, 403, "application server key"},
		{"k does not match the signing key", sub, func(o *webpush.Options) { o.VAPIDPrivateKey = otherPrivate }, 10, 401, "signature"},
		{"unknown endpoint", pushtest.Subscription{Endpoint: fake.URL() + "/push/nope", Keys: sub.Keys}, func(*webpush.Options) {}, 10, 404, "no subscription"},
		{"bad topic", sub, func(o *webpush.Options) { o.Topic = "not a topic!" }, 10, 400, "Topic"},
		{"wrong auth secret", pushtest.Subscription{Endpoint: sub.Endpoint, Keys: pushtest.SubscriptionKeys{P256dh: sub.Keys.P256dh, Auth: "AAAAAAAAAAAAAAAAAAAAAA"}},
			func(*webpush.Options) {}, 10, 400, "decrypt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.Reset()
			opts := good()
			tt.change(opts)
			resp := send(t, make([]byte, tt.payload), tt.sub, opts)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("answer %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if r := fake.Wait(t, 1, 5*time.Second)[0]; !strings.Contains(r.Detail, tt.wantDetail) {
				t.Errorf("detail %q, want it to mention %q", r.Detail, tt.wantDetail)
			}
		})
	}

	// A record larger than 4096 bytes: webpush-go pads every message to its
	// RecordSize, 4096 unless set.
	fake.Reset()
	opts := good()
	opts.RecordSize = 8192
	if resp := send(t, []byte("hello"), sub, opts); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("8 kB record answered %d, want 413", resp.StatusCode)
	}
}

// TestWebPushRejectsBareRequests covers what webpush-go never sends wrong.
func TestWebPushRejectsBareRequests(t *testing.T) {
	fake := pushtest.NewWebPush(t)
	sub := fake.NewSubscription()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	vapid := func(aud string, exp time.Duration, sub string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"aud": aud, "exp": time.Now().Add(exp).Unix(), "sub": sub,
		}).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return "vapid t=" + tok + ", k=" + base64.RawURLEncoding.EncodeToString(k)
	}
	good := vapid(fake.URL(), time.Hour, "mailto:ops@example.com")
	tests := []struct {
		name       string
		header     map[string]string
		wantStatus int
	}{
		{"no authorization", map[string]string{"TTL": "60", "Content-Encoding": "aes128gcm"}, 401},
		{"legacy WebPush scheme", map[string]string{"Authorization": "WebPush eyJ0eXAi", "TTL": "60", "Content-Encoding": "aes128gcm"}, 401},
		{"aud of another origin", map[string]string{"Authorization": vapid("https://push.example.net", time.Hour, "mailto:ops@example.com"), "TTL": "60", "Content-Encoding": "aes128gcm"}, 401},
		{"exp two days ahead", map[string]string{"Authorization": vapid(fake.URL(), 48*time.Hour, "mailto:ops@example.com"), "TTL": "60", "Content-Encoding": "aes128gcm"}, 401},
		{"exp passed", map[string]string{"Authorization": vapid(fake.URL(), -time.Minute, "mailto:ops@example.com"), "TTL": "60", "Content-Encoding": "aes128gcm"}, 401},
		{"sub neither mailto nor https", map[string]string{"Authorization": vapid(fake.URL(), time.Hour, "ops@example.com"), "TTL": "60", "Content-Encoding": "aes128gcm"}, 401},
		{"no TTL", map[string]string{"Authorization": good, "Content-Encoding": "aes128gcm"}, 400},
		{"bad urgency", map[string]string{"Authorization": good, "TTL": "60", "Urgency": "now", "Content-Encoding": "aes128gcm"}, 400},
		{"draft aesgcm encoding", map[string]string{"Authorization": good, "TTL": "60", "Content-Encoding": "aesgcm"}, 415},
		{"body not a record", map[string]string{"Authorization": good, "TTL": "60", "Content-Encoding": "aes128gcm"}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, sub.Endpoint, strings.NewReader("not an aes128gcm record"))
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := fake.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("answer %d, want %d", resp.StatusCode, tt.wantStatus)
			}
		})
	}
}

func TestWebPushSubscriptionJSON(t *testing.T) {
	fake := pushtest.NewWebPush(t)
	sub := fake.NewSubscription()
	b, err := json.Marshal(sub)
	if err != nil {
		t.Fatal(err)
	}
	var lib webpush.Subscription
	if err := json.Unmarshal(b, &lib); err != nil {
		t.Fatal(err)
	}
	if lib.Endpoint != sub.Endpoint || lib.Keys.P256dh != sub.Keys.P256dh || lib.Keys.Auth != sub.Keys.Auth {
		t.Errorf("round trip %s gave %+v", b, lib)
	}
	if strings.ContainsAny(sub.Keys.P256dh+sub.Keys.Auth, "=+/") || len(sub.Keys.P256dh) != 87 || len(sub.Keys.Auth) != 22 {
		t.Errorf("keys %q %q, want 65 and 16 bytes in unpadded base64url", sub.Keys.P256dh, sub.Keys.Auth)
	}
	if sub.Endpoint != fake.URL()+"/push/"+sub.ID {
		t.Errorf("endpoint %q, id %q", sub.Endpoint, sub.ID)
	}
}
