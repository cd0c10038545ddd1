package service

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
)

// relationsCache keeps in memory what Store.Relations answers for a user
// in a conversation (whom of its members the user blocks and is blocked
// by, the conversation's kind if any is listed, whether the user's
// membership is a pending request), so that a send, a receipt or a typing
// event does not read the store for it. Issue 15 measured that read at
// 15.5% of the server's CPU at a fixed 1,000 msgs/s on SQLite: it runs on
// a read connection whose page cache every commit empties.
//
// What may change an answer, and how the cache learns it:
//
//   - a block or unblock between two users changes the answers of both,
//     in every conversation: Service.setBlock marks both users as changing
//     for the length of its store write (their lookups read the store and
//     are not kept), then invalidates them; other nodes invalidate them when
//     the block event reaches them (EventBlock, which names both);
//   - a membership change (created, added, removed, accepted, role,
//     deleted) changes the answers in its conversation: every one on this
//     node holds Service.exclusive, which marks the conversation as changing
//     the same way; other nodes drop the conversation's entries when its
//     conversation event reaches them.
//
// The guarantee. On one node it is the same as reading the store: a
// lookup that begins after a block (or membership change) has committed
// sees it, because from before the write until after the invalidation
// that user's (or conversation's) lookups go to the store and fills that
// began before or during the change are not kept. So a send whose check
// comes after the block committed is withheld; a send whose check came
// before is a send just before the block, exactly as with the read before
// the append (the block records the conversation's last_seq when it
// commits, and only later seqs count as after it). Across nodes, a block
// made on another node takes effect here when its event arrives: normally
// within a millisecond or so of the commit, the same path and time by
// which the blocker's other devices learn of it and by which this node
// delivers the blocker's messages. A send checked on this node within that
// window is treated as sent just before the block. An event lost on the
// bus (a node dying between commit and publish) is made good within
// relCacheMaxAge, when every entry is read again, and at once when the
// bus connection drops (Service.ClearHistoryCache clears this cache too);
// a client that retries a block it got no answer for publishes it again.
// Unblocking is the mirror image: until its event arrives another node may
// still withhold, the safe direction.
//
// Bounded: at most relCacheEntries answers, evicted a conversation at a
// time at random when full; answers listing more than relCacheMaxListed
// users are not kept (read each time). The zero value is ready to use.
type relationsCache struct {
	mu sync.Mutex
	// convs holds the answers by conversation, then user. Entries are
	// read-only once stored: callers share them.
	convs   map[string]map[string]*relEntry
	entries int // answers in convs
	// epoch counts invalidations. A fill is kept only if no invalidation
	// came between its lookup and its answer (see put).
	epoch uint64
	// blockedAt maps a user named by a block or unblock to the epoch of
	// its invalidation: that user's answers filled before it are stale.
	// Bounded by relCacheBlockedUsers (then everything starts over).
	blockedAt map[string]uint64
	// changingUsers and changingConvs count the changes in flight on this
	// node (see changing): lookups for them read the store.
	changingUsers map[string]int
	changingConvs map[string]int

	hits, misses atomic.Int64
}

type relEntry struct {
	r     *parley.Relations
	epoch uint64    // the cache's epoch when the fill's lookup missed
	at    time.Time // when it was filled
}

const (
	// relCacheEntries bounds the answers held: at about 300 bytes each
	// (an answer listing nobody: its two empty maps, the entry, the ids
	// and the map slots; 291 measured with runtime.MemStats for
	// direct conversations), 65,536 hold some 19 MiB; answers listing up to
	// relCacheMaxListed users cost a few hundred bytes more each.
	relCacheEntries = 1 << 16
	// relCacheMaxListed: answers listing more users than this (a user
	// who blocks or is blocked by many members of one group) are not
	// kept.
	relCacheMaxListed = 4
	// relCacheBlockedUsers bounds blockedAt, the users named by blocks
	// since the cache last started over; blocks are rare, and starting
	// over costs one store read per answer.
	relCacheBlockedUsers = 1 << 12
	// relCacheMaxAge bounds how long an answer serves without being read
	// again: a block whose event was lost takes effect on other nodes
	// within it at worst.
	relCacheMaxAge = 10 * time.Second
)

// noFill is the fill token of a lookup whose answer must not be kept.
const noFill = ^uint64(0)

// get returns the cached answer for userID in conversationID, or, on a
// miss, the token to pass to put with the store's answer.
func (c *relationsCache) get(userID, conversationID string, now time.Time) (r *parley.Relations, token uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changingUsers[userID] > 0 || c.changingConvs[conversationID] > 0 {
		c.misses.Add(1)
		return nil, noFill
	}
	if e := c.convs[conversationID][userID]; e != nil && e.epoch >= c.blockedAt[userID] && now.Sub(e.at) < relCacheMaxAge {
		c.hits.Add(1)
		return e.r, 0
	}
	c.misses.Add(1)
	return nil, c.epoch
}

