package service

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// richMessageEvent sets every field a message event can carry.
func richMessageEvent() *Event {
	at := time.UnixMilli(1_800_000_000_123).UTC()
	return &Event{
		Kind: EventMessage, ConversationID: "c1", UserID: "u1", DeviceID: "d1",
		Message: &parley.Message{
			ID: "m1", ConversationID: "c1", Seq: 7, SenderID: "u1", SenderDeviceID: "d1", ClientMsgID: "cm1",
			Type: parley.MessageEncrypted, CreatedAt: at, ExpiresAt: at.Add(time.Hour), EditedAt: at.Add(time.Minute),
			Deleted: true, Withheld: true,
			Attachments: []parley.Attachment{{MediaID: "md1", ContentType: "image/png", Size: 10, SHA256: "ab", Filename: "a.png",
				Width: 3, Height: 4, DurationMS: 5, Thumbnail: &parley.Thumbnail{Width: 1, Height: 2}, Blurhash: "LE", Encrypted: true}},
			Envelope: &parley.Envelope{V: 1, Suite: "s", Ciphertext: "ct", Signature: "sig",
				Key:  &parley.EnvelopeKey{DeviceID: "d2", KeyID: 9, Enc: "e", Sealed: "s"},
				Keys: []parley.EnvelopeKey{{DeviceID: "d2", KeyID: 9, Enc: "e", Sealed: "s"}, {DeviceID: "d3", KeyID: 1, Enc: "f", Sealed: "t"}}},
		},
		Keys:  []parley.EnvelopeKey{{DeviceID: "d2", KeyID: 9, Enc: "e", Sealed: "s"}, {DeviceID: "d3", KeyID: 1, Enc: "f", Sealed: "t"}},
		Seq:   7,
		Users: []string{"u2"}, Conversations: []string{"c1"}, Hide: []string{"u9"}, Private: true,
		Receipt: "read", State: "start", Action: "a", LastSeen: at,
	}
}

// TestLoopbackCopyIsTheDecodedEvent: the copy the loopback hands over is
// what decoding the event's encoding gives, field for field, and shares
// nothing the gateway may write with the publisher's event. If a field
// is added to Event or parley.Message that the copy gets wrong (a
// pointer, a json:"-" field), this fails.
func TestLoopbackCopyIsTheDecodedEvent(t *testing.T) {
	for name, e := range map[string]*Event{
		"rich":  richMessageEvent(),
		"plain": {Kind: EventMessage, ConversationID: "c1", Message: &parley.Message{ID: "m", Seq: 1, Body: "hi", CreatedAt: time.UnixMilli(1).UTC()}},
		"empty lists": {Kind: EventMessage, ConversationID: "c1", Keys: []parley.EnvelopeKey{}, Hide: []string{},
			Message: &parley.Message{ID: "m", Attachments: []parley.Attachment{}}},
	} {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var dec Event
		if err := json.Unmarshal(data, &dec); err != nil {
			t.Fatal(err)
		}
		c := loopCopy(e)
		if !reflect.DeepEqual(c, &dec) {
			t.Fatalf("%s: copy\n%+v\ndecoded\n%+v", name, c, &dec)
		}
		before := fmt.Sprintf("%+v %+v", *e, *e.Message)
		// Write everything the copy holds by reference.
		c.Message.Body, c.Message.Seq = "changed", 99
		for i := range c.Keys {
			c.Keys[i].Enc = "changed"
		}
		for i := range c.Hide {
			c.Hide[i] = "changed"
		}
		for i := range c.Message.Attachments {
			c.Message.Attachments[i].MediaID = "changed"
			if th := c.Message.Attachments[i].Thumbnail; th != nil {
				th.Width = 99
			}
		}
		if env := c.Message.Envelope; env != nil {
			env.Ciphertext, env.Key.Enc = "changed", "changed"
			env.Keys = c.Keys
		}
		if after := fmt.Sprintf("%+v %+v", *e, *e.Message); after != before {
			t.Fatalf("%s: writing the copy changed the event:\n%s\n%s", name, before, after)
		}
		if env := e.Message.Envelope; env != nil && (env.Key.Enc != "e" || len(env.Keys) != 2 || env.Keys[0].Enc != "e") {
			t.Fatalf("%s: the envelope changed: %+v", name, env)
		}
		if th := e.Message.Attachments; len(th) > 0 && th[0].Thumbnail.Width != 1 {
			t.Fatalf("%s: the thumbnail changed", name)
		}
	}
	// Events it does not copy are decoded.
	if loopCopy(&Event{Kind: EventMessage, Conversation: &parley.Conversation{ID: "c"}}) != nil {
		t.Fatal("an event with a conversation was copied")
	}
}

