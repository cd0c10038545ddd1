package engine

import (
	"encoding/json"
	"fmt"

	"github.com/parleychat/parley"
)

// An encrypted message's common part (v, suite, ciphertext, signature) is
// stored as its body, sealed like any body; its keys go to message_keys.

// EnvelopeBody returns the stored body of an encrypted message: the JSON
// of its envelope without keys.
func EnvelopeBody(e *parley.Envelope) (string, error) {
	b, err := json.Marshal(e.Common())
	return string(b), err
}

// OpenEnvelope reads an encrypted message's stored body back into its
// envelope (without keys) and empties the body.
func OpenEnvelope(m *parley.Message) error {
	if m.Type != parley.MessageEncrypted || m.Deleted {
		return nil
	}
	var e parley.Envelope
	if err := json.Unmarshal([]byte(m.Body), &e); err != nil {
		return fmt.Errorf("stored envelope of message %s: %w", m.ID, err)
	}
	m.Envelope, m.Body = &e, ""
	return nil
}

// KeyRow is a message key as stored: enc and sealed decoded.
type KeyRow struct {
	DeviceID    string
	KeyID       int64
	Enc, Sealed []byte
}

// KeyRows decodes keys (whose shape parley.CheckEnvelopeKeys accepted)
// for storing. CodeInvalidRequest if one does not decode.
func KeyRows(keys []parley.EnvelopeKey) ([]KeyRow, error) {
	rows := make([]KeyRow, len(keys))
	for i, k := range keys {
		enc, err1 := parley.B64.DecodeString(k.Enc)
		sealed, err2 := parley.B64.DecodeString(k.Sealed)
		if err1 != nil || err2 != nil {
			return nil, parley.Errorf(parley.CodeInvalidRequest, "key %d does not decode", i+1)
		}
		rows[i] = KeyRow{DeviceID: k.DeviceID, KeyID: k.KeyID, Enc: enc, Sealed: sealed}
	}
	return rows, nil
}

// MessageKey is the key a stored row gives back.
func MessageKey(conversationID string, seq int64, deviceID string, keyID int64, enc, sealed []byte) parley.MessageKey {
	return parley.MessageKey{ConversationID: conversationID, Seq: seq, EnvelopeKey: parley.EnvelopeKey{
		DeviceID: deviceID, KeyID: keyID, Enc: parley.B64.EncodeToString(enc), Sealed: parley.B64.EncodeToString(sealed)}}
}

// CheckE2EEType says whether a message of m's type may go into a
// conversation with (e2ee) or without end-to-end encryption: encrypted
// messages there, and only there. CodeInvalidRequest otherwise.
func CheckE2EEType(m *parley.Message, e2ee bool) error {
	encrypted := m.Type == parley.MessageEncrypted
	switch {
	case e2ee && !encrypted:
		return parley.Errorf(parley.CodeInvalidRequest, "this conversation is end-to-end encrypted: messages must be of type encrypted")
	case !e2ee && encrypted:
		return parley.Errorf(parley.CodeInvalidRequest, "messages of type encrypted go only into end-to-end encrypted conversations")
	case encrypted && m.Envelope == nil:
		return parley.Errorf(parley.CodeInvalidRequest, "an encrypted message needs an envelope")
	}
	return nil
}

// ErrNoSenderKeys is the answer to an encrypted send from a device that
// has published no keys.
func ErrNoSenderKeys() error {
	return parley.Errorf(parley.CodeForbidden, "publish device keys first (PUT /v1/devices/me/keys)")
}

// DeviceKeysChange decides a publish against the stored keys of the
// device (nil: none yet): changed false for a no-op republish,
// CodeConflict for another identity key or a key id not above the
// stored one (identity, public and signature are the decoded bytes).
func DeviceKeysChange(stored *DeviceKeyRow, k *parley.DeviceKeys, identity, public, signature []byte) (changed bool, err error) {
	if stored == nil {
		return true, nil
	}
	if string(stored.IdentityKey) != string(identity) {
		return false, parley.Errorf(parley.CodeConflict, "a device never changes its identity key (log in again for a new device)")
	}
	if k.KeyID == stored.KeyID && k.Suite == stored.Suite && string(public) == string(stored.PublicKey) && string(signature) == string(stored.KeySignature) {
		return false, nil
	}
	if k.KeyID <= stored.KeyID {
		return false, parley.Errorf(parley.CodeConflict, "key_id must be above the published one (%d)", stored.KeyID)
	}
	return true, nil
}