// put keeps r, the store's answer for userID in conversationID read
// after the lookup that returned token, unless something was invalidated
// since (the answer may predate it) or r lists too many users.
func (c *relationsCache) put(userID, conversationID string, r *parley.Relations, token uint64, now time.Time) {
	if token == noFill || len(r.Blocks)+len(r.BlockedBy) > relCacheMaxListed {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if token != c.epoch {
		return
	}
	users := c.convs[conversationID]
	if _, ok := users[userID]; !ok {
		c.evict() // may evict this conversation too
		users = c.convs[conversationID]
	}
	if users == nil {
		if c.convs == nil {
			c.convs = make(map[string]map[string]*relEntry)
		}
		users = make(map[string]*relEntry, 2)
		// Keys are cloned: a caller's id may be part of a larger string
		// that the cache would otherwise keep alive.
		c.convs[strings.Clone(conversationID)] = users
	}
	if _, ok := users[userID]; !ok {
		c.entries++
		userID = strings.Clone(userID)
	}
	users[userID] = &relEntry{r: r, epoch: token, at: now}
}

// evict drops conversations at random until there is room for one more
// answer. Caller holds c.mu.
func (c *relationsCache) evict() {
	for id, users := range c.convs {
		if c.entries < relCacheEntries {
			return
		}
		c.entries -= len(users)
		delete(c.convs, id)
	}
}

// changing marks the users and the conversation (either may be empty) as
// changing on this node until the returned func is called, which then
// invalidates them: call it once the change has committed or failed.
// Lookups for them meanwhile read the store and are not kept, and so are
// fills in flight when it starts or ends.
func (c *relationsCache) changing(userIDs []string, conversationID string) (done func()) {
	c.mu.Lock()
	c.epoch++
	if c.changingUsers == nil {
		c.changingUsers, c.changingConvs = make(map[string]int), make(map[string]int)
	}
	for _, id := range userIDs {
		c.changingUsers[id]++
	}
	if conversationID != "" {
		c.changingConvs[conversationID]++
	}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, id := range userIDs {
			if c.changingUsers[id]--; c.changingUsers[id] <= 0 {
				delete(c.changingUsers, id)
			}
		}
		if conversationID != "" {
			if c.changingConvs[conversationID]--; c.changingConvs[conversationID] <= 0 {
				delete(c.changingConvs, conversationID)
			}
		}
		c.invalidate(userIDs, conversationID)
	}
}

// observe invalidates what an event says changed: a block names two
// users, a conversation event one conversation.
func (c *relationsCache) observe(e *Event) {
	switch e.Kind {
	case EventBlock:
		users := append([]string{e.UserID}, e.Users...)
		c.mu.Lock()
		c.invalidate(users, "")
		c.mu.Unlock()
	case EventConversation:
		c.mu.Lock()
		c.invalidate(nil, e.ConversationID)
		c.mu.Unlock()
	}
}

// invalidate makes the answers of userIDs (everywhere) and of
// conversationID (for everyone) stale, and fills in flight not kept.
// Caller holds c.mu.
func (c *relationsCache) invalidate(userIDs []string, conversationID string) {
	c.epoch++
	if len(userIDs) > 0 {
		if len(c.blockedAt)+len(userIDs) > relCacheBlockedUsers {
			c.startOver()
		}
		if c.blockedAt == nil {
			c.blockedAt = make(map[string]uint64)
		}
		for _, id := range userIDs {
			c.blockedAt[id] = c.epoch
		}
	}
	if users, ok := c.convs[conversationID]; ok {
		c.entries -= len(users)
		delete(c.convs, conversationID)
	}
}

// startOver drops every answer. Caller holds c.mu.
func (c *relationsCache) startOver() {
	c.epoch++
	c.convs, c.entries = nil, 0
	c.blockedAt = make(map[string]uint64)
}

// clear drops every answer (events may have been missed).
func (c *relationsCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.startOver()
}

// conversationRelations is Store.Relations for a user in a conversation,
// from the cache when it can answer. The answer may be shared: callers
// must not change it.
func (s *Service) conversationRelations(ctx context.Context, userID, conversationID string) (*parley.Relations, error) {
	now := time.Now()
	r, token := s.rel.get(userID, conversationID, now)
	if r != nil {
		return r, nil
	}
	r, err := s.store.Relations(ctx, userID, conversationID)
	if err != nil {
		return nil, err
	}
	s.rel.put(userID, conversationID, r, token, now)
	return r, nil
}

// RelationsCacheStats returns the relations cache's hits and misses so
// far.
func (s *Service) RelationsCacheStats() (hits, misses int64) {
	return s.rel.hits.Load(), s.rel.misses.Load()
}
