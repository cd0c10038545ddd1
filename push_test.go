package parley

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

var (
	testP256dh = base64.RawURLEncoding.EncodeToString(append([]byte{4}, make([]byte, 64)...))
	testAuth   = base64.RawURLEncoding.EncodeToString(make([]byte, 16))
)

func webPush(endpoint string) *PushRegistration {
	r := &PushRegistration{Provider: PushWebPush, Subscription: &WebPushSubscription{Endpoint: endpoint}}
	r.Subscription.Keys.P256dh, r.Subscription.Keys.Auth = testP256dh, testAuth
	return r
}

func TestValidatePush(t *testing.T) {
	good := []*PushRegistration{
		{Provider: PushFCM, Token: "fcm-token"},
		{Provider: PushAPNs, Token: "abcdef", Topic: "com.example.app", Environment: "sandbox"},
		{Provider: PushAPNs, Token: "abcdef", Topic: "com.example.app", Environment: "production"},
		webPush("https://push.example.com/send/abc"),
	}
	for _, r := range good {
		if err := ValidatePush(r, false); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := map[string]*PushRegistration{
		"no provider":          {Token: "x"},
		"unknown provider":     {Provider: "sms", Token: "x"},
		"fcm without token":    {Provider: PushFCM},
		"fcm with topic":       {Provider: PushFCM, Token: "x", Topic: "t"},
		"huge token":           {Provider: PushFCM, Token: strings.Repeat("x", 5000)},
		"apns without topic":   {Provider: PushAPNs, Token: "x", Environment: "sandbox"},
		"apns bad environment": {Provider: PushAPNs, Token: "x", Topic: "t", Environment: "staging"},
		"webpush without sub":  {Provider: PushWebPush},
		"webpush with token":   {Provider: PushWebPush, Token: "x", Subscription: webPush("https://a.example/x").Subscription},
		"webpush http":         webPush("http://push.example.com/x"),
		"webpush no host":      webPush("https:///x"),
		"webpush userinfo":     webPush("https://user:pw@push.example.com/x"),
		"webpush not a url":    webPush("::"),
	}
	short := webPush("https://push.example.com/x")
	short.Subscription.Keys.Auth = "AAAA"
	bad["webpush short auth"] = short
	badKey := webPush("https://push.example.com/x")
	badKey.Subscription.Keys.P256dh = "not base64!"
	bad["webpush bad p256dh"] = badKey
	for name, r := range bad {
		if err := ValidatePush(r, false); ErrorCode(err) != CodeInvalidRequest {
			t.Errorf("%s: %v, want invalid_request", name, err)
		}
	}
	if err := ValidatePush(webPush("http://127.0.0.1:9000/push"), true); err != nil {
		t.Errorf("http with allowHTTP: %v", err)
	}
}

// FuzzValidatePush: any JSON a client sends decodes and validates without
// a panic, and what passes has what its provider needs.
func FuzzValidatePush(f *testing.F) {
	for _, s := range []string{
		`{"provider":"fcm","token":"t"}`,
		`{"provider":"apns","token":"t","topic":"com.x","environment":"sandbox"}`,
		`{"provider":"webpush","subscription":{"endpoint":"https://p.example/x","keys":{"p256dh":"` + testP256dh + `","auth":"` + testAuth + `"}}}`,
		`{"provider":"webpush","subscription":null}`, `{}`, `[]`, `null`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, allowHTTP bool) {
		var r PushRegistration
		if json.Unmarshal(data, &r) != nil {
			return
		}
		if err := ValidatePush(&r, allowHTTP); err != nil {
			if ErrorCode(err) != CodeInvalidRequest {
				t.Fatalf("code %q for %s", ErrorCode(err), data)
			}
			return
		}
		switch r.Provider {
		case PushFCM, PushAPNs:
			if r.Token == "" {
				t.Fatalf("accepted without a token: %s", data)
			}
		case PushWebPush:
			if r.Subscription == nil || r.Subscription.Endpoint == "" {
				t.Fatalf("accepted without a subscription: %s", data)
			}
		default:
			t.Fatalf("accepted provider %q", r.Provider)
		}
	})
}
