package wsgate

import (
	"bytes"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// TestEncryptedFrameSplice: the frame a device gets (the keyless frame
// with its key spliced in) is byte for byte the frame encoded with that
// device's key; a device without a key gets the keyless frame; the
// withheld mark never goes out.
func TestEncryptedFrameSplice(t *testing.T) {
	m := &parley.Message{ID: parley.NewID(), ConversationID: parley.NewID(), Seq: 7, SenderID: parley.NewID(), SenderDeviceID: parley.NewID(),
		ClientMsgID: "c<&>", Type: parley.MessageEncrypted, CreatedAt: time.Now().UTC(), Withheld: true,
		Attachments: []parley.Attachment{{MediaID: parley.NewID(), Size: 3, Encrypted: true}},
		Envelope: &parley.Envelope{V: 1, Suite: parley.SuiteX25519, Ciphertext: "Y2lwaGVy", Signature: "c2ln",
			Keys: []parley.EnvelopeKey{{DeviceID: "d1", KeyID: 2, Enc: "ZW5j", Sealed: "c2VhbGVk"}, {DeviceID: "d2", KeyID: 1, Enc: "x", Sealed: "y"}}}}
	base, err := encryptedBase(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, device := range []string{"d1", "d2", "d3"} {
		want := *m
		want.Withheld = false
		want.Envelope = m.Envelope.For(device)
		full, err := Encode(MessageFrame{Type: FrameMessage, Message: &want})
		if err != nil {
			t.Fatal(err)
		}
		if got := withKey(base, want.Envelope.Key); !bytes.Equal(got, full) {
			t.Fatalf("device %s:\n got %s\nwant %s", device, got, full)
		}
	}
	odd := &parley.EnvelopeKey{DeviceID: "d\"<", KeyID: 1, Enc: "a/b+", Sealed: "\u2028"}
	full, _ := Encode(odd)
	if got := appendKey(nil, odd); !bytes.Equal(got, full) {
		t.Fatalf("a key with characters to escape: %s, want %s", got, full)
	}
	if bytes.Contains(base, []byte("withheld")) || bytes.Contains(base, []byte(`"key"`)) || bytes.Contains(base, []byte("keys")) {
		t.Fatalf("base frame %s", base)
	}
}
