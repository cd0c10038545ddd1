package parley

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"slices"
	"time"
)

// End-to-end encryption (docs/design/e2ee.md is the contract): devices
// publish keys to a directory, e2ee conversations carry only messages of
// type encrypted, and each message's envelope holds one ciphertext and,
// per recipient device, the content key sealed to that device. The server
// checks shapes and that the envelope covers exactly the current devices;
// it never sees a content key or plaintext.

// MessageEncrypted is the type of every message of an e2ee conversation
// (and only of those): its Body is empty and its Envelope set.
const MessageEncrypted MessageType = "encrypted"

// SuiteX25519 is the one suite of version 1: HPKE mode_base with
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305.
const SuiteX25519 = "x25519-hkdf-sha256-chacha20poly1305"

// KnownSuite reports whether a device key or envelope suite is one this
// server knows.
func KnownSuite(s string) bool { return s == SuiteX25519 }

// Sizes of the binary fields, decoded.
const (
	IdentityKeySize   = ed25519.PublicKeySize // 32
	SignatureSize     = ed25519.SignatureSize // 64
	HPKEPublicKeySize = 32
	EncSize           = 32 // HPKE encapsulated key (X25519)
	SealedKeySize     = 48 // a 32-byte content key plus the AEAD tag
	// CiphertextOverhead is what encryption adds to the content: the
	// 12-byte nonce and the 16-byte tag.
	CiphertextOverhead = 28
)

// DefaultMaxE2EEMembers bounds the members of an e2ee conversation
// (--max-e2ee-members).
const DefaultMaxE2EEMembers = 100

// MaxMessageKeys bounds the key entries of one envelope or one key
// upload whatever the settings (1000 members of 20 devices).
const MaxMessageKeys = 20_000

// B64 is the encoding of every binary value on the wire: base64url
// without padding.
var B64 = base64.RawURLEncoding

