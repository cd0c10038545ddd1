package push_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/outbound"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/push/pushtest"
)

// The providers against the local servers: each answer maps to the
// outcome the worker acts on, with the Retry-After the provider sent.

func note(kind string) *push.Notification {
	return &push.Notification{Kind: kind, ConversationID: "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b", Seq: 3, Count: 3, Badge: 4,
		SenderName: "Alice", Expires: time.Now().Add(time.Hour)}
}

type answerCase struct {
	answer     pushtest.Answer
	outcome    push.Outcome
	retryAfter time.Duration
}

func TestAPNsOutcomes(t *testing.T) {
	fake := pushtest.NewAPNs(t)
	p, err := push.NewAPNs(push.APNsConfig{KeyFile: fake.KeyFile(), KeyID: fake.KeyID(), TeamID: fake.TeamID(), URL: fake.URL(), TLS: fake.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []answerCase{
		{pushtest.Answer{Status: 200}, push.Accepted, 0},
		{pushtest.Answer{Status: 410, Reason: "Unregistered"}, push.Unregistered, 0},
		{pushtest.Answer{Status: 400, Reason: "BadDeviceToken"}, push.Unregistered, 0},
		{pushtest.Answer{Status: 429, Reason: "TooManyRequests", RetryAfter: 7}, push.Retry, 7 * time.Second},
		{pushtest.Answer{Status: 500, Reason: "InternalServerError"}, push.Retry, 0},
		{pushtest.Answer{Status: 403, Reason: "InvalidProviderToken"}, push.Retry, 0},
		{pushtest.Answer{Status: 400, Reason: "BadCollapseId"}, push.Rejected, 0},
	} {
		token := fake.NewToken()
		fake.Fail(token, c.answer)
		r := p.Send(context.Background(), &parley.PushRegistration{Provider: parley.PushAPNs, Token: token, Topic: "com.example.app", Environment: "sandbox"}, note(push.KindMessage))
		if r.Outcome != c.outcome || r.RetryAfter != c.retryAfter || r.Status != c.answer.Status {
			t.Errorf("APNs %+v: got %+v", c.answer, r)
		}
	}
}

func TestFCMOutcomes(t *testing.T) {
	fake := pushtest.NewFCM(t)
	p, err := push.NewFCM(context.Background(), push.FCMConfig{CredentialsFile: fake.CredentialsFile(), URL: fake.Endpoint(), TLS: fake.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		answerCase
		reason string
	}{
		{answerCase{pushtest.Answer{Status: 200}, push.Accepted, 0}, ""},
		{answerCase{pushtest.Answer{Status: 404, Reason: "UNREGISTERED"}, push.Unregistered, 0}, "UNREGISTERED"},
		{answerCase{pushtest.Answer{Status: 403, Reason: "SENDER_ID_MISMATCH"}, push.Unregistered, 0}, "SENDER_ID_MISMATCH"},
		{answerCase{pushtest.Answer{Status: 429, Reason: "QUOTA_EXCEEDED", RetryAfter: 5}, push.Retry, 5 * time.Second}, "QUOTA_EXCEEDED"},
		{answerCase{pushtest.Answer{Status: 500, Reason: "INTERNAL"}, push.Retry, 0}, "INTERNAL"},
		{answerCase{pushtest.Answer{Status: 503, Reason: "UNAVAILABLE", RetryAfter: 2}, push.Retry, 2 * time.Second}, "UNAVAILABLE"},
		{answerCase{pushtest.Answer{Status: 401, Reason: "THIRD_PARTY_AUTH_ERROR"}, push.Retry, 0}, "THIRD_PARTY_AUTH_ERROR"},
		{answerCase{pushtest.Answer{Status: 400, Reason: "INVALID_ARGUMENT"}, push.Rejected, 0}, "INVALID_ARGUMENT: Request contains an invalid argument."},
	} {
		token := fake.NewToken()
		fake.Fail(token, c.answer)
		r := p.Send(context.Background(), &parley.PushRegistration{Provider: parley.PushFCM, Token: token}, note(push.KindRead))
		if r.Outcome != c.outcome || r.RetryAfter != c.retryAfter || r.Status != c.answer.Status || r.Reason != c.reason {
			t.Errorf("FCM %+v: got %+v", c.answer, r)
		}
		if c.outcome == push.Accepted && !strings.HasPrefix(r.ID, "projects/"+fake.ProjectID()+"/messages/") {
			t.Errorf("accepted with id %q", r.ID)
		}
	}
	// One request each: the client retries nothing itself (the worker does).
	if got := fake.Requests(); len(got) != 8 || got[0].Data["type"] != "read" || got[0].APNSHeaders["apns-push-type"] != "background" {
		t.Fatalf("FCM requests: %d, first %+v", len(got), got[0])
	}
	if n := fake.TokenRequests(); n != 1 {
		t.Errorf("%d token requests for 8 sends, want 1", n)
	}

	// Sends in parallel share one HTTP/2 connection with the token fetch.
	fake.Reset()
	before := fake.Connections()
	done := make(chan push.Result)
	for range 20 {
		go func() {
			done <- p.Send(context.Background(), &parley.PushRegistration{Provider: parley.PushFCM, Token: fake.NewToken()}, note(push.KindMessage))
		}()
	}
	for range 20 {
		if r := <-done; r.Outcome != push.Accepted {
			t.Fatalf("parallel send: %+v", r)
		}
	}
	if got := fake.Requests(); len(got) != 20 || got[0].Proto != "HTTP/2.0" {
		t.Fatalf("%d requests, first over %s", len(got), got[0].Proto)
	}
	if n := fake.Connections() - before; n != 0 {
		t.Errorf("20 parallel sends opened %d more connections, want none (the first one is reused)", n)
	}
}

// TestFCMFailuresWithoutAnswer: no access token (the token endpoint
// refuses the service account's grant) and no server are retried, with a
// reason that says which; neither sends anything.
func TestFCMFailuresWithoutAnswer(t *testing.T) {
	fake := pushtest.NewFCM(t)
	reg := &parley.PushRegistration{Provider: parley.PushFCM, Token: fake.NewToken()}

	// A key the token endpoint does not know: the grant is refused.
	other := pushtest.NewFCM(t)
	var creds map[string]string
	if err := json.Unmarshal(fake.CredentialsJSON(), &creds); err != nil {
		t.Fatal(err)
	}
	var otherCreds map[string]string
	if err := json.Unmarshal(other.CredentialsJSON(), &otherCreds); err != nil {
		t.Fatal(err)
	}
	creds["private_key"], creds["private_key_id"] = otherCreds["private_key"], ""
	forged := filepath.Join(t.TempDir(), "forged.json")
	b, _ := json.Marshal(creds)
	if err := os.WriteFile(forged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := push.NewFCM(context.Background(), push.FCMConfig{CredentialsFile: forged, URL: fake.Endpoint(), TLS: fake.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Send(context.Background(), reg, note(push.KindMessage))
	if r.Outcome != push.Retry || r.Status != 0 || !strings.HasPrefix(r.Reason, "OAuth token refused: 400 Bad Request invalid_grant") {
		t.Fatalf("forged key: %+v", r)
	}
	if n := len(fake.Requests()); n != 0 || fake.TokenRequests() != 1 {
		t.Fatalf("forged key: %d sends, %d token requests; want 0 and 1", n, fake.TokenRequests())
	}

	// Nobody listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err = push.NewFCM(context.Background(), push.FCMConfig{CredentialsFile: fake.CredentialsFile(), ProjectID: fake.ProjectID(),
		URL: "https://" + addr + "/v1", TLS: fake.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	// The token comes from the fake (the file's token_uri); the send
	// goes nowhere.
	if r := p.Send(context.Background(), reg, note(push.KindMessage)); r.Outcome != push.Retry || r.Status != 0 || !strings.HasPrefix(r.Reason, "network: ") {
		t.Fatalf("no server: %+v", r)
	}

	// Endpoints that are not http(s) URLs are refused at the start.
	for _, u := range []string{"fcm.googleapis.com/v1", "ftp://fcm.googleapis.com/v1", "https://fcm.googleapis.com/v1?x=1", "https://user@fcm.googleapis.com/v1"} {
		if _, err := push.NewFCM(context.Background(), push.FCMConfig{CredentialsFile: fake.CredentialsFile(), URL: u}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}

func TestWebPushOutcomes(t *testing.T) {
	fake := pushtest.NewWebPush(t)
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	public := base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes())
	fake.SetVAPIDPublicKey(public)
	allow, _ := outbound.ParseAllow("127.0.0.1")
	cfg := push.WebPushConfig{PublicKey: public, PrivateKey: base64.RawURLEncoding.EncodeToString(key.Bytes()),
		Subject: "mailto:ops@example.com", Client: outbound.NewClient(outbound.ClientConfig{Policy: allow, TLS: fake.TLSConfig()})}
	p := push.NewWebPush(cfg)
	for _, c := range []answerCase{
		{pushtest.Answer{Status: 201}, push.Accepted, 0},
		{pushtest.Answer{Status: 410}, push.Unregistered, 0},
		{pushtest.Answer{Status: 404}, push.Unregistered, 0},
		{pushtest.Answer{Status: 429, RetryAfter: 3}, push.Retry, 3 * time.Second},
		{pushtest.Answer{Status: 503}, push.Retry, 0},
		{pushtest.Answer{Status: 413}, push.Rejected, 0},
	} {
		sub := fake.NewSubscription()
		if c.answer.Status != 201 {
			fake.Fail(sub.Endpoint, c.answer)
		}
		reg := &parley.PushRegistration{Provider: parley.PushWebPush, Subscription: &parley.WebPushSubscription{Endpoint: sub.Endpoint}}
		reg.Subscription.Keys.P256dh, reg.Subscription.Keys.Auth = sub.Keys.P256dh, sub.Keys.Auth
		r := p.Send(context.Background(), reg, note(push.KindMessage))
		if r.Outcome != c.outcome || r.RetryAfter != c.retryAfter {
			t.Errorf("Web Push %+v: got %+v", c.answer, r)
		}
	}
	if got := fake.Requests(); got[0].Subscriber != "mailto:ops@example.com" || got[0].Urgency != "high" {
		t.Fatalf("Web Push request: %+v", got[0])
	}

	// A response body is never kept: the reason is the status line.
	sub := fake.NewSubscription()
	fake.Fail(sub.Endpoint, pushtest.Answer{Status: 500, Reason: "MARKER-4f1d internal details"})
	reg := &parley.PushRegistration{Provider: parley.PushWebPush, Subscription: &parley.WebPushSubscription{Endpoint: sub.Endpoint}}
	reg.Subscription.Keys.P256dh, reg.Subscription.Keys.Auth = sub.Keys.P256dh, sub.Keys.Auth
	if r := p.Send(context.Background(), reg, note(push.KindMessage)); r.Reason != "500 Internal Server Error" {
		t.Fatalf("reason %q, want the status line only", r.Reason)
	}
	// Without 127.0.0.1 on the allow list, the dialer refuses the fake.
	before := len(fake.Requests())
	cfg.Client = outbound.NewClient(outbound.ClientConfig{TLS: fake.TLSConfig()})
	if r := push.NewWebPush(cfg).Send(context.Background(), reg, note(push.KindMessage)); r.Outcome != push.Retry ||
		!strings.HasPrefix(r.Reason, "destination refused: 127.0.0.1") {
		t.Fatalf("a loopback endpoint: %+v", r)
	}
	if len(fake.Requests()) != before {
		t.Fatal("the refused request reached the fake")
	}
}
