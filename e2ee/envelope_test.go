package e2ee

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// testDevice is a device with its keys, for tests.
type testDevice struct {
	userID, deviceID string
	id               *Identity
	kp               *KeyPair
}

func newTestDevice(t testing.TB, userID, deviceID string, keyID int64) *testDevice {
	t.Helper()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := GenerateKeyPair(keyID)
	if err != nil {
		t.Fatal(err)
	}
	return &testDevice{userID: userID, deviceID: deviceID, id: id, kp: kp}
}

func (d *testDevice) recipient() Recipient {
	return Recipient{UserID: d.userID, DeviceID: d.deviceID, KeyID: d.kp.KeyID, PublicKey: d.kp.Public}
}

func (d *testDevice) finder(keyID int64) *KeyPair {
	if keyID == d.kp.KeyID {
		return d.kp
	}
	return nil
}

// receivedBy is env as the server delivers it to device deviceID.
func receivedBy(env *Envelope, deviceID string) *Envelope {
	out := &Envelope{V: env.V, Suite: env.Suite, Ciphertext: env.Ciphertext, Signature: env.Signature}
	for i := range env.Keys {
		if env.Keys[i].DeviceID == deviceID {
			k := env.Keys[i]
			out.Key = &k
		}
	}
	return out
}

// group makes members users with devices devices each; the first device
// of the first user sends.
func group(t testing.TB, members, devices int) (sender *testDevice, others []*testDevice) {
	t.Helper()
	for u := range members {
		for d := range devices {
			dev := newTestDevice(t, fmt.Sprintf("user-%d", u), fmt.Sprintf("device-%d-%d", u, d), int64(1+d))
			if u == 0 && d == 0 {
				sender = dev
				continue
			}
			others = append(others, dev)
		}
	}
	return sender, others
}

func recipientsOf(ds []*testDevice) []Recipient {
	out := make([]Recipient, len(ds))
	for i, d := range ds {
		out[i] = d.recipient()
	}
	return out
}

func TestSealOpenGroup(t *testing.T) {
	sender, others := group(t, 3, 2) // the sender's other device is a recipient
	h := Header{ConversationID: "conv", SenderUserID: sender.userID, SenderDeviceID: sender.deviceID, ClientMsgID: "m1"}
	content, err := Content{Type: TypeText, Body: "see you at 8"}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	env, k, err := Seal(sender.id, h, content, recipientsOf(others))
	if err != nil {
		t.Fatal(err)
	}
	if len(env.Keys) != 5 || len(k) != 32 {
		t.Fatalf("%d keys, K of %d bytes", len(env.Keys), len(k))
	}
	// The envelope survives its JSON, as the server stores and relays it.
	data, _ := json.Marshal(env)
	env2, err := ParseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range others {
		o, err := Open(h, d.deviceID, receivedBy(env2, d.deviceID), d.finder, sender.id.Public())
		if err != nil {
			t.Fatalf("%s: %v", d.deviceID, err)
		}
		if o.Content.Body != "see you at 8" || o.Content.Type != TypeText || !bytes.Equal(o.ContentKey, k) {
			t.Fatalf("%s: %+v", d.deviceID, o.Content)
		}
	}
	// The sender opens its own copy (no key) with K.
	own := receivedBy(env2, sender.deviceID)
	if own.Key != nil {
		t.Fatal("the sender sealed to itself")
	}
	if _, err := Open(h, sender.deviceID, own, sender.finder, sender.id.Public()); ReasonOf(err) != ReasonNoKey {
		t.Fatalf("own message without K: %v", err)
	}
	o, err := OpenOwn(h, own, k, sender.id.Public())
	if err != nil || o.Content.Body != "see you at 8" {
		t.Fatalf("own message with K: %v", err)
	}
	// A device that was not a recipient (a member added later) has no key.
	late := newTestDevice(t, "user-9", "device-9", 1)
	if _, err := Open(h, late.deviceID, receivedBy(env2, late.deviceID), late.finder, sender.id.Public()); ReasonOf(err) != ReasonNoKey {
		t.Fatalf("late device: %v", err)
	}
	// Another device's key given to this one does not open.
	wrong := receivedBy(env2, others[0].deviceID)
	if _, err := Open(h, others[1].deviceID, wrong, others[1].finder, sender.id.Public()); ReasonOf(err) != ReasonNoKey {
		t.Fatalf("another device's key: %v", err)
	}
	wrong.Key.DeviceID = others[1].deviceID
	wrong.Key.KeyID = others[1].kp.KeyID
	if _, err := Open(h, others[1].deviceID, wrong, others[1].finder, sender.id.Public()); ReasonOf(err) != ReasonBadCiphertext {
		t.Fatalf("another device's key relabelled: %v", err)
	}
}

