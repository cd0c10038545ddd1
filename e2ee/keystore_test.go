package e2ee

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestKeystoreRotation(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := Policy{} // defaults: rotate 7 days, grace 7 days
	ks, err := NewKeystore("alice", "laptop", t0)
	if err != nil {
		t.Fatal(err)
	}
	if !ks.NeedsPublish() || ks.NeedsRotation(t0.Add(30*24*time.Hour), p) {
		t.Fatal("a new keystore needs its first publish, and no rotation before it")
	}
	req := ks.PublishRequest()
	if req.KeyID != 1 {
		t.Fatalf("first key_id %d", req.KeyID)
	}
	req.DeviceID = "laptop"
	if err := req.Verify("alice"); err != nil {
		t.Fatal(err)
	}
	ks.MarkPublished(1, t0, p)
	key1 := ks.KeyPair(1, t0)
	if ks.NeedsPublish() || ks.NeedsRotation(t0.Add(7*24*time.Hour-time.Second), p) || !ks.NeedsRotation(t0.Add(7*24*time.Hour), p) {
		t.Fatal("rotation is due 7 days after the publish")
	}
	t1 := t0.Add(7*24*time.Hour + time.Hour)
	k2, err := ks.Rotate(t1)
	if err != nil || k2.KeyID != 2 || !ks.NeedsPublish() {
		t.Fatalf("rotate: %+v %v", k2, err)
	}
	// Until key 2 is published, key 1 keeps no end.
	if ks.KeyPair(1, t1.Add(100*24*time.Hour)) == nil {
		t.Fatal("key 1 expired before key 2 was published")
	}
	t2 := t1.Add(time.Minute) // the publish went through
	ks.MarkPublished(2, t2, p)
	if ks.Published().KeyID != 2 {
		t.Fatal("published key")
	}
	// Key 1 opens for the grace after key 2's publish, then is erased.
	if kp := ks.KeyPair(1, t2.Add(7*24*time.Hour-time.Second)); kp == nil || !bytes.Equal(kp.Private, key1.Private) {
		t.Fatal("key 1 gone within grace")
	}
	if ks.KeyPair(1, t2.Add(7*24*time.Hour)) != nil {
		t.Fatal("key 1 still opens after grace")
	}
	if n := ks.Prune(t2.Add(7*24*time.Hour - time.Second)); n != 0 {
		t.Fatalf("pruned %d within grace", n)
	}
	data, err := ks.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(EncodeB64(key1.Private))) {
		t.Fatal("key 1 not in the stored keystore within grace")
	}
	if n := ks.Prune(t2.Add(7 * 24 * time.Hour)); n != 1 {
		t.Fatalf("pruned %d after grace", n)
	}
	data, _ = ks.Marshal()
	if bytes.Contains(data, []byte(EncodeB64(key1.Private))) || len(ks.Keys) != 1 {
		t.Fatal("key 1 still stored after grace")
	}
	// The current key is never pruned, however old.
	if ks.Prune(t2.Add(1000*24*time.Hour)) != 0 || ks.Current().KeyID != 2 {
		t.Fatal("the current key was pruned")
	}
	back, err := ParseKeystore(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Identity().Public(), ks.Identity().Public()) || back.Current().KeyID != 2 || back.DeviceID != "laptop" {
		t.Fatal("the keystore's JSON does not round-trip")
	}
}

func TestKeystoreSentKeys(t *testing.T) {
	t0 := time.Now()
	ks, _ := NewKeystore("alice", "laptop", t0)
	k := bytes.Repeat([]byte{7}, 32)
	ks.RememberSent("c", "m1", k, t0, Policy{})
	ks.SetSentSeq("c", "m1", 42)
	if got := ks.SentKey("c", "m1", t0); !bytes.Equal(got, k) {
		t.Fatal("sent key")
	}
	if id, got := ks.SentKeyBySeq("c", 42, t0.Add(DefaultGrace-time.Second)); id != "m1" || !bytes.Equal(got, k) {
		t.Fatal("sent key by seq")
	}
	if _, got := ks.SentKeyBySeq("c", 42, t0.Add(DefaultGrace)); got != nil {
		t.Fatal("sent key after grace")
	}
	if ks.Prune(t0.Add(DefaultGrace)) != 1 || len(ks.Sent) != 0 {
		t.Fatal("sent key not pruned")
	}
	for i := range MaxSentKeys + 5 {
		ks.RememberSent("c", string(rune('a'+i%26))+string(rune(i)), k, t0, Policy{})
	}
	if len(ks.Sent) != MaxSentKeys {
		t.Fatalf("%d sent keys kept", len(ks.Sent))
	}
}

