package storetest

import (
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// The key directory and encrypted messages (docs/design/e2ee.md). The
// store stores and compares; it does not verify signatures (the core
// does), so the keys here are random bytes of the right sizes.

func randomB64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return parley.B64.EncodeToString(b)
}

// keyedDevice is a device with published keys.
type keyedDevice struct {
	user     *parley.User
	device   *parley.Device
	identity string
	keyID    int64
}

// deviceKeys returns keys for d at keyID with a fresh HPKE key.
func (d *keyedDevice) keys(keyID int64) *parley.DeviceKeys {
	return &parley.DeviceKeys{UserID: d.user.ID, DeviceID: d.device.ID, IdentityKey: d.identity,
		Suite: parley.SuiteX25519, KeyID: keyID, PublicKey: randomB64(parley.HPKEPublicKeySize), KeySignature: randomB64(parley.SignatureSize)}
}

// keyed creates a device of u and publishes its first keys.
func (f *fixture) keyed(u *parley.User) *keyedDevice {
	f.tb.Helper()
	d, _ := f.session(u)
	k := &keyedDevice{user: u, device: d, identity: randomB64(parley.IdentityKeySize)}
	f.publish(k, 1)
	return k
}

// publish publishes k's keys at keyID and checks it changed the list.
func (f *fixture) publish(k *keyedDevice, keyID int64) int64 {
	f.tb.Helper()
	v, changed, err := f.s.SetDeviceKeys(f.ctx, k.keys(keyID), f.now)
	if err != nil || !changed {
		f.tb.Fatalf("SetDeviceKeys(%d): changed=%v, %v", keyID, changed, err)
	}
	k.keyID = keyID
	return v
}

// e2eeGroup creates an e2ee group of owner and others.
func (f *fixture) e2eeGroup(owner *parley.User, others ...*parley.User) *parley.Conversation {
	f.tb.Helper()
	c := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, Title: "secret", CreatedAt: f.now, E2EE: true}
	c.Members = append(c.Members, parley.Member{UserID: owner.ID, Role: parley.MemberRoleOwner, JoinedAt: f.now})
	for _, u := range others {
		c.Members = append(c.Members, parley.Member{UserID: u.ID, Role: parley.MemberRoleMember, JoinedAt: f.now})
	}
	got, created, err := f.s.CreateConversation(f.ctx, c)
	if err != nil || !created || !got.E2EE {
		f.tb.Fatalf("CreateConversation(e2ee): created=%v e2ee=%v, %v", created && got != nil, got != nil && got.E2EE, err)
	}
	return got
}

// encrypted returns an encrypted message from sender in c with a key
// for each of to.
func (f *fixture) encrypted(c *parley.Conversation, sender *keyedDevice, to ...*keyedDevice) *parley.Message {
	e := &parley.Envelope{V: 1, Suite: parley.SuiteX25519, Ciphertext: randomB64(40), Signature: randomB64(parley.SignatureSize)}
	for _, d := range to {
		e.Keys = append(e.Keys, parley.EnvelopeKey{DeviceID: d.device.ID, KeyID: d.keyID, Enc: randomB64(parley.EncSize), Sealed: randomB64(parley.SealedKeySize)})
	}
	return &parley.Message{ID: parley.NewID(), ConversationID: c.ID, SenderID: sender.user.ID, SenderDeviceID: sender.device.ID,
		ClientMsgID: fmt.Sprintf("enc-%d", f.next()), Type: parley.MessageEncrypted, CreatedAt: f.now, Envelope: e}
}

