package parley

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func b64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return B64.EncodeToString(b)
}

// signedKeys returns device keys signed with a fresh identity key.
func signedKeys(t testing.TB, userID, deviceID string, keyID int64) (*DeviceKeys, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hpke := make([]byte, 32)
	rand.Read(hpke)
	sig := ed25519.Sign(priv, DeviceKeySignedBytes(userID, deviceID, keyID, SuiteX25519, hpke))
	return &DeviceKeys{UserID: userID, DeviceID: deviceID, IdentityKey: B64.EncodeToString(pub), Suite: SuiteX25519,
		KeyID: keyID, PublicKey: B64.EncodeToString(hpke), KeySignature: B64.EncodeToString(sig)}, priv
}

func TestDeviceKeySignedBytes(t *testing.T) {
	got := DeviceKeySignedBytes("u", "dv", 258, "s", []byte{9})
	want := append([]byte("parley-e2ee-v1/device-key"),
		0, 0, 0, 1, 'u', 0, 0, 0, 2, 'd', 'v', 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, 's', 0, 0, 0, 1, 9)
	if !slices.Equal(got, want) {
		t.Fatalf("signed bytes\n got %v\nwant %v", got, want)
	}
}

func TestDeviceKeysCheck(t *testing.T) {
	user, device := NewID(), NewID()
	k, _ := signedKeys(t, user, device, 3)
	if err := k.Check(); err != nil {
		t.Fatalf("good keys: %v", err)
	}
	for name, change := range map[string]func(k *DeviceKeys){
		"other user":       func(k *DeviceKeys) { k.UserID = NewID() },
		"other device":     func(k *DeviceKeys) { k.DeviceID = NewID() },
		"other key id":     func(k *DeviceKeys) { k.KeyID = 4 },
		"other public key": func(k *DeviceKeys) { k.PublicKey = b64(32) },
		"unknown suite":    func(k *DeviceKeys) { k.Suite = "x448" },
		"key id 0":         func(k *DeviceKeys) { k.KeyID = 0 },
		"short identity":   func(k *DeviceKeys) { k.IdentityKey = b64(31) },
		"padded signature": func(k *DeviceKeys) { k.KeySignature += "==" },
		"std base64": func(k *DeviceKeys) {
			k.PublicKey = strings.ReplaceAll(strings.ReplaceAll(k.PublicKey, "-", "+"), "_", "/") + "+"
		},
	} {
		c := *k
		change(&c)
		if err := c.Check(); ErrorCode(err) != CodeInvalidRequest {
			t.Errorf("%s: %v, want invalid_request", name, err)
		}
	}
}

func TestCheckEnvelope(t *testing.T) {
	good := func() *Envelope {
		return &Envelope{V: 1, Suite: SuiteX25519, Ciphertext: b64(40), Signature: b64(64),
			Keys: []EnvelopeKey{{DeviceID: NewID(), KeyID: 1, Enc: b64(32), Sealed: b64(48)}}}
	}
	if err := CheckEnvelope(good(), 100); err != nil {
		t.Fatal(err)
	}
	dup := good()
	dup.Keys = append(dup.Keys, dup.Keys[0])
	for name, tc := range map[string]struct {
		e    *Envelope
		code Code
	}{
		"nil":        {nil, CodeInvalidRequest},
		"v2":         {func() *Envelope { e := good(); e.V = 2; return e }(), CodeInvalidRequest},
		"suite":      {func() *Envelope { e := good(); e.Suite = "?"; return e }(), CodeInvalidRequest},
		"too big":    {func() *Envelope { e := good(); e.Ciphertext = b64(129); return e }(), CodePayloadTooLarge},
		"too small":  {func() *Envelope { e := good(); e.Ciphertext = b64(27); return e }(), CodeInvalidRequest},
		"signature":  {func() *Envelope { e := good(); e.Signature = b64(63); return e }(), CodeInvalidRequest},
		"enc":        {func() *Envelope { e := good(); e.Keys[0].Enc = b64(33); return e }(), CodeInvalidRequest},
		"sealed":     {func() *Envelope { e := good(); e.Keys[0].Sealed = b64(32); return e }(), CodeInvalidRequest},
		"device id":  {func() *Envelope { e := good(); e.Keys[0].DeviceID = "x"; return e }(), CodeInvalidRequest},
		"key id":     {func() *Envelope { e := good(); e.Keys[0].KeyID = -1; return e }(), CodeInvalidRequest},
		"duplicated": {dup, CodeInvalidRequest},
	} {
		if err := CheckEnvelope(tc.e, 100); ErrorCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", name, err, tc.code)
		}
	}
	if err := CheckEnvelope(&Envelope{V: 1, Suite: SuiteX25519, Ciphertext: b64(128), Signature: b64(64)}, 100); err != nil {
		t.Errorf("ciphertext of exactly max+28 bytes: %v", err)
	}
}