func TestParseKeystoreRefuses(t *testing.T) {
	ks, _ := NewKeystore("alice", "laptop", time.Now())
	good, _ := ks.Marshal()
	for name, data := range map[string][]byte{
		"other version": bytes.Replace(good, []byte(`"version":1`), []byte(`"version":2`), 1),
		"no identity":   bytes.Replace(good, []byte(`"identity_seed":"`), []byte(`"identity_seed":"AA`), 1),
		"not JSON":      good[:10],
		"key damaged":   bytes.Replace(good, []byte(`"public_key":"`), []byte(`"public_key":"AAAA`), 1),
	} {
		if _, err := ParseKeystore(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// listOf is the device list the server would give for these devices.
func listOf(userID string, version int64, ds ...*testDevice) *DeviceList {
	l := &DeviceList{UserID: userID, DeviceListVersion: version}
	for _, d := range ds {
		l.Devices = append(l.Devices, DeviceKeys{DeviceID: d.deviceID, IdentityKey: d.id.Public(), Suite: Suite, KeyID: d.kp.KeyID,
			PublicKey: d.kp.Public, KeySignature: d.id.SignKey(userID, d.deviceID, d.kp.KeyID, d.kp.Public)})
	}
	return l
}

func TestObserveDevices(t *testing.T) {
	ks, _ := NewKeystore("alice", "laptop", time.Now())
	phone := newTestDevice(t, "bob", "phone", 1)
	o, err := ks.ObserveDevices(listOf("bob", 1, phone))
	if err != nil || !o.First || len(o.Trusted) != 1 || len(o.Added) != 0 || o.Changed {
		t.Fatalf("first sight: %+v %v", o, err)
	}
	if err := ks.MarkVerified(listOf("bob", 1, phone)); err != nil {
		t.Fatal(err)
	}
	if v, cur := ks.Verified("bob"); !v || !cur {
		t.Fatal("not verified")
	}
	// Bob adds a tablet: a new device, the fingerprint changes.
	tablet := newTestDevice(t, "bob", "tablet", 1)
	o, _ = ks.ObserveDevices(listOf("bob", 2, phone, tablet))
	if o.First || len(o.Added) != 1 || o.Added[0] != "tablet" || !o.Changed || !o.VerifiedChanged || len(o.Trusted) != 2 {
		t.Fatalf("new device: %+v", o)
	}
	if v, cur := ks.Verified("bob"); !v || cur {
		t.Fatal("verified and current after a change")
	}
	// The server swaps the phone's identity key: refused, warned.
	evil := newTestDevice(t, "bob", "phone", 2)
	o, _ = ks.ObserveDevices(listOf("bob", 3, evil, tablet))
	if len(o.Trusted) != 1 || len(o.Rejected) != 1 || !errors.Is(o.Rejected[0].Err, ErrIdentityChanged) {
		t.Fatalf("identity swap: %+v", o)
	}
	if !bytes.Equal(ks.IdentityKey("bob", "phone"), phone.id.Public()) {
		t.Fatal("the first identity was replaced")
	}
	// A key signed by another identity, or for another device id, fails.
	forged := listOf("bob", 4, tablet)
	forged.Devices[0].KeySignature = phone.id.SignKey("bob", "tablet", 1, tablet.kp.Public)
	o, _ = ks.ObserveDevices(forged)
	if len(o.Trusted) != 0 || len(o.Rejected) != 1 {
		t.Fatalf("forged signature: %+v", o)
	}
	moved := listOf("bob", 5, tablet)
	moved.Devices[0].DeviceID = "tablet2"
	o, _ = ks.ObserveDevices(moved)
	if len(o.Trusted) != 0 {
		t.Fatal("a key signed for another device id trusted")
	}
	// An older version than seen is stale and changes nothing.
	o, _ = ks.ObserveDevices(listOf("bob", 1, tablet))
	if !o.Stale || len(o.Trusted) != 1 || ks.Contacts["bob"].DeviceListVersion != 5 {
		t.Fatalf("stale list: %+v", o)
	}
	// Removing a device is reported and forgets it.
	ks.ObserveDevices(listOf("bob", 6, tablet))
	o, _ = ks.ObserveDevices(listOf("bob", 7))
	if len(o.Removed) != 1 || o.Removed[0] != "tablet" || !bytes.Equal(ks.IdentityKey("bob", "tablet"), tablet.id.Public()) {
		t.Fatalf("removal: %+v", o)
	}
	// A former device keeps its identity: it cannot come back with another.
	reborn := newTestDevice(t, "bob", "tablet", 1)
	o, _ = ks.ObserveDevices(listOf("bob", 8, reborn))
	if len(o.Rejected) != 1 || len(o.Trusted) != 0 {
		t.Fatalf("former device with another identity: %+v", o)
	}
	// Own list: the own device is checked but not a recipient.
	me := &testDevice{userID: "alice", deviceID: "laptop", id: ks.Identity(), kp: &KeyPair{KeyID: 1, Public: ks.Current().Public}}
	phone2 := newTestDevice(t, "alice", "phone", 1)
	o, _ = ks.ObserveDevices(listOf("alice", 2, me, phone2))
	if len(o.Trusted) != 1 || o.Trusted[0].DeviceID != "phone" || len(o.Rejected) != 0 {
		t.Fatalf("own list: %+v", o)
	}
	other := newTestDevice(t, "alice", "laptop", 1)
	o, _ = ks.ObserveDevices(listOf("alice", 3, other, phone2))
	if len(o.Rejected) != 1 {
		t.Fatalf("own device with another identity: %+v", o)
	}
}

var testTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
