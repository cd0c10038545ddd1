package service

import (
	"slices"
	"sync"
	"sync/atomic"
)

// The loopback: a message event this node publishes reaches this node's
// own gateway through the bus like any other (the bus orders a
// conversation's events for every node alike), but the gateway need not
// decode its JSON: at the publish the Service keeps a copy of the event
// under its encoding, and the gateway, handed those same bytes by the
// bus, takes the copy instead of json.Unmarshal (about 8% of a node's CPU
// per message at maximum load: docs/benchmarks.md, "The bus event's
// JSON"). Events from other nodes, and any the table no longer holds, are
// decoded as before, so a node behaves the same whichever way an event
// came.
//
// The copy is taken when the event is encoded and shares nothing the
// publisher or the gateway may change (the gateway sets the envelope's
// keys, say), so it is what decoding those bytes would give
// (TestLoopbackCopyIsTheDecodedEvent). That holds because what a message
// event carries already reads back unchanged from JSON: its times are
// UTC milliseconds without a monotonic reading, as the store returns
// them, and its strings valid UTF-8 (checked at the send); a new field
// that breaks either must be normalised before the publish. Only message events are kept:
// they are the bulk of the traffic, and their shape is simple to copy.
//
// The table holds at most loopbackSize events and loopbackBytes of their
// encodings (the oldest go first), and no event whose encoding is larger
// than loopbackMaxEvent: an entry the gateway never takes (the bus
// refused the publish, the seal layer dropped it) is pushed out by later
// ones, and while the gateway's queue is longer than that its events are
// decoded. An entry costs about twice its encoding (the key and the
// copy's strings), so the table holds at most about 8 MiB.

const (
	loopbackSize     = 4096
	loopbackBytes    = 4 << 20
	loopbackMaxEvent = 64 << 10
)

type loopback struct {
	mu sync.Mutex
	m  map[string]loopEntry
	// ring holds the keys in insertion order, oldest at head, "" once
	// taken; n slots are in use, bytes is the length of the keys held.
	ring  [loopbackSize]string
	head  int
	n     int
	bytes int
	on    atomic.Bool // a local gateway takes events (KeepPublished)
}

type loopEntry struct {
	e   *Event
	pos int // in ring
}

// KeepPublished(true) makes the Service keep each message event it
// publishes for TakePublished; KeepPublished(false) stops that and drops
// what it holds. The WebSocket gateway turns it on when it subscribes
// and off when it shuts down.
func (s *Service) KeepPublished(on bool) {
	l := &s.loop
	l.on.Store(on)
	if !on {
		l.mu.Lock()
		defer l.mu.Unlock()
		clear(l.m)
		clear(l.ring[:])
		l.head, l.n, l.bytes = 0, 0, 0
	}
}

// TakePublished returns the message event this node published as data,
// if it still holds it, and forgets it; nil means decode data. The
// event is the caller's to change.
func (s *Service) TakePublished(data []byte) *Event {
	l := &s.loop
	if !l.on.Load() {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	en, ok := l.m[string(data)]
	if !ok {
		return nil
	}
	l.forget(en.pos)
	return en.e
}

// forget drops the entry in ring slot pos (l.mu held).
func (l *loopback) forget(pos int) {
	key := l.ring[pos]
	delete(l.m, key)
	l.ring[pos] = ""
	l.bytes -= len(key)
}

// keep records e, just encoded as data, for TakePublished.
func (l *loopback) keep(data []byte, e *Event) {
	if !l.on.Load() || e.Kind != EventMessage || len(data) > loopbackMaxEvent {
		return
	}
	c := loopCopy(e)
	if c == nil {
		return
	}
	key := string(data)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]loopEntry)
	}
	if prev, ok := l.m[key]; ok { // the same bytes published again
		l.forget(prev.pos)
	}
	for l.n == loopbackSize || l.n > 0 && l.bytes+len(key) > loopbackBytes {
		if l.ring[l.head] != "" {
			l.forget(l.head)
		}
		l.head = (l.head + 1) % loopbackSize
		l.n--
	}
	pos := (l.head + l.n) % loopbackSize
	l.ring[pos] = key
	l.n++
	l.bytes += len(key)
	l.m[key] = loopEntry{e: c, pos: pos}
}

// loopCopy returns a copy of a message event that shares no memory a
// holder may write with e, equal to what decoding e's JSON gives; nil
// for an event it does not know how to copy (decode those).
func loopCopy(e *Event) *Event {
	if e.Conversation != nil || len(e.Members) > 0 {
		return nil
	}
	c := *e
	c.Keys = cloneList(e.Keys)
	c.Users = cloneList(e.Users)
	c.Conversations = cloneList(e.Conversations)
	c.Hide = cloneList(e.Hide)
	c.Members = nil
	if e.Message != nil {
		m := *e.Message
		m.Attachments = cloneList(m.Attachments)
		for i := range m.Attachments {
			if t := m.Attachments[i].Thumbnail; t != nil {
				tc := *t
				m.Attachments[i].Thumbnail = &tc
			}
		}
		if m.Envelope != nil {
			env := *m.Envelope
			env.Keys = nil // never encoded: the gateway sets it from Keys
			if env.Key != nil {
				k := *env.Key
				env.Key = &k
			}
			m.Envelope = &env
		}
		c.Message = &m
	}
	return &c
}

// cloneList copies s; an empty list becomes nil, as omitempty and
// decoding make it.
func cloneList[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}
