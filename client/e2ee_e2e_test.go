package client_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/store/sqlite"
)

// End-to-end encryption through the real parleyd (docs/design/e2ee.md):
// devices publish keys at login, e2ee conversations carry only envelopes,
// every device of every member reads, nobody else does, and the server's
// data directory and logs never hold the text.

// device is one logged-in device with its own keys and events.
type device struct {
	*client.Client
	keys   *client.MemoryKeyStore
	events *collector
	name   string
}

// e2eeDevice registers (if needed) and logs in a device with keys, and
// connects it.
func e2eeDevice(t *testing.T, server, handle, name string, cfg client.Config) *device {
	t.Helper()
	keys := &client.MemoryKeyStore{}
	cfg.KeyStore = keys
	col := newCollector()
	cfg.OnEvent = col.add
	c := user(t, server, handle, name, cfg)
	t.Cleanup(func() { c.Close() })
	if err := c.Connect(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatalf("%s/%s: connect: %v", handle, name, err)
	}
	return &device{Client: c, keys: keys, events: col, name: handle + "/" + name}
}

// keystore is the device's keystore as saved.
func (d *device) keystore(t *testing.T) *e2ee.Keystore {
	t.Helper()
	data, err := d.keys.Load(d.Tokens().DeviceID)
	if err != nil || data == nil {
		t.Fatalf("%s: no keystore saved: %v", d.name, err)
	}
	ks, err := e2ee.ParseKeystore(data)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// waitText waits until the device was handed a decrypted message of conv
// with this body (as a new message, or a change of one) and returns it.
func (d *device) waitText(t *testing.T, conv, body string) client.Event {
	t.Helper()
	var got client.Event
	d.events.waitFor(t, 20*time.Second, d.name+" reading "+fmt.Sprintf("%q", body), func(evs []client.Event) bool {
		for _, e := range evs {
			if (e.Kind == client.EventMessage || e.Kind == client.EventMessageChanged) && e.ConversationID == conv &&
				e.Message.Body == body && e.E2EE.Decrypted() {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// waitSeq waits for the event of a message of conv by seq.
func (d *device) waitSeq(t *testing.T, conv string, seq int64, kind client.EventKind) client.Event {
	t.Helper()
	var got client.Event
	d.events.waitFor(t, 20*time.Second, fmt.Sprintf("%s: %s #%d", d.name, kind, seq), func(evs []client.Event) bool {
		for _, e := range evs {
			if e.Kind == kind && e.ConversationID == conv && e.Message.Seq == seq {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

func TestE2EEDirectAndGroup(t *testing.T) {
	srv := startServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	a1 := e2eeDevice(t, srv.Base, "alice", "laptop", client.Config{})
	a2 := e2eeDevice(t, srv.Base, "alice", "phone", client.Config{})
	b1 := e2eeDevice(t, srv.Base, "bob", "phone", client.Config{})
	c1 := e2eeDevice(t, srv.Base, "carol", "web", client.Config{})
	alice, bob, carol := a1.Tokens().UserID, b1.Tokens().UserID, c1.Tokens().UserID

	conv, err := a1.CreateDirectE2EE(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	if !conv.E2EE {
		t.Fatal("the conversation is not e2ee")
	}
	plain, err := a1.CreateDirect(ctx, bob)
	if err != nil || plain.ID == conv.ID || plain.E2EE {
		t.Fatalf("the plaintext direct conversation: %+v %v", plain, err)
	}

	// alice's laptop to bob: bob and alice's phone read it; the laptop's
	// own copy (acked, no key for itself) opens with the key it kept.
	m, err := a1.Send(ctx, conv.ID, "only bob and my phone can read this")
	if err != nil {
		t.Fatal(err)
	}
	if m.Body != "only bob and my phone can read this" || m.Type != parley.MessageText {
		t.Fatalf("the ack: %+v", m)
	}
	b1.waitText(t, conv.ID, "only bob and my phone can read this")
	a2.waitText(t, conv.ID, "only bob and my phone can read this")
	a1.waitText(t, conv.ID, "only bob and my phone can read this")
	// bob back: both of alice's devices.
	if _, err := b1.Send(ctx, conv.ID, "hello alice, on both your devices"); err != nil {
		t.Fatal(err)
	}
	a1.waitText(t, conv.ID, "hello alice, on both your devices")
	a2.waitText(t, conv.ID, "hello alice, on both your devices")
	// From the phone too, and over REST.
	if _, err := a2.SendREST(ctx, conv.ID, "from the phone, over REST"); err != nil {
		t.Fatal(err)
	}
	b1.waitText(t, conv.ID, "from the phone, over REST")
	a1.waitText(t, conv.ID, "from the phone, over REST")

	// History (REST) decrypts as well, on a fresh client of the same
	// device (its keys in the store).
	again := client.New(client.Config{Server: srv.Base, Tokens: ptr(b1.Tokens()), KeyStore: b1.keys})
	p, err := again.HistoryPage(ctx, conv.ID, client.HistoryQuery{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, m := range p.Messages {
		if !p.E2EE[m.Seq].Decrypted() {
			t.Fatalf("history #%d: %+v", m.Seq, p.E2EE[m.Seq])
		}
		bodies = append(bodies, m.Body)
	}
	if strings.Join(bodies, "|") != "only bob and my phone can read this|hello alice, on both your devices|from the phone, over REST" {
		t.Fatalf("history: %q", bodies)
	}

	// A group of three, every one of them writing.
	g, err := b1.CreateGroupE2EE(ctx, "trio", alice, carol)
	if err != nil || !g.E2EE {
		t.Fatalf("group: %+v %v", g, err)
	}
	for _, d := range []*device{a1, a2, b1, c1} {
		if _, err := d.Send(ctx, g.ID, "in the group from "+d.name); err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
	}
	for _, d := range []*device{a1, a2, b1, c1} {
		for _, from := range []*device{a1, a2, b1, c1} {
			d.waitText(t, g.ID, "in the group from "+from.name)
		}
	}
	// A plaintext message to an e2ee conversation is refused by the server.
	if _, err := a1.SendREST(ctx, plain.ID, "plain is fine here"); err != nil {
		t.Fatal(err)
	}
	raw := rawREST(t, srv.Base, a1.Tokens().AccessToken, "POST", "/v1/conversations/"+g.ID+"/messages",
		map[string]any{"client_msg_id": "raw-1", "type": "text", "body": "in clear"})
	if raw.status != http.StatusBadRequest || !strings.Contains(raw.body, "invalid_request") {
		t.Fatalf("plaintext into the e2ee group: %d %s", raw.status, raw.body)
	}

	// The server never had the text: not in its data directory, not in
	// its logs, and not in what it stored even read with its own master
	// key (the plaintext conversation's message shows that it would be).
	srv.Stop(10 * time.Second)
	secrets := []string{"only bob and my phone", "hello alice, on both", "from the phone, over REST", "in the group from"}
	scanForText(t, srv.Data, srv.Logs(), secrets...)
	stored := storedMessages(t, srv.Data, conv.ID, g.ID, plain.ID)
	if !strings.Contains(stored, "plain is fine here") {
		t.Fatal("the control: the plaintext message is not readable in the store")
	}
	for _, s := range secrets {
		if strings.Contains(stored, s) {
			t.Errorf("%q readable in the store with the server's key", s)
		}
	}
	if n := strings.Count(stored, `"type":"encrypted"`); n != 3+4 {
		t.Errorf("%d encrypted messages in the store, want 7", n)
	}
}

// storedMessages reads every message of the conversations as the server
// itself can: its SQLite store opened with the master key of its data
// directory. It returns their JSON.
func storedMessages(t *testing.T, data string, convIDs ...string) string {
	t.Helper()
	keys, err := seal.LoadOrCreateKeyFile(filepath.Join(data, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := seal.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 30*time.Second)
	st, err := sqlite.Open(ctx, filepath.Join(data, "parley.db"), sqlite.Options{Sealer: ring})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out strings.Builder
	for _, id := range convIDs {
		ms, err := st.Messages(ctx, id, parley.HistoryQuery{Forward: true, Limit: parley.MaxHistoryLimit}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for i := range ms {
			data, _ := json.Marshal(ms[i])
			out.Write(data)
			out.WriteByte('\n')
		}
	}
	return out.String()
}

// A member removed from a group gets nothing sent after; the envelope
// another member receives has no key for the removed member's device.
func TestE2EERemovedMember(t *testing.T) {
	srv := startServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	a1 := e2eeDevice(t, srv.Base, "alice", "laptop", client.Config{})
	b1 := e2eeDevice(t, srv.Base, "bob", "phone", client.Config{})
	c1 := e2eeDevice(t, srv.Base, "carol", "web", client.Config{})
	g, err := a1.CreateGroupE2EE(ctx, "trio", b1.Tokens().UserID, c1.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a1.Send(ctx, g.ID, "before carol left"); err != nil {
		t.Fatal(err)
	}
	c1.waitText(t, g.ID, "before carol left")
	if err := a1.RemoveMember(ctx, g.ID, c1.Tokens().UserID); err != nil {
		t.Fatal(err)
	}
	m, err := a1.Send(ctx, g.ID, "after carol left")
	if err != nil {
		t.Fatal(err)
	}
	b1.waitText(t, g.ID, "after carol left")
	// Carol's device, given bob's copy of the envelope (say, by a leak),
	// has no key in it.
	raw := rawREST(t, srv.Base, b1.Tokens().AccessToken, "GET", fmt.Sprintf("/v1/conversations/%s/messages?after=%d&limit=1", g.ID, m.Seq-1), nil)
	var page struct {
		Messages []struct {
			Envelope *e2ee.Envelope `json:"envelope"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(raw.body), &page); err != nil || len(page.Messages) != 1 || page.Messages[0].Envelope == nil {
		t.Fatalf("bob's copy: %s %v", raw.body, err)
	}
	env := page.Messages[0].Envelope
	if env.Key == nil || env.Key.DeviceID != b1.Tokens().DeviceID || len(env.Keys) != 0 {
		t.Fatalf("bob's copy holds %+v / %d keys", env.Key, len(env.Keys))
	}
	ks := c1.keystore(t)
	h := e2ee.Header{ConversationID: g.ID, SenderUserID: a1.Tokens().UserID, SenderDeviceID: a1.Tokens().DeviceID, ClientMsgID: m.ClientMsgID}
	if _, err := e2ee.Open(h, c1.Tokens().DeviceID, env, ks.Finder(time.Now()), a1.keystore(t).Identity().Public()); e2ee.ReasonOf(err) != e2ee.ReasonNoKey {
		t.Fatalf("carol opening bob's copy: %v", err)
	}
	// Carol herself gets nothing of it, and cannot read the history.
	time.Sleep(300 * time.Millisecond)
	c1.events.mu.Lock()
	for _, e := range c1.events.events {
		if e.Kind == client.EventMessage && e.ConversationID == g.ID && e.Message.Seq >= m.Seq {
			t.Errorf("carol got %+v", e.Message)
		}
	}
	c1.events.mu.Unlock()
	if _, err := c1.History(ctx, g.ID, client.HistoryQuery{}); parley.ErrorCode(err) != parley.CodeConversationNotFound {
		t.Fatalf("carol's history: %v", err)
	}
}

// An envelope changed after it was signed is refused by the receiving
// client (bad_signature), shown as undecryptable, never with content.
func TestE2EETamperedEnvelope(t *testing.T) {
	srv := startServer(t)
	ctx := ctxFor(t, time.Minute)
	a1 := e2eeDevice(t, srv.Base, "alice", "laptop", client.Config{})
	b1 := e2eeDevice(t, srv.Base, "bob", "phone", client.Config{})
	conv, err := a1.CreateDirectE2EE(ctx, b1.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a1.Send(ctx, conv.ID, "a genuine one first"); err != nil {
		t.Fatal(err)
	}
	b1.waitText(t, conv.ID, "a genuine one first")

	// Alice's device seals for bob's device, then a byte of the ciphertext
	// changes on the way (the server checks shapes, not signatures).
	ks := a1.keystore(t)
	bl := bobList(t, srv.Base, a1, b1.Tokens().UserID)
	h := e2ee.Header{ConversationID: conv.ID, SenderUserID: ks.UserID, SenderDeviceID: ks.DeviceID, ClientMsgID: "tampered-1"}
	content, _ := e2ee.Content{Body: "you must never see this"}.Marshal()
	env, _, err := e2ee.Seal(ks.Identity(), h, content, []e2ee.Recipient{e2ee.RecipientOf(bl.UserID, &bl.Devices[0])})
	if err != nil {
		t.Fatal(err)
	}
	env.Ciphertext[len(env.Ciphertext)-20] ^= 0x04
	raw := rawREST(t, srv.Base, a1.Tokens().AccessToken, "POST", "/v1/conversations/"+conv.ID+"/messages",
		map[string]any{"client_msg_id": "tampered-1", "type": "encrypted", "envelope": env})
	if raw.status >= 300 {
		t.Fatalf("send: %d %s", raw.status, raw.body)
	}
	var sent struct {
		Message parley.Message `json:"message"`
	}
	_ = json.Unmarshal([]byte(raw.body), &sent)
	e := b1.waitSeq(t, conv.ID, sent.Message.Seq, client.EventMessage)
	if e.E2EE == nil || e.E2EE.Decrypted() || e.E2EE.Reason != e2ee.ReasonBadSignature || e.Message.Body != "" || e.Message.Type != parley.MessageEncrypted {
		t.Fatalf("bob got %+v, %+v", e.Message, e.E2EE)
	}
	// And a later genuine message still reads.
	if _, err := a1.Send(ctx, conv.ID, "genuine again"); err != nil {
		t.Fatal(err)
	}
	b1.waitText(t, conv.ID, "genuine again")
}

// A send that misses a device gets device_mismatch from the server; the
// client fetches the devices again and resends with the same
// client_msg_id, and the new device reads it.
func TestE2EEDeviceMismatchResend(t *testing.T) {
	srv := startServer(t)
	ctx := ctxFor(t, time.Minute)
	rec := &recorder{}
	// Alice sends over REST only: no device_list frame tells her of bob's
	// new device, so her cached view is stale.
	alice := client.New(client.Config{Server: srv.Base, KeyStore: &client.MemoryKeyStore{}, HTTPClient: &http.Client{Transport: rec, Timeout: 30 * time.Second}})
	if _, err := alice.Register(ctx, "alice", "a long enough password", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Login(ctx, "alice", "a long enough password", "laptop"); err != nil {
		t.Fatal(err)
	}
	b1 := e2eeDevice(t, srv.Base, "bob", "phone", client.Config{})
	conv, err := alice.CreateDirectE2EE(ctx, b1.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendREST(ctx, conv.ID, "to bob's phone"); err != nil {
		t.Fatal(err)
	}
	b1.waitText(t, conv.ID, "to bob's phone")
	// The server refuses an envelope without bob's new device, with the list.
	b2 := e2eeDevice(t, srv.Base, "bob", "tablet", client.Config{})
	rec.reset()
	m, err := alice.SendREST(ctx, conv.ID, "to both of bob's devices", client.WithClientMsgID("cm-mismatch"))
	if err != nil {
		t.Fatal(err)
	}
	posts := rec.calls("POST", "/v1/conversations/"+conv.ID+"/messages")
	if len(posts) != 2 || posts[0].status != http.StatusConflict || !strings.Contains(posts[0].body, `"missing":[{"user_id":"`+b1.Tokens().UserID+`","device_id":"`+b2.Tokens().DeviceID) ||
		posts[1].status >= 300 || posts[0].clientMsgID != "cm-mismatch" || posts[1].clientMsgID != "cm-mismatch" {
		t.Fatalf("the POSTs: %+v", posts)
	}
	if m.ClientMsgID != "cm-mismatch" || m.Body != "to both of bob's devices" {
		t.Fatalf("sent %+v", m)
	}
	b1.waitText(t, conv.ID, "to both of bob's devices")
	b2.waitText(t, conv.ID, "to both of bob's devices")
	// bob's tablet was announced to his phone as a new device.
	b1.events.waitFor(t, 10*time.Second, "the tablet announced", func(evs []client.Event) bool {
		for _, e := range evs {
			if e.Kind == client.EventDevices && e.Devices.UserID == b1.Tokens().UserID && len(e.Devices.Added) == 1 && e.Devices.Added[0] == b2.Tokens().DeviceID {
				return true
			}
		}
		return false
	})

	// Over the WebSocket too: a device added while alice is connected
	// comes with a device_list frame (or the send's mismatch).
	a := e2eeDevice(t, srv.Base, "alice", "phone", client.Config{})
	if _, err := a.Send(ctx, conv.ID, "live, before the third device"); err != nil {
		t.Fatal(err)
	}
	b3 := e2eeDevice(t, srv.Base, "bob", "watch", client.Config{})
	if _, err := a.Send(ctx, conv.ID, "live, with the third device"); err != nil {
		t.Fatal(err)
	}
	b3.waitText(t, conv.ID, "live, with the third device")
}

// A device that lost the private key a message was sealed to asks the
// sender's devices for the key; the sender's device seals it again to the
// device's current key and the message comes again, readable.
func TestE2EEKeyRequest(t *testing.T) {
	srv := startServer(t)
	ctx := ctxFor(t, time.Minute)
	a1 := e2eeDevice(t, srv.Base, "alice", "laptop", client.Config{})
	b1 := e2eeDevice(t, srv.Base, "bob", "phone", client.Config{})
	conv, err := a1.CreateDirectE2EE(ctx, b1.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := a1.Send(ctx, conv.ID, "sealed to bob's key 1")
	if err != nil {
		t.Fatal(err)
	}
	b1.waitText(t, conv.ID, "sealed to bob's key 1")
	tokens := b1.Tokens()
	b1.Close()

	// Bob's device comes back having rotated and erased key 1 (as after
	// its grace): its keystore keeps only key 2.
	ks := b1.keystore(t)
	now := time.Now()
	if _, err := ks.Rotate(now); err != nil {
		t.Fatal(err)
	}
	ks.Keys[0].ExpiresAt = now.Add(-time.Second)
	ks.Prune(now)
	if ks.KeyPair(1, now) != nil || ks.Current().KeyID != 2 {
		t.Fatal("key 1 not erased")
	}
	data, _ := ks.Marshal()
	store := &client.MemoryKeyStore{}
	_ = store.Save(tokens.DeviceID, data)
	col := newCollector()
	st := client.State{Held: map[string]int64{}}
	bob := client.New(client.Config{Server: srv.Base, Tokens: &tokens, KeyStore: store, OnEvent: col.add, State: &st})
	t.Cleanup(func() { bob.Close() })
	if err := bob.EnsureKeys(ctx); err != nil { // publishes key 2
		t.Fatal(err)
	}
	if err := bob.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	b := &device{Client: bob, keys: store, events: col, name: "bob/phone again"}
	first := b.waitSeq(t, conv.ID, m.Seq, client.EventMessage)
	if first.E2EE == nil || first.E2EE.Reason != e2ee.ReasonNoKey {
		t.Fatalf("first sight: %+v", first.E2EE)
	}
	// Alice's laptop answered the key request: the message comes again.
	changed := b.waitSeq(t, conv.ID, m.Seq, client.EventMessageChanged)
	if !changed.E2EE.Decrypted() || changed.Message.Body != "sealed to bob's key 1" {
		t.Fatalf("after the key request: %+v %+v", changed.Message, changed.E2EE)
	}
}

// A device that existed before a message but published its keys after it
// (logged in without keys, keyed later) is listed with the time it was
// created, the one the server's key-request check compares, not the time
// it published: a client deciding from the list whether to ask agrees
// with the server. The first publish is keys_published_at. The device
// asks, and the sender's device seals the key to it.
func TestE2EEKeysPublishedAfterMessage(t *testing.T) {
	srv := startServer(t)
	ctx := ctxFor(t, time.Minute)
	a1 := e2eeDevice(t, srv.Base, "alice", "laptop", client.Config{})
	b1 := e2eeDevice(t, srv.Base, "bob", "phone", client.Config{})
	bobID := b1.Tokens().UserID
	// Bob's tablet logs in without a key store: no keys, so no recipient.
	bare := user(t, srv.Base, "bob", "tablet", client.Config{})
	tokens := bare.Tokens()
	bare.Close()
	conv, err := a1.CreateDirectE2EE(ctx, bobID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := a1.Send(ctx, conv.ID, "sent before the tablet's keys")
	if err != nil {
		t.Fatal(err)
	}
	b1.waitText(t, conv.ID, "sent before the tablet's keys")

	store := &client.MemoryKeyStore{}
	col := newCollector()
	st := client.State{Held: map[string]int64{}}
	tablet := client.New(client.Config{Server: srv.Base, Tokens: &tokens, KeyStore: store, OnEvent: col.add, State: &st})
	t.Cleanup(func() { tablet.Close() })
	if err := tablet.EnsureKeys(ctx); err != nil {
		t.Fatal(err)
	}
	var own struct {
		Devices []parley.Device `json:"devices"`
	}
	raw := rawREST(t, srv.Base, tablet.Tokens().AccessToken, "GET", "/v1/devices", nil)
	if err := json.Unmarshal([]byte(raw.body), &own); err != nil {
		t.Fatalf("GET /v1/devices: %s %v", raw.body, err)
	}
	var created time.Time
	for _, d := range own.Devices {
		if d.ID == tokens.DeviceID {
			created = d.CreatedAt
		}
	}
	var listed *e2ee.DeviceKeys
	l := bobList(t, srv.Base, b1, bobID)
	for i := range l.Devices {
		if l.Devices[i].DeviceID == tokens.DeviceID {
			listed = &l.Devices[i]
		}
	}
	switch {
	case created.IsZero() || listed == nil:
		t.Fatalf("the tablet %s: in GET /v1/devices %v, in the key directory %v", tokens.DeviceID, !created.IsZero(), listed != nil)
	case !listed.CreatedAt.Equal(created) || listed.CreatedAt.After(m.CreatedAt):
		t.Fatalf("listed created_at %v, want the device's %v (before the message's %v)", listed.CreatedAt, created, m.CreatedAt)
	case listed.KeysPublishedAt.Before(m.CreatedAt) || listed.UpdatedAt.Before(listed.KeysPublishedAt):
		t.Fatalf("listed keys_published_at %v, updated_at %v; want both at or after the message's %v", listed.KeysPublishedAt, listed.UpdatedAt, m.CreatedAt)
	}

	if err := tablet.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	d := &device{Client: tablet, keys: store, events: col, name: "bob/tablet"}
	if first := d.waitSeq(t, conv.ID, m.Seq, client.EventMessage); first.E2EE == nil || first.E2EE.Reason != e2ee.ReasonNoKey {
		t.Fatalf("first sight: %+v", first.E2EE)
	}
	changed := d.waitSeq(t, conv.ID, m.Seq, client.EventMessageChanged)
	if !changed.E2EE.Decrypted() || changed.Message.Body != "sent before the tablet's keys" {
		t.Fatalf("after the key request: %+v %+v", changed.Message, changed.E2EE)
	}
}

// Rotation: a device's old key still opens messages sealed to it within
// the grace, senders seal to the new one, and after the grace the old key
// is gone.
func TestE2EERotation(t *testing.T) {
	srv := startServer(t)
	ctx := ctxFor(t, time.Minute)
	a1 := e2eeDevice(t, srv.Base, "alice", "laptop", client.Config{})
	policy := e2ee.Policy{Rotate: time.Second, Grace: 6 * time.Second}
	b1 := e2eeDevice(t, srv.Base, "bob", "phone", client.Config{KeyPolicy: policy})
	conv, err := a1.CreateDirectE2EE(ctx, b1.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	m1, err := a1.Send(ctx, conv.ID, "sealed to key 1")
	if err != nil {
		t.Fatal(err)
	}
	b1.waitText(t, conv.ID, "sealed to key 1")
	time.Sleep(1100 * time.Millisecond)
	if err := b1.EnsureKeys(ctx); err != nil { // rotation due: key 2 published
		t.Fatal(err)
	}
	rotated := time.Now()
	if k := b1.keystore(t).Current(); k.KeyID != 2 || k.PublishedAt.IsZero() {
		t.Fatalf("after rotation: key %d published %v", k.KeyID, k.PublishedAt)
	}
	// Within the grace, key 1 still opens the old message (history).
	p, err := b1.HistoryPage(ctx, conv.ID, client.HistoryQuery{Limit: 10})
	if err != nil || !p.E2EE[m1.Seq].Decrypted() {
		t.Fatalf("history within grace: %+v %v", p.E2EE[m1.Seq], err)
	}
	// New messages are sealed to key 2.
	m2, err := a1.Send(ctx, conv.ID, "sealed to key 2")
	if err != nil {
		t.Fatal(err)
	}
	e := b1.waitText(t, conv.ID, "sealed to key 2")
	if e.Message.Envelope == nil || e.Message.Envelope.Key == nil || e.Message.Envelope.Key.KeyID != 2 {
		t.Fatalf("m2 sealed to %+v", e.Message.Envelope)
	}
	// After the grace key 1 is erased: the old message no longer opens
	// (and is asked for again), the new one does.
	time.Sleep(time.Until(rotated.Add(policy.Grace + 100*time.Millisecond)))
	if err := b1.EnsureKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if ks := b1.keystore(t); ks.KeyPair(1, time.Now()) != nil || ks.Keys[0].KeyID == 1 {
		t.Fatal("key 1 kept after the grace")
	}
	fresh := client.New(client.Config{Server: srv.Base, Tokens: ptr(b1.Tokens()), KeyStore: b1.keys})
	p, err = fresh.HistoryPage(ctx, conv.ID, client.HistoryQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if d := p.E2EE[m1.Seq]; d.Decrypted() || d.Reason != e2ee.ReasonNoKey {
		t.Fatalf("m1 after grace: %+v", d)
	}
	if !p.E2EE[m2.Seq].Decrypted() {
		t.Fatalf("m2 after grace: %+v", p.E2EE[m2.Seq])
	}
}

// Attachments of an e2ee conversation go encrypted and come back
// decrypted; the server's data directory has no byte of the file.
func TestE2EEAttachment(t *testing.T) {
	srv := startServer(t)
	ctx := ctxFor(t, time.Minute)
	a1 := e2eeDevice(t, srv.Base, "alice", "laptop", client.Config{})
	b1 := e2eeDevice(t, srv.Base, "bob", "phone", client.Config{})
	conv, err := a1.CreateDirectE2EE(ctx, b1.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte("the quarterly numbers, confidential. "), 5000) // 185 KB: three chunks
	path := filepath.Join(t.TempDir(), "numbers.txt")
	if err := os.WriteFile(path, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := a1.UploadFile(ctx, conv.ID, path, client.UploadOptions{ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	if res.E2EE == nil || res.Attachment == nil || !res.Attachment.Encrypted || res.Attachment.ContentType != "application/octet-stream" {
		t.Fatalf("upload: %+v %+v", res.E2EE, res.Attachment)
	}
	if _, err := a1.Send(ctx, conv.ID, "the file", client.WithAttachments(res.MediaID)); err != nil {
		t.Fatal(err)
	}
	e := b1.waitText(t, conv.ID, "the file")
	if e.Message.Type != parley.MessageFile || len(e.Message.Attachments) != 1 || e.Message.Attachments[0].Filename != "numbers.txt" ||
		e.Message.Attachments[0].Size != int64(len(secret)) || !strings.HasPrefix(e.Message.Attachments[0].ContentType, "text/plain") {
		t.Fatalf("bob got %+v", e.Message)
	}
	var out bytes.Buffer
	if _, ct, err := b1.Download(ctx, res.MediaID, "", &out); err != nil || !strings.HasPrefix(ct, "text/plain") || !bytes.Equal(out.Bytes(), secret) {
		t.Fatalf("bob's download: %q %v (%d bytes)", ct, err, out.Len())
	}
	srv.Stop(10 * time.Second)
	scanForText(t, srv.Data, srv.Logs(), "quarterly numbers", "numbers.txt", "the file")
}

// scanForText fails the test if any file under dir, or the logs, holds
// one of the texts.
func scanForText(t *testing.T, dir, logs string, texts ...string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for _, s := range texts {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%q found in %s", s, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no file under %s", dir)
	}
	for _, s := range texts {
		if strings.Contains(logs, s) {
			t.Errorf("%q found in the server's logs", s)
		}
	}
}

func ptr[T any](v T) *T { return &v }

type rawAnswer struct {
	status int
	body   string
}

// rawREST makes one REST call with a token, outside the SDK.
func rawREST(t *testing.T, server, token, method, path string, body any) rawAnswer {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequestWithContext(ctxFor(t, 30*time.Second), method, server+path, r)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return rawAnswer{resp.StatusCode, string(data)}
}

// bobList fetches a user's device list as d.
func bobList(t *testing.T, server string, d *device, userID string) *e2ee.DeviceList {
	t.Helper()
	raw := rawREST(t, server, d.Tokens().AccessToken, "GET", "/v1/users/"+userID+"/devices", nil)
	var l e2ee.DeviceList
	if err := json.Unmarshal([]byte(raw.body), &l); err != nil || len(l.Devices) == 0 {
		t.Fatalf("device list: %s %v", raw.body, err)
	}
	for i := range l.Devices {
		if err := l.Devices[i].Verify(userID); err != nil {
			t.Fatal(err)
		}
	}
	return &l
}

// recorder is an http.RoundTripper that keeps every call's method, path,
// status, answer and client_msg_id.
type recorder struct {
	mu  sync.Mutex
	log []recorded
}

type recorded struct {
	method, path string
	status       int
	body         string
	clientMsgID  string
}

func (rc *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var cmid string
	if req.Body != nil {
		data, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(data))
		var in struct {
			ClientMsgID string `json:"client_msg_id"`
		}
		_ = json.Unmarshal(data, &in)
		cmid = in.ClientMsgID
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(data))
	rc.mu.Lock()
	rc.log = append(rc.log, recorded{req.Method, req.URL.Path, resp.StatusCode, string(data), cmid})
	rc.mu.Unlock()
	return resp, nil
}

func (rc *recorder) reset() {
	rc.mu.Lock()
	rc.log = nil
	rc.mu.Unlock()
}

func (rc *recorder) calls(method, path string) []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []recorded
	for _, c := range rc.log {
		if c.method == method && c.path == path {
			out = append(out, c)
		}
	}
	return out
}

// A sealed send whose frame passes the server's max_frame_bytes goes over
// REST with the same client_msg_id (docs/design/e2ee.md), and arrives.
func TestE2EELargeSendOverREST(t *testing.T) {
	srv := startServer(t, "--max-frame-bytes", "8192")
	ctx := ctxFor(t, time.Minute)
	rec := &recorder{}
	a1 := e2eeDevice(t, srv.Base, "alice", "laptop", client.Config{HTTPClient: &http.Client{Transport: rec, Timeout: 30 * time.Second}})
	b1 := e2eeDevice(t, srv.Base, "bob", "phone", client.Config{})
	conv, err := a1.CreateDirectE2EE(ctx, b1.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a1.Send(ctx, conv.ID, "small enough for a frame"); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.calls("POST", "/v1/conversations/"+conv.ID+"/messages")); n != 0 {
		t.Fatalf("%d REST sends for a small message", n)
	}
	long := strings.Repeat("a long letter, ", 1000) // 15 KB: a 20 KB frame
	m, err := a1.Send(ctx, conv.ID, long, client.WithClientMsgID("cm-long"))
	if err != nil {
		t.Fatal(err)
	}
	posts := rec.calls("POST", "/v1/conversations/"+conv.ID+"/messages")
	if len(posts) != 1 || posts[0].clientMsgID != "cm-long" || posts[0].status >= 300 || m.Body != long {
		t.Fatalf("REST sends %+v, message %d bytes", posts, len(m.Body))
	}
	b1.waitText(t, conv.ID, long)
	b1.waitText(t, conv.ID, "small enough for a frame")
}

// A message queued for an e2ee conversation while the server is down
// stays in the saved outbox marked encrypted; a new process of the same
// device (tokens, state and keystore restored) seals and sends it after
// the server is back, and it arrives readable.
func TestE2EEOutboxSurvivesRestart(t *testing.T) {
	srv := startServer(t)
	ctx := ctxFor(t, time.Minute)
	a1 := e2eeDevice(t, srv.Base, "alice", "laptop", client.Config{BackoffMax: time.Second})
	b1 := e2eeDevice(t, srv.Base, "bob", "phone", client.Config{BackoffMax: time.Second})
	conv, err := a1.CreateDirectE2EE(ctx, b1.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a1.Send(ctx, conv.ID, "before the outage"); err != nil {
		t.Fatal(err)
	}
	b1.waitText(t, conv.ID, "before the outage")
	srv.Kill()
	p := a1.Enqueue(conv.ID, "written during the outage")
	st, err := a1.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Outbox) != 1 || !st.Outbox[0].Encrypted {
		t.Fatalf("saved outbox %+v", st.Outbox)
	}
	tokens := a1.Tokens()
	a1.Close()
	select {
	case <-p.Done():
		t.Fatal("the message left the outbox while the server was down")
	default:
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	col := newCollector()
	again := client.New(client.Config{Server: srv.Base, Tokens: &tokens, State: &st, KeyStore: a1.keys, OnEvent: col.add})
	t.Cleanup(func() { again.Close() })
	if err := again.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	b1.waitText(t, conv.ID, "written during the outage")
	d := &device{Client: again, keys: a1.keys, events: col, name: "alice/laptop again"}
	d.waitText(t, conv.ID, "written during the outage")
}

// A message whose sending device is gone (logged out) before the receiver
// ever saw it cannot be checked: after one fetch of the sender's list the
// receiver hands it over as unknown_sender_device (it does not wait for
// good), and the sync completes.
func TestE2EEUnknownSenderDevice(t *testing.T) {
	srv := startServer(t)
	ctx := ctxFor(t, time.Minute)
	bobKeys := &client.MemoryKeyStore{}
	col := newCollector()
	bob := user(t, srv.Base, "bob", "phone", client.Config{KeyStore: bobKeys, OnEvent: col.add})
	t.Cleanup(func() { bob.Close() })
	alice := user(t, srv.Base, "alice", "phone", client.Config{KeyStore: &client.MemoryKeyStore{}})
	conv, err := alice.CreateDirectE2EE(ctx, bob.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := alice.SendREST(ctx, conv.ID, "from a phone that is about to go")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	b := &device{Client: bob, keys: bobKeys, events: col, name: "bob/phone"}
	e := b.waitSeq(t, conv.ID, m.Seq, client.EventMessage)
	if e.E2EE == nil || e.E2EE.Reason != e2ee.ReasonUnknownSenderDevice || e.Message.Body != "" {
		t.Fatalf("got %+v %+v", e.Message, e.E2EE)
	}
	col.waitFor(t, 10*time.Second, "synced", func(evs []client.Event) bool {
		for _, e := range evs {
			if e.Kind == client.EventSynced {
				return true
			}
		}
		return false
	})
}
