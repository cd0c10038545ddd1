package e2ee

import (
	"fmt"
	"testing"
)

// The cost per message for the sending and a receiving device in groups
// of 10 and 100 members with 2 devices each (docs/benchmarks.md): the
// sender seals the content key to the 2n-1 other devices; a receiver
// opens its key, checks the signature and decrypts.
var benchSizes = []int{10, 100}

const benchBody = "a message of about the size people write, with a few words in it: see you at 8 at the usual place"

func BenchmarkSeal(b *testing.B) {
	for _, members := range benchSizes {
		b.Run(fmt.Sprintf("members=%d/devices=2", members), func(b *testing.B) {
			sender, others := group(b, members, 2)
			rs := recipientsOf(others)
			content, _ := Content{Body: benchBody}.Marshal()
			h := Header{ConversationID: "0190f3a0-0002-7000-8000-00000000c0de", SenderUserID: sender.userID, SenderDeviceID: sender.deviceID}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				h.ClientMsgID = fmt.Sprint(i)
				if _, _, err := Seal(sender.id, h, content, rs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(rs)), "keys/op")
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, members := range benchSizes {
		b.Run(fmt.Sprintf("members=%d/devices=2", members), func(b *testing.B) {
			sender, others := group(b, members, 2)
			content, _ := Content{Body: benchBody}.Marshal()
			h := Header{ConversationID: "0190f3a0-0002-7000-8000-00000000c0de", SenderUserID: sender.userID, SenderDeviceID: sender.deviceID, ClientMsgID: "m"}
			env, _, err := Seal(sender.id, h, content, recipientsOf(others))
			if err != nil {
				b.Fatal(err)
			}
			me := others[len(others)-1]
			got := receivedBy(env, me.deviceID)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Open(h, me.deviceID, got, me.finder, sender.id.Public()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFile(b *testing.B) {
	key, _ := NewFileKey()
	plain := filePlaintext(1 << 20)
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		if _, err := EncryptFile(key, discard{}, bytesReader(plain)); err != nil {
			b.Fatal(err)
		}
	}
}