func TestSealKeysResend(t *testing.T) {
	sender, others := group(t, 2, 1)
	h := Header{ConversationID: "c", SenderUserID: sender.userID, SenderDeviceID: sender.deviceID, ClientMsgID: "m"}
	content, _ := Content{Body: "x"}.Marshal()
	env, k, err := Seal(sender.id, h, content, recipientsOf(others))
	if err != nil {
		t.Fatal(err)
	}
	// A device that was missing gets a key for the same K; the rest of
	// the envelope does not change.
	added := newTestDevice(t, "user-1", "device-new", 1)
	keys, err := SealKeys(h, k, []Recipient{added.recipient()})
	if err != nil {
		t.Fatal(err)
	}
	env.Keys = append(env.Keys, keys...)
	if err := env.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(h, added.deviceID, receivedBy(env, added.deviceID), added.finder, sender.id.Public()); err != nil {
		t.Fatal(err)
	}
	if _, err := SealKeys(h, k, []Recipient{added.recipient(), added.recipient()}); err == nil {
		t.Error("a device twice sealed")
	}
	if _, err := SealKeys(h, k, []Recipient{sender.recipient()}); err == nil {
		t.Error("sealed to the sending device")
	}
	bad := added.recipient()
	bad.PublicKey = bad.PublicKey[:31]
	if _, err := SealKeys(h, k, []Recipient{bad}); err == nil {
		t.Error("sealed to a 31-byte key")
	}
}

func TestOpenRefusesTampering(t *testing.T) {
	sender, others := group(t, 2, 1)
	bob := others[0]
	h := Header{ConversationID: "c", SenderUserID: sender.userID, SenderDeviceID: sender.deviceID, ClientMsgID: "m"}
	content, _ := Content{Body: "secret"}.Marshal()
	env, _, err := Seal(sender.id, h, content, recipientsOf(others))
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(env.Ciphertext) {
		e := receivedBy(env, bob.deviceID)
		e.Ciphertext = bytes.Clone(env.Ciphertext)
		e.Ciphertext[i] ^= 0x80
		if _, err := Open(h, bob.deviceID, e, bob.finder, sender.id.Public()); ReasonOf(err) != ReasonBadSignature {
			t.Fatalf("ciphertext byte %d changed: %v", i, err)
		}
	}
	e := receivedBy(env, bob.deviceID)
	e.Ciphertext = e.Ciphertext[:len(e.Ciphertext)-1]
	if _, err := Open(h, bob.deviceID, e, bob.finder, sender.id.Public()); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("truncated: %v", err)
	}
	for _, mut := range []func(*Header){
		func(h *Header) { h.ConversationID = "c2" },
		func(h *Header) { h.SenderDeviceID = "other" },
		func(h *Header) { h.ClientMsgID = "m2" },
	} {
		h2 := h
		mut(&h2)
		if _, err := Open(h2, bob.deviceID, receivedBy(env, bob.deviceID), bob.finder, sender.id.Public()); ReasonOf(err) != ReasonBadCiphertext {
			t.Errorf("header %+v: %v", h2, err)
		}
	}
	// The sender user id is not in the key's aad but is signed.
	h2 := h
	h2.SenderUserID = "mallory"
	if _, err := Open(h2, bob.deviceID, receivedBy(env, bob.deviceID), bob.finder, sender.id.Public()); ReasonOf(err) != ReasonBadSignature {
		t.Errorf("another sender user: %v", err)
	}
	// A member who re-signs someone else's ciphertext with its own key is
	// caught by the identity the receiver looks up for the sending device.
	mallory := others[0]
	forged := receivedBy(env, bob.deviceID)
	forged.Signature = mallory.id.Sign(h.SignatureInput(Suite, env.Ciphertext))
	if _, err := Open(h, bob.deviceID, forged, bob.finder, sender.id.Public()); ReasonOf(err) != ReasonBadSignature {
		t.Errorf("re-signed: %v", err)
	}
	if _, err := Open(h, bob.deviceID, receivedBy(env, bob.deviceID), bob.finder, nil); ReasonOf(err) != ReasonUnknownSenderDevice {
		t.Errorf("unknown sender device: %v", err)
	}
	var de *DecryptError
	_, err = Open(h, bob.deviceID, receivedBy(env, bob.deviceID), bob.finder, nil)
	if !errors.As(err, &de) || !errors.Is(err, &DecryptError{Reason: ReasonUnknownSenderDevice}) || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %v", err)
	}
}

