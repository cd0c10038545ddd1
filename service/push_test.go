package service_test

import (
	"context"
	"encoding/base64"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/outbound"
	"github.com/parleychat/parley/service"
)

func TestVAPIDKeyMadeOnceAndKept(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	k1, err := newService(st, service.Config{}).VAPIDPublicKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(k1)
	if err != nil || len(raw) != 65 || raw[0] != 4 {
		t.Fatalf("public key %q: want 65 bytes, uncompressed, unpadded base64url (%v)", k1, err)
	}
	// Another service on the same store (another node) has the same key.
	if k2, err := newService(st, service.Config{}).VAPIDPublicKey(ctx); err != nil || k2 != k1 {
		t.Fatalf("second node's key %q (%v), want %q", k2, err, k1)
	}
	// A configured key wins.
	scalar := make([]byte, 32)
	scalar[31] = 7
	if k3, err := newService(st, service.Config{VAPIDPrivateKey: scalar}).VAPIDPublicKey(ctx); err != nil || k3 == k1 {
		t.Fatalf("configured key %q (%v)", k3, err)
	}
}

func TestSetPush(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	u := createUser(t, st, "alice")
	d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: parley.PlatformAndroid, SessionID: parley.NewID()}
	if err := st.CreateSession(ctx, d, &parley.RefreshToken{Hash: parley.NewID()}, 0); err != nil {
		t.Fatal(err)
	}
	p := &parley.Principal{UserID: u.ID, DeviceID: d.ID}
	svc := newService(st, service.Config{})
	if _, err := svc.SetPush(ctx, p, &parley.PushRegistration{Provider: "sms", Token: "x"}); parley.ErrorCode(err) != parley.CodeInvalidRequest {
		t.Fatalf("bad provider: %v", err)
	}
	if _, err := st.Push(ctx, d.ID); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("a refused registration was stored: %v", err)
	}
	r, err := svc.SetPush(ctx, p, &parley.PushRegistration{Provider: parley.PushFCM, Token: "tok"})
	if err != nil || r.UpdatedAt.IsZero() {
		t.Fatalf("SetPush: %+v %v", r, err)
	}
	if err := svc.DeletePush(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Push(ctx, d.ID); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("after DeletePush: %v", err)
	}
}

