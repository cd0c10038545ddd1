package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeyEntry is the content key sealed to one device: enc is HPKE's
// encapsulated key, sealed the 48-byte HPKE ciphertext of the 32-byte key.
type KeyEntry struct {
	DeviceID string `json:"device_id"`
	KeyID    int64  `json:"key_id"`
	Enc      Bytes  `json:"enc"`
	Sealed   Bytes  `json:"sealed"`
}

// Envelope is the encrypted form of a message. A send carries Keys (one
// per recipient device); a device receives the common part with only its
// own Key (or none: the sending device, or a device that was not a
// recipient).
type Envelope struct {
	V          int        `json:"v"`
	Suite      string     `json:"suite"`
	Ciphertext Bytes      `json:"ciphertext"` // nonce (12) || ChaCha20-Poly1305 output
	Signature  Bytes      `json:"signature"`
	Keys       []KeyEntry `json:"keys,omitempty"`
	Key        *KeyEntry  `json:"key,omitempty"`
}

// MaxEnvelopeJSON bounds the JSON of an envelope ParseEnvelope accepts:
// a received envelope is a ciphertext of at most the server's body limit
// plus one key. 4 MiB is well above any server limit of the protocol.
const MaxEnvelopeJSON = 4 << 20

// ParseEnvelope decodes and checks an envelope's JSON (either form):
// version, suite, and the sizes of every binary field. Unknown fields are
// ignored, as the contract asks of receivers.
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeJSON {
		return nil, errors.New("e2ee: envelope too large")
	}
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("e2ee: malformed envelope: %w", err)
	}
	if err := env.Check(); err != nil {
		return nil, err
	}
	return &env, nil
}

// Check checks the envelope's form: v, suite, sizes, key ids, and no
// device twice among Keys.
func (env *Envelope) Check() error {
	switch {
	case env.V != Version:
		return fmt.Errorf("e2ee: envelope version %d, want %d", env.V, Version)
	case env.Suite != Suite:
		return fmt.Errorf("e2ee: unknown suite %q", env.Suite)
	case len(env.Ciphertext) < MinCiphertextLen:
		return errors.New("e2ee: ciphertext shorter than nonce and tag")
	case len(env.Signature) != SignatureSize:
		return errors.New("e2ee: signature is not 64 bytes")
	}
	seen := make(map[string]bool, len(env.Keys))
	for i := range env.Keys {
		if err := env.Keys[i].check(); err != nil {
			return err
		}
		if seen[env.Keys[i].DeviceID] {
			return fmt.Errorf("e2ee: device %s twice in keys", env.Keys[i].DeviceID)
		}
		seen[env.Keys[i].DeviceID] = true
	}
	if env.Key != nil {
		return env.Key.check()
	}
	return nil
}

func (k *KeyEntry) check() error {
	switch {
	case k.DeviceID == "":
		return errors.New("e2ee: key without device_id")
	case k.KeyID < 1:
		return errors.New("e2ee: key_id below 1")
	case len(k.Enc) != EncSize:
		return errors.New("e2ee: enc is not 32 bytes")
	case len(k.Sealed) != SealedSize:
		return errors.New("e2ee: sealed is not 48 bytes")
	}
	return nil
}

// Header is what binds an envelope to its message: the conversation, the
// sending user and device, and the client_msg_id. All of it is in the
// signature, the content's associated data and each key's.
type Header struct {
	ConversationID string
	SenderUserID   string
	SenderDeviceID string
	ClientMsgID    string
}

// AD is the content's associated data:
//
//	"parley-e2ee-v1/content" || lp(conversation_id) || lp(sender_user_id) || lp(sender_device_id) || lp(client_msg_id)
func (h Header) AD() []byte {
	b := make([]byte, 0, len(labelContent)+16+len(h.ConversationID)+len(h.SenderUserID)+len(h.SenderDeviceID)+len(h.ClientMsgID))
	b = append(b, labelContent...)
	return h.appendIDs(b)
}

func (h Header) appendIDs(b []byte) []byte {
	b = appendLPString(b, h.ConversationID)
	b = appendLPString(b, h.SenderUserID)
	b = appendLPString(b, h.SenderDeviceID)
	return appendLPString(b, h.ClientMsgID)
}

// SignatureInput is what the sending device signs:
//
//	"parley-e2ee-v1/message" || lp(conversation_id) || lp(sender_user_id) || lp(sender_device_id) || lp(client_msg_id) || lp(suite) || lp(ciphertext)
//
// with ciphertext the decoded bytes, nonce included.
func (h Header) SignatureInput(suite string, ciphertext []byte) []byte {
	b := make([]byte, 0, len(labelMessage)+24+len(h.ConversationID)+len(h.SenderUserID)+len(h.SenderDeviceID)+len(h.ClientMsgID)+len(suite)+len(ciphertext))
	b = append(b, labelMessage...)
	b = h.appendIDs(b)
	b = appendLPString(b, suite)
	return appendLP(b, ciphertext)
}

