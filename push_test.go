package parley

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
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

var (
	apnsToken = strings.Repeat("0f", 32)
	testRules = PushRules{APNsTopics: []string{"com.example.app", "com.example.other"}}
)

func TestValidatePush(t *testing.T) {
	good := []*PushRegistration{
		{Provider: PushFCM, Token: "fcm-token"},
		{Provider: PushAPNs, Token: apnsToken, Topic: "com.example.app", Environment: "sandbox"},
		{Provider: PushAPNs, Token: strings.ToUpper(apnsToken) + "abcd", Topic: "com.example.other", Environment: "production"},
		webPush("https://push.example.com/send/abc"),
	}
	for _, r := range good {
		if err := ValidatePush(r, testRules); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := map[string]*PushRegistration{
		"no provider":          {Token: "x"},
		"unknown provider":     {Provider: "sms", Token: "x"},
		"fcm without token":    {Provider: PushFCM},
		"fcm with topic":       {Provider: PushFCM, Token: "x", Topic: "t"},
		"huge token":           {Provider: PushFCM, Token: strings.Repeat("x", 5000)},
		"apns without topic":   {Provider: PushAPNs, Token: apnsToken, Environment: "sandbox"},
		"apns bad environment": {Provider: PushAPNs, Token: apnsToken, Topic: "com.example.app", Environment: "staging"},
		"apns other topic":     {Provider: PushAPNs, Token: apnsToken, Topic: "com.evil.app", Environment: "sandbox"},
		"apns short token":     {Provider: PushAPNs, Token: "abcdef", Topic: "com.example.app", Environment: "sandbox"},
		"apns odd token":       {Provider: PushAPNs, Token: apnsToken + "a", Topic: "com.example.app", Environment: "sandbox"},
		"apns non-hex token":   {Provider: PushAPNs, Token: strings.Repeat("zz", 32), Topic: "com.example.app", Environment: "sandbox"},
		"apns path in token":   {Provider: PushAPNs, Token: apnsToken + "/../x", Topic: "com.example.app", Environment: "sandbox"},
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
		if err := ValidatePush(r, testRules); ErrorCode(err) != CodeInvalidRequest {
			t.Errorf("%s: %v, want invalid_request", name, err)
		}
	}
	// The endpoint check decides; its reason is in the message.
	rules := testRules
	rules.CheckEndpoint = func(u *url.URL) error {
		if u.Hostname() == "127.0.0.1" {
			return errors.New("names an address that is loopback")
		}
		return nil
	}
	if err := ValidatePush(webPush("http://push.example.com/x"), rules); err != nil {
		t.Errorf("http taken by the check: %v", err)
	}
	if err := ValidatePush(webPush("https://127.0.0.1/x"), rules); ErrorCode(err) != CodeInvalidRequest ||
		!strings.Contains(err.Error(), "the endpoint names an address that is loopback") {
		t.Errorf("refused by the check: %v", err)
	}
	if err := ValidatePush(webPush("https://push.example.com/x"), PushRules{WebPushOff: true}); ErrorCode(err) != CodeInvalidRequest {
		t.Errorf("Web Push off: %v", err)
	}
	if err := ValidatePush(good[1], PushRules{}); ErrorCode(err) != CodeInvalidRequest {
		t.Errorf("no APNs topics: %v", err)
	}
}

// FuzzValidatePush: any JSON a client sends decodes and validates without
// a panic, and what passes has what its provider needs.
func FuzzValidatePush(f *testing.F) {
	for _, s := range []string{
		`{"provider":"fcm","token":"t"}`,
		`{"provider":"apns","token":"` + apnsToken + `","topic":"com.example.app","environment":"sandbox"}`,
		`{"provider":"webpush","subscription":{"endpoint":"https://p.example/x","keys":{"p256dh":"` + testP256dh + `","auth":"` + testAuth + `"}}}`,
		`{"provider":"webpush","subscription":null}`, `{}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r PushRegistration
		if json.Unmarshal(data, &r) != nil {
			return
		}
		if err := ValidatePush(&r, testRules); err != nil {
			if ErrorCode(err) != CodeInvalidRequest {
				t.Fatalf("code %q for %s", ErrorCode(err), data)
			}
			return
		}
		switch r.Provider {
		case PushFCM:
			if r.Token == "" {
				t.Fatalf("accepted without a token: %s", data)
			}
		case PushAPNs:
			if len(r.Token) < 64 || len(r.Token)%2 != 0 || !isHex(r.Token) || !slices.Contains(testRules.APNsTopics, r.Topic) {
				t.Fatalf("accepted an APNs token or topic outside the rules: %s", data)
			}
		case PushWebPush:
			if r.Subscription == nil || !strings.HasPrefix(strings.ToLower(r.Subscription.Endpoint), "https://") {
				t.Fatalf("accepted without an https endpoint: %s", data)
			}
		default:
			t.Fatalf("accepted provider %q", r.Provider)
		}
	})
}
