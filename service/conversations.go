package service

import (
	"context"

	"github.com/parleychat/parley"
)

// CreateConversationRequest is the input of CreateConversation. Members
// lists the other users; the caller is always a member (the owner of a
// group).
type CreateConversationRequest struct {
	Kind    parley.ConversationKind
	Title   string
	Members []string
	// E2EE makes the conversation end-to-end encrypted, for good (see
	// docs/design/e2ee.md); at most Config.MaxE2EEMembers members.
	E2EE bool
}

// CreateConversation creates a direct conversation (exactly one other
// member; if the pair already has one, that one is returned with
// created=false) or a group (the caller is owner, the others members).
func (s *Service) CreateConversation(ctx context.Context, p *parley.Principal, req CreateConversationRequest) (*parley.Conversation, bool, error) {
	title, err := parley.CleanText("title", req.Title, parley.TitleMaxLen)
	if err != nil {
		return nil, false, err
	}
	seen := map[string]bool{p.UserID: true}
	var others []string
	for _, id := range req.Members {
		if !parley.ValidID(id) {
			return nil, false, parley.Errorf(parley.CodeInvalidRequest, "members must be user ids")
		}
		if !seen[id] {
			seen[id] = true
			others = append(others, id)
		}
	}
	if req.E2EE && len(others)+1 > s.cfg.MaxE2EEMembers {
		return nil, false, parley.Errorf(parley.CodeLimitExceeded, "an end-to-end encrypted conversation has at most %d members", s.cfg.MaxE2EEMembers)
	}
	now := s.cfg.Now().UTC()
	c := &parley.Conversation{ID: parley.NewID(), Kind: req.Kind, CreatedAt: now, E2EE: req.E2EE}
	switch req.Kind {
	case parley.KindDirect:
		if len(others) != 1 {
			return nil, false, parley.Errorf(parley.CodeInvalidRequest, "a direct conversation has exactly one other member")
		}
		if title != "" {
			return nil, false, parley.Errorf(parley.CodeInvalidRequest, "a direct conversation has no title")
		}
		c.Members = []parley.Member{
			{UserID: p.UserID, Role: parley.MemberRoleMember, JoinedAt: now},
			{UserID: others[0], Role: parley.MemberRoleMember, JoinedAt: now},
		}
	case parley.KindGroup:
		if title == "" {
			return nil, false, parley.Errorf(parley.CodeInvalidRequest, "a group needs a title")
		}
		if len(others)+1 > s.cfg.MaxGroupMembers {
			return nil, false, parley.Errorf(parley.CodeInvalidRequest, "a group has at most %d members", s.cfg.MaxGroupMembers)
		}
		c.Title = title
		c.Members = append(c.Members, parley.Member{UserID: p.UserID, Role: parley.MemberRoleOwner, JoinedAt: now})
		for _, id := range others {
			c.Members = append(c.Members, parley.Member{UserID: id, Role: parley.MemberRoleMember, JoinedAt: now})
		}
	default:
		return nil, false, parley.Errorf(parley.CodeInvalidRequest, "kind must be direct or group")
	}
	for _, id := range others {
		u, err := s.store.User(ctx, id)
		if parley.ErrorCode(err) == parley.CodeNotFound || (err == nil && u.State != parley.UserActive) {
			return nil, false, parley.Errorf(parley.CodeNotFound, "no such user: %s", id)
		}
		if err != nil {
			return nil, false, err
		}
	}
	if req.Kind == parley.KindGroup {
		if err := s.checkAddable(ctx, p, others); err != nil {
			return nil, false, err
		}
	}
	if err := s.requestsFor(ctx, p, c.Members); err != nil {
		return nil, false, err
	}
	var hide []string
	if req.Kind == parley.KindDirect {
		// A direct conversation opened by a user the other blocks looks
		// created to them, but is a request the other never sees listed
		// or announced while the block holds (see blocks.go).
		r, err := s.relations(ctx, p.UserID, "")
		if err != nil {
			return nil, false, err
		}
		if _, ok := r.BlockedBy[others[0]]; ok {
			c.Members[1].Request = true
			hide = others
		}
	}
	conv, created, err := s.store.CreateConversation(ctx, c)
	if err != nil {
		return nil, false, err
	}
	if created {
		s.publishConversation(ctx, &Event{Kind: EventConversation, ConversationID: conv.ID, Action: ActionCreated, Conversation: conv, UserID: p.UserID, Users: memberIDs(conv), Hide: hide})
	} else if conv.Kind == parley.KindDirect && len(conv.Members) < 2 {
		// One of the pair declined a request: back in, as a new one.
		if conv, err = s.rejoinDirect(ctx, p, conv, others[0], len(hide) > 0); err != nil {
			return nil, false, err
		}
	}
	conv, err = s.presentConversation(ctx, p.UserID, conv)
	return conv, created, err
}

