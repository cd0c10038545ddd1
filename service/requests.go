package service

import (
	"context"

	"github.com/parleychat/parley"
)

// Message requests (docs/protocol.md, section 16). A user put into a
// conversation (a direct one, or added to a group) by someone they share
// no accepted conversation with joins it as a request (parley.Member
// Request): they get its messages, but until they accept, none of their
// presence, typing or receipts reach the other members (who see their
// watermarks as 0), and push says "Message request" without content.
// Accepting (or sending a message) makes it an ordinary membership;
// declining leaves it (a direct one too), optionally blocking.

// ActionAccepted is the conversation event of a member accepting a
// request (Users names the member).
const ActionAccepted = "accepted"

// requestsFor marks as requests the members among others who are
// strangers to the caller (with MessageRequests), after charging them to
// the caller's stranger limit (CodeRateLimited past it; nothing is
// charged then).
func (s *Service) requestsFor(ctx context.Context, p *parley.Principal, members []parley.Member) error {
	ids := make([]string, 0, len(members))
	for _, m := range members {
		if m.UserID != p.UserID {
			ids = append(ids, m.UserID)
		}
	}
	if !s.cfg.MessageRequests && s.strangers == nil {
		return nil
	}
	strangers, err := s.store.Strangers(ctx, p.UserID, ids)
	if err != nil {
		return err
	}
	if err := s.allowStrangers(p.UserID, len(strangers)); err != nil {
		return err
	}
	if !s.cfg.MessageRequests {
		return nil
	}
	set := make(map[string]bool, len(strangers))
	for _, id := range strangers {
		set[id] = true
	}
	for i := range members {
		members[i].Request = set[members[i].UserID]
	}
	return nil
}

// AcceptConversation accepts the caller's message request in a
// conversation; accepting one accepted already changes nothing. Every
// member learns it with a conversation event (action "accepted").
func (s *Service) AcceptConversation(ctx context.Context, p *parley.Principal, conversationID string) (*parley.ConversationView, error) {
	if _, err := s.member(ctx, p, conversationID); err != nil {
		return nil, err
	}
	if err := s.accept(ctx, p, conversationID); err != nil {
		return nil, err
	}
	return s.Conversation(ctx, p, conversationID)
}

func (s *Service) accept(ctx context.Context, p *parley.Principal, conversationID string) error {
	defer s.exclusive(conversationID)()
	changed, err := s.store.AcceptConversation(ctx, conversationID, p.UserID)
	if err != nil || !changed {
		return err
	}
	c, err := s.store.Conversation(ctx, conversationID)
	if err != nil {
		return err
	}
	s.publishConversation(ctx, &Event{Kind: EventConversation, ConversationID: conversationID, Action: ActionAccepted, Conversation: c, UserID: p.UserID, Users: []string{p.UserID}})
	return nil
}

// DeclineConversation declines the caller's message request: the caller
// leaves the conversation (a direct one too: the other member may ask
// again, as a new request) and, with block, blocks the other member of a
// direct conversation or the owner of a group. CodeConflict if the
// membership is not a request.
func (s *Service) DeclineConversation(ctx context.Context, p *parley.Principal, conversationID string, block bool) error {
	me, err := s.member(ctx, p, conversationID)
	if err != nil {
		return err
	}
	if !me.Request {
		return parley.Errorf(parley.CodeConflict, "the conversation is not a message request; leave it instead")
	}
	var before *parley.Conversation
	var blockID string
	release := s.exclusive(conversationID)
	after, err := s.changeMembers(ctx, p, conversationID, func(c *parley.Conversation, me *parley.Member) (parley.MemberChange, error) {
		before, blockID = c, ""
		if !me.Request {
			return parley.MemberChange{}, parley.Errorf(parley.CodeConflict, "the conversation is not a message request; leave it instead")
		}
		for _, m := range c.Members {
			if m.UserID != p.UserID && (c.Kind == parley.KindDirect || m.Role == parley.MemberRoleOwner) {
				blockID = m.UserID
			}
		}
		if len(c.Members) == 1 {
			return parley.MemberChange{Delete: true}, nil
		}
		return parley.MemberChange{Remove: []string{p.UserID}}, nil
	})
	switch {
	case err != nil:
	case after == nil:
		s.publishConversation(ctx, &Event{Kind: EventConversation, ConversationID: conversationID, Action: ActionDeleted, UserID: p.UserID, Users: memberIDs(before)})
	default:
		s.publishConversation(ctx, &Event{Kind: EventConversation, ConversationID: conversationID, Action: ActionMemberRemoved, Conversation: after, UserID: p.UserID, Users: []string{p.UserID}})
	}
	release()
	if err != nil || !block || blockID == "" {
		return err
	}
	return s.Block(ctx, p, blockID)
}

// rejoinDirect puts back into an existing direct conversation whichever
// of the pair left it (by declining a request): the caller as an
// ordinary member, the other as a request if a stranger. If the other
// blocks the caller (blocked), the other comes back as a request that is
// never announced to them, as a new direct conversation would.
func (s *Service) rejoinDirect(ctx context.Context, p *parley.Principal, conv *parley.Conversation, otherID string, blocked bool) (*parley.Conversation, error) {
	var add []parley.Member
	now := s.cfg.Now().UTC()
	if conv.MemberOf(p.UserID) == nil {
		add = append(add, parley.Member{UserID: p.UserID, Role: parley.MemberRoleMember, JoinedAt: now})
	}
	if conv.MemberOf(otherID) == nil {
		add = append(add, parley.Member{UserID: otherID, Role: parley.MemberRoleMember, JoinedAt: now})
	}
	if len(add) == 0 {
		return conv, nil
	}
	if err := s.requestsFor(ctx, p, add); err != nil {
		return nil, err
	}
	var hide []string
	if blocked {
		hide = []string{otherID}
		for i := range add {
			if add[i].UserID == otherID {
				add[i].Request = true
			}
		}
	}
	defer s.exclusive(conv.ID)()
	after, err := s.store.ChangeMembers(ctx, conv.ID, func(c *parley.Conversation) (parley.MemberChange, error) {
		var ch parley.MemberChange
		for _, m := range add {
			if c.MemberOf(m.UserID) == nil {
				m.ReadSeq = c.LastSeq
				ch.Add = append(ch.Add, m)
			}
		}
		return ch, nil
	})
	if err != nil {
		return nil, err
	}
	users := make([]string, len(add))
	for i, m := range add {
		users[i] = m.UserID
	}
	s.publishConversation(ctx, &Event{Kind: EventConversation, ConversationID: conv.ID, Action: ActionMemberAdded, Conversation: after, UserID: p.UserID, Users: users, Hide: hide})
	return after, nil
}

// allowStrangers charges n strangers to userID's limit: one token each,
// all or none.
func (s *Service) allowStrangers(userID string, n int) error {
	if s.strangers == nil || n == 0 {
		return nil
	}
	now := s.cfg.Now()
	var cancels []func()
	for range n {
		ok, retry, cancel := s.strangers.Reserve(userID, now)
		if !ok {
			for _, c := range cancels {
				c()
			}
			return &RetryError{Err: parley.Errorf(parley.CodeRateLimited, "you are adding too many people you have no conversation with; retry in %d s", RetryAfterSeconds(retry)), RetryAfter: retry}
		}
		cancels = append(cancels, cancel)
	}
	return nil
}
