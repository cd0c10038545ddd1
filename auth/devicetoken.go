package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"time"
)

// DeviceTokenTTL is how long a known-device token is accepted after it
// was issued; every successful login issues a fresh one.
const DeviceTokenTTL = 180 * 24 * time.Hour

const (
	deviceTokenPrefix = "dt1."
	deviceTokenIDLen  = 16
	// deviceTokenMaxLen bounds what Verify parses; real tokens are 71
	// characters.
	deviceTokenMaxLen = 128
	deviceTokenLabel  = "parley known-device token v1"
)

// DeviceTokens issues and checks known-device tokens: what a device that
// logged in successfully sends with its next login, so that its attempts
// are limited apart from everyone else's guesses at the same handle
// (httpapi). A token is a MAC under a server key over the handle, a random
// id and an expiry: nothing is stored, so nodes that share the master key
// accept each other's tokens and a restart forgets nothing. A token proves
// only that this handle logged in on the device once; it grants no access.
// Safe for concurrent use.
type DeviceTokens struct {
	keys [][]byte // MAC keys; the first signs, all verify
}

// NewDeviceTokens derives the MAC keys from secrets (the master keys,
// newest first: the first signs, every one verifies, so a rotation keeps
// known devices known). At least one secret of at least 16 bytes.
func NewDeviceTokens(secrets [][]byte) (*DeviceTokens, error) {
	if len(secrets) == 0 {
		return nil, errors.New("auth: device tokens need a secret")
	}
	d := &DeviceTokens{}
	for _, s := range secrets {
		if len(s) < 16 {
			return nil, errors.New("auth: device token secret shorter than 16 bytes")
		}
		m := hmac.New(sha256.New, s)
		m.Write([]byte(deviceTokenLabel))
		d.keys = append(d.keys, m.Sum(nil))
	}
	return d, nil
}

// Issue returns a known-device token for handle (normalized), valid for
// DeviceTokenTTL from now: "dt1." and, in unpadded base64url, a 16-byte
// random id, the expiry (8 bytes, Unix seconds, big endian) and a 16-byte
// HMAC-SHA256 of them and the handle.
func (d *DeviceTokens) Issue(handle string, now time.Time) string {
	payload := make([]byte, deviceTokenIDLen+8, deviceTokenIDLen+8+16)
	rand.Read(payload[:deviceTokenIDLen])
	binary.BigEndian.PutUint64(payload[deviceTokenIDLen:], uint64(now.Add(DeviceTokenTTL).Unix()))
	return deviceTokenPrefix + base64.RawURLEncoding.EncodeToString(append(payload, deviceTokenMAC(d.keys[0], handle, payload)...))
}

// Verify checks a token a client presented for handle at now and returns
// its id (which names the device to the limiter). ok is false if the token
// is malformed, was made for another handle or under a key no longer held,
// or has expired.
func (d *DeviceTokens) Verify(token, handle string, now time.Time) (id string, ok bool) {
	body, found := strings.CutPrefix(token, deviceTokenPrefix)
	if !found || len(token) > deviceTokenMaxLen {
		return "", false
	}
	// The length check also refuses line breaks, which the decoder skips.
	const rawLen = deviceTokenIDLen + 8 + 16
	if len(body) != base64.RawURLEncoding.EncodedLen(rawLen) {
		return "", false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) != rawLen {
		return "", false
	}
	payload, mac := raw[:deviceTokenIDLen+8], raw[deviceTokenIDLen+8:]
	valid := false
	for _, k := range d.keys {
		if hmac.Equal(mac, deviceTokenMAC(k, handle, payload)) {
			valid = true
		}
	}
	if !valid {
		return "", false
	}
	expires := binary.BigEndian.Uint64(payload[deviceTokenIDLen:])
	if expires > 1<<62 || now.Unix() >= int64(expires) {
		return "", false
	}
	return base64.RawURLEncoding.EncodeToString(payload[:deviceTokenIDLen]), true
}

// deviceTokenMAC is the first 16 bytes of HMAC-SHA256(key, len(handle) ||
// handle || payload): the length keeps handle and payload apart.
func deviceTokenMAC(key []byte, handle string, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(handle)))
	m.Write(n[:])
	m.Write([]byte(handle))
	m.Write(payload)
	return m.Sum(nil)[:16]
}
