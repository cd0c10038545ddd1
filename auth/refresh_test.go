package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"testing"
)

func TestNewRefreshToken(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		token, hash := NewRefreshToken()
		raw, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || len(raw) != 32 {
			t.Fatalf("token %q: %d bytes, %v; want 32 bytes of unpadded base64url", token, len(raw), err)
		}
		sum := sha256.Sum256([]byte(token))
		if want := hex.EncodeToString(sum[:]); hash != want || HashRefreshToken(token) != want {
			t.Fatalf("hash %q, HashRefreshToken %q; want %q", hash, HashRefreshToken(token), want)
		}
		if seen[token] {
			t.Fatal("token repeated")
		}
		seen[token] = true
	}
}
