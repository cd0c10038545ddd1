package wsgate

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
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

// BenchmarkHubEncryptedMessage is BenchmarkHubMessage for an end-to-end
// encrypted message with a key for every one of the sessions' devices
// (one device each): the bus payload carries every key, and each device
// gets the keyless frame with its own key spliced in.
func BenchmarkHubEncryptedMessage(b *testing.B) {
	for _, sessions := range []int{2, 100} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			core := &fakeCore{messages: map[string][]parley.Message{}}
			h := newTestHub(b, core)
			var keys []parley.EnvelopeKey
			for i := range sessions {
				device := parley.NewID()
				s := newSession(h.g, &parley.Principal{UserID: fmt.Sprint("u", i), DeviceID: device})
				s.setConn(discard{})
				h.begin(s)
				h.finish(s, map[string]int64{testConv: 0})
				keys = append(keys, parley.EnvelopeKey{DeviceID: device, KeyID: 1, Enc: parley.B64.EncodeToString(make([]byte, 32)), Sealed: parley.B64.EncodeToString(make([]byte, 48))})
			}
			ct := parley.B64.EncodeToString(make([]byte, 60+parley.CiphertextOverhead)) // the sixty-byte message above
			events := make([][]byte, b.N)
			for i := range events {
				m := parley.Message{ConversationID: testConv, Seq: int64(i + 1), Type: parley.MessageEncrypted,
					Envelope: &parley.Envelope{V: 1, Suite: parley.SuiteX25519, Ciphertext: ct, Signature: parley.B64.EncodeToString(make([]byte, 64))}}
				data, err := json.Marshal(service.Event{Kind: service.EventMessage, ConversationID: testConv, Message: &m, Keys: keys})
				if err != nil {
					b.Fatal(err)
				}
				events[i] = data
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.onEvent("", events[i])
			}
		})
	}
}

// sockConn writes to a loopback TCP socket whose other end is drained:
// WriteMessage frames with nbio's framing and writes once per frame, as
// nbio does on the poller; raw takes held frames in one write.
type sockConn struct {
	g       *Gateway
	mu      sync.Mutex
	scratch []byte
	c       net.Conn
}

func (s *sockConn) WriteMessage(_ websocket.MessageType, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scratch = s.g.appendFrame(s.scratch[:0], data)
	_, err := s.c.Write(s.scratch)
	return err
}
func (s *sockConn) WriteClose(int, string) error { return nil }
func (s *sockConn) Close() error                 { return nil }
func (s *sockConn) raw() io.Writer               { return s.c }

// BenchmarkHubBurst measures message events through the hub to sessions
// on real loopback sockets (the write(2) is most of the cost), in bursts
// of 1 (every event alone: one write per frame, as before coalescing)
// and of 16 (the bus says more events wait: one write per session per
// burst). Per op: one event; ns/delivery is per event and session. With
// 1,000 sessions (a large group, past fanOutMin) the writes leave the
// hub's lock and are spread over GOMAXPROCS goroutines.
func BenchmarkHubBurst(b *testing.B) {
	for _, sessions := range []int{2, 10, 1000} {
		for _, burst := range []int{1, 16} {
			b.Run(fmt.Sprintf("sessions=%d/burst=%d", sessions, burst), func(b *testing.B) {
				h := newCoalesceHub(b)
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				var wg sync.WaitGroup
				for i := range sessions {
					c, err := net.Dial("tcp", ln.Addr().String())
					if err != nil {
						b.Fatal(err)
					}
					peer, err := ln.Accept()
					if err != nil {
						b.Fatal(err)
					}
					wg.Add(1)
					go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, peer) }()
					defer c.Close()
					s := newSession(h.g, &parley.Principal{UserID: fmt.Sprint("u", i), DeviceID: "d"})
					s.setConn(&sockConn{g: h.g, c: c})
					h.begin(s)
					h.finish(s, map[string]int64{testConv: 0})
				}
				events := make([][]byte, b.N)
				for i := range events {
					events[i] = messageEvent(b, parley.Message{ConversationID: testConv, Seq: int64(i + 1), Body: "a message of ordinary length, about sixty bytes long"})
				}
				handle := h.batchHandler(&lagWatch{g: h.g})
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					handle("", events[i], (i+1)%burst != 0 && i+1 < b.N)
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sessions), "ns/delivery")
				for _, u := range h.users {
					for _, s := range u.sessions {
						_ = s.c().(*sockConn).c.Close()
					}
				}
				wg.Wait()
			})
		}
	}
}