func memberIDs(c *parley.Conversation) []string {
	ids := make([]string, len(c.Members))
	for i, m := range c.Members {
		ids[i] = m.UserID
	}
	return ids
}

// Conversations lists the caller's conversations, most recently active
// first.
func (s *Service) Conversations(ctx context.Context, p *parley.Principal) ([]parley.ConversationView, error) {
	views, err := s.store.ConversationViews(ctx, p.UserID, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	if err := s.presentViews(ctx, p.UserID, views); err != nil {
		return nil, err
	}
	if err := s.viewKeys(ctx, p.DeviceID, views); err != nil {
		return nil, err
	}
	return s.dropBlockedRequests(ctx, p.UserID, views)
}

// viewKeys gives the last message of each view, if encrypted, the
// caller's device's key.
func (s *Service) viewKeys(ctx context.Context, deviceID string, views []parley.ConversationView) error {
	for i := range views {
		m, err := s.withKey(ctx, deviceID, views[i].LastMessage)
		if err != nil {
			return err
		}
		views[i].LastMessage = m
	}
	return nil
}

// Conversation returns one conversation as the caller sees it;
// CodeConversationNotFound unless the caller is a member.
func (s *Service) Conversation(ctx context.Context, p *parley.Principal, id string) (*parley.ConversationView, error) {
	if !parley.ValidID(id) {
		return nil, errNoConversation()
	}
	v, err := s.store.ConversationView(ctx, id, p.UserID, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	views := []parley.ConversationView{*v}
	if err := s.presentViews(ctx, p.UserID, views); err != nil {
		return nil, err
	}
	if err := s.viewKeys(ctx, p.DeviceID, views); err != nil {
		return nil, err
	}
	return &views[0], nil
}

// member returns the caller's membership of a conversation. It is the one
// gate every conversation operation passes first: a non-member gets
// CodeConversationNotFound, exactly what a missing conversation gets.
func (s *Service) member(ctx context.Context, p *parley.Principal, conversationID string) (*parley.Member, error) {
	if !parley.ValidID(conversationID) {
		return nil, errNoConversation()
	}
	return s.store.Member(ctx, conversationID, p.UserID)
}

func errNoConversation() error {
	return parley.Errorf(parley.CodeConversationNotFound, "conversation not found")
}

// AddMember adds a user to a group. Owners may add members and admins;
// admins may add members. The new member starts with everything before
// their joining read (they can page back through it, but it is not
// unread).
func (s *Service) AddMember(ctx context.Context, p *parley.Principal, conversationID, userID string, role parley.MemberRole) (*parley.Conversation, error) {
	if _, err := s.member(ctx, p, conversationID); err != nil {
		return nil, err
	}
	if role == "" {
		role = parley.MemberRoleMember
	}
	if role != parley.MemberRoleMember && role != parley.MemberRoleAdmin {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "role must be member or admin")
	}
	if !parley.ValidID(userID) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such user")
	}
	u, err := s.store.User(ctx, userID)
	if err != nil {
		return nil, err
	}
	if u.State != parley.UserActive {
		return nil, parley.Errorf(parley.CodeNotFound, "no such user")
	}
	if err := s.checkAddable(ctx, p, []string{userID}); err != nil {
		return nil, err
	}
	added := []parley.Member{{UserID: userID}}
	if err := s.requestsFor(ctx, p, added); err != nil {
		return nil, err
	}
	joined := s.cfg.Now().UTC()
	defer s.exclusive(conversationID)()
	c, err := s.changeMembers(ctx, p, conversationID, func(c *parley.Conversation, me *parley.Member) (parley.MemberChange, error) {
		switch {
		case c.Kind != parley.KindGroup:
			return parley.MemberChange{}, parley.Errorf(parley.CodeForbidden, "members of a direct conversation cannot change")
		case me.Role == parley.MemberRoleMember:
			return parley.MemberChange{}, parley.Errorf(parley.CodeForbidden, "only the owner and admins may add members")
		case role == parley.MemberRoleAdmin && me.Role != parley.MemberRoleOwner:
			return parley.MemberChange{}, parley.Errorf(parley.CodeForbidden, "only the owner may add admins")
		case len(c.Members) >= s.cfg.MaxGroupMembers:
			return parley.MemberChange{}, parley.Errorf(parley.CodeConflict, "the group is full (%d members)", s.cfg.MaxGroupMembers)
		case c.E2EE && len(c.Members) >= s.cfg.MaxE2EEMembers:
			return parley.MemberChange{}, parley.Errorf(parley.CodeLimitExceeded, "an end-to-end encrypted conversation has at most %d members", s.cfg.MaxE2EEMembers)
		}
		return parley.MemberChange{Add: []parley.Member{{UserID: userID, Role: role, JoinedAt: joined, ReadSeq: c.LastSeq, Request: added[0].Request}}}, nil
	})
	if err != nil {
		return nil, err
	}
	s.publishConversation(ctx, &Event{Kind: EventConversation, ConversationID: c.ID, Action: ActionMemberAdded, Conversation: c, UserID: p.UserID, Users: []string{userID}})
	return s.presentConversation(ctx, p.UserID, c)
}

