// Package seal encrypts message bodies at rest with AES-256-GCM under
// rotating master keys; its Keyring is the parley.Sealer that store engines
// use.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/parleychat/parley"
)

// MasterKeySize is the length of a master key in bytes.
const MasterKeySize = 32

// dataKeyInfo is the HKDF info that derives body-encryption keys from a
// master key; a new use of the same master key gets its own info string.
const dataKeyInfo = "parley message body v1"

// Errors of Open. Both mean the row cannot be read: a key is missing from
// the configuration, or the data or its additional data are not what was
// sealed.
var (
	ErrUnknownKey = errors.New("seal: unknown key id")
	ErrOpen       = errors.New("seal: message authentication failed")
)

var _ parley.Sealer = (*Keyring)(nil)

// Keyring seals with its active master key and opens with any of its
// master keys, each named by a key id stored next to the ciphertext. The
// sealed form is nonce (12 random bytes) || ciphertext || tag (16 bytes).
// A Keyring is immutable and safe for concurrent use.
//
// With random nonces, one key should seal fewer than 2^32 messages; rotate
// the master key long before that.
type Keyring struct {
	activeID uint32
	aeads    map[uint32]cipher.AEAD
}

// NewKeyring returns a Keyring over masterKeys, each MasterKeySize bytes;
// the first one seals, all of them open. Each master key gives an AES-256
// key by HKDF-SHA256 and a key id: the big-endian first four bytes of
// SHA-256("parley key id" || master key). It fails when there are no keys,
// a key has the wrong length, or two keys have the same id.
func NewKeyring(masterKeys [][]byte) (*Keyring, error) {
	if len(masterKeys) == 0 {
		return nil, errors.New("seal: no master key")
	}
	k := &Keyring{aeads: make(map[uint32]cipher.AEAD, len(masterKeys))}
	for i, master := range masterKeys {
		if len(master) != MasterKeySize {
			return nil, fmt.Errorf("seal: master key %d is %d bytes, want %d", i+1, len(master), MasterKeySize)
		}
		id := keyID(master)
		if _, dup := k.aeads[id]; dup {
			return nil, fmt.Errorf("seal: master key %d repeats an earlier key", i+1)
		}
		dataKey, err := hkdf.Key(sha256.New, master, nil, dataKeyInfo, 32)
		if err != nil {
			return nil, fmt.Errorf("seal: derive key: %w", err)
		}
		block, err := aes.NewCipher(dataKey)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		k.aeads[id] = aead
		if i == 0 {
			k.activeID = id
		}
	}
	return k, nil
}

// keyID names a master key without revealing it.
func keyID(master []byte) uint32 {
	h := sha256.New()
	h.Write([]byte("parley key id"))
	h.Write(master)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// ActiveKeyID returns the id of the key Seal uses.
func (k *Keyring) ActiveKeyID() uint32 { return k.activeID }

// Seal encrypts plaintext bound to additionalData with the active key and
// returns that key's id and nonce||ciphertext||tag. It does not fail.
func (k *Keyring) Seal(plaintext, additionalData []byte) (keyID uint32, ciphertext []byte, err error) {
	return k.activeID, k.aeads[k.activeID].Seal(nil, nil, plaintext, additionalData), nil
}

// Open decrypts what Seal returned. ErrUnknownKey is in the error's chain
// when keyID is not one of the keyring's keys, ErrOpen when the ciphertext
// is short, altered, or sealed with other additional data.
func (k *Keyring) Open(keyID uint32, ciphertext, additionalData []byte) ([]byte, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("%w %08x", ErrUnknownKey, keyID)
	}
	plaintext, err := aead.Open(nil, nil, ciphertext, additionalData)
	if err != nil {
		return nil, ErrOpen
	}
	return plaintext, nil
}
