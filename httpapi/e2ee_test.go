package httpapi

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"testing"

	"github.com/parleychat/parley"
)

// FuzzDecodeDeviceKeys fuzzes the decoder of PUT /v1/devices/me/keys:
// whatever it accepts is the keys of the given device, of the right
// sizes, with a signature that verifies; everything else is
// invalid_request.
func FuzzDecodeDeviceKeys(f *testing.F) {
	const user, device = "0193a1b2-0000-7000-8000-000000000001", "0193a1b2-0000-7000-8000-000000000002"
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	hpke := make([]byte, 32)
	rand.Read(hpke)
	sig := ed25519.Sign(priv, parley.DeviceKeySignedBytes(user, device, 1, parley.SuiteX25519, hpke))
	good, _ := json.Marshal(publishKeysRequest{IdentityKey: parley.B64.EncodeToString(pub), Suite: parley.SuiteX25519, KeyID: 1,
		PublicKey: parley.B64.EncodeToString(hpke), KeySignature: parley.B64.EncodeToString(sig)})
	f.Add(good)
	f.Add([]byte(`{"identity_key":"","suite":"x25519-hkdf-sha256-chacha20poly1305","key_id":1}`))
	f.Add([]byte(`{"key_id":"1"}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 16<<10 {
			return
		}
		k, err := decodeDeviceKeys(body, user, device)
		if err != nil {
			if parley.ErrorCode(err) != parley.CodeInvalidRequest {
				t.Fatalf("code %s for %q", parley.ErrorCode(err), body)
			}
			return
		}
		id, err1 := parley.B64.DecodeString(k.IdentityKey)
		pk, err2 := parley.B64.DecodeString(k.PublicKey)
		s, err3 := parley.B64.DecodeString(k.KeySignature)
		if err1 != nil || err2 != nil || err3 != nil || len(id) != 32 || len(pk) != 32 || k.UserID != user || k.DeviceID != device ||
			!ed25519.Verify(id, parley.DeviceKeySignedBytes(user, device, k.KeyID, k.Suite, pk), s) {
			t.Fatalf("accepted %+v", k)
		}
	})
}