// DeviceKeyColumns are the columns of a device_keys row, in the order of
// DeviceKeyRow.Fields. Its created_at is when the keys were first
// published (DeviceKeys.KeysPublishedAt), not when the device was created.
const DeviceKeyColumns = `device_id, user_id, identity_key, suite, key_id, public_key, key_signature, created_at, updated_at`

// ListedDeviceKeyColumns are the columns a listing selects from
// device_keys k joined with devices d, in the order of
// DeviceKeyRow.ListedFields: the device's own created_at comes from d.
const ListedDeviceKeyColumns = `k.device_id, k.user_id, k.identity_key, k.suite, k.key_id, k.public_key, k.key_signature, k.created_at, k.updated_at, d.created_at`

// DeviceKeyRow is a device_keys row, binary fields decoded, with the
// created_at of its devices row when it was read by a listing. Times are
// Unix milliseconds.
type DeviceKeyRow struct {
	DeviceID, UserID, Suite              string
	IdentityKey, PublicKey, KeySignature []byte
	KeyID                                int64
	// KeysPublishedAt and UpdatedAt are device_keys.created_at and
	// updated_at; DeviceCreatedAt is devices.created_at (0 unless listed).
	KeysPublishedAt, UpdatedAt, DeviceCreatedAt int64
}

// Fields returns the scan destinations of DeviceKeyColumns.
func (r *DeviceKeyRow) Fields() []any {
	return []any{&r.DeviceID, &r.UserID, &r.IdentityKey, &r.Suite, &r.KeyID, &r.PublicKey, &r.KeySignature, &r.KeysPublishedAt, &r.UpdatedAt}
}

// ListedFields returns the scan destinations of ListedDeviceKeyColumns.
func (r *DeviceKeyRow) ListedFields() []any {
	return append(r.Fields(), &r.DeviceCreatedAt)
}

// DeviceKeys returns the wire form of a row read by a listing: created_at
// is the device's, keys_published_at the keys'.
func (r *DeviceKeyRow) DeviceKeys() parley.DeviceKeys {
	return parley.DeviceKeys{
		UserID: r.UserID, DeviceID: r.DeviceID, Suite: r.Suite, KeyID: r.KeyID,
		IdentityKey:     parley.B64.EncodeToString(r.IdentityKey),
		PublicKey:       parley.B64.EncodeToString(r.PublicKey),
		KeySignature:    parley.B64.EncodeToString(r.KeySignature),
		CreatedAt:       FromMillis(r.DeviceCreatedAt),
		KeysPublishedAt: FromMillis(r.KeysPublishedAt),
		UpdatedAt:       FromMillis(r.UpdatedAt),
	}
}

// DecodeDeviceKeys returns the binary fields of k (checked already).
func DecodeDeviceKeys(k *parley.DeviceKeys) (identity, public, signature []byte, err error) {
	identity, err1 := parley.B64.DecodeString(k.IdentityKey)
	public, err2 := parley.B64.DecodeString(k.PublicKey)
	signature, err3 := parley.B64.DecodeString(k.KeySignature)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, nil, nil, parley.Errorf(parley.CodeInvalidRequest, "device keys do not decode")
	}
	return identity, public, signature, nil
}

// KeyRecipient is a device that may be given a key of an existing
// message (SetMessageKeys): its current key id, and when the device was
// created and its user joined the conversation (Unix milliseconds).
type KeyRecipient struct {
	parley.RecipientDevice
	DeviceCreated, Joined int64
}

// MatchAddedKeys checks keys added to a message created at created
// (Unix milliseconds) against the current keyed devices of current
// members (all): each must be one of them, created and joined before the
// message, at its current key id. The mismatch lists only Extra (not such
// a device) and Stale (wrong key id).
func MatchAddedKeys(keys []parley.EnvelopeKey, all []KeyRecipient, created int64) *parley.DeviceMismatchError {
	eligible := make([]parley.RecipientDevice, 0, len(keys))
	byID := make(map[string]*KeyRecipient, len(all))
	for i := range all {
		byID[all[i].DeviceID] = &all[i]
	}
	for _, k := range keys {
		if r := byID[k.DeviceID]; r != nil && r.DeviceCreated <= created && r.Joined <= created {
			eligible = append(eligible, r.RecipientDevice)
		}
	}
	mm := parley.MatchDevices(keys, eligible)
	if mm == nil || len(mm.Extra)+len(mm.Stale) == 0 {
		return nil
	}
	mm.Missing = []parley.DeviceRef{}
	return mm
}
