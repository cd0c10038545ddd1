package e2ee

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// The HPKE suite's parts (RFC 9180: KEM 0x0020, KDF 0x0001, AEAD 0x0003).
var (
	suiteKEM  = hpke.DHKEM(ecdh.X25519())
	suiteKDF  = hpke.HKDFSHA256()
	suiteAEAD = hpke.ChaCha20Poly1305()
)

// Domain separation labels (docs/design/e2ee.md).
const (
	labelDeviceKey   = "parley-e2ee-v1/device-key"
	labelContent     = "parley-e2ee-v1/content"
	labelMessage     = "parley-e2ee-v1/message"
	labelKey         = "parley-e2ee-v1/key" // the HPKE info
	labelFingerprint = "parley-e2ee-v1/fingerprint"
)

// Identity is a device's Ed25519 identity key pair, made once and kept
// for the device's life.
type Identity struct {
	priv ed25519.PrivateKey
}

// NewIdentity makes a fresh identity from the OS's random source.
func NewIdentity() (*Identity, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	return IdentityFromSeed(seed)
}

// IdentityFromSeed restores an identity from its 32-byte seed (what a
// Keystore stores).
func IdentityFromSeed(seed []byte) (*Identity, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("e2ee: an identity seed is 32 bytes")
	}
	return &Identity{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Seed returns the identity's 32-byte seed (secret).
func (id *Identity) Seed() []byte { return id.priv.Seed() }

// Public returns the 32-byte Ed25519 public key (the device's
// identity_key).
func (id *Identity) Public() []byte {
	return []byte(id.priv.Public().(ed25519.PublicKey))
}

// Sign signs msg (Ed25519, pure).
func (id *Identity) Sign(msg []byte) []byte { return ed25519.Sign(id.priv, msg) }

// KeyPair is an X25519 HPKE key pair with its key id.
type KeyPair struct {
	KeyID   int64
	Private []byte // 32 bytes, secret
	Public  []byte // 32 bytes
}

// GenerateKeyPair makes a fresh HPKE key pair with the given key id.
func GenerateKeyPair(keyID int64) (*KeyPair, error) {
	if keyID < 1 {
		return nil, errors.New("e2ee: key_id starts at 1")
	}
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &KeyPair{KeyID: keyID, Private: k.Bytes(), Public: k.PublicKey().Bytes()}, nil
}

// KeyPairFromPrivate restores a key pair from its 32-byte private key.
func KeyPairFromPrivate(keyID int64, private []byte) (*KeyPair, error) {
	k, err := ecdh.X25519().NewPrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("e2ee: bad HPKE private key: %w", err)
	}
	return &KeyPair{KeyID: keyID, Private: k.Bytes(), Public: k.PublicKey().Bytes()}, nil
}

func (k *KeyPair) hpkePrivate() (hpke.PrivateKey, error) {
	return suiteKEM.NewPrivateKey(k.Private)
}

// KeySignatureInput is the byte string a device's identity signs over its
// HPKE public key:
//
//	"parley-e2ee-v1/device-key" || lp(user_id) || lp(device_id) || u64(key_id) || lp(suite) || lp(hpke_public_key)
func KeySignatureInput(userID, deviceID string, keyID int64, suite string, publicKey []byte) []byte {
	b := make([]byte, 0, len(labelDeviceKey)+4*4+8+len(userID)+len(deviceID)+len(suite)+len(publicKey))
	b = append(b, labelDeviceKey...)
	b = appendLPString(b, userID)
	b = appendLPString(b, deviceID)
	b = appendU64(b, keyID)
	b = appendLPString(b, suite)
	return appendLP(b, publicKey)
}

// SignKey returns the key_signature of an HPKE public key.
func (id *Identity) SignKey(userID, deviceID string, keyID int64, publicKey []byte) []byte {
	return id.Sign(KeySignatureInput(userID, deviceID, keyID, Suite, publicKey))
}

// DeviceKeys is a device's public keys as the directory lists them and
// as PUT /v1/devices/me/keys publishes them (device_id and the times are
// the server's; a publish leaves them out). CreatedAt is when the device
// was created (logged in), the time the server compares a message with
// before it forwards a key request; KeysPublishedAt is its first publish,
// UpdatedAt the publish of its current key.
type DeviceKeys struct {
	DeviceID        string    `json:"device_id,omitempty"`
	IdentityKey     Bytes     `json:"identity_key"`
	Suite           string    `json:"suite"`
	KeyID           int64     `json:"key_id"`
	PublicKey       Bytes     `json:"public_key"`
	KeySignature    Bytes     `json:"key_signature"`
	CreatedAt       time.Time `json:"created_at,omitzero"`
	KeysPublishedAt time.Time `json:"keys_published_at,omitzero"`
	UpdatedAt       time.Time `json:"updated_at,omitzero"`
}

// Verify checks a listed device of userID: sizes, the suite, and that
// key_signature verifies under identity_key with this user id and device
// id. It does not check identity continuity (a Keystore's ObserveDevices
// does).
func (d *DeviceKeys) Verify(userID string) error {
	switch {
	case d.DeviceID == "":
		return errors.New("e2ee: device without device_id")
	case d.Suite != Suite:
		return fmt.Errorf("e2ee: device %s: unknown suite %q", d.DeviceID, d.Suite)
	case len(d.IdentityKey) != IdentityKeySize:
		return fmt.Errorf("e2ee: device %s: identity_key is not 32 bytes", d.DeviceID)
	case len(d.PublicKey) != PublicKeySize:
		return fmt.Errorf("e2ee: device %s: public_key is not 32 bytes", d.DeviceID)
	case len(d.KeySignature) != SignatureSize:
		return fmt.Errorf("e2ee: device %s: key_signature is not 64 bytes", d.DeviceID)
	case d.KeyID < 1:
		return fmt.Errorf("e2ee: device %s: key_id below 1", d.DeviceID)
	}
	msg := KeySignatureInput(userID, d.DeviceID, d.KeyID, d.Suite, d.PublicKey)
	if !ed25519.Verify(ed25519.PublicKey(d.IdentityKey), msg, d.KeySignature) {
		return fmt.Errorf("e2ee: device %s of user %s: key_signature does not verify", d.DeviceID, userID)
	}
	return nil
}

// DeviceList is one user's keyed devices (GET /v1/users/{id}/devices, and
// each entry of GET /v1/conversations/{id}/devices).
type DeviceList struct {
	UserID            string       `json:"user_id"`
	DeviceListVersion int64        `json:"device_list_version"`
	Devices           []DeviceKeys `json:"devices"`
}
