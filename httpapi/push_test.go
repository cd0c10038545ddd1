package httpapi_test

import (
	"encoding/base64"
	"testing"

	"github.com/parleychat/parley"
)

func TestPushRegistration(t *testing.T) {
	e := newEnv(t)
	alice := e.user("alice")
	const push = "/v1/devices/current/push"
	p256dh := base64.RawURLEncoding.EncodeToString(append([]byte{4}, make([]byte, 64)...))
	auth := base64.RawURLEncoding.EncodeToString(make([]byte, 16))

	// The three providers.
	out := e.must(200, "PUT", push, alice.token, map[string]any{"provider": "fcm", "token": "fcm-token"})
	if str(out, "push", "provider") != "fcm" || str(out, "push", "token") != "fcm-token" || str(out, "push", "updated_at") == "" {
		t.Fatalf("PUT fcm: %v", out)
	}
	e.must(200, "PUT", push, alice.token, map[string]any{"provider": "apns", "token": "abc", "topic": "com.example.app", "environment": "sandbox"})
	sub := map[string]any{"endpoint": "https://push.example.com/x", "keys": map[string]any{"p256dh": p256dh, "auth": auth}}
	e.must(200, "PUT", push, alice.token, map[string]any{"provider": "webpush", "subscription": sub})
	if r, err := e.store.Push(t.Context(), alice.device); err != nil || r.Provider != parley.PushWebPush || r.Subscription.Endpoint != "https://push.example.com/x" {
		t.Fatalf("stored: %+v %v", r, err)
	}

	// Bad input gets a clear code and changes nothing.
	e.fails(400, parley.CodeInvalidRequest, "PUT", push, alice.token, map[string]any{"provider": "apns", "token": "abc"})
	e.fails(400, parley.CodeInvalidRequest, "PUT", push, alice.token, map[string]any{"provider": "webpush", "subscription": map[string]any{"endpoint": "http://push.example.com/x", "keys": map[string]any{"p256dh": p256dh, "auth": auth}}})
	e.fails(400, parley.CodeInvalidRequest, "PUT", push, alice.token, "not json")
	e.fails(401, parley.CodeUnauthorized, "PUT", push, "", map[string]any{"provider": "fcm", "token": "x"})
	if r, err := e.store.Push(t.Context(), alice.device); err != nil || r.Provider != parley.PushWebPush {
		t.Fatalf("a refused PUT changed the registration: %+v %v", r, err)
	}

	// DELETE removes it; logout removes it too.
	e.must(204, "DELETE", push, alice.token, nil)
	if _, err := e.store.Push(t.Context(), alice.device); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("after DELETE: %v", err)
	}
	e.must(204, "DELETE", push, alice.token, nil) // none: still fine
	e.must(200, "PUT", push, alice.token, map[string]any{"provider": "fcm", "token": "again"})
	device := alice.device
	e.must(204, "DELETE", "/v1/sessions/current", alice.token, nil)
	if _, err := e.store.Push(t.Context(), device); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("after logout: %v", err)
	}

	// The VAPID public key, for browsers, without a token.
	key := str(e.must(200, "GET", "/v1/push/vapid", "", nil), "public_key")
	if raw, err := base64.RawURLEncoding.DecodeString(key); err != nil || len(raw) != 65 || raw[0] != 4 {
		t.Fatalf("vapid public key %q (%v)", key, err)
	}
	if again := str(e.must(200, "GET", "/v1/push/vapid", "", nil), "public_key"); again != key {
		t.Fatalf("the VAPID key changed: %s then %s", key, again)
	}
}