// mismatch fails unless err is a device mismatch with these lists.
func mismatch(tb testing.TB, err error, missing []string, extra []string, stale map[string]int64) {
	tb.Helper()
	var mm *parley.DeviceMismatchError
	if !asMismatch(err, &mm) {
		tb.Fatalf("error %v, want device_mismatch", err)
	}
	if parley.ErrorCode(err) != parley.CodeDeviceMismatch {
		tb.Fatalf("code %q, want device_mismatch", parley.ErrorCode(err))
	}
	var gotMissing []string
	for _, d := range mm.Missing {
		gotMissing = append(gotMissing, d.DeviceID)
	}
	slices.Sort(gotMissing)
	slices.Sort(missing)
	slices.Sort(extra)
	if !slices.Equal(gotMissing, missing) || !slices.Equal(mm.Extra, extra) || len(mm.Stale) != len(stale) {
		tb.Fatalf("mismatch missing=%v extra=%v stale=%+v, want missing=%v extra=%v stale=%v", gotMissing, mm.Extra, mm.Stale, missing, extra, stale)
	}
	for _, s := range mm.Stale {
		if stale[s.DeviceID] != s.KeyID {
			tb.Fatalf("stale %+v, want key ids %v", mm.Stale, stale)
		}
	}
}

func asMismatch(err error, mm **parley.DeviceMismatchError) bool {
	for err != nil {
		if e, ok := err.(*parley.DeviceMismatchError); ok {
			*mm = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func testDeviceKeys(t *testing.T, f *fixture) {
	alice, bob := f.user(), f.user()
	l, err := f.s.DeviceList(f.ctx, alice.ID)
	if err != nil || l.Version != 0 || len(l.Devices) != 0 {
		t.Fatalf("DeviceList(new user) = %+v, %v; want version 0, no devices", l, err)
	}
	_, err = f.s.DeviceList(f.ctx, parley.NewID())
	wantCode(t, err, parley.CodeNotFound, "DeviceList(unknown)")

	// A device without keys is not listed.
	f.session(alice)
	a1 := f.keyed(alice)
	l, _ = f.s.DeviceList(f.ctx, alice.ID)
	if l.Version != 1 || len(l.Devices) != 1 || l.Devices[0].DeviceID != a1.device.ID || l.Devices[0].IdentityKey != a1.identity || l.Devices[0].KeyID != 1 {
		t.Fatalf("after the first publish: %+v", l)
	}
	stored := l.Devices[0]
	if !sameTime(stored.CreatedAt, f.now) || !sameTime(stored.KeysPublishedAt, f.now) || !sameTime(stored.UpdatedAt, f.now) || stored.Suite != parley.SuiteX25519 {
		t.Fatalf("stored keys %+v", stored)
	}

	// Republishing the same bytes is a no-op.
	same := &parley.DeviceKeys{UserID: alice.ID, DeviceID: a1.device.ID, IdentityKey: stored.IdentityKey, Suite: stored.Suite,
		KeyID: stored.KeyID, PublicKey: stored.PublicKey, KeySignature: stored.KeySignature}
	if v, changed, err := f.s.SetDeviceKeys(f.ctx, same, f.now.Add(time.Second)); err != nil || changed || v != 1 {
		t.Fatalf("republish = %d, %v, %v; want 1, unchanged", v, changed, err)
	}
	// The same key id with other bytes, a lower one, another identity:
	// conflicts, nothing changes.
	other := a1.keys(1)
	_, _, err = f.s.SetDeviceKeys(f.ctx, other, f.now)
	wantCode(t, err, parley.CodeConflict, "SetDeviceKeys(same key id, other key)")
	newIdentity := a1.keys(2)
	newIdentity.IdentityKey = randomB64(32)
	_, _, err = f.s.SetDeviceKeys(f.ctx, newIdentity, f.now)
	wantCode(t, err, parley.CodeConflict, "SetDeviceKeys(other identity)")
	// Another user's device, or none.
	stolen := a1.keys(2)
	stolen.UserID = bob.ID
	_, _, err = f.s.SetDeviceKeys(f.ctx, stolen, f.now)
	wantCode(t, err, parley.CodeNotFound, "SetDeviceKeys(another user's device)")

	// Rotation raises the version and keeps created_at and keys_published_at.
	later := f.now.Add(time.Hour)
	rot := a1.keys(2)
	if v, changed, err := f.s.SetDeviceKeys(f.ctx, rot, later); err != nil || !changed || v != 2 {
		t.Fatalf("rotate = %d, %v, %v; want 2", v, changed, err)
	}
	l, _ = f.s.DeviceList(f.ctx, alice.ID)
	if l.Version != 2 || l.Devices[0].KeyID != 2 || l.Devices[0].PublicKey != rot.PublicKey ||
		!sameTime(l.Devices[0].CreatedAt, f.now) || !sameTime(l.Devices[0].KeysPublishedAt, f.now) || !sameTime(l.Devices[0].UpdatedAt, later) {
		t.Fatalf("after rotation: %+v", l)
	}
	_, _, err = f.s.SetDeviceKeys(f.ctx, a1.keys(1), f.now)
	wantCode(t, err, parley.CodeConflict, "SetDeviceKeys(older key id)")

	// A second device, then deletions: a keyed device deleted raises the
	// version, one without keys does not.
	a2 := f.keyed(alice)
	plain, _ := f.session(alice)
	if l, _ = f.s.DeviceList(f.ctx, alice.ID); l.Version != 3 || len(l.Devices) != 2 {
		t.Fatalf("two keyed devices: %+v", l)
	}
	if err := f.s.DeleteDevice(f.ctx, alice.ID, plain.ID); err != nil {
		t.Fatal(err)
	}
	if l, _ = f.s.DeviceList(f.ctx, alice.ID); l.Version != 3 {
		t.Fatalf("a keyless device deleted: version %d, want 3", l.Version)
	}
	if err := f.s.DeleteDevice(f.ctx, alice.ID, a2.device.ID); err != nil {
		t.Fatal(err)
	}
	if l, _ = f.s.DeviceList(f.ctx, alice.ID); l.Version != 4 || len(l.Devices) != 1 || l.Devices[0].DeviceID != a1.device.ID {
		t.Fatalf("a keyed device deleted: %+v, want version 4 and one device", l)
	}
	// Every path that deletes devices counts: all of them, suspension.
	if _, err := f.s.DeleteDevices(f.ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	if l, _ = f.s.DeviceList(f.ctx, alice.ID); l.Version != 5 || len(l.Devices) != 0 {
		t.Fatalf("every device deleted: %+v, want version 5 and none", l)
	}
	f.keyed(bob)
	f.keyed(bob)
	if err := f.s.SetUserState(f.ctx, bob.ID, parley.UserSuspended); err != nil {
		t.Fatal(err)
	}
	if l, _ = f.s.DeviceList(f.ctx, bob.ID); l.Version != 4 || len(l.Devices) != 0 {
		t.Fatalf("suspended: %+v, want version 4 (2 publishes, 2 deletions)", l)
	}
	// Each user whose keyed devices went is news once.
	news, err := f.s.TakeDeviceListNews(f.ctx, 1)
	if err != nil || len(news) != 1 {
		t.Fatalf("TakeDeviceListNews(1) = %v, %v", news, err)
	}
	more, err := f.s.TakeDeviceListNews(f.ctx, 1000)
	if err != nil || len(more) != 1 {
		t.Fatalf("TakeDeviceListNews(1000) = %v, %v", more, err)
	}
	if got := []string{news[0], more[0]}; !slices.Contains(got, alice.ID) || !slices.Contains(got, bob.ID) {
		t.Fatalf("news %v, want alice and bob", got)
	}
	if again, err := f.s.TakeDeviceListNews(f.ctx, 1000); err != nil || len(again) != 0 {
		t.Fatalf("news taken twice: %v, %v", again, err)
	}
	_, err = f.s.TakeDeviceListNews(f.ctx, 0)
	wantCode(t, err, parley.CodeInvalidRequest, "TakeDeviceListNews(0)")
}

func testDeviceKeysExpiry(t *testing.T, f *fixture) {
	alice := f.user()
	k := f.keyed(alice) // its refresh token lives a day
	if _, err := f.s.PurgeExpired(f.ctx, f.now.Add(25*time.Hour), 100); err != nil {
		t.Fatal(err)
	}
	l, err := f.s.DeviceList(f.ctx, alice.ID)
	if err != nil || l.Version != 2 || len(l.Devices) != 0 {
		t.Fatalf("after the session of %s expired: %+v, %v; want version 2, no devices", k.device.ID, l, err)
	}
	if news, err := f.s.TakeDeviceListNews(f.ctx, 10); err != nil || !slices.Equal(news, []string{alice.ID}) {
		t.Fatalf("news after the purge: %v, %v; want alice", news, err)
	}
}

// testDeviceKeysCreatedAt: a listed device's created_at is when the
// device was created (its devices row), not when it published keys, in
// both listings; keys_published_at is the first publish, updated_at the
// latest. The server refuses a key request from a device created after
// the message by the devices row, so a client deciding from the list
// whether to ask must see that time. Devices are listed oldest first by
// that time too.
func testDeviceKeysCreatedAt(t *testing.T, f *fixture) {
	alice, bob := f.user(), f.user()
	created := f.now
	early, _ := f.session(alice) // created now, keys an hour later
	f.now = f.now.Add(time.Minute)
	second := f.keyed(alice) // created and keyed a minute later
	published := created.Add(time.Hour)
	k := &keyedDevice{user: alice, device: early, identity: randomB64(parley.IdentityKeySize)}
	if _, changed, err := f.s.SetDeviceKeys(f.ctx, k.keys(1), published); err != nil || !changed {
		t.Fatalf("SetDeviceKeys(an hour after the device) = changed %v, %v", changed, err)
	}
	rotated := published.Add(time.Hour)
	if _, changed, err := f.s.SetDeviceKeys(f.ctx, k.keys(2), rotated); err != nil || !changed {
		t.Fatalf("SetDeviceKeys(rotation) = changed %v, %v", changed, err)
	}
	check := func(what string, devices []parley.DeviceKeys) {
		t.Helper()
		var ids []string
		for _, d := range devices {
			ids = append(ids, d.DeviceID)
		}
		if !slices.Equal(ids, []string{early.ID, second.device.ID}) {
			t.Fatalf("%s: devices %v, want %s (created first, keyed last) then %s", what, ids, early.ID, second.device.ID)
		}
		d := devices[0]
		if !sameTime(d.CreatedAt, created) || !sameTime(d.KeysPublishedAt, published) || !sameTime(d.UpdatedAt, rotated) {
			t.Fatalf("%s: created_at %v, keys_published_at %v, updated_at %v; want %v (the device), %v (first publish), %v (rotation)",
				what, d.CreatedAt, d.KeysPublishedAt, d.UpdatedAt, created, published, rotated)
		}
		if d = devices[1]; !sameTime(d.CreatedAt, created.Add(time.Minute)) || !sameTime(d.KeysPublishedAt, d.CreatedAt) {
			t.Fatalf("%s: second device %+v, want created and keyed at %v", what, d, created.Add(time.Minute))
		}
	}
	l, err := f.s.DeviceList(f.ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("DeviceList", l.Devices)
	c := f.e2eeGroup(alice, bob)
	lists, err := f.s.ConversationDeviceLists(f.ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lists {
		if l.UserID == alice.ID {
			check("ConversationDeviceLists", l.Devices)
		}
	}
}

func testConversationDeviceLists(t *testing.T, f *fixture) {
	alice, bob, carol, dave := f.user(), f.user(), f.user(), f.user()
	a1, a2, b1 := f.keyed(alice), f.keyed(alice), f.keyed(bob)
	f.keyed(dave)
	c := f.e2eeGroup(alice, bob, carol)
	lists, err := f.s.ConversationDeviceLists(f.ctx, c.ID)
	if err != nil || len(lists) != 3 {
		t.Fatalf("ConversationDeviceLists = %+v, %v; want 3 users", lists, err)
	}
	got := map[string][]string{}
	for _, l := range lists {
		for _, d := range l.Devices {
			got[l.UserID] = append(got[l.UserID], d.DeviceID)
		}
		if l.Devices == nil {
			t.Fatalf("user %s: devices nil, want empty", l.UserID)
		}
	}
	if !slices.Equal(got[alice.ID], []string{a1.device.ID, a2.device.ID}) && !slices.Equal(got[alice.ID], []string{a2.device.ID, a1.device.ID}) ||
		!slices.Equal(got[bob.ID], []string{b1.device.ID}) || len(got[carol.ID]) != 0 || len(got) != 2 {
		t.Fatalf("devices by user %v", got)
	}
	_, err = f.s.ConversationDeviceLists(f.ctx, parley.NewID())
	wantCode(t, err, parley.CodeConversationNotFound, "ConversationDeviceLists(unknown)")

	for _, tc := range []struct {
		a, b *parley.User
		want bool
	}{{alice, bob, true}, {bob, carol, true}, {alice, dave, false}, {dave, alice, false}} {
		if got, err := f.s.SharesConversation(f.ctx, tc.a.ID, tc.b.ID); err != nil || got != tc.want {
			t.Fatalf("SharesConversation = %v, %v; want %v", got, err, tc.want)
		}
	}
}

func testE2EEConversations(t *testing.T, f *fixture) {
	alice, bob := f.user(), f.user()
	plain, _ := f.direct(alice, bob)
	mk := func(e2ee bool) *parley.Conversation {
		c := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: f.now, E2EE: e2ee, Members: []parley.Member{
			{UserID: bob.ID}, {UserID: alice.ID}}}
		got, _, err := f.s.CreateConversation(f.ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	secret := mk(true)
	if secret.ID == plain.ID || !secret.E2EE || plain.E2EE {
		t.Fatalf("e2ee direct %s (e2ee %v) vs plain %s (e2ee %v): want two conversations", secret.ID, secret.E2EE, plain.ID, plain.E2EE)
	}
	if again := mk(true); again.ID != secret.ID {
		t.Fatalf("find-or-create e2ee direct: %s, want %s", again.ID, secret.ID)
	}
	if again := mk(false); again.ID != plain.ID {
		t.Fatalf("find-or-create plain direct: %s, want %s", again.ID, plain.ID)
	}
	if !f.conversation(secret.ID).E2EE || !f.view(secret.ID, alice).E2EE || f.view(plain.ID, alice).E2EE {
		t.Fatal("e2ee does not read back")
	}
	views, err := f.s.ConversationViews(f.ctx, bob.ID, f.now)
	if err != nil || len(views) != 2 {
		t.Fatal(views, err)
	}
	for _, v := range views {
		if v.E2EE != (v.ID == secret.ID) {
			t.Fatalf("view %s e2ee %v", v.ID, v.E2EE)
		}
	}
	// Plaintext in the e2ee one, encrypted in the plain one: refused.
	_, _, err = f.s.AppendMessage(f.ctx, f.message(secret, alice, "hello"))
	wantCode(t, err, parley.CodeInvalidRequest, "plaintext into e2ee")
	a1, b1 := f.keyed(alice), f.keyed(bob)
	_, _, err = f.s.AppendMessage(f.ctx, f.encrypted(plain, a1, b1))
	wantCode(t, err, parley.CodeInvalidRequest, "encrypted into plain")
	if f.conversation(secret.ID).LastSeq != 0 || f.conversation(plain.ID).LastSeq != 0 {
		t.Fatal("a refused append was stored")
	}
}

func testEncryptedAppend(t *testing.T, f *fixture) {
	alice, bob, carol := f.user(), f.user(), f.user()
	c := f.e2eeGroup(alice, bob, carol)
	b1 := f.keyed(bob)
	// The sending device must have keys.
	plainDevice, _ := f.session(alice)
	noKeys := &keyedDevice{user: alice, device: plainDevice}
	_, _, err := f.s.AppendMessage(f.ctx, f.encrypted(c, noKeys, b1))
	wantCode(t, err, parley.CodeForbidden, "a device without keys sends")

	a1, a2, b2 := f.keyed(alice), f.keyed(alice), f.keyed(bob)
	// carol has no keyed device: nothing is sealed to her.
	outsider := f.keyed(f.user())

	// Missing, extra, stale: one answer with all three, nothing stored.
	f.publish(b2, 2)
	staleB2 := *b2
	staleB2.keyID = 1
	m := f.encrypted(c, a1, b1, &staleB2, outsider)
	_, _, err = f.s.AppendMessage(f.ctx, m)
	mismatch(t, err, []string{a2.device.ID}, []string{outsider.device.ID}, map[string]int64{b2.device.ID: 2})
	if f.conversation(c.ID).LastSeq != 0 {
		t.Fatal("a mismatched append was stored")
	}
	// The sender's own device in the envelope is extra.
	_, _, err = f.s.AppendMessage(f.ctx, f.encrypted(c, a1, a1, a2, b1, b2))
	mismatch(t, err, nil, []string{a1.device.ID}, nil)

	// Fixed, with the same client_msg_id: stored.
	fixed := f.encrypted(c, a1, a2, b1, b2)
	fixed.ClientMsgID = m.ClientMsgID
	got, created, err := f.s.AppendMessage(f.ctx, fixed)
	if err != nil || !created || got.Seq != 1 {
		t.Fatalf("fixed append: %+v, %v, %v", got, created, err)
	}
	// Read back: no body, the envelope's common part, no keys.
	read, err := f.s.Message(f.ctx, c.ID, 1, f.now)
	if err != nil {
		t.Fatal(err)
	}
	e := read.Envelope
	if read.Type != parley.MessageEncrypted || read.Body != "" || e == nil || e.V != 1 || e.Suite != parley.SuiteX25519 ||
		e.Ciphertext != fixed.Envelope.Ciphertext || e.Signature != fixed.Envelope.Signature || e.Key != nil || e.Keys != nil {
		t.Fatalf("read back %+v envelope %+v", read, e)
	}
	hist := f.history(c.ID)
	if len(hist) != 1 || hist[0].Envelope == nil || hist[0].Envelope.Ciphertext != e.Ciphertext {
		t.Fatalf("history %+v", hist)
	}
	if v := f.view(c.ID, bob); v.LastMessage == nil || v.LastMessage.Envelope == nil {
		t.Fatalf("view's last message %+v", v.LastMessage)
	}
	// Each device's key, and only asked ones.
	keys, err := f.s.MessageKeys(f.ctx, c.ID, 1, 1, []string{b2.device.ID, a1.device.ID})
	if err != nil || len(keys) != 1 || keys[0].DeviceID != b2.device.ID || keys[0].KeyID != 2 || keys[0].Seq != 1 ||
		keys[0].Enc != fixed.Envelope.Keys[2].Enc || keys[0].Sealed != fixed.Envelope.Keys[2].Sealed {
		t.Fatalf("MessageKeys(b2, a1) = %+v, %v", keys, err)
	}
	all, err := f.s.MessageKeys(f.ctx, c.ID, 1, 1, nil)
	if err != nil || len(all) != 3 {
		t.Fatalf("MessageKeys(all) = %+v, %v; want 3", all, err)
	}

	// A retry of the stored client_msg_id returns the original even
	// though the devices changed since.
	f.keyed(carol)
	retry := f.encrypted(c, a1, b1)
	retry.ClientMsgID = fixed.ClientMsgID
	orig, created, err := f.s.AppendMessage(f.ctx, retry)
	if err != nil || created || orig.Seq != 1 || orig.Envelope == nil || orig.Envelope.Ciphertext != fixed.Envelope.Ciphertext {
		t.Fatalf("retry = %+v, %v, %v; want the original", orig, created, err)
	}

	// A removed member's devices are extra from then on.
	if _, err := f.s.ChangeMembers(f.ctx, c.ID, func(*parley.Conversation) (parley.MemberChange, error) {
		return parley.MemberChange{Remove: []string{bob.ID}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	carolKeys, _ := f.s.DeviceList(f.ctx, carol.ID)
	c1 := &keyedDevice{user: carol, device: &parley.Device{ID: carolKeys.Devices[0].DeviceID}, keyID: 1}
	_, _, err = f.s.AppendMessage(f.ctx, f.encrypted(c, a1, a2, b1, c1))
	mismatch(t, err, nil, []string{b1.device.ID}, nil)
	f.append(f.encrypted(c, a1, a2, c1))

	// A tombstone drops the envelope and the keys.
	del, err := f.s.UpdateMessage(f.ctx, c.ID, 1, f.now, func(m *parley.Message) error {
		m.Deleted, m.Body, m.Envelope = true, "", nil
		return nil
	})
	if err != nil || !del.Deleted || del.Envelope != nil {
		t.Fatalf("delete = %+v, %v", del, err)
	}
	if read, _ := f.s.Message(f.ctx, c.ID, 1, f.now); read.Envelope != nil || !read.Deleted {
		t.Fatalf("tombstone read back %+v", read)
	}
	if keys, _ := f.s.MessageKeys(f.ctx, c.ID, 1, 1, nil); len(keys) != 0 {
		t.Fatalf("a tombstone keeps %d keys", len(keys))
	}
	// A deleted device's keys go with it.
	if err := f.s.DeleteDevice(f.ctx, alice.ID, a2.device.ID); err != nil {
		t.Fatal(err)
	}
	if keys, _ := f.s.MessageKeys(f.ctx, c.ID, 2, 2, []string{a2.device.ID}); len(keys) != 0 {
		t.Fatalf("a deleted device keeps %d keys", len(keys))
	}
}

func testSetMessageKeys(t *testing.T, f *fixture) {
	alice, bob, carol := f.user(), f.user(), f.user()
	a1, b1 := f.keyed(alice), f.keyed(bob)
	c := f.e2eeGroup(alice, bob)
	f.append(f.encrypted(c, a1, b1)) // seq 1
	// Later: a new device of bob's, a new member.
	f.now = f.now.Add(time.Minute)
	b2 := f.keyed(bob)
	c1 := f.keyed(carol)
	if _, err := f.s.ChangeMembers(f.ctx, c.ID, func(*parley.Conversation) (parley.MemberChange, error) {
		return parley.MemberChange{Add: []parley.Member{{UserID: carol.ID, JoinedAt: f.now}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	key := func(d *keyedDevice, keyID int64) []parley.EnvelopeKey {
		return []parley.EnvelopeKey{{DeviceID: d.device.ID, KeyID: keyID, Enc: randomB64(32), Sealed: randomB64(48)}}
	}
	_, err := f.s.SetMessageKeys(f.ctx, c.ID, 1, alice.ID, key(b2, 1), f.now)
	mismatch(t, err, nil, []string{b2.device.ID}, nil) // created after the message
	_, err = f.s.SetMessageKeys(f.ctx, c.ID, 1, alice.ID, key(c1, 1), f.now)
	mismatch(t, err, nil, []string{c1.device.ID}, nil) // joined after it
	_, err = f.s.SetMessageKeys(f.ctx, c.ID, 1, alice.ID, key(b1, 7), f.now)
	mismatch(t, err, nil, nil, map[string]int64{b1.device.ID: 1})
	_, err = f.s.SetMessageKeys(f.ctx, c.ID, 1, bob.ID, key(b1, 1), f.now)
	wantCode(t, err, parley.CodeForbidden, "SetMessageKeys by another user")
	_, err = f.s.SetMessageKeys(f.ctx, c.ID, 9, alice.ID, key(b1, 1), f.now)
	wantCode(t, err, parley.CodeNotFound, "SetMessageKeys(no such message)")

	// Replacing b1's key after a rotation.
	f.publish(b1, 2)
	k := key(b1, 2)
	m, err := f.s.SetMessageKeys(f.ctx, c.ID, 1, alice.ID, k, f.now)
	if err != nil || m.Seq != 1 || m.Envelope == nil {
		t.Fatalf("SetMessageKeys = %+v, %v", m, err)
	}
	keys, _ := f.s.MessageKeys(f.ctx, c.ID, 1, 1, []string{b1.device.ID})
	if len(keys) != 1 || keys[0].KeyID != 2 || keys[0].Enc != k[0].Enc || keys[0].Sealed != k[0].Sealed {
		t.Fatalf("after replacing: %+v", keys)
	}
	// Plain messages take no keys.
	plain := f.group(alice, bob)
	f.send(plain, alice, "hi")
	_, err = f.s.SetMessageKeys(f.ctx, plain.ID, 1, alice.ID, key(b1, 2), f.now)
	wantCode(t, err, parley.CodeForbidden, "SetMessageKeys(plain message)")
}
