package wsgate

import (
	"fmt"
	"testing"

	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/parleychat/parley"
)

type discard struct{}

func (discard) WriteMessage(websocket.MessageType, []byte) error { return nil }
func (discard) WriteClose(int, string) error                     { return nil }
func (discard) Close() error                                     { return nil }

// BenchmarkHubMessage measures one message event through the hub: decode
// the bus payload, encode the frame once, resequence, and hand it to every
// local session of the conversation (writes discarded).
func BenchmarkHubMessage(b *testing.B) {
	for _, sessions := range []int{2, 100} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			core := &fakeCore{messages: map[string][]parley.Message{}}
			h := newTestHub(b, core)
			for i := range sessions {
				s := newSession(h.g, &parley.Principal{UserID: fmt.Sprint("u", i), DeviceID: "d"})
				s.setConn(discard{})
				h.begin(s)
				h.finish(s, map[string]int64{testConv: 0})
			}
			events := make([][]byte, b.N)
			for i := range events {
				events[i] = messageEvent(b, parley.Message{ConversationID: testConv, Seq: int64(i + 1), Body: "a message of ordinary length, about sixty bytes long"})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.onEvent("", events[i])
			}
		})
	}
}