// changeMembers runs decide, with the caller's membership, atomically with
// the change it returns (see parley.Store.ChangeMembers): the permission
// check and the change cannot be split by another write.
func (s *Service) changeMembers(ctx context.Context, p *parley.Principal, conversationID string, decide func(c *parley.Conversation, me *parley.Member) (parley.MemberChange, error)) (*parley.Conversation, error) {
	return s.store.ChangeMembers(ctx, conversationID, func(c *parley.Conversation) (parley.MemberChange, error) {
		me := c.MemberOf(p.UserID)
		if me == nil {
			return parley.MemberChange{}, errNoConversation()
		}
		return decide(c, me)
	})
}

// RemoveMember removes a member from a group. Anyone may remove themself
// (leave), except the owner while others remain, who must transfer
// ownership first (the last member leaving deletes the group); the owner
// may remove anyone else; admins may remove plain members.
func (s *Service) RemoveMember(ctx context.Context, p *parley.Principal, conversationID, userID string) error {
	if _, err := s.member(ctx, p, conversationID); err != nil {
		return err
	}
	var before *parley.Conversation // as decide last saw it
	defer s.exclusive(conversationID)()
	after, err := s.changeMembers(ctx, p, conversationID, func(c *parley.Conversation, me *parley.Member) (parley.MemberChange, error) {
		before = c
		if c.Kind != parley.KindGroup {
			return parley.MemberChange{}, parley.Errorf(parley.CodeForbidden, "members of a direct conversation cannot change")
		}
		target := c.MemberOf(userID)
		if target == nil {
			return parley.MemberChange{}, parley.Errorf(parley.CodeNotFound, "no such member")
		}
		switch {
		case userID == p.UserID:
			if me.Role == parley.MemberRoleOwner && len(c.Members) > 1 {
				return parley.MemberChange{}, parley.Errorf(parley.CodeConflict, "the owner must transfer ownership before leaving")
			}
			if me.Role == parley.MemberRoleOwner {
				return parley.MemberChange{Delete: true}, nil // the last member leaves
			}
		case me.Role == parley.MemberRoleOwner:
		case me.Role == parley.MemberRoleAdmin && target.Role == parley.MemberRoleMember:
		default:
			return parley.MemberChange{}, parley.Errorf(parley.CodeForbidden, "you may not remove this member")
		}
		return parley.MemberChange{Remove: []string{userID}}, nil
	})
	switch {
	case err != nil:
	case after == nil: // the last member left: the group is gone
		s.publishConversation(ctx, &Event{Kind: EventConversation, ConversationID: conversationID, Action: ActionDeleted, UserID: p.UserID, Users: memberIDs(before)})
	default:
		s.publishConversation(ctx, &Event{Kind: EventConversation, ConversationID: conversationID, Action: ActionMemberRemoved, Conversation: after, UserID: p.UserID, Users: []string{userID}})
	}
	return err
}

