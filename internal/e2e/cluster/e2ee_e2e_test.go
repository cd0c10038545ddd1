package cluster_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/wstest"
)

// End-to-end encryption through the real binary (docs/design/e2ee.md).
// The clients here build real envelopes: Ed25519 identity keys, HPKE
// (X25519, HKDF-SHA256, ChaCha20-Poly1305) from crypto/hpke, the content
// sealed with ChaCha20-Poly1305, all with the contract's exact bytes, so
// a server that mangled any field would fail to open. The real client
// library is the Go SDK's (package e2ee); this helper stays a test's.

// e2eeDevice is a logged-in device with its private keys.
type e2eeDevice struct {
	e2e.Device
	identity ed25519.PrivateKey
	hpkeKey  hpke.PrivateKey
	keyID    int64
}

func lp(b []byte, x string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(x)))
	return append(b, x...)
}

// newE2EEDevice logs handle in on a new device and makes its keys (not
// yet published).
func newE2EEDevice(t testing.TB, base, handle, name string) *e2eeDevice {
	t.Helper()
	_, identity, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := &e2eeDevice{Device: e2e.LoginDevice(t, base, handle, name), identity: identity}
	d.rotate(t)
	return d
}

// rotate makes a new HPKE key with the next key id (not yet published).
func (d *e2eeDevice) rotate(t testing.TB) {
	t.Helper()
	k, err := hpke.DHKEM(ecdh.X25519()).GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	d.hpkeKey = k
	d.keyID++
}

// keysBody is the body of PUT /v1/devices/me/keys for d's current keys.
func (d *e2eeDevice) keysBody() map[string]any {
	pub := d.hpkeKey.PublicKey().Bytes()
	msg := parley.DeviceKeySignedBytes(d.User, d.ID, d.keyID, parley.SuiteX25519, pub)
	return map[string]any{
		"identity_key":  parley.B64.EncodeToString(d.identity.Public().(ed25519.PublicKey)),
		"suite":         parley.SuiteX25519,
		"key_id":        d.keyID,
		"public_key":    parley.B64.EncodeToString(pub),
		"key_signature": parley.B64.EncodeToString(ed25519.Sign(d.identity, msg)),
	}
}

// publish puts d's keys and returns the user's device list version.
func (d *e2eeDevice) publish(t testing.TB, base string) int64 {
	t.Helper()
	out := e2e.MustAPI(t, 200, "PUT", base+"/v1/devices/me/keys", d.Token, d.keysBody())
	dev := out["device"].(map[string]any)
	if dev["device_id"] != d.ID || dev["key_id"].(float64) != float64(d.keyID) {
		t.Fatalf("published %v", out)
	}
	return int64(out["device_list_version"].(float64))
}

// recipient is a device to seal to, as the directory lists it.
type recipient struct {
	deviceID string
	keyID    int64
	public   []byte
}

// directory reads a conversation's devices (GET .../devices), checks
// every key signature, and returns every device but except's.
func directory(t testing.TB, base, token, conversationID, except string) []recipient {
	t.Helper()
	out := e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+conversationID+"/devices", token, nil)
	var rs []recipient
	for _, u := range out["users"].([]any) {
		user := u.(map[string]any)
		for _, dv := range user["devices"].([]any) {
			d := dv.(map[string]any)
			pub, _ := parley.B64.DecodeString(d["public_key"].(string))
			id, _ := parley.B64.DecodeString(d["identity_key"].(string))
			sig, _ := parley.B64.DecodeString(d["key_signature"].(string))
			keyID := int64(d["key_id"].(float64))
			if !ed25519.Verify(id, parley.DeviceKeySignedBytes(user["user_id"].(string), d["device_id"].(string), keyID, d["suite"].(string), pub), sig) {
				t.Fatalf("device %v: key signature does not verify", d)
			}
			if d["device_id"] != except {
				rs = append(rs, recipient{deviceID: d["device_id"].(string), keyID: keyID, public: pub})
			}
		}
	}
	return rs
}

func (d *e2eeDevice) recipient() recipient {
	return recipient{deviceID: d.ID, keyID: d.keyID, public: d.hpkeKey.PublicKey().Bytes()}
}

// sealed is a message's content sealed once: K, the ciphertext and the
// signature; keys are made per recipient (a resend keeps these).
type sealed struct {
	conv, clientMsgID string
	k                 []byte
	ciphertext        []byte
	signature         []byte
}

func (d *e2eeDevice) seal(t testing.TB, conv, clientMsgID, text string) *sealed {
	t.Helper()
	content, _ := json.Marshal(map[string]any{"v": 1, "type": "text", "body": text})
	k := make([]byte, 32)
	nonce := make([]byte, 12)
	rand.Read(k)
	rand.Read(nonce)
	ad := lp(lp(lp(lp([]byte("parley-e2ee-v1/content"), conv), d.User), d.ID), clientMsgID)
	aead, err := chacha20poly1305.New(k)
	if err != nil {
		t.Fatal(err)
	}
	ct := aead.Seal(append([]byte{}, nonce...), nonce, content, ad)
	msg := lp(lp(lp(lp(lp(lp([]byte("parley-e2ee-v1/message"), conv), d.User), d.ID), clientMsgID), parley.SuiteX25519), string(ct))
	return &sealed{conv: conv, clientMsgID: clientMsgID, k: k, ciphertext: ct, signature: ed25519.Sign(d.identity, msg)}
}