// TestLoopbackTable: only message events, only once a gateway takes
// them, each taken once; the table forgets its oldest past loopbackSize.
func TestLoopbackTable(t *testing.T) {
	s := &Service{}
	msg := func(i int) (*Event, []byte) {
		e := &Event{Kind: EventMessage, ConversationID: "c", Message: &parley.Message{ID: fmt.Sprint("m", i), Seq: int64(i)}}
		data, _ := json.Marshal(e)
		return e, data
	}
	e, data := msg(1)
	s.loop.keep(data, e)
	if s.TakePublished(data) != nil {
		t.Fatal("kept before KeepPublished")
	}
	s.KeepPublished(true)
	s.loop.keep(data, e)
	got := s.TakePublished(data)
	if got == nil || got == e || got.Message.ID != "m1" {
		t.Fatalf("took %+v, want a copy of m1", got)
	}
	if s.TakePublished(data) != nil {
		t.Fatal("taken twice")
	}
	typing := &Event{Kind: EventTyping, ConversationID: "c", UserID: "u", State: "start"}
	tdata, _ := json.Marshal(typing)
	s.loop.keep(tdata, typing)
	if s.TakePublished(tdata) != nil {
		t.Fatal("a typing event was kept")
	}
	// The same bytes twice: one entry, taken once.
	s.loop.keep(data, e)
	s.loop.keep(data, e)
	if s.TakePublished(data) == nil || s.TakePublished(data) != nil {
		t.Fatal("the same bytes twice: want one take")
	}
	// loopbackSize+1 kept: the first is gone, the others are there.
	var all [][]byte
	for i := range loopbackSize + 1 {
		e, d := msg(10 + i)
		s.loop.keep(d, e)
		all = append(all, d)
	}
	if len(s.loop.m) != loopbackSize {
		t.Fatalf("%d held, want %d", len(s.loop.m), loopbackSize)
	}
	if s.TakePublished(all[0]) != nil {
		t.Fatal("the oldest was kept past the bound")
	}
	for i, d := range all[1:] {
		if got := s.TakePublished(d); got == nil || got.Message.Seq != int64(11+i) {
			t.Fatalf("entry %d: %+v", i+1, got)
		}
	}
	if len(s.loop.m) != 0 || s.loop.bytes != 0 {
		t.Fatalf("%d left (%d bytes) after every take", len(s.loop.m), s.loop.bytes)
	}
	// Large events: at most loopbackBytes of them, the oldest go first;
	// one larger than loopbackMaxEvent is not kept.
	big := func(i, size int) (*Event, []byte) {
		e := &Event{Kind: EventMessage, ConversationID: "c", Message: &parley.Message{Seq: int64(i), Body: strings.Repeat("x", size)}}
		data, _ := json.Marshal(e)
		return e, data
	}
	e, data = big(0, loopbackMaxEvent)
	s.loop.keep(data, e)
	if s.TakePublished(data) != nil {
		t.Fatal("an event over loopbackMaxEvent was kept")
	}
	all = nil
	for i := range 2 * loopbackBytes / (60 << 10) {
		e, d := big(i, 60<<10)
		s.loop.keep(d, e)
		all = append(all, d)
	}
	if s.loop.bytes > loopbackBytes || len(s.loop.m) < loopbackBytes/(61<<10) {
		t.Fatalf("%d events, %d bytes held; want at most %d bytes, nearly full", len(s.loop.m), s.loop.bytes, loopbackBytes)
	}
	if s.TakePublished(all[0]) != nil || s.TakePublished(all[len(all)-1]) == nil {
		t.Fatal("want the oldest gone and the newest held")
	}
	// Turned off (the gateway shut down): what it holds is dropped and
	// nothing more is kept.
	s.KeepPublished(false)
	if len(s.loop.m) != 0 || s.loop.bytes != 0 || s.loop.n != 0 {
		t.Fatalf("off: %d held, %d bytes, %d slots", len(s.loop.m), s.loop.bytes, s.loop.n)
	}
	e, data = msg(1)
	s.loop.keep(data, e)
	if len(s.loop.m) != 0 {
		t.Fatal("kept while off")
	}
}

// benchEvent is a message event as a send publishes it.
func benchEvent() *Event {
	at := time.UnixMilli(1_800_000_000_123).UTC()
	return &Event{Kind: EventMessage, ConversationID: parley.NewID(), UserID: parley.NewID(), DeviceID: parley.NewID(),
		Message: &parley.Message{ID: parley.NewID(), ConversationID: parley.NewID(), Seq: 12345, SenderID: parley.NewID(),
			SenderDeviceID: parley.NewID(), ClientMsgID: parley.NewID(), Type: parley.MessageText,
			Body: "a message of ordinary length, about sixty bytes long", CreatedAt: at}}
}

// BenchmarkBusEventDecode is what the gateway pays for an event it
// decodes: json.Unmarshal of a message event.
func BenchmarkBusEventDecode(b *testing.B) {
	data, _ := json.Marshal(benchEvent())
	b.ReportAllocs()
	for range b.N {
		var e Event
		if err := json.Unmarshal(data, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBusEventLoopback is what the publisher and the gateway pay
// instead for an event of their own node: keep and TakePublished.
func BenchmarkBusEventLoopback(b *testing.B) {
	s := &Service{}
	s.KeepPublished(true)
	e := benchEvent()
	data, _ := json.Marshal(e)
	b.ReportAllocs()
	for range b.N {
		s.loop.keep(data, e)
		if s.TakePublished(data) == nil {
			b.Fatal("not kept")
		}
	}
}
