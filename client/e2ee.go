package client

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/internal/atomicfile"
)

// End-to-end encryption (docs/design/e2ee.md). With Config.KeyStore set,
// the client is a device with keys: Login makes and publishes them, the
// client rotates them on schedule, sends to conversations created with
// e2ee encrypted (Send, Enqueue, SendREST, attachments), and decrypts
// what it receives (live, sync, History). A message it cannot decrypt
// is handed over all the same, with Event.E2EE saying why; it asks the
// sender's devices for the key and hands the message again
// (EventMessageChanged) when the key comes. Private keys stay in the
// KeyStore, never sent anywhere.

// KeyStore keeps devices' keystores (e2ee.Keystore's JSON: the private
// keys) in the client's storage. Implementations must be safe for
// concurrent use.
type KeyStore interface {
	// Load returns the keystore saved for deviceID, or nil and no error
	// when there is none.
	Load(deviceID string) ([]byte, error)
	// Save stores the keystore of deviceID, replacing the old one.
	Save(deviceID string, data []byte) error
	// Delete forgets the keystore of deviceID (after a logout).
	Delete(deviceID string) error
}

// FileKeyStore keeps each device's keystore in a file of Dir
// (e2ee-DEVICE.json, mode 0600, in a directory of mode 0700), written
// atomically.
type FileKeyStore struct {
	Dir string
	mu  sync.Mutex
}

func (s *FileKeyStore) path(deviceID string) string {
	name := deviceID
	if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
		name = hex.EncodeToString([]byte(deviceID))
	}
	return filepath.Join(s.Dir, "e2ee-"+name+".json")
}