// keyFor seals s's K to one recipient.
func (s *sealed) keyFor(t testing.TB, sender *e2eeDevice, r recipient) map[string]any {
	t.Helper()
	pk, err := hpke.DHKEM(ecdh.X25519()).NewPublicKey(r.public)
	if err != nil {
		t.Fatal(err)
	}
	enc, ctx, err := hpke.NewSender(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte("parley-e2ee-v1/key"))
	if err != nil {
		t.Fatal(err)
	}
	aad := binary.BigEndian.AppendUint64(lp(lp(lp(lp(nil, s.conv), sender.ID), s.clientMsgID), r.deviceID), uint64(r.keyID))
	out, err := ctx.Seal(aad, s.k)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"device_id": r.deviceID, "key_id": r.keyID, "enc": parley.B64.EncodeToString(enc), "sealed": parley.B64.EncodeToString(out)}
}

// envelope is the send's envelope with a key for each of to.
func (s *sealed) envelope(t testing.TB, sender *e2eeDevice, to []recipient) map[string]any {
	keys := []any{}
	for _, r := range to {
		keys = append(keys, s.keyFor(t, sender, r))
	}
	return map[string]any{"v": 1, "suite": parley.SuiteX25519, "ciphertext": parley.B64.EncodeToString(s.ciphertext),
		"signature": parley.B64.EncodeToString(s.signature), "keys": keys}
}

// sendFrame is a WebSocket send of s.
func (s *sealed) sendFrame(t testing.TB, id string, sender *e2eeDevice, to []recipient) map[string]any {
	return map[string]any{"type": "send", "id": id, "conversation_id": s.conv, "client_msg_id": s.clientMsgID,
		"message_type": "encrypted", "envelope": s.envelope(t, sender, to)}
}

// open decrypts a delivered message as d: its own key, the sender's
// signature (identity from senderIdentity), then the content.
func (d *e2eeDevice) open(t testing.TB, m parley.Message, senderIdentity ed25519.PublicKey) string {
	t.Helper()
	e := m.Envelope
	if e == nil || e.Key == nil {
		t.Fatalf("device %s: message %d has no key: %+v", d.ID, m.Seq, m)
	}
	if e.Key.DeviceID != d.ID || e.Key.KeyID != d.keyID {
		t.Fatalf("device %s got the key of %s (key id %d)", d.ID, e.Key.DeviceID, e.Key.KeyID)
	}
	enc, _ := parley.B64.DecodeString(e.Key.Enc)
	sealedKey, _ := parley.B64.DecodeString(e.Key.Sealed)
	r, err := hpke.NewRecipient(enc, d.hpkeKey, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte("parley-e2ee-v1/key"))
	if err != nil {
		t.Fatal(err)
	}
	aad := binary.BigEndian.AppendUint64(lp(lp(lp(lp(nil, m.ConversationID), m.SenderDeviceID), m.ClientMsgID), d.ID), uint64(e.Key.KeyID))
	k, err := r.Open(aad, sealedKey)
	if err != nil {
		t.Fatalf("device %s: the sealed key does not open: %v", d.ID, err)
	}
	ct, _ := parley.B64.DecodeString(e.Ciphertext)
	sig, _ := parley.B64.DecodeString(e.Signature)
	msg := lp(lp(lp(lp(lp(lp([]byte("parley-e2ee-v1/message"), m.ConversationID), m.SenderID), m.SenderDeviceID), m.ClientMsgID), e.Suite), string(ct))
	if !ed25519.Verify(senderIdentity, msg, sig) {
		t.Fatalf("device %s: the signature does not verify", d.ID)
	}
	aead, _ := chacha20poly1305.New(k)
	ad := lp(lp(lp(lp([]byte("parley-e2ee-v1/content"), m.ConversationID), m.SenderID), m.SenderDeviceID), m.ClientMsgID)
	content, err := aead.Open(nil, ct[:12], ct[12:], ad)
	if err != nil {
		t.Fatalf("device %s: the content does not open: %v", d.ID, err)
	}
	var c struct {
		V    int    `json:"v"`
		Body string `json:"body"`
	}
	if err := json.Unmarshal(content, &c); err != nil || c.V != 1 {
		t.Fatalf("content %s: %v", content, err)
	}
	return c.Body
}

func (d *e2eeDevice) identityKey() ed25519.PublicKey { return d.identity.Public().(ed25519.PublicKey) }