// DeviceKeys are the published keys of one device (PUT
// /v1/devices/me/keys). Binary fields are base64url without padding.
//
// The three times are the store's. CreatedAt is when the device itself
// was created (its login: the devices row), not when it published keys:
// it is the time RequestKey and SetMessageKeys compare a message with
// ("did this device exist when the message was sent?"), so a client that
// decides whether to ask for a key agrees with the server.
// KeysPublishedAt is when the device first published keys (it became a
// recipient from then on); UpdatedAt when its current key was published
// (a rotation moves it).
type DeviceKeys struct {
	UserID          string    `json:"-"`
	DeviceID        string    `json:"device_id"`
	IdentityKey     string    `json:"identity_key"`
	Suite           string    `json:"suite"`
	KeyID           int64     `json:"key_id"`
	PublicKey       string    `json:"public_key"`
	KeySignature    string    `json:"key_signature"`
	CreatedAt       time.Time `json:"created_at"`
	KeysPublishedAt time.Time `json:"keys_published_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// DeviceKeySignedBytes is what key_signature signs:
// "parley-e2ee-v1/device-key" || lp(user_id) || lp(device_id) ||
// u64(key_id) || lp(suite) || lp(hpke_public_key).
func DeviceKeySignedBytes(userID, deviceID string, keyID int64, suite string, publicKey []byte) []byte {
	b := []byte("parley-e2ee-v1/device-key")
	b = appendLP(b, []byte(userID))
	b = appendLP(b, []byte(deviceID))
	b = binary.BigEndian.AppendUint64(b, uint64(keyID))
	b = appendLP(b, []byte(suite))
	return appendLP(b, publicKey)
}

func appendLP(b, x []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(x)))
	return append(b, x...)
}

// Check validates published keys for k.UserID and k.DeviceID: known
// suite, key_id of 1 or more, fields of the right decoded sizes, and a
// key_signature that verifies under identity_key. CodeInvalidRequest
// otherwise, naming the field.
func (k *DeviceKeys) Check() error {
	if !KnownSuite(k.Suite) {
		return Errorf(CodeInvalidRequest, "suite must be %s", SuiteX25519)
	}
	if k.KeyID < 1 || k.KeyID > 1<<53 {
		return Errorf(CodeInvalidRequest, "key_id must be a positive integer")
	}
	identity, err := decodeSized(k.IdentityKey, IdentityKeySize)
	if err != nil {
		return Errorf(CodeInvalidRequest, "identity_key must be %d bytes in base64url without padding", IdentityKeySize)
	}
	public, err := decodeSized(k.PublicKey, HPKEPublicKeySize)
	if err != nil {
		return Errorf(CodeInvalidRequest, "public_key must be %d bytes in base64url without padding", HPKEPublicKeySize)
	}
	sig, err := decodeSized(k.KeySignature, SignatureSize)
	if err != nil {
		return Errorf(CodeInvalidRequest, "key_signature must be %d bytes in base64url without padding", SignatureSize)
	}
	msg := DeviceKeySignedBytes(k.UserID, k.DeviceID, k.KeyID, k.Suite, public)
	if !ed25519.Verify(ed25519.PublicKey(identity), msg, sig) {
		return Errorf(CodeInvalidRequest, "key_signature does not verify")
	}
	return nil
}

// decodeSized decodes base64url without padding of exactly n bytes.
func decodeSized(s string, n int) ([]byte, error) {
	if B64.EncodedLen(n) != len(s) {
		return nil, errBadLength
	}
	return B64.DecodeString(s)
}

var errBadLength = Errorf(CodeInvalidRequest, "wrong length")

// DeviceList is a user's keyed devices (GET /v1/users/{id}/devices).
// Version rises by one at every change of the set (a first publish, a
// rotation, a keyed device deleted) and never goes down.
type DeviceList struct {
	UserID  string       `json:"user_id"`
	Version int64        `json:"device_list_version"`
	Devices []DeviceKeys `json:"devices"`
}

// Envelope is an encrypted message's content as the server keeps and
// delivers it: one ciphertext for every device, and the key of the device
// it is delivered to (Key; absent when there is none for it). Keys holds
// every recipient's key on the way in (a send) and on the bus; it is
// never encoded with a message, so no path can hand a device another's.
type Envelope struct {
	V          int           `json:"v"`
	Suite      string        `json:"suite"`
	Ciphertext string        `json:"ciphertext"`
	Signature  string        `json:"signature"`
	Key        *EnvelopeKey  `json:"key,omitempty"`
	Keys       []EnvelopeKey `json:"-"`
}

// EnvelopeKey is the content key of a message sealed to one device at one
// of its key ids.
type EnvelopeKey struct {
	DeviceID string `json:"device_id"`
	KeyID    int64  `json:"key_id"`
	Enc      string `json:"enc"`
	Sealed   string `json:"sealed"`
}

// EnvelopeInput is an envelope as a send carries it (with every
// recipient's key).
type EnvelopeInput struct {
	V          int           `json:"v"`
	Suite      string        `json:"suite"`
	Ciphertext string        `json:"ciphertext"`
	Signature  string        `json:"signature"`
	Keys       []EnvelopeKey `json:"keys"`
}

// Envelope returns the envelope e describes.
func (e *EnvelopeInput) Envelope() *Envelope {
	return &Envelope{V: e.V, Suite: e.Suite, Ciphertext: e.Ciphertext, Signature: e.Signature, Keys: e.Keys}
}

// For returns a copy of e for deviceID: without Keys, and with Key set to
// that device's (nil if it has none). A nil e gives nil.
func (e *Envelope) For(deviceID string) *Envelope {
	if e == nil {
		return nil
	}
	c := Envelope{V: e.V, Suite: e.Suite, Ciphertext: e.Ciphertext, Signature: e.Signature}
	for i := range e.Keys {
		if e.Keys[i].DeviceID == deviceID {
			k := e.Keys[i]
			c.Key = &k
			break
		}
	}
	return &c
}

// Common returns a copy of e without any key.
func (e *Envelope) Common() *Envelope {
	if e == nil {
		return nil
	}
	return &Envelope{V: e.V, Suite: e.Suite, Ciphertext: e.Ciphertext, Signature: e.Signature}
}

// CheckEnvelope checks an envelope's shape: v 1, a known suite, a
// ciphertext of at least the overhead and at most maxBody plus it
// (CodePayloadTooLarge above), a 64-byte signature, and keys each with a
// device id, a positive key id, a 32-byte enc and a 48-byte sealed key, no
// device twice, at most MaxMessageKeys. CodeInvalidRequest otherwise.
func CheckEnvelope(e *Envelope, maxBody int) error {
	if e == nil {
		return Errorf(CodeInvalidRequest, "an encrypted message needs an envelope")
	}
	if e.V != 1 {
		return Errorf(CodeInvalidRequest, "envelope v must be 1")
	}
	if !KnownSuite(e.Suite) {
		return Errorf(CodeInvalidRequest, "envelope suite must be %s", SuiteX25519)
	}
	if n := B64.DecodedLen(len(e.Ciphertext)); n > maxBody+CiphertextOverhead {
		return Errorf(CodePayloadTooLarge, "envelope ciphertext must be at most %d bytes", maxBody+CiphertextOverhead)
	}
	ct, err := B64.DecodeString(e.Ciphertext)
	if err != nil {
		return Errorf(CodeInvalidRequest, "envelope ciphertext must be base64url without padding")
	}
	if len(ct) < CiphertextOverhead {
		return Errorf(CodeInvalidRequest, "envelope ciphertext must be at least %d bytes (nonce and tag)", CiphertextOverhead)
	}
	if _, err := decodeSized(e.Signature, SignatureSize); err != nil {
		return Errorf(CodeInvalidRequest, "envelope signature must be %d bytes in base64url without padding", SignatureSize)
	}
	return CheckEnvelopeKeys(e.Keys)
}

// CheckEnvelopeKeys checks the shape of key entries (see CheckEnvelope).
func CheckEnvelopeKeys(keys []EnvelopeKey) error {
	if len(keys) > MaxMessageKeys {
		return Errorf(CodeInvalidRequest, "at most %d keys", MaxMessageKeys)
	}
	seen := make(map[string]struct{}, len(keys))
	for i := range keys {
		k := &keys[i]
		if !ValidID(k.DeviceID) {
			return Errorf(CodeInvalidRequest, "key %d: device_id must be a device id", i+1)
		}
		if _, dup := seen[k.DeviceID]; dup {
			return Errorf(CodeInvalidRequest, "key %d: device %s is listed twice", i+1, k.DeviceID)
		}
		seen[k.DeviceID] = struct{}{}
		if k.KeyID < 1 || k.KeyID > 1<<53 {
			return Errorf(CodeInvalidRequest, "key %d: key_id must be a positive integer", i+1)
		}
		if _, err := decodeSized(k.Enc, EncSize); err != nil {
			return Errorf(CodeInvalidRequest, "key %d: enc must be %d bytes in base64url without padding", i+1, EncSize)
		}
		if _, err := decodeSized(k.Sealed, SealedKeySize); err != nil {
			return Errorf(CodeInvalidRequest, "key %d: sealed must be %d bytes in base64url without padding", i+1, SealedKeySize)
		}
	}
	return nil
}

// MessageKey is one stored key of a message (the message_keys rows).
type MessageKey struct {
	ConversationID string
	Seq            int64
	EnvelopeKey
}

// RecipientDevice is a keyed device that an envelope must cover: its
// user, id and current key id.
type RecipientDevice struct {
	UserID   string
	DeviceID string
	KeyID    int64
}

// DeviceRef names a device in a device_mismatch answer (missing; stale
// also gives the current key id).
type DeviceRef struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	KeyID    int64  `json:"key_id,omitempty"`
}

// DeviceMismatch lists how an envelope differs from the current keyed
// devices: Missing have no key in it, Extra are device ids in it that are
// not current recipients, Stale were sealed to an older key id (the entry
// gives the current one). The lists are never nil.
type DeviceMismatch struct {
	Missing []DeviceRef `json:"missing"`
	Extra   []string    `json:"extra"`
	Stale   []DeviceRef `json:"stale"`
}

// DeviceMismatchError is the error of a DeviceMismatch; its code is
// CodeDeviceMismatch. Transports add the lists to the error object.
type DeviceMismatchError struct {
	DeviceMismatch
}

var errDeviceMismatch = &Error{Code: CodeDeviceMismatch, Message: "the envelope does not match the conversation's devices"}

func (e *DeviceMismatchError) Error() string { return errDeviceMismatch.Error() }

// Unwrap returns the *Error with CodeDeviceMismatch.
func (e *DeviceMismatchError) Unwrap() error { return errDeviceMismatch }

// MatchDevices compares the keys of an envelope with the devices it must
// cover (current keyed devices of the current members, the sending device
// left out by the caller) and returns nil if they match exactly, else the
// mismatch, its lists sorted.
func MatchDevices(keys []EnvelopeKey, want []RecipientDevice) *DeviceMismatchError {
	current := make(map[string]*RecipientDevice, len(want))
	for i := range want {
		current[want[i].DeviceID] = &want[i]
	}
	var e DeviceMismatchError
	given := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		given[k.DeviceID] = struct{}{}
		d, ok := current[k.DeviceID]
		switch {
		case !ok:
			e.Extra = append(e.Extra, k.DeviceID)
		case d.KeyID != k.KeyID:
			e.Stale = append(e.Stale, DeviceRef{UserID: d.UserID, DeviceID: d.DeviceID, KeyID: d.KeyID})
		}
	}
	for _, d := range want {
		if _, ok := given[d.DeviceID]; !ok {
			e.Missing = append(e.Missing, DeviceRef{UserID: d.UserID, DeviceID: d.DeviceID})
		}
	}
	if len(e.Missing)+len(e.Extra)+len(e.Stale) == 0 {
		return nil
	}
	byDevice := func(a, b DeviceRef) int {
		if a.UserID != b.UserID {
			if a.UserID < b.UserID {
				return -1
			}
			return 1
		}
		if a.DeviceID < b.DeviceID {
			return -1
		}
		if a.DeviceID > b.DeviceID {
			return 1
		}
		return 0
	}
	slices.SortFunc(e.Missing, byDevice)
	slices.SortFunc(e.Stale, byDevice)
	slices.Sort(e.Extra)
	if e.Missing == nil {
		e.Missing = []DeviceRef{}
	}
	if e.Extra == nil {
		e.Extra = []string{}
	}
	if e.Stale == nil {
		e.Stale = []DeviceRef{}
	}
	return &e
}