// KeyAAD is the associated data of the content key sealed to one device:
//
//	lp(conversation_id) || lp(sender_device_id) || lp(client_msg_id) || lp(device_id) || u64(key_id)
func (h Header) KeyAAD(deviceID string, keyID int64) []byte {
	b := make([]byte, 0, 24+len(h.ConversationID)+len(h.SenderDeviceID)+len(h.ClientMsgID)+len(deviceID))
	b = appendLPString(b, h.ConversationID)
	b = appendLPString(b, h.SenderDeviceID)
	b = appendLPString(b, h.ClientMsgID)
	b = appendLPString(b, deviceID)
	return appendU64(b, keyID)
}

// Recipient is a device to seal a content key to: its id and current
// HPKE key (from a verified DeviceKeys).
type Recipient struct {
	UserID    string
	DeviceID  string
	KeyID     int64
	PublicKey []byte
}

// RecipientOf returns the Recipient for a listed device of userID.
func RecipientOf(userID string, d *DeviceKeys) Recipient {
	return Recipient{UserID: userID, DeviceID: d.DeviceID, KeyID: d.KeyID, PublicKey: d.PublicKey}
}

// Seal encrypts content (the UTF-8 JSON of a Content) for the given
// recipient devices, signed by the sending device's identity. It returns
// the envelope and the content key K, which the sender keeps to show its
// own message and to answer key requests. recipients must not hold the
// sending device (it does not seal to itself).
func Seal(id *Identity, h Header, content []byte, recipients []Recipient) (*Envelope, []byte, error) {
	k := make([]byte, ContentKeySize)
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(k); err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	env, err := sealWith(id, h, content, k, nonce, recipients)
	if err != nil {
		return nil, nil, err
	}
	return env, k, nil
}

// SealWithKey is Seal with a given content key and a fresh random nonce.
// A client resending a message it may have sent before (same
// client_msg_id, after a restart) seals it with the K it kept, so that
// whichever copy the server stored opens with it.
func SealWithKey(id *Identity, h Header, content, k []byte, recipients []Recipient) (*Envelope, error) {
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return sealWith(id, h, content, k, nonce, recipients)
}

// sealWith is Seal with a given content key and nonce: the hook the
// vector generator uses to make envelope-vectors.json from fixed inputs.
// Never call it with a key or nonce used before.
func sealWith(id *Identity, h Header, content, k, nonce []byte, recipients []Recipient) (*Envelope, error) {
	aead, err := chacha20poly1305.New(k)
	if err != nil {
		return nil, err
	}
	ct := make([]byte, 0, NonceSize+len(content)+TagSize)
	ct = append(ct, nonce...)
	ct = aead.Seal(ct, nonce, content, h.AD())
	keys, err := SealKeys(h, k, recipients)
	if err != nil {
		return nil, err
	}
	return &Envelope{V: Version, Suite: Suite, Ciphertext: ct, Signature: id.Sign(h.SignatureInput(Suite, ct)), Keys: keys}, nil
}

// SealKeys seals the content key k to each recipient device: HPKE
// SetupBaseS(pk, "parley-e2ee-v1/key"), then Seal(KeyAAD(device, key_id),
// k). A resend after device_mismatch and an answer to a key request redo
// only this step with the message's K.
func SealKeys(h Header, k []byte, recipients []Recipient) ([]KeyEntry, error) {
	if len(k) != ContentKeySize {
		return nil, errors.New("e2ee: a content key is 32 bytes")
	}
	keys := make([]KeyEntry, 0, len(recipients))
	seen := make(map[string]bool, len(recipients))
	for _, r := range recipients {
		if r.DeviceID == h.SenderDeviceID {
			return nil, errors.New("e2ee: the sending device does not seal to itself")
		}
		if seen[r.DeviceID] {
			return nil, fmt.Errorf("e2ee: device %s twice among the recipients", r.DeviceID)
		}
		seen[r.DeviceID] = true
		e, err := sealKey(h, k, r)
		if err != nil {
			return nil, err
		}
		keys = append(keys, e)
	}
	return keys, nil
}

func sealKey(h Header, k []byte, r Recipient) (KeyEntry, error) {
	if r.KeyID < 1 {
		return KeyEntry{}, fmt.Errorf("e2ee: device %s: key_id below 1", r.DeviceID)
	}
	pk, err := suiteKEM.NewPublicKey(r.PublicKey)
	if err != nil {
		return KeyEntry{}, fmt.Errorf("e2ee: device %s: bad public key: %w", r.DeviceID, err)
	}
	enc, s, err := hpke.NewSender(pk, suiteKDF, suiteAEAD, []byte(labelKey))
	if err != nil {
		return KeyEntry{}, fmt.Errorf("e2ee: device %s: %w", r.DeviceID, err)
	}
	sealed, err := s.Seal(h.KeyAAD(r.DeviceID, r.KeyID), k)
	if err != nil {
		return KeyEntry{}, err
	}
	return KeyEntry{DeviceID: r.DeviceID, KeyID: r.KeyID, Enc: enc, Sealed: sealed}, nil
}