// errorFrame is a decoded error frame.
type errorFrame struct {
	ID    string `json:"id"`
	Error struct {
		Code    string             `json:"code"`
		Message string             `json:"message"`
		Missing []parley.DeviceRef `json:"missing"`
		Extra   []string           `json:"extra"`
		Stale   []parley.DeviceRef `json:"stale"`
	} `json:"error"`
}

// expectAck waits for the ack of request id and returns its message.
func expectAck(t testing.TB, c *wstest.Conn, id string) parley.Message {
	t.Helper()
	for {
		f := e2e.UntilFrame(t, c, "ack", "error")
		var ack struct {
			ID      string         `json:"id"`
			Message parley.Message `json:"message"`
		}
		if err := f.Decode(&ack); err != nil {
			t.Fatal(err)
		}
		if ack.ID == id {
			return ack.Message
		}
	}
}

// ackAndEcho waits for the ack of request id and for the message frame
// the sending connection gets of its own message (in either order).
func ackAndEcho(t testing.TB, c *wstest.Conn, id string) (ack, echo parley.Message) {
	t.Helper()
	gotAck, gotEcho := false, false
	deadline := time.Now().Add(10 * time.Second)
	for !gotAck || !gotEcho {
		f, err := c.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for the ack and echo of %s (ack %v, echo %v): %v", id, gotAck, gotEcho, err)
		}
		var v struct {
			ID      string         `json:"id"`
			Message parley.Message `json:"message"`
		}
		switch f.Type {
		case "error":
			t.Fatalf("error %s", f.Raw)
		case "ack", "message":
			if err := f.Decode(&v); err != nil {
				t.Fatal(err)
			}
		}
		switch {
		case f.Type == "ack" && v.ID == id:
			ack, gotAck = v.Message, true
		case f.Type == "message" && gotAck && v.Message.Seq == ack.Seq, f.Type == "message" && !gotAck:
			echo, gotEcho = v.Message, true
		}
	}
	return ack, echo
}

