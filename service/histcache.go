package service

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
)

// historyCache holds the newest page of history of busy conversations in
// memory, so that opening a conversation (the newest page, the most common
// history read) does not read the store. It is kept coherent by the
// events of the bus: every node applies the new messages, edits and
// deletions it hears of, its own synchronously as it publishes them (so a
// client reads its own writes), other nodes' as they arrive. An event it
// cannot apply in place (a message that is not the next seq, an edit of a
// message it does not hold) drops the entry; a fill that raced an event is
// not kept. When the bus connection drops, events may be lost, so the
// whole cache is cleared (Service.ClearHistoryCache), and an entry is read
// again after cacheMaxAge.
//
// What an entry holds is the store's newest page as of the last event; a
// read filters out what expired (TTL) or fell out of retention since, and
// if that leaves fewer messages than asked while older ones exist, it
// reads the store.
type historyCache struct {
	max  int // most conversations held
	page int // messages per conversation
	// maxBytes bounds the estimated memory of all entries (see
	// messageMemory); 0: no bound. Bodies may be 64 KiB each, so a count
	// alone (10,000 pages of 50) could hold gigabytes.
	maxBytes int64

	mu      sync.Mutex
	entries map[string]*cacheEntry
	bytes   int64 // estimated memory of entries
	// fills counts, per conversation with a fill in flight, the events
	// seen since the fill began; a fill whose count moved is discarded.
	fills map[string]*fillState

	hits, misses atomic.Int64
}

type cacheEntry struct {
	msgs     []parley.Message // ascending by seq, at most page
	complete bool             // msgs begins at the conversation's first message
	filled   time.Time        // when read from the store
	bytes    int64            // estimated memory of msgs (messageMemory)
}

// messageOverhead estimates a cached message's memory besides its body:
// the struct and its id strings.
const messageOverhead = 512

// messageMemory estimates the memory msgs hold in an entry.
func messageMemory(msgs []parley.Message) int64 {
	var n int64
	for i := range msgs {
		n += messageOverhead + int64(len(msgs[i].Body))
		if e := msgs[i].Envelope; e != nil {
			n += int64(len(e.Ciphertext) + len(e.Signature))
		}
	}
	return n
}

// put stores e under id, replacing any entry, and evicts entries at
// random until the count and byte bounds hold; an entry larger than the
// whole byte budget is not kept. Caller holds c.mu.
func (c *historyCache) put(id string, e *cacheEntry) {
	c.drop(id)
	e.bytes = messageMemory(e.msgs)
	if c.maxBytes > 0 && e.bytes > c.maxBytes {
		return
	}
	for k := range c.entries { // random order: evict at random
		if len(c.entries) < c.max && (c.maxBytes <= 0 || c.bytes+e.bytes <= c.maxBytes) {
			break
		}
		c.drop(k)
	}
	c.entries[id] = e
	c.bytes += e.bytes
}

// drop removes id's entry, if any. Caller holds c.mu.
func (c *historyCache) drop(id string) {
	if e := c.entries[id]; e != nil {
		c.bytes -= e.bytes
		delete(c.entries, id)
	}
}

// resized accounts for a change of the messages of id's entry e and
// evicts others (then e itself) while over the byte budget. Caller holds
// c.mu.
func (c *historyCache) resized(id string, e *cacheEntry) {
	n := messageMemory(e.msgs)
	c.bytes += n - e.bytes
	e.bytes = n
	if c.maxBytes <= 0 {
		return
	}
	for k := range c.entries {
		if c.bytes <= c.maxBytes {
			return
		}
		if k != id {
			c.drop(k)
		}
	}
	if c.bytes > c.maxBytes {
		c.drop(id)
	}
}

// cacheMaxAge bounds how long an entry serves without being read again:
// an event lost on the bus (a node that died between commit and publish)
// leaves an entry short of a message until then at worst.
const cacheMaxAge = 30 * time.Second

type fillState struct {
	readers int // fills in flight
	events  int // events seen since the first began
}

func newHistoryCache(maxConversations, page int) *historyCache {
	return &historyCache{max: maxConversations, page: page,
		entries: map[string]*cacheEntry{}, fills: map[string]*fillState{}}
}