func TestParseEnvelopeRefuses(t *testing.T) {
	sender, others := group(t, 2, 1)
	h := Header{ConversationID: "c", SenderUserID: sender.userID, SenderDeviceID: sender.deviceID, ClientMsgID: "m"}
	content, _ := Content{Body: "x"}.Marshal()
	env, _, _ := Seal(sender.id, h, content, recipientsOf(others))
	good, _ := json.Marshal(env)
	if _, err := ParseEnvelope(good); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(map[string]any){
		"v 2":               func(m map[string]any) { m["v"] = 2 },
		"other suite":       func(m map[string]any) { m["suite"] = "x25519-kyber" },
		"short signature":   func(m map[string]any) { m["signature"] = EncodeB64(make([]byte, 63)) },
		"short ciphertext":  func(m map[string]any) { m["ciphertext"] = EncodeB64(make([]byte, 27)) },
		"padded base64":     func(m map[string]any) { m["signature"] = EncodeB64(make([]byte, 64)) + "==" },
		"standard alphabet": func(m map[string]any) { m["signature"] = strings.Repeat("+", 86) },
		"short enc": func(m map[string]any) {
			m["keys"].([]any)[0].(map[string]any)["enc"] = EncodeB64(make([]byte, 31))
		},
		"long sealed": func(m map[string]any) {
			m["keys"].([]any)[0].(map[string]any)["sealed"] = EncodeB64(make([]byte, 49))
		},
		"key_id 0": func(m map[string]any) { m["keys"].([]any)[0].(map[string]any)["key_id"] = 0 },
		"device twice": func(m map[string]any) {
			m["keys"] = append(m["keys"].([]any), m["keys"].([]any)[0])
		},
	} {
		var m map[string]any
		_ = json.Unmarshal(good, &m)
		edit(m)
		data, _ := json.Marshal(m)
		if _, err := ParseEnvelope(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseEnvelope([]byte(`{"v":1`)); err == nil {
		t.Error("truncated JSON accepted")
	}
	if _, err := ParseEnvelope(make([]byte, MaxEnvelopeJSON+1)); err == nil {
		t.Error("oversized accepted")
	}
}

func TestContent(t *testing.T) {
	key := make([]byte, 32)
	digest := strings.Repeat("ab", 32)
	c := Content{Type: TypeImage, Body: "look", Attachments: []Attachment{{MediaID: "m1", Key: key, SHA256: digest, ContentType: "image/png", Size: 10,
		Thumbnail: &Thumbnail{MediaID: "m2", Key: key, SHA256: digest, ContentType: "image/jpeg", Width: 3, Height: 2}}}}
	raw, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseContent(raw)
	if err != nil || got.V != 1 || got.Attachments[0].Thumbnail.MediaID != "m2" {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []string{
		`{"v":2,"type":"text","body":"x"}`,
		`{"v":1,"type":"sticker","body":"x"}`,
		`{"v":1,"type":"file","attachments":[{"media_id":"m","key":"AAAA","sha256":"` + digest + `"}]}`,
		`{"v":1,"type":"file","attachments":[{"media_id":"m","key":"` + EncodeB64(key) + `","sha256":"` + strings.ToUpper(digest) + `"}]}`,
		`{"v":1,"type":"file","attachments":[{"key":"` + EncodeB64(key) + `","sha256":"` + digest + `"}]}`,
		`[1]`,
	} {
		if _, err := ParseContent([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	if _, err := ParseContent([]byte(`{"v":1,"type":"text","body":"x","reactions":{"a":1}}`)); err != nil {
		t.Errorf("unknown field refused: %v", err)
	}
}

func TestSafetyNumber(t *testing.T) {
	a := Fingerprint("alice", [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)})
	a2 := Fingerprint("alice", [][]byte{bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{1}, 32)})
	if !bytes.Equal(a, a2) {
		t.Fatal("fingerprint depends on the order of the keys")
	}
	b := Fingerprint("bob", [][]byte{bytes.Repeat([]byte{3}, 32)})
	s1, err1 := SafetyNumber("alice", a, "bob", b)
	s2, err2 := SafetyNumber("bob", b, "alice", a)
	if err1 != nil || err2 != nil || s1 != s2 {
		t.Fatalf("%q vs %q", s1, s2)
	}
	groups := strings.Split(s1, " ")
	if len(groups) != 12 || len(strings.ReplaceAll(s1, " ", "")) != 60 {
		t.Fatalf("safety number %q", s1)
	}
	for _, g := range groups {
		if len(g) != 5 || strings.Trim(g, "0123456789") != "" {
			t.Fatalf("group %q", g)
		}
	}
	c := Fingerprint("alice", [][]byte{bytes.Repeat([]byte{1}, 32)})
	if s3, _ := SafetyNumber("alice", c, "bob", b); s3 == s1 {
		t.Error("a removed device does not change the safety number")
	}
}