// expectFrame waits for a frame of type typ (skipping others) and
// decodes it into v; it returns the raw frame.
func expectFrame(t testing.TB, c *wstest.Conn, typ string, v any) []byte {
	t.Helper()
	f := e2e.UntilFrame(t, c, typ)
	if v != nil {
		if err := f.Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return f.Raw
}

func conversationID(out map[string]any) string {
	return out["conversation"].(map[string]any)["id"].(string)
}

// TestE2EEDirectoryMismatchAndDelivery: keys published and listed (to
// members and the user only), device_list frames to the user's other
// devices and to another user's connection, plaintext and encrypted
// refused where they do not belong, a send missing a device refused with
// device_mismatch listing it (WebSocket and REST, missing/extra/stale)
// and the corrected resend with the same client_msg_id accepted, and each
// device getting only its own key live, in sync, in history (WebSocket
// and REST) and in GET of one message; the sender's device none. The
// envelope never reaches a log line.
func TestE2EEDirectoryMismatchAndDelivery(t *testing.T) {
	p := e2e.StartRealtime(t, "--log-level", "debug")
	base := p.Base
	alice, _ := e2e.Signup(t, base, "alice")
	bob, _ := e2e.Signup(t, base, "bob")
	e2e.Signup(t, base, "carol")
	aPhone, aLaptop := newE2EEDevice(t, base, "alice", "phone"), newE2EEDevice(t, base, "alice", "laptop")
	bPhone := newE2EEDevice(t, base, "bob", "phone")
	carol := newE2EEDevice(t, base, "carol", "phone")

	if v := aPhone.publish(t, base); v != 1 {
		t.Fatalf("alice's first publish: version %d, want 1", v)
	}
	if v := bPhone.publish(t, base); v != 1 {
		t.Fatalf("bob's first publish: version %d, want 1", v)
	}
	// A retried publish changes nothing; another identity, a bad
	// signature, an older key id are refused.
	if v := aPhone.publish(t, base); v != 1 {
		t.Fatalf("republish: version %d, want 1", v)
	}
	bad := aPhone.keysBody()
	bad["key_id"] = float64(2) // signed for key id 1
	if code, out := e2e.API(t, http.DefaultClient, "PUT", base+"/v1/devices/me/keys", aPhone.Token, bad); code != 400 || !strings.Contains(fmt.Sprint(out), "key_signature does not verify") {
		t.Fatalf("bad signature: %d %v", code, out)
	}
	impostor := *aPhone
	_, impostor.identity, _ = ed25519.GenerateKey(rand.Reader)
	impostor.keyID = 2
	if code, out := e2e.API(t, http.DefaultClient, "PUT", base+"/v1/devices/me/keys", aPhone.Token, impostor.keysBody()); code != 409 {
		t.Fatalf("another identity: %d %v", code, out)
	}

	conv := conversationID(e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", aPhone.Token, map[string]any{"kind": "direct", "members": []string{bob}, "e2ee": true}))
	plain := conversationID(e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", aPhone.Token, map[string]any{"kind": "direct", "members": []string{bob}}))
	if conv == plain {
		t.Fatal("the e2ee and the plain direct conversation are one")
	}
	again := e2e.MustAPI(t, 200, "POST", base+"/v1/conversations", bPhone.Token, map[string]any{"kind": "direct", "members": []string{alice}, "e2ee": true})
	if conversationID(again) != conv || again["conversation"].(map[string]any)["e2ee"] != true {
		t.Fatalf("find-or-create of the e2ee direct conversation: %v", again)
	}

	ap, bp := e2e.Connect(t, base, aPhone.Device), e2e.Connect(t, base, bPhone.Device)

	// Alice's laptop publishes: bob and alice's phone hear of it.
	if v := aLaptop.publish(t, base); v != 2 {
		t.Fatalf("alice's second Device: version %d, want 2", v)
	}
	for name, c := range map[string]*wstest.Conn{"bob": bp, "alice's phone": ap} {
		var dl struct {
			UserID  string `json:"user_id"`
			Version int64  `json:"device_list_version"`
		}
		expectFrame(t, c, "device_list", &dl)
		if dl.UserID != alice || dl.Version != 2 {
			t.Fatalf("%s: device_list %+v, want alice at 2", name, dl)
		}
	}
	al := e2e.Connect(t, base, aLaptop.Device)

	// The directory: to bob (shares a conversation) and alice, not carol.
	list := e2e.MustAPI(t, 200, "GET", base+"/v1/users/"+alice+"/devices", bPhone.Token, nil)
	if list["device_list_version"].(float64) != 2 || len(list["devices"].([]any)) != 2 {
		t.Fatalf("alice's devices as bob sees them: %v", list)
	}
	e2e.MustAPI(t, 200, "GET", base+"/v1/users/"+alice+"/devices", aLaptop.Token, nil)
	if code, out := e2e.API(t, http.DefaultClient, "GET", base+"/v1/users/"+alice+"/devices", carol.Token, nil); code != 404 || out["error"].(map[string]any)["code"] != "not_found" {
		t.Fatalf("a stranger lists alice's devices: %d %v", code, out)
	}
	if code, _ := e2e.API(t, http.DefaultClient, "GET", base+"/v1/conversations/"+conv+"/devices", carol.Token, nil); code != 404 {
		t.Fatalf("a non-member lists a conversation's devices: %d", code)
	}

	// Plaintext in the e2ee conversation, encrypted in the plain one.
	if code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations/"+conv+"/messages", aPhone.Token, map[string]any{"client_msg_id": "p1", "body": "in the clear"}); code != 400 {
		t.Fatalf("plaintext into e2ee: %d %v", code, out)
	}
	s0 := aPhone.seal(t, plain, "e0", "wrong room")
	if code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations/"+plain+"/messages", aPhone.Token,
		map[string]any{"client_msg_id": "e0", "type": "encrypted", "envelope": s0.envelope(t, aPhone, []recipient{bPhone.recipient()})}); code != 400 {
		t.Fatalf("encrypted into plain: %d %v", code, out)
	}
	// A device without keys cannot send.
	noKeys := newE2EEDevice(t, base, "alice", "tablet")
	s1 := noKeys.seal(t, conv, "nokeys", "x")
	if code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations/"+conv+"/messages", noKeys.Token,
		map[string]any{"client_msg_id": "nokeys", "type": "encrypted", "envelope": s1.envelope(t, noKeys, []recipient{bPhone.recipient()})}); code != 403 {
		t.Fatalf("a device without keys sends: %d %v", code, out)
	}

	// Alice's phone seals with a stale view (bob only): device_mismatch
	// naming her laptop, nothing stored.
	const text = "the eagle lands at dawn"
	s := aPhone.seal(t, conv, "c-1", text)
	ap.MustWrite(s.sendFrame(t, "s1", aPhone, []recipient{bPhone.recipient()}))
	var ef errorFrame
	expectFrame(t, ap, "error", &ef)
	if ef.ID != "s1" || ef.Error.Code != "device_mismatch" || len(ef.Error.Missing) != 1 || ef.Error.Missing[0] != (parley.DeviceRef{UserID: alice, DeviceID: aLaptop.ID}) ||
		ef.Error.Extra == nil || len(ef.Error.Extra) != 0 || ef.Error.Stale == nil || len(ef.Error.Stale) != 0 {
		t.Fatalf("mismatch frame %+v", ef)
	}
	// Over REST, with carol's device extra and bob's sealed to a key
	// he since rotated: all three lists.
	bPhone.rotate(t)
	staleBob := bPhone.recipient()
	staleBob.keyID = 1
	bPhone.publish(t, base)
	code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations/"+conv+"/messages", aPhone.Token,
		map[string]any{"client_msg_id": "c-1", "type": "encrypted", "envelope": s.envelope(t, aPhone, []recipient{staleBob, carol.recipient()})})
	e := out["error"].(map[string]any)
	if code != 409 || e["code"] != "device_mismatch" || fmt.Sprint(e["missing"]) != fmt.Sprintf("[map[device_id:%s user_id:%s]]", aLaptop.ID, alice) ||
		fmt.Sprint(e["extra"]) != "["+carol.ID+"]" || fmt.Sprint(e["stale"]) != fmt.Sprintf("[map[device_id:%s key_id:2 user_id:%s]]", bPhone.ID, bob) {
		t.Fatalf("REST mismatch: %d %v", code, out)
	}
	if n := len(e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+conv+"/messages", aPhone.Token, nil)["messages"].([]any)); n != 0 {
		t.Fatalf("%d messages stored after refusals", n)
	}

	// The client refetches the directory and resends with the same
	// client_msg_id, K, ciphertext and signature: accepted.
	to := directory(t, base, aPhone.Token, conv, aPhone.ID)
	if len(to) != 2 {
		t.Fatalf("directory %v", to)
	}
	ap.MustWrite(s.sendFrame(t, "s2", aPhone, to))
	ack, own := ackAndEcho(t, ap, "s2")
	if own.Seq != 1 || own.Envelope == nil || own.Envelope.Key != nil {
		t.Fatalf("the sender's own frame %+v", own)
	}
	if ack.Seq != 1 || ack.Type != parley.MessageEncrypted || ack.Body != "" || ack.Envelope == nil || ack.Envelope.Key != nil {
		t.Fatalf("ack %+v", ack)
	}

	// Live: bob's phone and alice's laptop each get their own key only;
	// alice's phone (the sender) gets the message without a key.
	for _, tc := range []struct {
		c *wstest.Conn
		d *e2eeDevice
	}{{bp, bPhone}, {al, aLaptop}} {
		var mf e2e.MsgFrame
		raw := expectFrame(t, tc.c, "message", &mf)
		if got := tc.d.open(t, mf.Message, aPhone.identityKey()); got != text {
			t.Fatalf("%s read %q", tc.d.ID, got)
		}
		other := bPhone
		if tc.d == bPhone {
			other = aLaptop
		}
		if bytes.Contains(raw, []byte(other.ID)) {
			t.Fatalf("%s's frame names another device's key: %s", tc.d.ID, raw)
		}
	}

	// A retry of the stored client_msg_id gets the original back, even
	// with a different (wrong) key list.
	ap.MustWrite(s.sendFrame(t, "s3", aPhone, []recipient{bPhone.recipient()}))
	if again := expectAck(t, ap, "s3"); again.Seq != 1 || again.ID != ack.ID {
		t.Fatalf("retry ack %+v, want the original", again)
	}

	// Sync, history (WebSocket and REST) and GET of one message: the
	// device's own key.
	b2 := e2e.Connect(t, base, bPhone.Device)
	res := e2e.DoSync(t, b2, "", 0)
	var synced []parley.Message
	for _, c := range res.Conversations {
		if c.Conversation.ID == conv {
			synced = c.Messages
			if !c.Conversation.E2EE {
				t.Fatal("sync: the conversation is not marked e2ee")
			}
		}
	}
	if len(synced) != 1 || bPhone.open(t, synced[0], aPhone.identityKey()) != text {
		t.Fatalf("sync %+v", synced)
	}
	al.MustWrite(map[string]any{"type": "history", "id": "h", "conversation_id": conv})
	var hist struct {
		Messages []parley.Message `json:"messages"`
	}
	expectFrame(t, al, "history_result", &hist)
	if len(hist.Messages) != 1 || aLaptop.open(t, hist.Messages[0], aPhone.identityKey()) != text {
		t.Fatalf("history %+v", hist)
	}
	var restHist struct {
		Messages []parley.Message `json:"messages"`
	}
	getJSON(t, base+"/v1/conversations/"+conv+"/messages", bPhone.Token, &restHist)
	if len(restHist.Messages) != 1 || bPhone.open(t, restHist.Messages[0], aPhone.identityKey()) != text {
		t.Fatalf("REST history %+v", restHist)
	}
	var one struct {
		Message parley.Message `json:"message"`
	}
	getJSON(t, base+"/v1/conversations/"+conv+"/messages/1", aLaptop.Token, &one)
	if aLaptop.open(t, one.Message, aPhone.identityKey()) != text {
		t.Fatal("GET one message")
	}
	one.Message = parley.Message{}
	getJSON(t, base+"/v1/conversations/"+conv+"/messages/1", aPhone.Token, &one)
	if one.Message.Envelope == nil || one.Message.Envelope.Key != nil {
		t.Fatalf("the sender's device reads its message with a key: %+v", one.Message.Envelope)
	}
	// A device that was not a recipient gets the message without a key.
	one.Message = parley.Message{}
	getJSON(t, base+"/v1/conversations/"+conv+"/messages/1", noKeys.Token, &one)
	if one.Message.Envelope == nil || one.Message.Envelope.Key != nil {
		t.Fatalf("a device without keys: %+v", one.Message.Envelope)
	}

	// Edits are refused; a delete leaves a tombstone without envelope.
	if code, out := e2e.API(t, http.DefaultClient, "PATCH", base+"/v1/conversations/"+conv+"/messages/1", aPhone.Token, map[string]any{"body": "x"}); code != 400 || !strings.Contains(fmt.Sprint(out), "cannot be edited") {
		t.Fatalf("edit: %d %v", code, out)
	}
	del := e2e.MustAPI(t, 200, "DELETE", base+"/v1/conversations/"+conv+"/messages/1", aPhone.Token, nil)
	if m := del["message"].(map[string]any); m["deleted"] != true || m["envelope"] != nil {
		t.Fatalf("tombstone %v", m)
	}
	var tomb e2e.MsgFrame
	expectFrame(t, bp, "message", &tomb)
	if !tomb.Message.Deleted || tomb.Message.Envelope != nil {
		t.Fatalf("live tombstone %+v", tomb.Message)
	}

	// Nothing of an envelope reached the logs (debug level).
	logs := p.Logs()
	for _, secret := range []string{parley.B64.EncodeToString(s.ciphertext), parley.B64.EncodeToString(s.signature), text, "\"sealed\"", "\"enc\""} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the logs hold %q", secret)
		}
	}
}

