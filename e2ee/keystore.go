package e2ee

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// KeystoreVersion is the version of the Keystore's JSON this package
// writes; ParseKeystore refuses others.
const KeystoreVersion = 1

// Default rotation policy: a new HPKE key every week, the old private key
// kept a week after the new one is published, then erased. A key thus
// opens messages sealed to it for at most Rotate + Grace.
const (
	DefaultRotate = 7 * 24 * time.Hour
	DefaultGrace  = 7 * 24 * time.Hour
)

// Caps on what a Keystore holds, so that a busy or hostile peer cannot
// grow it without bound.
const (
	// MaxSentKeys bounds the content keys of sent messages kept for key
	// requests; past it the oldest go first.
	MaxSentKeys = 20000
	// MaxContacts bounds the users whose device lists are remembered.
	MaxContacts = 10000
	// MaxListedDevices bounds the devices ObserveDevices accepts in one
	// user's list (the server's per-user device cap is far below).
	MaxListedDevices = 1000
	// MaxFormerDevices bounds the devices no longer listed whose
	// identity keys a contact keeps.
	MaxFormerDevices = 200
)

// Policy is when to rotate HPKE keys and how long to keep old ones (and
// the content keys of sent messages).
type Policy struct {
	Rotate time.Duration // default DefaultRotate
	Grace  time.Duration // default DefaultGrace
}

func (p Policy) withDefaults() Policy {
	if p.Rotate <= 0 {
		p.Rotate = DefaultRotate
	}
	if p.Grace <= 0 {
		p.Grace = DefaultGrace
	}
	return p
}

// Keystore is what one device keeps secret: its identity, its HPKE keys
// (the current one and older ones until their grace ends), the content
// keys of the messages it sent (for key requests, until their grace
// ends), and what it learnt about its contacts' devices (identity keys
// first seen, verified fingerprints). It is JSON for the client's
// storage (a file of mode 0600, never sent anywhere).
//
// A Keystore is not safe for concurrent use; its owner locks it. Methods
// that change it say so: save it after them.
type Keystore struct {
	Version      int                 `json:"version"`
	UserID       string              `json:"user_id"`
	DeviceID     string              `json:"device_id"`
	IdentitySeed Bytes               `json:"identity_seed"`
	Keys         []StoredKey         `json:"keys"` // ascending key_id; the last is the current key
	Sent         []SentKey           `json:"sent_keys,omitempty"`
	Contacts     map[string]*Contact `json:"contacts,omitempty"` // by user id

	identity *Identity
}

