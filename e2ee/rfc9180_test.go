package e2ee

import (
	"bytes"
	"crypto/hpke"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// rfc9180Vector is one entry of the CFRG's test-vectors.json (the field
// names are the file's).
type rfc9180Vector struct {
	Mode        int     `json:"mode"`
	KEMID       uint16  `json:"kem_id"`
	KDFID       uint16  `json:"kdf_id"`
	AEADID      uint16  `json:"aead_id"`
	Info        hexData `json:"info"`
	IKMR        hexData `json:"ikmR"`
	IKME        hexData `json:"ikmE"`
	SKRm        hexData `json:"skRm"`
	SKEm        hexData `json:"skEm"`
	PKRm        hexData `json:"pkRm"`
	PKEm        hexData `json:"pkEm"`
	Enc         hexData `json:"enc"`
	PSK         hexData `json:"psk"`
	PSKID       hexData `json:"psk_id"`
	Encryptions []struct {
		AAD   hexData `json:"aad"`
		CT    hexData `json:"ct"`
		Nonce hexData `json:"nonce"`
		PT    hexData `json:"pt"`
	} `json:"encryptions"`
	Exports []struct {
		Context hexData `json:"exporter_context"`
		L       int     `json:"L"`
		Value   hexData `json:"exported_value"`
	} `json:"exports"`
}

type hexData []byte

func (h *hexData) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// TestRFC9180Vectors checks crypto/hpke, as this package configures it,
// against RFC 9180's published test vectors for the suite (appendix A.2:
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305), taken
// from the CFRG's test-vectors.json (draft-irtf-cfrg-hpke commit
// 5f503c5, the RFC's) and restricted to that suite.
//
// mode_base, which Parley uses, is covered fully: the recipient key pair
// derived from ikmR, the ephemeral one from ikmE (its public half is
// enc), every encryption opened in order with the vector's enc, every
// export. crypto/hpke has no API for mode_psk, mode_auth and
// mode_auth_psk (Parley uses none of them): for those only the KEM's key
// derivation is checked.
func TestRFC9180Vectors(t *testing.T) {
	data, err := os.ReadFile("../testdata/e2ee/rfc9180-x25519-sha256-chacha20poly1305.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []rfc9180Vector
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatal(err)
	}
	modes := map[int]bool{}
	for _, v := range vectors {
		modes[v.Mode] = true
		if v.KEMID != suiteKEM.ID() || v.KDFID != suiteKDF.ID() || v.AEADID != suiteAEAD.ID() {
			t.Fatalf("vector of suite %#x/%#x/%#x in the file", v.KEMID, v.KDFID, v.AEADID)
		}
		t.Run(map[int]string{0: "base", 1: "psk", 2: "auth", 3: "auth_psk"}[v.Mode], func(t *testing.T) {
			skR, err := suiteKEM.DeriveKeyPair(v.IKMR)
			if err != nil {
				t.Fatal(err)
			}
			// RFC 9180 section 7.1.2: a serialised X25519 private key is
			// clamped; the vectors list the unclamped DeriveKeyPair output.
			if b, _ := skR.Bytes(); !bytes.Equal(b, clampX25519(v.SKRm)) {
				t.Errorf("skRm = %x, want clamp(%x)", b, v.SKRm)
			}
			if b := skR.PublicKey().Bytes(); !bytes.Equal(b, v.PKRm) {
				t.Errorf("pkRm = %x, want %x", b, v.PKRm)
			}
			skE, err := suiteKEM.DeriveKeyPair(v.IKME)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := skE.Bytes(); !bytes.Equal(b, clampX25519(v.SKEm)) {
				t.Errorf("skEm = %x, want clamp(%x)", b, v.SKEm)
			}
			if b := skE.PublicKey().Bytes(); !bytes.Equal(b, v.PKEm) || !bytes.Equal(b, v.Enc) {
				t.Errorf("pkEm = %x, want %x = enc %x", b, v.PKEm, v.Enc)
			}
			// The vector's skRm as given is the same key.
			given, err := suiteKEM.NewPrivateKey(v.SKRm)
			if err != nil {
				t.Fatal(err)
			}
			if b := given.PublicKey().Bytes(); !bytes.Equal(b, v.PKRm) {
				t.Errorf("public key of skRm = %x, want %x", b, v.PKRm)
			}
			// The private key as a device stores it (serialised, then
			// read back, as KeyPairFromPrivate does) opens the encryptions.
			stored, _ := skR.Bytes()
			skR, err = suiteKEM.NewPrivateKey(stored)
			if err != nil {
				t.Fatal(err)
			}
			if v.Mode != 0 {
				t.Logf("mode %d: crypto/hpke implements mode_base only (Parley uses no other); key derivation checked, %d encryptions and %d exports not run",
					v.Mode, len(v.Encryptions), len(v.Exports))
				return
			}
			r, err := hpke.NewRecipient(v.Enc, skR, suiteKDF, suiteAEAD, v.Info)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range v.Encryptions {
				pt, err := r.Open(e.AAD, e.CT)
				if err != nil {
					t.Fatalf("encryption %d: %v", i, err)
				}
				if !bytes.Equal(pt, e.PT) {
					t.Fatalf("encryption %d: pt = %x, want %x", i, pt, e.PT)
				}
			}
			if len(v.Encryptions) != 257 {
				t.Errorf("%d encryptions, the file has 257 per mode", len(v.Encryptions))
			}
			for i, x := range v.Exports {
				got, err := r.Export(string(x.Context), x.L)
				if err != nil {
					t.Fatalf("export %d: %v", i, err)
				}
				if !bytes.Equal(got, x.Value) {
					t.Errorf("export %d = %x, want %x", i, got, x.Value)
				}
			}
			// A sealed byte flipped does not open.
			r, _ = hpke.NewRecipient(v.Enc, skR, suiteKDF, suiteAEAD, v.Info)
			ct := bytes.Clone(v.Encryptions[0].CT)
			ct[0] ^= 1
			if _, err := r.Open(v.Encryptions[0].AAD, ct); err == nil {
				t.Error("a changed ciphertext opened")
			}
		})
	}
	if !modes[0] || len(vectors) != 4 {
		t.Fatalf("want the 4 modes of the suite, got %d vectors (modes %v)", len(vectors), modes)
	}
}

func clampX25519(k []byte) []byte {
	c := bytes.Clone(k)
	c[0] &= 248
	c[31] &= 127
	c[31] |= 64
	return c
}