func TestMatchDevices(t *testing.T) {
	want := []RecipientDevice{{"u1", "d1", 1}, {"u1", "d2", 3}, {"u2", "d3", 1}}
	keys := []EnvelopeKey{{DeviceID: "d1", KeyID: 1}, {DeviceID: "d2", KeyID: 3}, {DeviceID: "d3", KeyID: 1}}
	if mm := MatchDevices(keys, want); mm != nil {
		t.Fatalf("exact cover: %+v", mm)
	}
	mm := MatchDevices([]EnvelopeKey{{DeviceID: "d2", KeyID: 2}, {DeviceID: "dx", KeyID: 1}, {DeviceID: "d3", KeyID: 1}}, want)
	if mm == nil || len(mm.Missing) != 1 || mm.Missing[0] != (DeviceRef{UserID: "u1", DeviceID: "d1"}) ||
		!slices.Equal(mm.Extra, []string{"dx"}) || len(mm.Stale) != 1 || mm.Stale[0] != (DeviceRef{UserID: "u1", DeviceID: "d2", KeyID: 3}) {
		t.Fatalf("mismatch %+v", mm)
	}
	if ErrorCode(mm) != CodeDeviceMismatch {
		t.Fatalf("code %s", ErrorCode(mm))
	}
	b, _ := json.Marshal(MatchDevices(nil, want[:1]).DeviceMismatch)
	if string(b) != `{"missing":[{"user_id":"u1","device_id":"d1"}],"extra":[],"stale":[]}` {
		t.Fatalf("JSON %s", b)
	}
}

func TestEnvelopeForDevice(t *testing.T) {
	e := &Envelope{V: 1, Suite: SuiteX25519, Ciphertext: "c", Signature: "s",
		Keys: []EnvelopeKey{{DeviceID: "a", KeyID: 1, Enc: "ea", Sealed: "sa"}, {DeviceID: "b", KeyID: 2, Enc: "eb", Sealed: "sb"}}}
	b, _ := json.Marshal(e.For("b"))
	if string(b) != `{"v":1,"suite":"x25519-hkdf-sha256-chacha20poly1305","ciphertext":"c","signature":"s","key":{"device_id":"b","key_id":2,"enc":"eb","sealed":"sb"}}` {
		t.Fatalf("for b: %s", b)
	}
	b, _ = json.Marshal(e)
	if strings.Contains(string(b), "ea") || strings.Contains(string(b), "keys") {
		t.Fatalf("an envelope encodes its keys: %s", b)
	}
	if e.For("z").Key != nil {
		t.Fatal("a device without a key got one")
	}
}

// FuzzEnvelope fuzzes the envelope decoder: the JSON of a send's
// envelope, then CheckEnvelope. Whatever it accepts has every field of
// the right decoded size and no device twice.
func FuzzEnvelope(f *testing.F) {
	good, _ := json.Marshal(EnvelopeInput{V: 1, Suite: SuiteX25519, Ciphertext: b64(40), Signature: b64(64),
		Keys: []EnvelopeKey{{DeviceID: NewID(), KeyID: 1, Enc: b64(32), Sealed: b64(48)}}})
	f.Add(good)
	f.Add([]byte(`{"v":1,"suite":"x25519-hkdf-sha256-chacha20poly1305","ciphertext":"","signature":"","keys":[]}`))
	f.Add([]byte(`{"v":1,"keys":[{"device_id":"x","key_id":1e300}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		var in EnvelopeInput
		if json.Unmarshal(data, &in) != nil {
			return
		}
		e := in.Envelope()
		if err := CheckEnvelope(e, 1024); err != nil {
			if c := ErrorCode(err); c != CodeInvalidRequest && c != CodePayloadTooLarge {
				t.Fatalf("code %s", c)
			}
			return
		}
		ct, err := B64.DecodeString(e.Ciphertext)
		if err != nil || len(ct) < CiphertextOverhead || len(ct) > 1024+CiphertextOverhead {
			t.Fatalf("accepted ciphertext of %d bytes (%v)", len(ct), err)
		}
		seen := map[string]bool{}
		for _, k := range e.Keys {
			enc, err1 := B64.DecodeString(k.Enc)
			sealed, err2 := B64.DecodeString(k.Sealed)
			if err1 != nil || err2 != nil || len(enc) != EncSize || len(sealed) != SealedKeySize || seen[k.DeviceID] || !ValidID(k.DeviceID) {
				t.Fatalf("accepted key %+v", k)
			}
			seen[k.DeviceID] = true
		}
	})
}
