package postgres

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/testenv"
	"github.com/parleychat/parley/store/storetest"
)

// testSealer is AES-256-GCM with one random key (id 7), the nonce
// prepended. The real sealer lives in package seal.
type testSealer struct{ aead cipher.AEAD }

func newTestSealer(tb testing.TB) *testSealer {
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
	return &testSealer{aead: aead}
}

const testKeyID = 7

func (s *testSealer) Seal(plaintext, additionalData []byte) (uint32, []byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	rand.Read(nonce)
	return testKeyID, s.aead.Seal(nonce, nonce, plaintext, additionalData), nil
}

func (s *testSealer) Open(keyID uint32, ciphertext, additionalData []byte) ([]byte, error) {
	if keyID != testKeyID {
		return nil, errors.New("testSealer: unknown key id")
	}
	n := s.aead.NonceSize()
	if len(ciphertext) < n {
		return nil, errors.New("testSealer: short ciphertext")
	}
	return s.aead.Open(nil, ciphertext[:n], ciphertext[n:], additionalData)
}

// openStore opens a store on dsn and closes it when the test ends.
func openStore(tb testing.TB, dsn string, sealer parley.Sealer) *Store {
	tb.Helper()
	s, err := Open(context.Background(), dsn, Options{Sealer: sealer})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(tb testing.TB) parley.Store {
		return openStore(tb, testenv.Postgres(tb), newTestSealer(tb))
	})
}

// TestShared runs the contract of stores that share a database: the
// stores stand for three parleyd nodes.
func TestShared(t *testing.T) {
	storetest.RunShared(t, func(tb testing.TB, n int) []parley.Store {
		dsn, sealer := testenv.Postgres(tb), newTestSealer(tb)
		stores := make([]parley.Store, n)
		for i := range stores {
			stores[i] = openStore(tb, dsn, sealer)
		}
		return stores
	})
}
