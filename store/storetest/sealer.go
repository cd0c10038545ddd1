package storetest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"
)

// Sealer is a parley.Sealer for engine tests: AES-256-GCM with one random
// key (id 7), the nonce prepended to the ciphertext. The real one is
// package seal.
type Sealer struct{ aead cipher.AEAD }

// NewSealer returns a Sealer with a new random key.
func NewSealer(tb testing.TB) *Sealer {
	tb.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		tb.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		tb.Fatal(err)
	}
	return &Sealer{aead: aead}
}

// SealerKeyID is the key id every Sealer seals with.
const SealerKeyID = 7

// Seal implements parley.Sealer.
func (s *Sealer) Seal(plaintext, additionalData []byte) (uint32, []byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	rand.Read(nonce)
	return SealerKeyID, s.aead.Seal(nonce, nonce, plaintext, additionalData), nil
}

// Open implements parley.Sealer.
func (s *Sealer) Open(keyID uint32, ciphertext, additionalData []byte) ([]byte, error) {
	if keyID != SealerKeyID {
		return nil, errors.New("storetest.Sealer: unknown key id")
	}
	n := s.aead.NonceSize()
	if len(ciphertext) < n {
		return nil, errors.New("storetest.Sealer: short ciphertext")
	}
	return s.aead.Open(nil, ciphertext[:n], ciphertext[n:], additionalData)
}
