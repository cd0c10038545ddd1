package httpapi_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

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
	apnsToken := strings.Repeat("0a", 32)
	e.must(200, "PUT", push, alice.token, map[string]any{"provider": "apns", "token": apnsToken, "topic": "com.example.app", "environment": "sandbox"})
	sub := map[string]any{"endpoint": "https://push.example.com/x", "keys": map[string]any{"p256dh": p256dh, "auth": auth}}
	e.must(200, "PUT", push, alice.token, map[string]any{"provider": "webpush", "subscription": sub})
	if r, err := e.store.Push(t.Context(), alice.device); err != nil || r.Provider != parley.PushWebPush || r.Subscription.Endpoint != "https://push.example.com/x" {
		t.Fatalf("stored: %+v %v", r, err)
	}

	// Bad input gets a clear code and changes nothing.
	e.fails(400, parley.CodeInvalidRequest, "PUT", push, alice.token, map[string]any{"provider": "apns", "token": apnsToken})
	e.fails(400, parley.CodeInvalidRequest, "PUT", push, alice.token, map[string]any{"provider": "apns", "token": "abc", "topic": "com.example.app", "environment": "sandbox"})
	e.fails(400, parley.CodeInvalidRequest, "PUT", push, alice.token, map[string]any{"provider": "apns", "token": apnsToken, "topic": "com.evil.app", "environment": "sandbox"})
	e.fails(400, parley.CodeInvalidRequest, "PUT", push, alice.token, map[string]any{"provider": "webpush", "subscription": map[string]any{"endpoint": "https://169.254.169.254/x", "keys": map[string]any{"p256dh": p256dh, "auth": auth}}})
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

// TestMuteAndDND: a member mutes a conversation until a time and unmutes
// it; do-not-disturb likewise; bad input is refused and changes nothing.
func TestMuteAndDND(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.user("alice"), e.user("bob"), e.user("carol")
	conv := str(e.must(201, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bob.id}}), "conversation", "id")
	mute := "/v1/conversations/" + conv + "/mute"
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)

	out := e.must(200, "PUT", mute, alice.token, map[string]any{"until": until.Format(time.RFC3339Nano)})
	if got := str(out, "conversation", "muted_until"); got != until.Format(time.RFC3339Nano) {
		t.Fatalf("muted_until %q, want %s", got, until.Format(time.RFC3339Nano))
	}
	// Bob, the other member, does not see Alice's mute.
	if got := str(e.must(200, "GET", "/v1/conversations/"+conv, bob.token, nil), "conversation", "muted_until"); got != "" {
		t.Fatalf("bob sees alice's mute: %q", got)
	}
	for _, body := range []any{
		map[string]any{"until": "tomorrow"},
		map[string]any{"until": time.Now().Add(-time.Minute).Format(time.RFC3339)},
		map[string]any{"until": 5},
		"[]",
	} {
		e.fails(400, parley.CodeInvalidRequest, "PUT", mute, alice.token, body)
	}
	e.fails(404, parley.CodeConversationNotFound, "PUT", mute, carol.token, map[string]any{"until": until.Format(time.RFC3339)})
	e.fails(404, parley.CodeConversationNotFound, "PUT", "/v1/conversations/not-an-id/mute", alice.token, map[string]any{"until": nil})
	if got := str(e.must(200, "GET", "/v1/conversations/"+conv, alice.token, nil), "conversation", "muted_until"); got != until.Format(time.RFC3339Nano) {
		t.Fatalf("a refused PUT changed the mute: %q", got)
	}
	if got := str(e.must(200, "PUT", mute, alice.token, map[string]any{"until": nil}), "conversation", "muted_until"); got != "" {
		t.Fatalf("unmuted, muted_until %q", got)
	}

	// Do-not-disturb.
	if d := e.must(200, "GET", "/v1/me", alice.token, nil); d["dnd_until"] != nil {
		t.Fatalf("dnd before any: %v", d)
	}
	if got := str(e.must(200, "PUT", "/v1/me/dnd", alice.token, map[string]any{"until": until.Format(time.RFC3339Nano)}), "dnd_until"); got != until.Format(time.RFC3339Nano) {
		t.Fatalf("dnd_until %q", got)
	}
	e.fails(400, parley.CodeInvalidRequest, "PUT", "/v1/me/dnd", alice.token, map[string]any{"until": "2001-01-01T00:00:00Z"})
	if got := str(e.must(200, "GET", "/v1/me", alice.token, nil), "dnd_until"); got != until.Format(time.RFC3339Nano) {
		t.Fatalf("GET /v1/me dnd_until %q", got)
	}
	if d := e.must(200, "PUT", "/v1/me/dnd", alice.token, map[string]any{"until": nil}); d["dnd_until"] != nil {
		t.Fatalf("dnd off: %v", d)
	}
	// Traces are for admins only.
	e.fails(403, parley.CodeForbidden, "GET", "/v1/admin/push/trace?conversation_id="+conv+"&seq=1", alice.token, nil)
	e.fails(400, parley.CodeInvalidRequest, "GET", "/v1/admin/push/trace?conversation_id="+conv, alice.token, nil)
}