// TestSetPushRules: the server's rules apply at registration: endpoints
// at blocked addresses or odd host forms, APNs tokens that are not hex and
// topics not configured are refused with invalid_request; the per-user cap
// with limit_exceeded (a replacement does not count twice).
func TestSetPushRules(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	u := createUser(t, st, "alice")
	device := func() *parley.Principal {
		d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: parley.PlatformWeb, SessionID: parley.NewID()}
		if err := st.CreateSession(ctx, d, &parley.RefreshToken{Hash: parley.NewID()}, 0); err != nil {
			t.Fatal(err)
		}
		return &parley.Principal{UserID: u.ID, DeviceID: d.ID}
	}
	allow, err := outbound.ParseAllow("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	svc := newService(st, service.Config{MaxPushRegistrations: 2, APNsTopics: []string{"com.example.app"}, Outbound: allow})
	p := device()
	for _, endpoint := range []string{"https://169.254.169.254/x", "https://10.0.0.5:5432/", "https://[::1]/x",
		"https://metadata.google.internal/x", "https://0x7f000001/x", "https://localhost/x", "http://push.example.com/x"} {
		if _, err := svc.SetPush(ctx, p, webPushReg(endpoint)); parley.ErrorCode(err) != parley.CodeInvalidRequest {
			t.Errorf("%s: %v", endpoint, err)
		}
	}
	if _, err := svc.SetPush(ctx, p, webPushReg("http://127.0.0.1:9000/x")); err != nil {
		t.Fatalf("an allowed http endpoint: %v", err)
	}
	apns := func(token, topic string) *parley.PushRegistration {
		return &parley.PushRegistration{Provider: parley.PushAPNs, Token: token, Topic: topic, Environment: "production"}
	}
	if _, err := svc.SetPush(ctx, p, apns("abc", "com.example.app")); parley.ErrorCode(err) != parley.CodeInvalidRequest {
		t.Errorf("short APNs token: %v", err)
	}
	if _, err := svc.SetPush(ctx, p, apns(strings.Repeat("ab", 32), "com.other.app")); parley.ErrorCode(err) != parley.CodeInvalidRequest {
		t.Errorf("APNs topic not configured: %v", err)
	}
	if _, err := svc.SetPush(ctx, p, apns(strings.Repeat("ab", 32), "com.example.app")); err != nil {
		t.Fatalf("APNs: %v", err)
	}
	second := device()
	if _, err := svc.SetPush(ctx, second, &parley.PushRegistration{Provider: parley.PushFCM, Token: "t2"}); err != nil {
		t.Fatal(err)
	}
	third := device()
	if _, err := svc.SetPush(ctx, third, &parley.PushRegistration{Provider: parley.PushFCM, Token: "t3"}); parley.ErrorCode(err) != parley.CodeLimitExceeded {
		t.Fatalf("a third registration with a cap of 2: %v", err)
	}
	if _, err := svc.SetPush(ctx, second, &parley.PushRegistration{Provider: parley.PushFCM, Token: "t2b"}); err != nil {
		t.Fatalf("replacing a registration at the cap: %v", err)
	}
	if err := svc.DeletePush(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetPush(ctx, third, &parley.PushRegistration{Provider: parley.PushFCM, Token: "t3"}); err != nil {
		t.Fatalf("after one was removed: %v", err)
	}
	off := newService(st, service.Config{WebPushOff: true})
	if _, err := off.SetPush(ctx, device(), webPushReg("https://push.example.com/x")); parley.ErrorCode(err) != parley.CodeInvalidRequest {
		t.Fatalf("Web Push off: %v", err)
	}
}

func webPushReg(endpoint string) *parley.PushRegistration {
	r := &parley.PushRegistration{Provider: parley.PushWebPush, Subscription: &parley.WebPushSubscription{Endpoint: endpoint}}
	r.Subscription.Keys.P256dh = base64.RawURLEncoding.EncodeToString(append([]byte{4}, make([]byte, 64)...))
	r.Subscription.Keys.Auth = base64.RawURLEncoding.EncodeToString(make([]byte, 16))
	return r
}

// FuzzPushEndpointRules: the registration rules as the service applies
// them (the domain's form checks and outbound's URL checks): no
// endpoint makes them panic, and one they take is https with a host that
// is a public-looking name or an address outside the blocked ranges.
func FuzzPushEndpointRules(f *testing.F) {
	for _, s := range []string{"https://fcm.googleapis.com/fcm/send/x", "https://0x7f000001/", "https://[::ffff:127.0.0.1]/",
		"https://127.1/", "https://2130706433/", "https://metadata.google.internal/", "https://a.localhost/", "https://8.8.8.8/"} {
		f.Add(s)
	}
	rules := parley.PushRules{CheckEndpoint: (*outbound.Policy)(nil).CheckURL}
	f.Fuzz(func(t *testing.T, endpoint string) {
		err := parley.ValidatePush(webPushReg(endpoint), rules)
		if err != nil {
			if parley.ErrorCode(err) != parley.CodeInvalidRequest {
				t.Fatalf("code %q for %q", parley.ErrorCode(err), endpoint)
			}
			return
		}
		u, perr := url.Parse(endpoint)
		if perr != nil || u.Scheme != "https" || u.User != nil {
			t.Fatalf("took %q", endpoint)
		}
		host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		if a, aerr := netip.ParseAddr(host); aerr == nil {
			if what, blocked := outbound.Blocked(a); blocked {
				t.Fatalf("took %q: %s", endpoint, what)
			}
			return
		}
		if !strings.Contains(host, ".") || host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".internal") {
			t.Fatalf("took host %q", host)
		}
		last := host[strings.LastIndex(host, ".")+1:]
		if _, nerr := strconv.ParseUint(strings.TrimPrefix(last, "0x"), 16, 64); nerr == nil && (strings.HasPrefix(last, "0x") || strings.Trim(last, "0123456789") == "") {
			t.Fatalf("took numeric host %q", host)
		}
	})
}