// StoredKey is one HPKE key of the device. ExpiresAt is set when a newer
// key is published: the key is erased then.
type StoredKey struct {
	KeyID        int64     `json:"key_id"`
	Private      Bytes     `json:"private_key"`
	Public       Bytes     `json:"public_key"`
	KeySignature Bytes     `json:"key_signature"`
	CreatedAt    time.Time `json:"created_at"`
	PublishedAt  time.Time `json:"published_at,omitzero"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
}

// SentKey is the content key of a message this device sent.
type SentKey struct {
	ConversationID string    `json:"conversation_id"`
	ClientMsgID    string    `json:"client_msg_id"`
	Seq            int64     `json:"seq,omitempty"` // once acknowledged
	Key            Bytes     `json:"key"`
	ExpiresAt      time.Time `json:"expires_at"`
}

// Contact is what the device knows of another user's (or its own user's)
// devices.
type Contact struct {
	// Devices maps each listed device id to the identity key it had when
	// first seen: a device never changes identity.
	Devices map[string]Bytes `json:"devices"`
	// Former keeps the identity keys of devices no longer listed (logged
	// out, removed), so that their past messages still verify and a
	// device id that comes back must come back with its identity. At
	// most MaxFormerDevices.
	Former map[string]Bytes `json:"former_devices,omitempty"`
	// DeviceListVersion is the highest version seen.
	DeviceListVersion int64 `json:"device_list_version"`
	// Fingerprint is the fingerprint of the last list seen.
	Fingerprint Bytes `json:"fingerprint,omitempty"`
	// Verified is the fingerprint the user verified (compared the safety
	// number), if any.
	Verified Bytes `json:"verified_fingerprint,omitempty"`
}

// NewKeystore makes a device's keystore: a fresh identity and HPKE key 1.
func NewKeystore(userID, deviceID string, now time.Time) (*Keystore, error) {
	if userID == "" || deviceID == "" {
		return nil, errors.New("e2ee: a keystore belongs to a user and a device")
	}
	id, err := NewIdentity()
	if err != nil {
		return nil, err
	}
	ks := &Keystore{Version: KeystoreVersion, UserID: userID, DeviceID: deviceID, IdentitySeed: id.Seed(), identity: id,
		Contacts: map[string]*Contact{}}
	if _, err := ks.addKey(1, now); err != nil {
		return nil, err
	}
	return ks, nil
}

// ParseKeystore reads a keystore's JSON and checks it.
func ParseKeystore(data []byte) (*Keystore, error) {
	var ks Keystore
	if err := json.Unmarshal(data, &ks); err != nil {
		return nil, fmt.Errorf("e2ee: keystore: %w", err)
	}
	if ks.Version != KeystoreVersion {
		return nil, fmt.Errorf("e2ee: keystore version %d, this client reads %d", ks.Version, KeystoreVersion)
	}
	id, err := IdentityFromSeed(ks.IdentitySeed)
	if err != nil {
		return nil, err
	}
	ks.identity = id
	if ks.UserID == "" || ks.DeviceID == "" || len(ks.Keys) == 0 {
		return nil, errors.New("e2ee: keystore without user, device or key")
	}
	for i, k := range ks.Keys {
		kp, err := KeyPairFromPrivate(k.KeyID, k.Private)
		if err != nil || !bytes.Equal(kp.Public, k.Public) || k.KeyID < 1 || (i > 0 && k.KeyID <= ks.Keys[i-1].KeyID) {
			return nil, fmt.Errorf("e2ee: keystore key %d is damaged", k.KeyID)
		}
	}
	if ks.Contacts == nil {
		ks.Contacts = map[string]*Contact{}
	}
	return &ks, nil
}

// Marshal returns the keystore's JSON (secret: store it 0600).
func (ks *Keystore) Marshal() ([]byte, error) { return json.Marshal(ks) }

// Identity returns the device's identity key pair.
func (ks *Keystore) Identity() *Identity { return ks.identity }

// Current returns the newest HPKE key (published or not yet).
func (ks *Keystore) Current() *StoredKey { return &ks.Keys[len(ks.Keys)-1] }

// Published returns the newest published key, or nil before the first
// publish.
func (ks *Keystore) Published() *StoredKey {
	for i := len(ks.Keys) - 1; i >= 0; i-- {
		if !ks.Keys[i].PublishedAt.IsZero() {
			return &ks.Keys[i]
		}
	}
	return nil
}

func (ks *Keystore) addKey(keyID int64, now time.Time) (*StoredKey, error) {
	kp, err := GenerateKeyPair(keyID)
	if err != nil {
		return nil, err
	}
	ks.Keys = append(ks.Keys, StoredKey{KeyID: keyID, Private: kp.Private, Public: kp.Public,
		KeySignature: ks.identity.SignKey(ks.UserID, ks.DeviceID, keyID, kp.Public), CreatedAt: now})
	return ks.Current(), nil
}

// PublishRequest is the body of PUT /v1/devices/me/keys for the current
// key.
func (ks *Keystore) PublishRequest() DeviceKeys {
	k := ks.Current()
	return DeviceKeys{IdentityKey: ks.identity.Public(), Suite: Suite, KeyID: k.KeyID, PublicKey: k.Public, KeySignature: k.KeySignature}
}

// MarkPublished records that the server holds key keyID (changes ks):
// older keys get their erase time, now + grace.
func (ks *Keystore) MarkPublished(keyID int64, now time.Time, p Policy) {
	p = p.withDefaults()
	for i := range ks.Keys {
		k := &ks.Keys[i]
		switch {
		case k.KeyID == keyID && k.PublishedAt.IsZero():
			k.PublishedAt = now
		case k.KeyID < keyID && k.ExpiresAt.IsZero():
			k.ExpiresAt = now.Add(p.Grace)
		}
	}
}

// NeedsPublish reports whether the current key is not published yet.
func (ks *Keystore) NeedsPublish() bool { return ks.Current().PublishedAt.IsZero() }

// NeedsRotation reports whether the current key was published Rotate ago
// or more.
func (ks *Keystore) NeedsRotation(now time.Time, p Policy) bool {
	p = p.withDefaults()
	k := ks.Current()
	return !k.PublishedAt.IsZero() && !now.Before(k.PublishedAt.Add(p.Rotate))
}

// Rotate makes the next HPKE key (changes ks); publish it, then call
// MarkPublished. Until then the older keys stay without an erase time.
func (ks *Keystore) Rotate(now time.Time) (*StoredKey, error) {
	return ks.addKey(ks.Current().KeyID+1, now)
}

// KeyPair returns the device's key pair for keyID if it is held and its
// grace has not ended at now.
func (ks *Keystore) KeyPair(keyID int64, now time.Time) *KeyPair {
	for i := range ks.Keys {
		k := &ks.Keys[i]
		if k.KeyID == keyID && (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt)) {
			return &KeyPair{KeyID: k.KeyID, Private: k.Private, Public: k.Public}
		}
	}
	return nil
}

// Finder returns a KeyFinder over the keys valid at now.
func (ks *Keystore) Finder(now time.Time) KeyFinder {
	return func(keyID int64) *KeyPair { return ks.KeyPair(keyID, now) }
}

// Prune erases the keys and sent content keys whose grace ended at now
// (changes ks) and reports how many went. The current key always stays.
func (ks *Keystore) Prune(now time.Time) int {
	n := 0
	keep := ks.Keys[:0]
	for i, k := range ks.Keys {
		if i < len(ks.Keys)-1 && !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
			clear(k.Private)
			n++
			continue
		}
		keep = append(keep, k)
	}
	clear(ks.Keys[len(keep):])
	ks.Keys = keep
	sent := ks.Sent[:0]
	for _, s := range ks.Sent {
		if !now.Before(s.ExpiresAt) {
			clear(s.Key)
			n++
			continue
		}
		sent = append(sent, s)
	}
	clear(ks.Sent[len(sent):])
	ks.Sent = sent
	return n
}

// RememberSent keeps the content key of a message this device sends, for
// grace (changes ks). Past MaxSentKeys the oldest goes.
func (ks *Keystore) RememberSent(conversationID, clientMsgID string, k []byte, now time.Time, p Policy) {
	p = p.withDefaults()
	if s := ks.sent(conversationID, clientMsgID); s != nil {
		s.Key, s.ExpiresAt = bytes.Clone(k), now.Add(p.Grace)
		return
	}
	if len(ks.Sent) >= MaxSentKeys {
		clear(ks.Sent[0].Key)
		ks.Sent = slices.Delete(ks.Sent, 0, 1)
	}
	ks.Sent = append(ks.Sent, SentKey{ConversationID: conversationID, ClientMsgID: clientMsgID, Key: bytes.Clone(k), ExpiresAt: now.Add(p.Grace)})
}

func (ks *Keystore) sent(conversationID, clientMsgID string) *SentKey {
	for i := len(ks.Sent) - 1; i >= 0; i-- {
		if s := &ks.Sent[i]; s.ConversationID == conversationID && s.ClientMsgID == clientMsgID {
			return s
		}
	}
	return nil
}

// SentKey returns the kept content key of a sent message, or nil.
func (ks *Keystore) SentKey(conversationID, clientMsgID string, now time.Time) []byte {
	if s := ks.sent(conversationID, clientMsgID); s != nil && now.Before(s.ExpiresAt) {
		return s.Key
	}
	return nil
}

// SetSentSeq records the seq a sent message got (changes ks), so that a
// key request, which names the seq, finds its key. It reports whether
// that changed anything.
func (ks *Keystore) SetSentSeq(conversationID, clientMsgID string, seq int64) bool {
	if s := ks.sent(conversationID, clientMsgID); s != nil && s.Seq != seq {
		s.Seq = seq
		return true
	}
	return false
}

// SentKeyBySeq returns the client_msg_id and content key of the message
// this device sent as seq in a conversation, if kept.
func (ks *Keystore) SentKeyBySeq(conversationID string, seq int64, now time.Time) (string, []byte) {
	for i := len(ks.Sent) - 1; i >= 0; i-- {
		if s := &ks.Sent[i]; s.ConversationID == conversationID && s.Seq == seq && now.Before(s.ExpiresAt) {
			return s.ClientMsgID, s.Key
		}
	}
	return "", nil
}

// Observation is what ObserveDevices learnt from a user's device list.
type Observation struct {
	UserID string
	// Trusted are the listed devices whose key signature verifies and
	// whose identity key is the one first seen: the devices to seal to.
	Trusted []DeviceKeys
	// Rejected are listed devices not to seal to, with why: a signature
	// that does not verify, or an identity key that changed.
	Rejected []RejectedDevice
	// Added are devices seen for the first time, for a contact seen
	// before (a new device: tell the user). Empty on the first sight.
	Added []string
	// Removed are devices no longer listed.
	Removed []string
	// First: the first list seen for this user.
	First bool
	// Stale: the list's version is below one seen before (a lagging
	// replica): its devices were checked against what is known (Trusted
	// and Rejected are set) but nothing was recorded.
	Stale bool
	// Fingerprint is the user's fingerprint over the listed devices.
	Fingerprint []byte
	// Changed: the fingerprint differs from the last one seen.
	Changed bool
	// VerifiedChanged: the user was verified and the fingerprint is no
	// longer the verified one ("Bob's security code changed").
	VerifiedChanged bool
}

// RejectedDevice is a listed device not to trust.
type RejectedDevice struct {
	DeviceID string
	Err      error
}

// ErrIdentityChanged is a device listed with another identity key than
// the one first seen: the server is lying or broken.
var ErrIdentityChanged = errors.New("e2ee: the device's identity key changed")

// ObserveDevices checks a user's device list (every key signature, and
// that no known device changed its identity key), records it (changes ks:
// new devices, removed devices, version, fingerprint) and says what
// changed. The keystore's own device is never in Trusted (a device does
// not seal to itself) but its identity is checked like any other.
func (ks *Keystore) ObserveDevices(l *DeviceList) (*Observation, error) {
	if l.UserID == "" {
		return nil, errors.New("e2ee: device list without user_id")
	}
	if len(l.Devices) > MaxListedDevices {
		return nil, fmt.Errorf("e2ee: %d devices listed for one user", len(l.Devices))
	}
	o := &Observation{UserID: l.UserID, Fingerprint: ListFingerprint(l)}
	c := ks.Contacts[l.UserID]
	if c == nil {
		if len(ks.Contacts) >= MaxContacts {
			ks.dropOldestContact()
		}
		c = &Contact{Devices: map[string]Bytes{}}
		ks.Contacts[l.UserID] = c
		o.First = true
	}
	// A list older than one seen (a lagging replica) is checked against
	// what is known but changes nothing.
	o.Stale = l.DeviceListVersion < c.DeviceListVersion
	listed := map[string]bool{}
	for i := range l.Devices {
		d := &l.Devices[i]
		if listed[d.DeviceID] {
			o.Rejected = append(o.Rejected, RejectedDevice{DeviceID: d.DeviceID, Err: errors.New("e2ee: device listed twice")})
			continue
		}
		listed[d.DeviceID] = true
		if err := d.Verify(l.UserID); err != nil {
			o.Rejected = append(o.Rejected, RejectedDevice{DeviceID: d.DeviceID, Err: err})
			continue
		}
		own := l.UserID == ks.UserID && d.DeviceID == ks.DeviceID
		if own && !bytes.Equal(d.IdentityKey, ks.identity.Public()) {
			o.Rejected = append(o.Rejected, RejectedDevice{DeviceID: d.DeviceID, Err: ErrIdentityChanged})
			continue
		}
		known, ok := c.Devices[d.DeviceID]
		if !ok {
			known, ok = c.Former[d.DeviceID]
		}
		switch {
		case ok && !bytes.Equal(known, d.IdentityKey):
			o.Rejected = append(o.Rejected, RejectedDevice{DeviceID: d.DeviceID, Err: ErrIdentityChanged})
			continue
		case !o.Stale:
			if _, listedBefore := c.Devices[d.DeviceID]; !listedBefore {
				c.Devices[d.DeviceID] = bytes.Clone(d.IdentityKey)
				delete(c.Former, d.DeviceID)
				if !o.First && !own {
					o.Added = append(o.Added, d.DeviceID)
				}
			}
		}
		if !own {
			o.Trusted = append(o.Trusted, *d)
		}
	}
	if o.Stale {
		return o, nil
	}
	for id, key := range c.Devices {
		if !listed[id] {
			o.Removed = append(o.Removed, id)
			delete(c.Devices, id)
			if c.Former == nil {
				c.Former = map[string]Bytes{}
			}
			if len(c.Former) >= MaxFormerDevices {
				for old := range c.Former {
					delete(c.Former, old)
					break
				}
			}
			c.Former[id] = key
		}
	}
	slices.Sort(o.Removed)
	c.DeviceListVersion = l.DeviceListVersion
	o.Changed = c.Fingerprint != nil && !bytes.Equal(c.Fingerprint, o.Fingerprint)
	c.Fingerprint = o.Fingerprint
	o.VerifiedChanged = c.Verified != nil && !bytes.Equal(c.Verified, o.Fingerprint)
	return o, nil
}

func (ks *Keystore) dropOldestContact() {
	// No notion of age is kept: drop an unverified contact (any), which
	// only costs a "new device" notice the next time it is seen.
	for id, c := range ks.Contacts {
		if c.Verified == nil {
			delete(ks.Contacts, id)
			return
		}
	}
	for id := range ks.Contacts {
		delete(ks.Contacts, id)
		return
	}
}

// IdentityKey returns the identity key first seen for a user's device
// (listed now or formerly), or nil.
func (ks *Keystore) IdentityKey(userID, deviceID string) []byte {
	if userID == ks.UserID && deviceID == ks.DeviceID {
		return ks.identity.Public()
	}
	if c := ks.Contacts[userID]; c != nil {
		if k, ok := c.Devices[deviceID]; ok {
			return k
		}
		return c.Former[deviceID]
	}
	return nil
}

// MarkVerified records fingerprint as the user's verified one (changes
// ks). It also accepts the listed identity keys as they are now: call it
// only after the user compared the safety number.
func (ks *Keystore) MarkVerified(l *DeviceList) error {
	c := ks.Contacts[l.UserID]
	if c == nil {
		c = &Contact{Devices: map[string]Bytes{}}
		ks.Contacts[l.UserID] = c
	}
	devices := map[string]Bytes{}
	for i := range l.Devices {
		d := &l.Devices[i]
		if err := d.Verify(l.UserID); err != nil {
			return err
		}
		devices[d.DeviceID] = bytes.Clone(d.IdentityKey)
	}
	fp := ListFingerprint(l)
	for id := range devices {
		delete(c.Former, id)
	}
	c.Devices, c.Fingerprint, c.Verified = devices, fp, fp
	c.DeviceListVersion = max(c.DeviceListVersion, l.DeviceListVersion)
	return nil
}

// Verified reports whether the user is verified and whether the last
// list seen still has the verified fingerprint.
func (ks *Keystore) Verified(userID string) (verified, current bool) {
	c := ks.Contacts[userID]
	if c == nil || c.Verified == nil {
		return false, false
	}
	return true, bytes.Equal(c.Verified, c.Fingerprint)
}