func getJSON(t testing.TB, url, token string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestE2EEGroupRemovalAndKeyRequests: in an e2ee group a removed
// member's device is refused as a recipient (extra) and the member gets
// nothing after the removal; a device added after a message, or a user
// who joined after it, may not ask for its key; a device that was there
// asks, the sender's devices get key_request, the sender adds the key
// (a wrong key id is device_mismatch) and the asking device alone gets
// the message again with its key. Logging out a keyed device announces
// the user's new device list.
func TestE2EEGroupRemovalAndKeyRequests(t *testing.T) {
	p := e2e.StartRealtime(t)
	base := p.Base
	e2e.Signup(t, base, "alice")
	bob, _ := e2e.Signup(t, base, "bob")
	carol, _ := e2e.Signup(t, base, "carol")
	dave, _ := e2e.Signup(t, base, "dave")
	aPhone, aLaptop := newE2EEDevice(t, base, "alice", "phone"), newE2EEDevice(t, base, "alice", "laptop")
	bPhone, cPhone := newE2EEDevice(t, base, "bob", "phone"), newE2EEDevice(t, base, "carol", "phone")
	for _, d := range []*e2eeDevice{aPhone, aLaptop, bPhone, cPhone} {
		d.publish(t, base)
	}
	conv := conversationID(e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", aPhone.Token,
		map[string]any{"kind": "group", "title": "plans", "members": []string{bob, carol}, "e2ee": true}))
	ap, al, bp, cp := e2e.Connect(t, base, aPhone.Device), e2e.Connect(t, base, aLaptop.Device), e2e.Connect(t, base, bPhone.Device), e2e.Connect(t, base, cPhone.Device)

	first := aPhone.seal(t, conv, "g-1", "first")
	ap.MustWrite(first.sendFrame(t, "s1", aPhone, directory(t, base, aPhone.Token, conv, aPhone.ID)))
	expectAck(t, ap, "s1")
	for _, tc := range []struct {
		c *wstest.Conn
		d *e2eeDevice
	}{{bp, bPhone}, {cp, cPhone}, {al, aLaptop}} {
		var mf e2e.MsgFrame
		expectFrame(t, tc.c, "message", &mf)
		if tc.d.open(t, mf.Message, aPhone.identityKey()) != "first" {
			t.Fatal("first message")
		}
	}

	// Later: bob logs in a new device, dave joins.
	time.Sleep(5 * time.Millisecond)
	bLaptop := newE2EEDevice(t, base, "bob", "laptop")
	bLaptop.publish(t, base)
	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations/"+conv+"/members", aPhone.Token, map[string]any{"user_id": dave})
	dPhone := newE2EEDevice(t, base, "dave", "phone")
	dPhone.publish(t, base)

	// Carol is removed: her device is extra from now on, and she gets
	// nothing sent after.
	e2e.MustAPI(t, 204, "DELETE", base+"/v1/conversations/"+conv+"/members/"+carol, aPhone.Token, nil)
	expectFrame(t, cp, "conversation", nil)
	second := aPhone.seal(t, conv, "g-2", "after carol left")
	stale := []recipient{aLaptop.recipient(), bPhone.recipient(), bLaptop.recipient(), dPhone.recipient(), cPhone.recipient()}
	ap.MustWrite(second.sendFrame(t, "s2", aPhone, stale))
	var ef errorFrame
	expectFrame(t, ap, "error", &ef)
	if ef.Error.Code != "device_mismatch" || !slices.Equal(ef.Error.Extra, []string{cPhone.ID}) || len(ef.Error.Missing) != 0 {
		t.Fatalf("removed member's Device: %+v", ef)
	}
	now := directory(t, base, aPhone.Token, conv, aPhone.ID)
	if len(now) != 4 {
		t.Fatalf("directory after the removal: %d devices, want 4", len(now))
	}
	ap.MustWrite(second.sendFrame(t, "s3", aPhone, now))
	expectAck(t, ap, "s3")
	var mf e2e.MsgFrame
	expectFrame(t, bp, "message", &mf)
	if bPhone.open(t, mf.Message, aPhone.identityKey()) != "after carol left" {
		t.Fatal("second message")
	}
	cp.Quiet(500*time.Millisecond, "message")

	// Key requests: too new a device, too new a member, an unknown seq.
	for name, d := range map[string]*e2eeDevice{"bob's new laptop": bLaptop, "dave, who joined later": dPhone} {
		if code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations/"+conv+"/messages/1/key-requests", d.Token, nil); code != 403 {
			t.Fatalf("%s asks for message 1: %d %v", name, code, out)
		}
	}
	if code, _ := e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations/"+conv+"/messages/1/key-requests", cPhone.Token, nil); code != 404 {
		t.Fatalf("a removed member asks: %d, want 404", code)
	}
	// Bob's phone lost its key (it rotated and erased the old one): it
	// asks, alice's devices hear it.
	bPhone.rotate(t)
	bPhone.publish(t, base)
	e2e.MustAPI(t, 202, "POST", base+"/v1/conversations/"+conv+"/messages/1/key-requests", bPhone.Token, nil)
	for _, c := range []*wstest.Conn{ap, al} {
		var kr struct {
			ConversationID string `json:"conversation_id"`
			Seq            int64  `json:"seq"`
			UserID         string `json:"user_id"`
			DeviceID       string `json:"device_id"`
		}
		expectFrame(t, c, "key_request", &kr)
		if kr.ConversationID != conv || kr.Seq != 1 || kr.UserID != bob || kr.DeviceID != bPhone.ID {
			t.Fatalf("key_request %+v", kr)
		}
	}
	bp.Quiet(300*time.Millisecond, "key_request")

	// Alice's phone kept K: it seals to bob's new key. A wrong key id
	// first, then the right one; bob's phone alone gets the message again.
	wrong := bPhone.recipient()
	wrong.keyID = 1
	code, out := e2e.API(t, http.DefaultClient, "PUT", base+"/v1/conversations/"+conv+"/messages/1/keys", aPhone.Token,
		map[string]any{"keys": []any{first.keyFor(t, aPhone, wrong)}})
	if code != 409 || out["error"].(map[string]any)["code"] != "device_mismatch" || fmt.Sprint(out["error"].(map[string]any)["stale"]) != fmt.Sprintf("[map[device_id:%s key_id:2 user_id:%s]]", bPhone.ID, bob) {
		t.Fatalf("wrong key id: %d %v", code, out)
	}
	if code, _ := e2e.API(t, http.DefaultClient, "PUT", base+"/v1/conversations/"+conv+"/messages/1/keys", bPhone.Token,
		map[string]any{"keys": []any{first.keyFor(t, aPhone, aLaptop.recipient())}}); code != 403 {
		t.Fatalf("bob adds keys to alice's message: %d", code)
	}
	e2e.MustAPI(t, 204, "PUT", base+"/v1/conversations/"+conv+"/messages/1/keys", aPhone.Token,
		map[string]any{"keys": []any{first.keyFor(t, aPhone, bPhone.recipient())}})
	for {
		var again e2e.MsgFrame
		expectFrame(t, bp, "message", &again)
		if again.Message.Seq == 1 {
			if bPhone.open(t, again.Message, aPhone.identityKey()) != "first" {
				t.Fatal("re-sent message")
			}
			break
		}
	}
	al.Quiet(300*time.Millisecond, "message")
	// History has the new key too.
	var one struct {
		Message parley.Message `json:"message"`
	}
	getJSON(t, base+"/v1/conversations/"+conv+"/messages/1", bPhone.Token, &one)
	if bPhone.open(t, one.Message, aPhone.identityKey()) != "first" {
		t.Fatal("history after the key was added")
	}

	// Bob logs his laptop out: its keys go, bob's version rises, alice
	// hears it.
	before := int64(e2e.MustAPI(t, 200, "GET", base+"/v1/users/"+bob+"/devices", aPhone.Token, nil)["device_list_version"].(float64))
	e2e.MustAPI(t, 204, "DELETE", base+"/v1/sessions/current", bLaptop.Token, nil)
	for {
		var dl struct {
			UserID  string `json:"user_id"`
			Version int64  `json:"device_list_version"`
		}
		expectFrame(t, ap, "device_list", &dl)
		if dl.UserID == bob && dl.Version == before+1 {
			break
		}
	}
	after := e2e.MustAPI(t, 200, "GET", base+"/v1/users/"+bob+"/devices", aPhone.Token, nil)
	if len(after["devices"].([]any)) != 1 {
		t.Fatalf("bob's devices after the logout: %v", after)
	}
}

