package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// NewRefreshToken returns a new opaque refresh token, 32 random bytes in
// unpadded base64url, and its hash (see HashRefreshToken), which is all the
// store keeps. Safe for concurrent use.
func NewRefreshToken() (token, hash string) {
	b := make([]byte, 32)
	rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, HashRefreshToken(token)
}

// HashRefreshToken returns the hex SHA-256 of a refresh token as presented
// by a client: the key under which the store finds it. The token is
// high-entropy, so a fast unsalted hash is enough.
func HashRefreshToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