// newest returns the newest limit messages visible at now (ascending),
// from the cache if it can answer, else from load (the store), whose
// answer it keeps if no event came meanwhile. retentionCutoff, if not
// zero, hides messages created before it.
func (c *historyCache) newest(ctx context.Context, conversationID string, limit int, now, retentionCutoff time.Time,
	load func(ctx context.Context, limit int) ([]parley.Message, error)) ([]parley.Message, error) {
	if limit > c.page {
		c.misses.Add(1)
		return load(ctx, limit)
	}
	c.mu.Lock()
	if e := c.entries[conversationID]; e != nil && now.Sub(e.filled) < cacheMaxAge {
		visible := make([]parley.Message, 0, len(e.msgs))
		for _, m := range e.msgs {
			if !m.ExpiresAt.IsZero() && !m.ExpiresAt.After(now) || !retentionCutoff.IsZero() && m.CreatedAt.Before(retentionCutoff) {
				continue
			}
			visible = append(visible, m)
		}
		if len(visible) >= limit || e.complete {
			c.mu.Unlock()
			c.hits.Add(1)
			return visible[max(0, len(visible)-limit):], nil
		}
	}
	f := c.fills[conversationID]
	if f == nil {
		f = &fillState{}
		c.fills[conversationID] = f
	}
	f.readers++
	seen := f.events
	c.mu.Unlock()
	c.misses.Add(1)

	// The whole page, whatever was asked, so the entry serves any limit.
	msgs, err := load(ctx, c.page)

	c.mu.Lock()
	defer c.mu.Unlock()
	f.readers--
	if f.readers == 0 {
		delete(c.fills, conversationID)
	}
	if err != nil {
		return nil, err
	}
	// Expired and purged messages are never returned by the store, so
	// the page is complete if it holds fewer than asked.
	if f.events == seen && !hasHidden(msgs, now) {
		c.put(conversationID, &cacheEntry{msgs: slices.Clone(msgs), complete: len(msgs) < c.page, filled: now})
	}
	return msgs[max(0, len(msgs)-limit):], nil
}

// hasHidden reports whether msgs holds a message with a TTL: such pages
// are not kept, since messages behind it may have been hidden from the
// store's answer for reasons the entry cannot replay. (Conversations with
// expiring messages are read from the store.)
func hasHidden(msgs []parley.Message, now time.Time) bool {
	for _, m := range msgs {
		if !m.ExpiresAt.IsZero() {
			return true
		}
	}
	return false
}

// apply updates the cache with an event of a conversation.
func (c *historyCache) apply(e *Event) {
	switch {
	case e.ConversationID == "",
		e.Kind == EventReceipt, e.Kind == EventTyping, e.Kind == EventMessageKey,
		e.Kind == EventConversation && e.Action != ActionDeleted:
		// History is unchanged: no lock, and fills in flight stay good
		// (receipts come with nearly every message).
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.fills[e.ConversationID]; f != nil {
		f.events++
	}
	entry := c.entries[e.ConversationID]
	if entry == nil {
		return
	}
	switch {
	case e.Kind == EventMessage && e.Message != nil && e.Message.ExpiresAt.IsZero():
		m := *e.Message
		m.Envelope = m.Envelope.Common() // keys are per device, not cached
		n := len(entry.msgs)
		switch {
		case n > 0 && m.Seq <= entry.msgs[n-1].Seq:
			return // had it: our own event, heard again from the bus
		case n == 0 && m.Seq == 1, n > 0 && m.Seq == entry.msgs[n-1].Seq+1:
			entry.msgs = append(entry.msgs, m)
			if len(entry.msgs) > c.page {
				entry.msgs = append(entry.msgs[:0:0], entry.msgs[len(entry.msgs)-c.page:]...)
				entry.complete = false
			}
			c.resized(e.ConversationID, entry)
			return
		}
	case e.Kind == EventMessageChanged && e.Message != nil:
		for i := range entry.msgs {
			if m := &entry.msgs[i]; m.Seq == e.Message.Seq {
				// Events of two edits may come out of order (from two
				// nodes, or our own echoed after a later one): a deletion
				// stays, and an older edit does not replace a newer one.
				if m.Deleted || !e.Message.Deleted && e.Message.EditedAt.Before(m.EditedAt) {
					return
				}
				*m = *e.Message
				m.Envelope = m.Envelope.Common()
				c.resized(e.ConversationID, entry)
				return
			}
		}
		if n := len(entry.msgs); n > 0 && e.Message.Seq < entry.msgs[0].Seq {
			return // older than the page: not ours
		}
	}
	c.drop(e.ConversationID)
}

// clear drops every entry (and makes fills in flight discard theirs).
func (c *historyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.bytes = 0
	for _, f := range c.fills {
		f.events++
	}
}