// TestE2EEAcrossNodes: two nodes on one PostgreSQL store and NATS. The
// device_list frame, an encrypted message (with each device's own key)
// and a key request cross from one node to the other through the bus.
func TestE2EEAcrossNodes(t *testing.T) {
	env := e2e.ClusterEnv(t)
	n1 := e2e.StartParleyd(t, t.TempDir(), env, "--presence-grace", "300ms")
	n2 := e2e.StartParleyd(t, t.TempDir(), env, "--presence-grace", "300ms")
	alice, _ := e2e.Signup(t, n1.Base, "alice")
	bob, _ := e2e.Signup(t, n1.Base, "bob")
	aPhone, aLaptop := newE2EEDevice(t, n1.Base, "alice", "phone"), newE2EEDevice(t, n2.Base, "alice", "laptop")
	bPhone := newE2EEDevice(t, n2.Base, "bob", "phone")
	aPhone.publish(t, n1.Base)
	bPhone.publish(t, n2.Base)
	conv := conversationID(e2e.MustAPI(t, 201, "POST", n1.Base+"/v1/conversations", aPhone.Token, map[string]any{"kind": "direct", "members": []string{bob}, "e2ee": true}))
	ap, bp := e2e.Connect(t, n1.Base, aPhone.Device), e2e.Connect(t, n2.Base, bPhone.Device)

	aLaptop.publish(t, n2.Base)                // on node 2; alice's phone is on node 1
	for _, c := range []*wstest.Conn{bp, ap} { // bob on node 2, alice's phone on node 1
		for {
			var dl struct {
				UserID  string `json:"user_id"`
				Version int64  `json:"device_list_version"`
			}
			expectFrame(t, c, "device_list", &dl)
			if dl.UserID == alice && dl.Version == 2 {
				break
			}
		}
	}
	al := e2e.Connect(t, n2.Base, aLaptop.Device)

	s := aPhone.seal(t, conv, "x-1", "across the bus")
	ap.MustWrite(s.sendFrame(t, "s1", aPhone, directory(t, n1.Base, aPhone.Token, conv, aPhone.ID)))
	expectAck(t, ap, "s1")
	for _, tc := range []struct {
		c *wstest.Conn
		d *e2eeDevice
	}{{bp, bPhone}, {al, aLaptop}} {
		var mf e2e.MsgFrame
		expectFrame(t, tc.c, "message", &mf)
		if got := tc.d.open(t, mf.Message, aPhone.identityKey()); got != "across the bus" {
			t.Fatalf("%s read %q", tc.d.ID, got)
		}
	}

	e2e.MustAPI(t, 202, "POST", n2.Base+"/v1/conversations/"+conv+"/messages/1/key-requests", bPhone.Token, nil)
	var kr struct {
		DeviceID string `json:"device_id"`
		Seq      int64  `json:"seq"`
	}
	expectFrame(t, ap, "key_request", &kr)
	if kr.DeviceID != bPhone.ID || kr.Seq != 1 {
		t.Fatalf("key_request on node 1: %+v", kr)
	}
}