// Load implements KeyStore.
func (s *FileKeyStore) Load(deviceID string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path(deviceID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// Save implements KeyStore.
func (s *FileKeyStore) Save(deviceID string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(s.path(deviceID), data, 0o600)
}

// Delete implements KeyStore.
func (s *FileKeyStore) Delete(deviceID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := os.Remove(s.path(deviceID))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// MemoryKeyStore keeps keystores in memory: the keys die with the
// process, and a device resumed later (Config.Tokens) has none, so it can
// neither send to nor read e2ee conversations. For tests and short-lived
// tools. The zero value is ready.
type MemoryKeyStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// Load implements KeyStore.
func (s *MemoryKeyStore) Load(deviceID string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[deviceID], nil
}

// Save implements KeyStore.
func (s *MemoryKeyStore) Save(deviceID string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[deviceID] = append([]byte(nil), data...)
	return nil
}

// Delete implements KeyStore.
func (s *MemoryKeyStore) Delete(deviceID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, deviceID)
	return nil
}

// Decryption is how an encrypted message opened on this device: its
// Content, or why it could not be read (Reason, and Err for the
// details). The message itself then has the content's Type and Body and
// its attachments' real metadata; an undecryptable one keeps type
// "encrypted" and an empty body.
type Decryption struct {
	Content *e2ee.Content
	Reason  e2ee.Reason
	Err     error
}

// Decrypted reports whether the content was read.
func (d *Decryption) Decrypted() bool { return d != nil && d.Content != nil }

// DeviceChange is news about a user's devices, from this device's view
// of the user's device list (EventDevices).
type DeviceChange struct {
	UserID string
	// Added are devices the user added since this device last looked:
	// show "Bob added a new device" in the conversations with them.
	Added []string
	// Removed are devices no longer listed.
	Removed []string
	// Untrusted are listed devices this client refuses to encrypt to: a
	// key signature that does not verify, or an identity key that changed
	// (the server is lying or broken).
	Untrusted []e2ee.RejectedDevice
	// SecurityCodeChanged: the user was verified, and the fingerprint is
	// no longer the verified one ("Bob's security code changed": compare
	// the safety number again before trusting what they send).
	SecurityCodeChanged bool
}

// errNoKeys: this client has no keys to encrypt or decrypt with.
var errNoKeys = parley.Errorf(parley.CodeInvalidRequest, "this device has no end-to-end encryption keys: set Config.KeyStore and log in (a device resumed without its keystore cannot read or send e2ee messages)")

// crypt is the client's end-to-end encryption state. Its lock is never
// held during network calls.
type crypt struct {
	c      *Client
	store  KeyStore
	policy e2ee.Policy

	mu      sync.Mutex
	ks      *e2ee.Keystore
	convs   map[string]bool            // conversation id -> e2ee, as seen
	recips  map[string]*convRecipients // per conversation, the devices to seal to
	media   map[string]*mediaKey       // media id -> key, from decrypted messages and uploads
	epoch   int64                      // raised at every connection: recipients are fetched again
	checked time.Time                  // last rotation check
	asked   map[string]time.Time       // conversation/seq -> when its key was last asked for
	uploads map[string]e2ee.Attachment // media id -> a file this client uploaded encrypted
}

// convRecipients are the devices a send to a conversation seals to.
type convRecipients struct {
	list     []e2ee.Recipient
	versions map[string]int64 // user id -> device_list_version it was made from
	epoch    int64
}

// mediaKey is what it takes to download and decrypt a media item.
type mediaKey struct {
	key         []byte
	sha256      string
	contentType string
	size        int64  // plaintext
	filename    string //
	thumbnail   string // media id of the thumbnail, for VariantThumbnail
}

// maxMediaKeys bounds the media keys remembered in memory.
const maxMediaKeys = 10000

func newCrypt(c *Client) *crypt {
	return &crypt{c: c, store: c.cfg.KeyStore, policy: c.cfg.KeyPolicy, convs: map[string]bool{},
		recips: map[string]*convRecipients{}, media: map[string]*mediaKey{}}
}

// keystore returns this device's keystore, loaded from the KeyStore if
// needed; nil without one. Caller holds x.mu.
func (x *crypt) keystoreLocked() (*e2ee.Keystore, error) {
	if x.store == nil {
		return nil, nil
	}
	t := x.c.Tokens()
	if t.DeviceID == "" {
		return nil, nil
	}
	if x.ks != nil && x.ks.DeviceID == t.DeviceID {
		return x.ks, nil
	}
	x.ks = nil
	data, err := x.store.Load(t.DeviceID)
	if err != nil || data == nil {
		return nil, err
	}
	ks, err := e2ee.ParseKeystore(data)
	if err != nil {
		return nil, err
	}
	if ks.UserID != t.UserID || ks.DeviceID != t.DeviceID {
		return nil, fmt.Errorf("client: the keystore saved for device %s belongs to another login", t.DeviceID)
	}
	x.ks = ks
	return ks, nil
}

func (x *crypt) saveLocked() error {
	data, err := x.ks.Marshal()
	if err != nil {
		return err
	}
	return x.store.Save(x.ks.DeviceID, data)
}

// withKeystore runs fn with this device's keystore under the lock and
// saves it afterwards if fn says it changed it.
func (x *crypt) withKeystore(fn func(ks *e2ee.Keystore) (changed bool, err error)) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	ks, err := x.keystoreLocked()
	if err != nil {
		return err
	}
	if ks == nil {
		return errNoKeys
	}
	changed, err := fn(ks)
	if changed {
		if serr := x.saveLocked(); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}

// EnsureKeys makes this device's keys if it has none (create) and
// publishes them; then it rotates them when due and erases those past
// their grace. Login calls it; the connection loop checks every minute.
func (c *Client) EnsureKeys(ctx context.Context) error { return c.ensureKeys(ctx, true) }

func (c *Client) ensureKeys(ctx context.Context, create bool) error {
	x := c.crypt
	if x.store == nil {
		return errNoKeys
	}
	now := time.Now()
	var body e2ee.DeviceKeys
	publish := false
	x.mu.Lock()
	ks, err := x.keystoreLocked()
	if err == nil && ks == nil && create {
		t := c.Tokens()
		if ks, err = e2ee.NewKeystore(t.UserID, t.DeviceID, now); err == nil {
			x.ks = ks
			err = x.saveLocked()
		}
	}
	if err == nil && ks != nil {
		changed := ks.Prune(now) > 0
		if ks.NeedsRotation(now, x.policy) {
			if _, err = ks.Rotate(now); err == nil {
				changed = true
			}
		}
		if changed {
			if serr := x.saveLocked(); serr != nil && err == nil {
				err = serr
			}
		}
		if ks.NeedsPublish() {
			body, publish = ks.PublishRequest(), true
		}
	}
	x.checked = now
	x.mu.Unlock()
	if err != nil {
		return err
	}
	if ks == nil {
		return errNoKeys
	}
	if !publish {
		return nil
	}
	var out struct {
		Version int64 `json:"device_list_version"`
	}
	if err := c.do(ctx, "PUT", "/v1/devices/me/keys", true, body, &out); err != nil {
		return fmt.Errorf("publishing this device's keys: %w", err)
	}
	return x.withKeystore(func(ks *e2ee.Keystore) (bool, error) {
		ks.MarkPublished(body.KeyID, time.Now(), x.policy)
		return true, nil
	})
}

// rotationDue reports whether a rotation or erase check is due (once a
// minute) and this device has a keystore.
func (x *crypt) rotationDue(now time.Time) bool {
	if x.store == nil {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if now.Sub(x.checked) < time.Minute {
		return false
	}
	x.checked = now
	ks, err := x.keystoreLocked()
	return err == nil && ks != nil
}

// noteConversation records whether a conversation is e2ee, from a
// conversation object the server sent.
func (x *crypt) noteConversation(conv *parley.Conversation) {
	if conv == nil || conv.ID == "" {
		return
	}
	x.mu.Lock()
	x.convs[conv.ID] = conv.E2EE
	x.mu.Unlock()
}

// knownE2EE returns whether the conversation is e2ee, if known.
func (x *crypt) knownE2EE(conversationID string) (e2ee, known bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e2ee, known = x.convs[conversationID]
	return e2ee, known
}

// isE2EE says whether a conversation is e2ee, asking the server if the
// client has not seen it.
// A conversation the server does not show (not found: the send or upload
// is refused anyway) counts as not e2ee; other failures are errors, so
// that nothing goes out in plaintext to an e2ee conversation by mistake.
func (c *Client) isE2EE(ctx context.Context, conversationID string) (bool, error) {
	if e, ok := c.crypt.knownE2EE(conversationID); ok {
		return e, nil
	}
	v, err := c.Conversation(ctx, conversationID)
	switch code := parley.ErrorCode(err); {
	case err == nil && v != nil:
		return v.E2EE, nil
	case err == nil, code == parley.CodeNotFound, code == parley.CodeConversationNotFound:
		return false, nil
	}
	return false, err
}

// forgetRecipients drops the cached recipients of conversations that
// hold userID (all conversations when userID is ""), so the next send
// fetches them again.
func (x *crypt) forgetRecipients(conversationID, userID string, version int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, r := range x.recips {
		if conversationID != "" && id != conversationID {
			continue
		}
		if v, ok := r.versions[userID]; userID == "" || (ok && v < version) {
			delete(x.recips, id)
		}
	}
}

// UserDevices fetches a user's device list (GET /v1/users/{id}/devices),
// checks it (every key signature; no known device with another identity
// key) and records it: devices are remembered for the signatures of
// their messages, and a change is announced (EventDevices).
func (c *Client) UserDevices(ctx context.Context, userID string) (*e2ee.Observation, error) {
	var l e2ee.DeviceList
	if err := c.do(ctx, "GET", "/v1/users/"+url.PathEscape(userID)+"/devices", true, nil, &l); err != nil {
		return nil, err
	}
	if l.UserID != userID {
		return nil, parley.Errorf(parley.CodeInternal, "asked for the devices of %s, got %s's", userID, l.UserID)
	}
	return c.observe(&l)
}

// observe records a device list in the keystore and announces changes.
func (c *Client) observe(l *e2ee.DeviceList) (*e2ee.Observation, error) {
	var o *e2ee.Observation
	err := c.crypt.withKeystore(func(ks *e2ee.Keystore) (bool, error) {
		var err error
		o, err = ks.ObserveDevices(l)
		if err != nil {
			return false, err
		}
		return !o.Stale && (o.First || o.Changed || len(o.Added)+len(o.Removed) > 0), nil
	})
	if err != nil {
		return nil, err
	}
	if !o.First && (len(o.Added) > 0 || len(o.Removed) > 0 || len(o.Rejected) > 0 || o.VerifiedChanged) {
		c.emitAsync(Event{Kind: EventDevices, Devices: &DeviceChange{UserID: o.UserID, Added: o.Added, Removed: o.Removed,
			Untrusted: o.Rejected, SecurityCodeChanged: o.VerifiedChanged}})
	} else if o.First && len(o.Rejected) > 0 {
		c.emitAsync(Event{Kind: EventDevices, Devices: &DeviceChange{UserID: o.UserID, Untrusted: o.Rejected}})
	}
	return o, nil
}

// emitAsync hands an event to the connection loop, if there is one.
func (c *Client) emitAsync(e Event) {
	c.mu.Lock()
	r := c.rt
	c.mu.Unlock()
	if r != nil {
		r.post(func() { r.emit(e) })
	}
}

// recipients returns the devices a send to a conversation seals to:
// every trusted keyed device of every member but this one, from GET
// /v1/conversations/{id}/devices (cached until a reconnect, a device_list
// frame of a member or a membership change, or refresh). A listed device
// that is not trusted makes it fail: the server would refuse the send
// without it, and the client must not seal to it.
func (c *Client) recipients(ctx context.Context, conversationID string, refresh bool) ([]e2ee.Recipient, error) {
	x := c.crypt
	x.mu.Lock()
	if r := x.recips[conversationID]; r != nil && !refresh && r.epoch == x.epoch {
		x.mu.Unlock()
		return r.list, nil
	}
	epoch := x.epoch
	x.mu.Unlock()
	var out struct {
		Users []e2ee.DeviceList `json:"users"`
	}
	if err := c.do(ctx, "GET", "/v1/conversations/"+url.PathEscape(conversationID)+"/devices", true, nil, &out); err != nil {
		return nil, err
	}
	r := &convRecipients{versions: map[string]int64{}, epoch: epoch}
	for i := range out.Users {
		l := &out.Users[i]
		o, err := c.observe(l)
		if err != nil {
			return nil, err
		}
		if len(o.Rejected) > 0 {
			d := o.Rejected[0]
			return nil, parley.Errorf(parley.CodeConflict, "device %s of user %s is not trusted (%v): not encrypting to it; verify the user again to accept their devices", d.DeviceID, l.UserID, d.Err)
		}
		r.versions[l.UserID] = l.DeviceListVersion
		for j := range o.Trusted {
			r.list = append(r.list, e2ee.RecipientOf(l.UserID, &o.Trusted[j]))
		}
	}
	x.mu.Lock()
	x.recips[conversationID] = r
	x.mu.Unlock()
	return r.list, nil
}

// sealed is an encrypted send: the header, the content key and the
// envelope with its keys.
type sealed struct {
	h    e2ee.Header
	k    []byte
	env  *e2ee.Envelope
	atts []e2ee.Attachment // in the content: their media go as server-side attachments
}

// seal encrypts a send for the conversation's devices. The content key of
// a client_msg_id is kept (and reused by a resend), so whichever copy the
// server stored opens with it.
func (c *Client) seal(ctx context.Context, conversationID, clientMsgID string, content []byte, atts []e2ee.Attachment, refresh bool) (*sealed, error) {
	if err := c.ensureKeys(ctx, false); err != nil {
		return nil, err
	}
	rs, err := c.recipients(ctx, conversationID, refresh)
	if err != nil {
		return nil, err
	}
	t := c.Tokens()
	h := e2ee.Header{ConversationID: conversationID, SenderUserID: t.UserID, SenderDeviceID: t.DeviceID, ClientMsgID: clientMsgID}
	var s *sealed
	err = c.crypt.withKeystore(func(ks *e2ee.Keystore) (bool, error) {
		now := time.Now()
		k := ks.SentKey(conversationID, clientMsgID, now)
		changed := false
		if k == nil {
			var err error
			if k, err = e2ee.NewFileKey(); err != nil {
				return false, err
			}
			ks.RememberSent(conversationID, clientMsgID, k, now, c.crypt.policy)
			changed = true
		}
		env, err := e2ee.SealWithKey(ks.Identity(), h, content, k, rs)
		if err != nil {
			return changed, err
		}
		s = &sealed{h: h, k: k, env: env, atts: atts}
		return changed, nil
	})
	return s, err
}

// reseal redoes the keys of a send for the conversation's devices as they
// are now (after device_mismatch): same K, ciphertext and signature.
func (c *Client) reseal(ctx context.Context, s *sealed) (*sealed, error) {
	rs, err := c.recipients(ctx, s.h.ConversationID, true)
	if err != nil {
		return nil, err
	}
	keys, err := e2ee.SealKeys(s.h, s.k, rs)
	if err != nil {
		return nil, err
	}
	env := *s.env
	env.Keys = keys
	return &sealed{h: s.h, k: s.k, env: &env, atts: s.atts}, nil
}

// contentOf is the plaintext content of a send.
func contentOf(p *Pending) ([]byte, error) {
	ct := e2ee.Content{Type: string(p.Type), Body: p.Body, Attachments: p.E2EEAttachments}
	if ct.Type == "" {
		ct.Type = e2ee.TypeText
	}
	if ct.Type == e2ee.TypeText && len(ct.Attachments) > 0 { // the default type, with files: show them
		ct.Type = kindOf(ct.Attachments[0].ContentType)
	}
	return ct.Marshal()
}

// serverRefs are the server-side attachments of an encrypted send: each
// file, then its thumbnail.
func serverRefs(atts []e2ee.Attachment) []parley.AttachmentRef {
	var refs []parley.AttachmentRef
	for _, a := range atts {
		refs = append(refs, parley.AttachmentRef{MediaID: a.MediaID})
		if a.Thumbnail != nil {
			refs = append(refs, parley.AttachmentRef{MediaID: a.Thumbnail.MediaID})
		}
	}
	return refs
}

// envelopeOf converts a message's envelope (as the root package decodes
// it) into e2ee's, decoding and checking every field.
func envelopeOf(pe *parley.Envelope) (*e2ee.Envelope, error) {
	data, err := json.Marshal(pe)
	if err != nil {
		return nil, err
	}
	return e2ee.ParseEnvelope(data)
}

// senderUnknown reports whether an encrypted message's sending device is
// one this client has no identity key for (so its device list must be
// fetched before the message can be checked).
func (c *Client) senderUnknown(m *parley.Message) bool {
	if m.Type != parley.MessageEncrypted || m.Envelope == nil || m.Deleted || c.crypt.store == nil {
		return false
	}
	x := c.crypt
	x.mu.Lock()
	defer x.mu.Unlock()
	ks, err := x.keystoreLocked()
	if err != nil || ks == nil {
		return false
	}
	return ks.IdentityKey(m.SenderID, m.SenderDeviceID) == nil
}

// decrypt opens an encrypted message in place (see Decryption); nil for a
// message that is not encrypted (or a tombstone). It does no network
// call: a sending device not known yet is unknown_sender_device.
func (c *Client) decrypt(m *parley.Message) *Decryption {
	if m.Type != parley.MessageEncrypted || m.Deleted {
		return nil
	}
	fail := func(err error) *Decryption {
		r := e2ee.ReasonOf(err)
		if r == "" {
			r = e2ee.ReasonNoKey
		}
		return &Decryption{Reason: r, Err: err}
	}
	if m.Envelope == nil {
		return fail(nil)
	}
	env, err := envelopeOf(m.Envelope)
	if err != nil {
		return fail(&e2ee.DecryptError{Reason: e2ee.ReasonBadCiphertext, Err: err})
	}
	h := e2ee.Header{ConversationID: m.ConversationID, SenderUserID: m.SenderID, SenderDeviceID: m.SenderDeviceID, ClientMsgID: m.ClientMsgID}
	var opened *e2ee.Opened
	err = c.crypt.withKeystore(func(ks *e2ee.Keystore) (bool, error) {
		now := time.Now()
		var err error
		if m.SenderID == ks.UserID && m.SenderDeviceID == ks.DeviceID {
			opened, err = e2ee.OpenOwn(h, env, ks.SentKey(m.ConversationID, m.ClientMsgID, now), ks.Identity().Public())
			if err == nil && m.Seq > 0 {
				return ks.SetSentSeq(m.ConversationID, m.ClientMsgID, m.Seq), nil
			}
			return false, err
		}
		opened, err = e2ee.Open(h, ks.DeviceID, env, ks.Finder(now), ks.IdentityKey(m.SenderID, m.SenderDeviceID))
		return false, err
	})
	if err != nil {
		return fail(err)
	}
	if err := checkAttachments(opened.Content, m.Attachments); err != nil {
		return fail(&e2ee.DecryptError{Reason: e2ee.ReasonBadContent, Err: err})
	}
	c.crypt.rememberMedia(opened.Content)
	applyContent(m, opened.Content)
	return &Decryption{Content: opened.Content}
}

// checkAttachments: every media item the content names (files and
// thumbnails) is among the message's server-side attachments.
func checkAttachments(ct *e2ee.Content, server []parley.Attachment) error {
	have := map[string]bool{}
	for _, a := range server {
		have[a.MediaID] = true
	}
	for _, a := range ct.Attachments {
		if !have[a.MediaID] {
			return fmt.Errorf("the content names media %s, which the message does not carry", a.MediaID)
		}
		if a.Thumbnail != nil && !have[a.Thumbnail.MediaID] {
			return fmt.Errorf("the content names thumbnail %s, which the message does not carry", a.Thumbnail.MediaID)
		}
	}
	return nil
}

// applyContent gives a decrypted message its content's type, body and
// attachments (the real metadata; thumbnails folded into their files).
func applyContent(m *parley.Message, ct *e2ee.Content) {
	m.Type = parley.MessageType(ct.Type)
	m.Body = ct.Body
	server := map[string]parley.Attachment{}
	for _, a := range m.Attachments {
		server[a.MediaID] = a
	}
	var atts []parley.Attachment
	for _, a := range ct.Attachments {
		pa := parley.Attachment{MediaID: a.MediaID, ContentType: a.ContentType, Size: a.Size, SHA256: a.SHA256, Filename: a.Filename,
			Width: a.Width, Height: a.Height, DurationMS: a.DurationMS, Blurhash: a.Blurhash, Encrypted: true}
		if t := a.Thumbnail; t != nil {
			pa.Thumbnail = &parley.Thumbnail{Width: t.Width, Height: t.Height}
		}
		if sa, ok := server[a.MediaID]; ok && pa.Size == 0 {
			pa.Size = sa.Size
		}
		atts = append(atts, pa)
	}
	m.Attachments = atts
}

// rememberMedia keeps the keys of a decrypted message's attachments, so
// Download can decrypt them.
func (x *crypt) rememberMedia(ct *e2ee.Content) {
	if len(ct.Attachments) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, a := range ct.Attachments {
		mk := &mediaKey{key: a.Key, sha256: a.SHA256, contentType: a.ContentType, size: a.Size, filename: a.Filename}
		if t := a.Thumbnail; t != nil {
			mk.thumbnail = t.MediaID
			x.putMedia(t.MediaID, &mediaKey{key: t.Key, sha256: t.SHA256, contentType: t.ContentType})
		}
		x.putMedia(a.MediaID, mk)
	}
}

func (x *crypt) putMedia(id string, mk *mediaKey) {
	if _, ok := x.media[id]; !ok && len(x.media) >= maxMediaKeys {
		for old := range x.media {
			delete(x.media, old)
			break
		}
	}
	x.media[id] = mk
}

func (x *crypt) mediaKeyOf(id string) *mediaKey {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.media[id]
}

// decryptFetching decrypts a message on a REST path: a sending device
// not known yet is looked up (one fetch of the sender's list) first.
func (c *Client) decryptFetching(ctx context.Context, m *parley.Message, fetched map[string]bool) *Decryption {
	if c.senderUnknown(m) && !fetched[m.SenderID] {
		fetched[m.SenderID] = true
		if _, err := c.UserDevices(ctx, m.SenderID); err != nil {
			c.log.Warn("parley: e2ee: fetching a sender's devices", "user_id", m.SenderID, "err", err)
		}
	}
	d := c.decrypt(m)
	if d != nil && !d.Decrypted() && d.Reason == e2ee.ReasonNoKey {
		c.requestKeyAsync(m)
	}
	return d
}

// requestKeyAsync asks the sender's devices for a message's key again
// (POST .../key-requests), once per message per process, unless the
// sending device is this one (nobody else has the key).
func (c *Client) requestKeyAsync(m *parley.Message) {
	t := c.Tokens()
	if c.crypt.store == nil || (m.SenderID == t.UserID && m.SenderDeviceID == t.DeviceID) {
		return // no keys to seal to, or nobody else has the key
	}
	x := c.crypt
	k := m.ConversationID + "/" + strconv.FormatInt(m.Seq, 10)
	x.mu.Lock()
	if x.asked == nil {
		x.asked = map[string]time.Time{}
	}
	if last, ok := x.asked[k]; ok && time.Since(last) < keyRequestEvery {
		x.mu.Unlock()
		return
	}
	if len(x.asked) >= maxMediaKeys {
		clear(x.asked)
	}
	x.asked[k] = time.Now()
	x.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A sender's device seals only to a device in the key directory:
		// publish first if this one has not yet (a restored client).
		if err := c.ensureKeys(ctx, false); err != nil {
			c.log.Info("parley: e2ee: key request: this device's keys", "conversation_id", m.ConversationID, "seq", m.Seq, "err", err)
			return
		}
		if err := c.RequestKey(ctx, m.ConversationID, m.Seq); err != nil {
			c.log.Info("parley: e2ee: key request", "conversation_id", m.ConversationID, "seq", m.Seq, "err", err)
		}
	}()
}

// keyRequestEvery spaces the key requests for one message.
const keyRequestEvery = 10 * time.Minute

// RequestKey asks the sender's devices to seal message seq's key to this
// device again (POST /v1/conversations/{id}/messages/{seq}/key-requests).
// When one answers, the message comes again with a key and the client
// hands it over decrypted (EventMessageChanged).
func (c *Client) RequestKey(ctx context.Context, conversationID string, seq int64) error {
	return c.do(ctx, "POST", "/v1/conversations/"+url.PathEscape(conversationID)+"/messages/"+strconv.FormatInt(seq, 10)+"/key-requests", true, nil, nil)
}

// answerKeyRequest seals the content key of a message this device sent to
// the device that asked for it (PUT .../messages/{seq}/keys), if the key
// is still kept and the device is a trusted one of its user.
func (c *Client) answerKeyRequest(ctx context.Context, conversationID string, seq int64, userID, deviceID string) error {
	var cmid string
	var k []byte
	err := c.crypt.withKeystore(func(ks *e2ee.Keystore) (bool, error) {
		cmid, k = ks.SentKeyBySeq(conversationID, seq, time.Now())
		return false, nil
	})
	if err != nil || k == nil {
		return err // not ours, or past its grace: nothing to give
	}
	o, err := c.UserDevices(ctx, userID)
	if err != nil {
		return err
	}
	var r *e2ee.Recipient
	for i := range o.Trusted {
		if o.Trusted[i].DeviceID == deviceID {
			rr := e2ee.RecipientOf(userID, &o.Trusted[i])
			r = &rr
		}
	}
	if r == nil {
		return fmt.Errorf("device %s of user %s is not a trusted keyed device", deviceID, userID)
	}
	t := c.Tokens()
	h := e2ee.Header{ConversationID: conversationID, SenderUserID: t.UserID, SenderDeviceID: t.DeviceID, ClientMsgID: cmid}
	keys, err := e2ee.SealKeys(h, k, []e2ee.Recipient{*r})
	if err != nil {
		return err
	}
	return c.do(ctx, "PUT", "/v1/conversations/"+url.PathEscape(conversationID)+"/messages/"+strconv.FormatInt(seq, 10)+"/keys", true,
		map[string]any{"keys": keys}, nil)
}

// SafetyNumber returns the safety number of this user and userID (60
// digits in groups of 5) from both users' current device lists, and
// whether userID is verified with the fingerprint they have now.
func (c *Client) SafetyNumber(ctx context.Context, userID string) (number string, verified bool, err error) {
	me := c.Tokens().UserID
	mine, err := c.UserDevices(ctx, me)
	if err != nil {
		return "", false, err
	}
	theirs := mine
	if userID != me {
		if theirs, err = c.UserDevices(ctx, userID); err != nil {
			return "", false, err
		}
	}
	if len(theirs.Trusted)+len(theirs.Rejected) == 0 && userID != me {
		return "", false, parley.Errorf(parley.CodeNotFound, "user %s has no device with keys", userID)
	}
	number, err = e2ee.SafetyNumber(me, mine.Fingerprint, userID, theirs.Fingerprint)
	if err != nil {
		return "", false, err
	}
	err = c.crypt.withKeystore(func(ks *e2ee.Keystore) (bool, error) {
		v, current := ks.Verified(userID)
		verified = v && current
		return false, nil
	})
	return number, verified, err
}

// MarkVerified records that the user compared the safety number with
// userID: their devices as listed now are trusted (even ones whose
// identity changed), and a later change of their fingerprint is announced
// (EventDevices with SecurityCodeChanged).
func (c *Client) MarkVerified(ctx context.Context, userID string) error {
	var l e2ee.DeviceList
	if err := c.do(ctx, "GET", "/v1/users/"+url.PathEscape(userID)+"/devices", true, nil, &l); err != nil {
		return err
	}
	if l.UserID != userID {
		return parley.Errorf(parley.CodeInternal, "asked for the devices of %s, got %s's", userID, l.UserID)
	}
	if err := c.crypt.withKeystore(func(ks *e2ee.Keystore) (bool, error) { return true, ks.MarkVerified(&l) }); err != nil {
		return err
	}
	c.crypt.forgetRecipients("", "", 0)
	return nil
}

// Verified reports whether userID is marked verified, and whether their
// fingerprint is still the verified one as of the last list seen.
func (c *Client) Verified(userID string) (verified, current bool) {
	_ = c.crypt.withKeystore(func(ks *e2ee.Keystore) (bool, error) {
		verified, current = ks.Verified(userID)
		return false, nil
	})
	return verified, current
}
