package pushtest

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"testing"
)

// FuzzDecryptWebPush feeds the aes128gcm decoder arbitrary bodies: it must
// return an error, never panic.
func FuzzDecryptWebPush(f *testing.F) {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	auth := make([]byte, 16)
	header := make([]byte, 21, 21+65+32)
	binary.BigEndian.PutUint32(header[16:20], 4096)
	header[20] = 65
	withKey := append(header, key.PublicKey().Bytes()...)
	f.Add([]byte{})
	f.Add(header)
	f.Add(append(withKey, make([]byte, 32)...))
	f.Fuzz(func(t *testing.T, body []byte) {
		if plain, err := decryptWebPush(body, key, auth); err == nil && plain == nil {
			t.Error("nil plaintext without an error")
		}
	})
}