// TestE2EEExpiredDeviceAnnounced: a keyed device whose session ran out
// is purged, and the purge's deletion is announced with device_list like
// a logout's.
func TestE2EEExpiredDeviceAnnounced(t *testing.T) {
	p := e2e.StartRealtime(t, "--refresh-token-ttl", "3s", "--purge-interval", "500ms")
	base := p.Base
	e2e.Signup(t, base, "alice")
	bob, _ := e2e.Signup(t, base, "bob")
	aPhone := newE2EEDevice(t, base, "alice", "phone")
	bPhone := newE2EEDevice(t, base, "bob", "phone")
	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", aPhone.Token, map[string]any{"kind": "direct", "members": []string{bob}, "e2ee": true})
	// Both sessions lapse (alice's socket lives on until its access
	// token expires), so the purge deletes bob's keyed device.
	ap := e2e.Connect(t, base, aPhone.Device)
	if v := bPhone.publish(t, base); v != 1 {
		t.Fatalf("bob's version %d", v)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		f, err := ap.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("no device_list for bob's expired Device: %v", err)
		}
		var dl struct {
			UserID  string `json:"user_id"`
			Version int64  `json:"device_list_version"`
		}
		if f.Type == "device_list" && f.Decode(&dl) == nil && dl.UserID == bob && dl.Version == 2 {
			break
		}
	}
	again := e2e.LoginDevice(t, base, "alice", "again")
	l := e2e.MustAPI(t, 200, "GET", base+"/v1/users/"+bob+"/devices", again.Token, nil)
	if len(l["devices"].([]any)) != 0 {
		t.Fatalf("bob's devices after his session expired: %v", l)
	}
}
