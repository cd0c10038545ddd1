package service

import (
	"context"
	"sync"
	"time"

	"github.com/parleychat/parley"
)

// Big groups (docs/protocol.md, "Big groups: paged members"). A
// conversation with more members than Config.MaxInlineMembers is paged:
// the objects the core presents carry MemberCount, the viewer's own
// entry (Me) and a receipts summary instead of every member, and events
// about it carry the members a change is about. In a paged conversation
// a member's receipts go only to the member's own devices, and presence
// does not flow through it, so that a message to it costs one frame per
// connected member and nothing more per member.

// isPaged reports whether a conversation has more members than the
// inline limit.
func (s *Service) isPaged(n int) bool { return n > s.cfg.MaxInlineMembers }

// shape puts c, as the viewer is to see it (privacy rules applied to its
// members), into its presented form: MemberCount set, and if it is
// paged, Me and Receipts in place of Members. c.Members must be every
// member.
func (s *Service) shape(viewerID string, c *parley.Conversation) {
	c.MemberCount = len(c.Members)
	s.paged.note(c.ID, s.isPaged(c.MemberCount))
	if !s.isPaged(c.MemberCount) {
		return
	}
	if me := c.MemberOf(viewerID); me != nil {
		m := *me
		c.Me = &m
	}
	c.Receipts = parley.SummarizeReceipts(c.LastSeq, c.Members)
	c.Members, c.MembersPaged = nil, true
}

// shapeEvent puts the conversation of a conversation event into the form
// every member gets alike: MemberCount set and, if it is paged, no
// member list but the entries of the users the change is about who are
// still members, in e.Members. e.Conversation is replaced, not changed.
func (s *Service) shapeEvent(e *Event) {
	if e.Conversation == nil {
		return
	}
	c := *e.Conversation
	c.MemberCount = len(c.Members)
	if s.isPaged(c.MemberCount) {
		if e.Action != ActionCreated { // created: every member is new
			for _, id := range e.Users {
				if m := c.MemberOf(id); m != nil {
					e.Members = append(e.Members, *m)
				}
			}
		}
		c.Members, c.MembersPaged = nil, true
	}
	e.Conversation = &c
}

// conversationPaged reports whether a conversation is paged, from the
// cache or with a count bounded by the inline limit (a conversation
// that does not exist is not paged).
func (s *Service) conversationPaged(ctx context.Context, conversationID string) (bool, error) {
	if paged, ok := s.paged.get(conversationID); ok {
		return paged, nil
	}
	n, err := s.store.MemberCount(ctx, conversationID, s.cfg.MaxInlineMembers)
	if err != nil {
		return false, err
	}
	paged := s.isPaged(n)
	s.paged.note(conversationID, paged)
	return paged, nil
}

// Members returns a page of a conversation's members, by user id, with
// its member count, watermarks as the caller may see them.
// CodeConversationNotFound unless the caller is a member;
// CodeInvalidRequest for a bad query.
func (s *Service) Members(ctx context.Context, p *parley.Principal, conversationID string, q parley.MembersQuery) ([]parley.Member, int, error) {
	if _, err := s.member(ctx, p, conversationID); err != nil {
		return nil, 0, err
	}
	members, count, err := s.store.Members(ctx, conversationID, q)
	if err != nil {
		return nil, 0, err
	}
	rv, err := s.newReceiptsView(ctx, p.UserID)
	if err != nil {
		return nil, 0, err
	}
	// Kind is set when a block is listed: a direct conversation's
	// watermarks of a member who blocks the caller are clamped, as in
	// every other view.
	r, err := s.relations(ctx, p.UserID, conversationID)
	if err != nil {
		return nil, 0, err
	}
	c := parley.Conversation{ID: conversationID, Kind: r.Kind, Members: members}
	rv.apply(&c)
	clampBlocked(r, &c)
	return c.Members, count, nil
}

// pagedCache remembers, per conversation, whether it is paged, for
// pagedTTL: the receipt path asks per event. Conversation
// events (from this node or the bus) update it; an entry missed with a
// lost event is right again within pagedTTL. Bounded: when full, it
// starts over. The zero value is ready to use.
type pagedCache struct {
	mu sync.Mutex
	m  map[string]pagedEntry
}

type pagedEntry struct {
	paged bool
	at    time.Time
}

const (
	pagedTTL     = time.Minute
	pagedEntries = 1 << 16
)

func (c *pagedCache) get(id string) (paged, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || time.Since(e.at) > pagedTTL {
		return false, false
	}
	return e.paged, true
}

func (c *pagedCache) note(id string, paged bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= pagedEntries {
		c.m = make(map[string]pagedEntry)
	}
	c.m[id] = pagedEntry{paged: paged, at: time.Now()}
}

func (c *pagedCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}
