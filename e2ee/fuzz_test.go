package e2ee

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
)

// FuzzOpen feeds arbitrary envelope JSON, as a device receives it, to the
// decoder and the opener: nothing may panic, a malformed envelope is an
// error, and the only envelopes that open are the genuine one (or ones
// that differ from it only in what the signature and the keys do not
// cover: JSON spelling, unknown fields).
func FuzzOpen(f *testing.F) {
	sender := newTestDevice(f, "alice", "a1", 1)
	bob := newTestDevice(f, "bob", "b1", 3)
	h := Header{ConversationID: "c", SenderUserID: "alice", SenderDeviceID: "a1", ClientMsgID: "m"}
	content, _ := Content{Body: "fuzz me"}.Marshal()
	env, _, err := Seal(sender.id, h, content, []Recipient{bob.recipient()})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(receivedBy(env, "b1"))
	f.Add(good)
	sent, _ := json.Marshal(env)
	f.Add(sent)
	f.Add([]byte(`{"v":1,"suite":"x25519-hkdf-sha256-chacha20poly1305","ciphertext":"","signature":"","key":null}`))
	f.Add([]byte(`{"v":1,"key":{"device_id":"b1","key_id":3,"enc":"` + EncodeB64(make([]byte, 32)) + `","sealed":"` + EncodeB64(make([]byte, 48)) + `"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		e, err := ParseEnvelope(data)
		if err != nil {
			return
		}
		o, err := Open(h, "b1", e, bob.finder, sender.id.Public())
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if o.Content.Body != "fuzz me" || !bytes.Equal(e.Ciphertext, env.Ciphertext) {
			t.Fatalf("a forged envelope opened: %q", o.Raw)
		}
	})
}

// FuzzFileDecrypter feeds arbitrary blobs to the attachment decrypter:
// no panic, and only the genuine blob decrypts.
func FuzzFileDecrypter(f *testing.F) {
	key := bytes.Repeat([]byte{9}, 32)
	var blob bytes.Buffer
	_, _ = EncryptFile(key, &blob, bytes.NewReader([]byte("a small file")))
	f.Add(blob.Bytes())
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 256<<10 {
			return
		}
		d, err := NewFileDecrypter(key, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(d)
		if err == nil && !bytes.Equal(data, blob.Bytes()) {
			t.Fatalf("a forged blob decrypted to %q", out)
		}
	})
}

// FuzzParseKeystore: a damaged keystore file is an error, not a panic.
func FuzzParseKeystore(f *testing.F) {
	ks, _ := NewKeystore("alice", "laptop", testTime)
	good, _ := ks.Marshal()
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		if ks, err := ParseKeystore(data); err == nil {
			_ = ks.Current()
			_, _ = ks.Marshal()
		}
	})
}

// FuzzObserveDevices feeds arbitrary device lists, as a server answers
// GET .../devices, to the keystore: no panic, and a device whose key
// signature does not verify under its identity is never trusted.
func FuzzObserveDevices(f *testing.F) {
	phone := newTestDevice(f, "bob", "phone", 1)
	good, _ := json.Marshal(listOf("bob", 1, phone))
	f.Add(good)
	f.Add([]byte(`{"user_id":"bob","device_list_version":2,"devices":[{"device_id":"x","identity_key":"","suite":"","key_id":0}]}`))
	f.Add([]byte(`{"user_id":"","devices":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		var l DeviceList
		if json.Unmarshal(data, &l) != nil {
			return
		}
		ks, _ := NewKeystore("alice", "laptop", testTime)
		o, err := ks.ObserveDevices(&l)
		if err != nil {
			return
		}
		for i := range o.Trusted {
			if err := o.Trusted[i].Verify(l.UserID); err != nil {
				t.Fatalf("trusted a device that does not verify: %v", err)
			}
		}
		if _, err := ks.Marshal(); err != nil {
			t.Fatal(err)
		}
	})
}
