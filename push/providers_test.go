package push_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
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
	for _, c := range []answerCase{
		{pushtest.Answer{Status: 200}, push.Accepted, 0},
		{pushtest.Answer{Status: 404, Reason: "UNREGISTERED"}, push.Unregistered, 0},
		{pushtest.Answer{Status: 429, Reason: "QUOTA_EXCEEDED", RetryAfter: 5}, push.Retry, 5 * time.Second},
		{pushtest.Answer{Status: 500, Reason: "INTERNAL"}, push.Retry, 0},
		{pushtest.Answer{Status: 400, Reason: "INVALID_ARGUMENT"}, push.Rejected, 0},
	} {
		token := fake.NewToken()
		fake.Fail(token, c.answer)
		r := p.Send(context.Background(), &parley.PushRegistration{Provider: parley.PushFCM, Token: token}, note(push.KindRead))
		if r.Outcome != c.outcome || r.RetryAfter != c.retryAfter {
			t.Errorf("FCM %+v: got %+v", c.answer, r)
		}
	}
	if got := fake.Requests(); len(got) != 5 || got[0].Data["type"] != "read" || got[0].APNSHeaders["apns-push-type"] != "background" {
		t.Fatalf("FCM requests: %d, first %+v", len(got), got[0])
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
