package e2ee

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// FingerprintInput is the byte string a user's fingerprint hashes:
//
//	"parley-e2ee-v1/fingerprint" || lp(user_id) || lp(k_1) || ... || lp(k_n)
//
// over the identity keys of all the user's keyed devices, sorted by the
// bytes of the key.
func FingerprintInput(userID string, identityKeys [][]byte) []byte {
	keys := slices.Clone(identityKeys)
	slices.SortFunc(keys, bytes.Compare)
	n := len(labelFingerprint) + 4 + len(userID)
	for _, k := range keys {
		n += 4 + len(k)
	}
	b := append(make([]byte, 0, n), labelFingerprint...)
	b = appendLPString(b, userID)
	for _, k := range keys {
		b = appendLP(b, k)
	}
	return b
}

// Fingerprint is SHA-256 of FingerprintInput. It changes when the user
// adds, removes or resets a device.
func Fingerprint(userID string, identityKeys [][]byte) []byte {
	sum := sha256.Sum256(FingerprintInput(userID, identityKeys))
	return sum[:]
}

// ListFingerprint is the fingerprint of a device list's identity keys.
func ListFingerprint(l *DeviceList) []byte {
	keys := make([][]byte, len(l.Devices))
	for i := range l.Devices {
		keys[i] = l.Devices[i].IdentityKey
	}
	return Fingerprint(l.UserID, keys)
}

// SafetyNumber is the 60-digit number two users compare: for each user,
// in the order of their user ids compared as strings, the first 30 bytes
// of the fingerprint as six 5-byte big-endian integers, each modulo
// 100000 written as 5 digits; the 12 groups separated by spaces. Both
// users compute the same string.
func SafetyNumber(userA string, fingerprintA []byte, userB string, fingerprintB []byte) (string, error) {
	if len(fingerprintA) != FingerprintSize || len(fingerprintB) != FingerprintSize {
		return "", fmt.Errorf("e2ee: a fingerprint is %d bytes", FingerprintSize)
	}
	if userB < userA {
		fingerprintA, fingerprintB = fingerprintB, fingerprintA
	}
	groups := make([]string, 0, 12)
	for _, fp := range [][]byte{fingerprintA, fingerprintB} {
		for i := 0; i < 30; i += 5 {
			var b [8]byte
			copy(b[3:], fp[i:i+5])
			groups = append(groups, fmt.Sprintf("%05d", binary.BigEndian.Uint64(b[:])%100000))
		}
	}
	return strings.Join(groups, " "), nil
}