// OpenKey opens the content key sealed to deviceID in e with the device's
// key pair for e.KeyID. A failure is a *DecryptError (bad_ciphertext).
func OpenKey(h Header, deviceID string, e *KeyEntry, kp *KeyPair) ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, undecryptable(ReasonBadCiphertext, err)
	}
	if e.DeviceID != deviceID || kp == nil || kp.KeyID != e.KeyID {
		return nil, undecryptable(ReasonNoKey, errors.New("the key is not for this device's key"))
	}
	sk, err := kp.hpkePrivate()
	if err != nil {
		return nil, undecryptable(ReasonNoKey, err)
	}
	r, err := hpke.NewRecipient(e.Enc, sk, suiteKDF, suiteAEAD, []byte(labelKey))
	if err != nil {
		return nil, undecryptable(ReasonBadCiphertext, errors.New("enc does not decapsulate"))
	}
	k, err := r.Open(h.KeyAAD(deviceID, e.KeyID), e.Sealed)
	if err != nil || len(k) != ContentKeySize {
		return nil, undecryptable(ReasonBadCiphertext, errors.New("the sealed key does not open"))
	}
	return k, nil
}

// VerifySignature checks the envelope's signature under the sending
// device's identity key (nil: unknown_sender_device).
func VerifySignature(h Header, env *Envelope, senderIdentity []byte) error {
	if len(senderIdentity) != IdentityKeySize {
		return undecryptable(ReasonUnknownSenderDevice, nil)
	}
	if len(env.Signature) != SignatureSize || !ed25519.Verify(ed25519.PublicKey(senderIdentity), h.SignatureInput(env.Suite, env.Ciphertext), env.Signature) {
		return undecryptable(ReasonBadSignature, nil)
	}
	return nil
}

// OpenContent verifies the signature and opens the ciphertext with the
// content key k, returning the content's JSON. The sending device opens
// its own messages this way with the K it kept.
func OpenContent(h Header, env *Envelope, k, senderIdentity []byte) ([]byte, error) {
	if err := VerifySignature(h, env, senderIdentity); err != nil {
		return nil, err
	}
	if len(env.Ciphertext) < MinCiphertextLen || len(k) != ContentKeySize {
		return nil, undecryptable(ReasonBadCiphertext, errors.New("ciphertext too short"))
	}
	aead, err := chacha20poly1305.New(k)
	if err != nil {
		return nil, undecryptable(ReasonBadCiphertext, err)
	}
	nonce, ct := env.Ciphertext[:NonceSize], env.Ciphertext[NonceSize:]
	pt, err := aead.Open(nil, nonce, ct, h.AD())
	if err != nil {
		return nil, undecryptable(ReasonBadCiphertext, errors.New("the ciphertext does not open"))
	}
	return pt, nil
}

// KeyFinder returns this device's key pair for a key id (current or
// within grace), or nil.
type KeyFinder func(keyID int64) *KeyPair

// Opened is a message opened by a recipient device.
type Opened struct {
	Content    *Content
	Raw        []byte // the content's JSON
	ContentKey []byte
}

// Open runs the receiving steps of docs/design/e2ee.md for the device
// deviceID: find the private key of env.Key.KeyID, open the content key,
// verify the signature under senderIdentity (nil when the sending device
// is not known), open the ciphertext, parse the content. Every failure is
// a *DecryptError whose Reason says which step failed.
func Open(h Header, deviceID string, env *Envelope, keys KeyFinder, senderIdentity []byte) (*Opened, error) {
	if env == nil || env.Key == nil {
		return nil, undecryptable(ReasonNoKey, nil)
	}
	if err := env.Check(); err != nil {
		return nil, undecryptable(ReasonBadCiphertext, err)
	}
	if env.Key.DeviceID != deviceID {
		return nil, undecryptable(ReasonNoKey, errors.New("the key is for another device"))
	}
	kp := keys(env.Key.KeyID)
	if kp == nil {
		return nil, undecryptable(ReasonNoKey, fmt.Errorf("no private key %d", env.Key.KeyID))
	}
	k, err := OpenKey(h, deviceID, env.Key, kp)
	if err != nil {
		return nil, err
	}
	return openWithKey(h, env, k, senderIdentity)
}

// OpenOwn opens a message this device sent, with the content key it kept.
func OpenOwn(h Header, env *Envelope, k, ownIdentity []byte) (*Opened, error) {
	if env == nil {
		return nil, undecryptable(ReasonNoKey, nil)
	}
	if err := env.Check(); err != nil {
		return nil, undecryptable(ReasonBadCiphertext, err)
	}
	if k == nil {
		return nil, undecryptable(ReasonNoKey, errors.New("the content key of this sent message is gone"))
	}
	return openWithKey(h, env, k, ownIdentity)
}

func openWithKey(h Header, env *Envelope, k, senderIdentity []byte) (*Opened, error) {
	raw, err := OpenContent(h, env, k, senderIdentity)
	if err != nil {
		return nil, err
	}
	c, err := ParseContent(raw)
	if err != nil {
		return nil, undecryptable(ReasonBadContent, err)
	}
	return &Opened{Content: c, Raw: raw, ContentKey: bytes.Clone(k)}, nil
}
