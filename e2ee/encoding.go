// Package e2ee holds Parley's end-to-end encryption formats and the
// cryptography behind them, as docs/design/e2ee.md specifies byte for
// byte: device keys (an Ed25519 identity and an X25519 HPKE key with a
// key id, signed by the identity), the message envelope (one
// ChaCha20-Poly1305 ciphertext of the content, the content key sealed with
// HPKE to every recipient device, the whole signed by the sending device),
// the chunked encryption of attachment files, fingerprints and safety
// numbers, and the keystore a client keeps its private keys in.
//
// It uses only standard building blocks: crypto/hpke (RFC 9180, mode_base,
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305),
// crypto/ed25519, golang.org/x/crypto/chacha20poly1305, crypto/sha256 and
// crypto/rand. It does no networking: package client fetches device lists
// and carries envelopes.
//
// Functions are safe for concurrent use; a Keystore is not (its owner
// locks it).
package e2ee

// The shared vectors (testdata/e2ee/envelope-vectors.json) are made from
// fixed inputs by the test that checks them:
//go:generate go test -run TestEnvelopeVectors -update

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
)

// Suite is the only suite of version 1: HPKE with KEM 0x0020
// (DHKEM(X25519, HKDF-SHA256)), KDF 0x0001 (HKDF-SHA256) and AEAD 0x0003
// (ChaCha20-Poly1305).
const Suite = "x25519-hkdf-sha256-chacha20poly1305"

// Version is the envelope and content version this package reads and
// writes.
const Version = 1

// Sizes of the fixed-length values of the suite, in bytes.
const (
	IdentityKeySize  = 32 // Ed25519 public key
	SignatureSize    = 64 // Ed25519 signature
	PublicKeySize    = 32 // X25519 HPKE public key
	PrivateKeySize   = 32 // X25519 HPKE private key
	EncSize          = 32 // HPKE encapsulated key
	ContentKeySize   = 32 // ChaCha20-Poly1305 key of a message or a file
	SealedSize       = ContentKeySize + 16
	NonceSize        = 12
	TagSize          = 16
	FingerprintSize  = 32
	MinCiphertextLen = NonceSize + TagSize
)

// b64 is base64url without padding (RFC 4648 section 5), strict about
// trailing bits.
var b64 = base64.RawURLEncoding.Strict()

// Bytes is binary data that travels in JSON as a base64url string
// without padding. Decoding is strict: padding, line breaks and non-zero
// trailing bits are refused, so a value has exactly one encoding.
type Bytes []byte

// MarshalJSON implements json.Marshaler.
func (b Bytes) MarshalJSON() ([]byte, error) {
	out := make([]byte, 0, b64.EncodedLen(len(b))+2)
	out = append(out, '"')
	out = b64.AppendEncode(out, b)
	return append(out, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler. JSON null leaves b nil.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*b = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New("e2ee: a binary value must be a base64url string")
	}
	v, err := DecodeB64(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// EncodeB64 encodes b as base64url without padding.
func EncodeB64(b []byte) string { return b64.EncodeToString(b) }

// DecodeB64 decodes base64url without padding, strictly (see Bytes).
func DecodeB64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n=") {
		return nil, errors.New("e2ee: not base64url without padding")
	}
	v, err := b64.DecodeString(s)
	if err != nil {
		return nil, errors.New("e2ee: not base64url without padding")
	}
	return v, nil
}

// appendLP appends lp(x): x's length as 4 bytes big-endian, then x.
func appendLP(dst []byte, x []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(x)))
	return append(dst, x...)
}

func appendLPString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// appendU64 appends u64(n): 8 bytes big-endian.
func appendU64(dst []byte, n int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(n))
}
