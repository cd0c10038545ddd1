package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// e2eeKeys publishes real keys for u's device over REST.
func (e *env) e2eeKeys(u user) {
	e.t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	hpke := make([]byte, 32)
	rand.Read(hpke)
	sig := ed25519.Sign(priv, parley.DeviceKeySignedBytes(u.id, u.device, 1, parley.SuiteX25519, hpke))
	e.must(200, "PUT", "/v1/devices/me/keys", u.token, map[string]any{"identity_key": parley.B64.EncodeToString(pub),
		"suite": parley.SuiteX25519, "key_id": 1, "public_key": parley.B64.EncodeToString(hpke), "key_signature": parley.B64.EncodeToString(sig)})
}

func fakeB64(n int) string { return parley.B64.EncodeToString(bytes.Repeat([]byte{1}, n)) }

// envelopeFor is a well-formed envelope with a key for each device (the
// server cannot tell fake sealed keys from real ones).
func envelopeFor(devices ...string) map[string]any {
	keys := []any{}
	for _, d := range devices {
		keys = append(keys, map[string]any{"device_id": d, "key_id": 1, "enc": fakeB64(32), "sealed": fakeB64(48)})
	}
	return map[string]any{"v": 1, "suite": parley.SuiteX25519, "ciphertext": fakeB64(40), "signature": fakeB64(64), "keys": keys}
}

// TestE2EESendLimitsAndAttachments: an encrypted REST send may pass the
// other requests' body limit (up to 2 MiB: a large group's keys), a
// plaintext one may not; an encrypted message carries only media
// uploaded encrypted, whose objects keep the stored blob's size and
// digest and nothing else; the e2ee member cap holds on create and add.
func TestE2EESendLimitsAndAttachments(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.user("alice"), e.user("bob"), e.user("carol")
	e.e2eeKeys(alice)
	e.e2eeKeys(bob)
	conv := str(e.must(201, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "group", "title": "t", "members": []string{bob.id}, "e2ee": true}), "conversation", "id")
	path := "/v1/conversations/" + conv + "/messages"

	// 300 keys (about 57 KB) pass the 17 KiB limit of this server's
	// plaintext requests and reach the envelope check.
	devices := []string{bob.device}
	for range 299 {
		devices = append(devices, parley.NewID())
	}
	code, out := e.call("POST", path, alice.token, map[string]any{"client_msg_id": "big", "type": "encrypted", "envelope": envelopeFor(devices...)})
	if code != 409 || len(out["error"].(map[string]any)["extra"].([]any)) != 299 {
		t.Fatalf("a large encrypted send: %d, extra %d", code, len(fmt.Sprint(out)))
	}
	e.fails(413, parley.CodePayloadTooLarge, "POST", path, alice.token, map[string]any{"client_msg_id": "pad", "body": "x", "padding": strings.Repeat("p", 60<<10)})
	huge := envelopeFor(bob.device)
	huge["padding"] = strings.Repeat("p", 2<<20)
	e.fails(413, parley.CodePayloadTooLarge, "POST", path, alice.token, map[string]any{"client_msg_id": "huge", "type": "encrypted", "envelope": huge})

	media := func(encrypted bool) string {
		m := &parley.Media{ID: parley.NewID(), UploaderID: alice.id, UploaderDeviceID: alice.device, ConversationID: conv, State: parley.MediaReady,
			Encrypted: encrypted, ContentType: "application/octet-stream", Size: 10, SHA256: strings.Repeat("ab", 32), Filename: "f.bin",
			DeclaredSize: 10, CreatedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(time.Hour)}
		if err := e.store.CreateMedia(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	plainMedia, secretMedia := media(false), media(true)
	e.fails(400, parley.CodeInvalidRequest, "POST", path, alice.token, map[string]any{"client_msg_id": "att1", "type": "encrypted",
		"envelope": envelopeFor(bob.device), "attachments": []any{map[string]any{"media_id": plainMedia}}})
	sent := e.must(201, "POST", path, alice.token, map[string]any{"client_msg_id": "att2", "type": "encrypted",
		"envelope": envelopeFor(bob.device), "attachments": []any{map[string]any{"media_id": secretMedia}}})
	a := sent["message"].(map[string]any)["attachments"].([]any)[0].(map[string]any)
	if a["sha256"] != strings.Repeat("ab", 32) || a["size"].(float64) != 10 || a["content_type"] != "application/octet-stream" || a["filename"] != nil || a["encrypted"] != true {
		t.Fatalf("encrypted attachment object %v", a)
	}

	// The member cap (100 by default): a group of 101 is refused.
	others := []string{}
	for range 100 {
		others = append(others, e.user(fmt.Sprintf("member%03d", len(others))).id)
	}
	e.fails(409, parley.CodeLimitExceeded, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "group", "title": "big", "members": others, "e2ee": true})
	big := str(e.must(201, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "group", "title": "big", "members": others[:99], "e2ee": true}), "conversation", "id")
	e.fails(409, parley.CodeLimitExceeded, "POST", "/v1/conversations/"+big+"/members", alice.token, map[string]any{"user_id": carol.id})
}