// SetMemberRole changes a member's role; only the owner may. Making
// someone owner transfers ownership: they become owner and the caller
// becomes admin, in one transaction.
func (s *Service) SetMemberRole(ctx context.Context, p *parley.Principal, conversationID, userID string, role parley.MemberRole) (*parley.Conversation, error) {
	if _, err := s.member(ctx, p, conversationID); err != nil {
		return nil, err
	}
	if !role.Valid() {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "role must be owner, admin or member")
	}
	var changed []string
	defer s.exclusive(conversationID)()
	after, err := s.changeMembers(ctx, p, conversationID, func(c *parley.Conversation, me *parley.Member) (parley.MemberChange, error) {
		switch {
		case c.Kind != parley.KindGroup:
			return parley.MemberChange{}, parley.Errorf(parley.CodeForbidden, "roles exist only in groups")
		case me.Role != parley.MemberRoleOwner:
			return parley.MemberChange{}, parley.Errorf(parley.CodeForbidden, "only the owner may change roles")
		case c.MemberOf(userID) == nil:
			return parley.MemberChange{}, parley.Errorf(parley.CodeNotFound, "no such member")
		case userID == p.UserID:
			return parley.MemberChange{}, parley.Errorf(parley.CodeInvalidRequest, "the owner's role changes only by transferring ownership")
		}
		roles := map[string]parley.MemberRole{userID: role}
		changed = []string{userID}
		if role == parley.MemberRoleOwner {
			roles[p.UserID] = parley.MemberRoleAdmin
			changed = append(changed, p.UserID)
		}
		return parley.MemberChange{Roles: roles}, nil
	})
	if err != nil {
		return nil, err
	}
	s.publishConversation(ctx, &Event{Kind: EventConversation, ConversationID: conversationID, Action: ActionRoleChanged, Conversation: after, UserID: p.UserID, Users: changed})
	return s.presentConversation(ctx, p.UserID, after)
}

// DeleteConversation deletes a group with its history; only the owner
// may. Direct conversations cannot be deleted.
func (s *Service) DeleteConversation(ctx context.Context, p *parley.Principal, conversationID string) error {
	if _, err := s.member(ctx, p, conversationID); err != nil {
		return err
	}
	var before *parley.Conversation
	defer s.exclusive(conversationID)()
	_, err := s.changeMembers(ctx, p, conversationID, func(c *parley.Conversation, me *parley.Member) (parley.MemberChange, error) {
		before = c
		if c.Kind != parley.KindGroup {
			return parley.MemberChange{}, parley.Errorf(parley.CodeForbidden, "a direct conversation cannot be deleted")
		}
		if me.Role != parley.MemberRoleOwner {
			return parley.MemberChange{}, parley.Errorf(parley.CodeForbidden, "only the owner may delete the group")
		}
		return parley.MemberChange{Delete: true}, nil
	})
	if err == nil {
		s.publishConversation(ctx, &Event{Kind: EventConversation, ConversationID: conversationID, Action: ActionDeleted, UserID: p.UserID, Users: memberIDs(before)})
	}
	return err
}
