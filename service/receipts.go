package service

import (
	"context"

	"github.com/parleychat/parley"
)

// Receipts says how far one message has reached: of MemberCount current
// members other than its sender, DeliveredCount have it on at least one
// device and ReadCount have read it. A member counts as having read it
// once its ReadSeq is at or past the message's seq, and as having it once
// its DeliveredSeq or ReadSeq is (reading implies having it, whatever a
// device reported), so ReadCount never exceeds DeliveredCount. The sender
// never counts: a message from a member of n is "read by k of n-1".
// Members who joined after the message count as having read it (they join
// with everything before read, see AddMember).
type Receipts struct {
	DeliveredCount int `json:"delivered_count"`
	ReadCount      int `json:"read_count"`
	MemberCount    int `json:"member_count"`
}

// receiptsOf counts m's receipts among members.
func receiptsOf(members []parley.Member, m *parley.Message) Receipts {
	var r Receipts
	for _, mb := range members {
		if mb.UserID == m.SenderID {
			continue
		}
		r.MemberCount++
		if mb.ReadSeq >= m.Seq {
			r.ReadCount++
		}
		if mb.DeliveredSeq >= m.Seq || mb.ReadSeq >= m.Seq {
			r.DeliveredCount++
		}
	}
	return r
}

// Receipts returns the receipts of msgs, messages of one conversation (as
// History returns them), in their order, from the members' watermarks as
// they are now. CodeConversationNotFound unless the caller is a member.
func (s *Service) Receipts(ctx context.Context, p *parley.Principal, conversationID string, msgs []parley.Message) ([]Receipts, error) {
	c, err := s.conversationOf(ctx, p, conversationID)
	if err != nil {
		return nil, err
	}
	out := make([]Receipts, len(msgs))
	for i := range msgs {
		out[i] = receiptsOf(c.Members, &msgs[i])
	}
	return out, nil
}

// Message returns one message of a conversation the caller is a member of,
// unless it has expired, with its receipts. CodeConversationNotFound
// unless the caller is a member; CodeNotFound if there is no such message.
func (s *Service) Message(ctx context.Context, p *parley.Principal, conversationID string, seq int64) (*parley.Message, Receipts, error) {
	c, err := s.conversationOf(ctx, p, conversationID)
	if err != nil {
		return nil, Receipts{}, err
	}
	if seq < 1 {
		return nil, Receipts{}, parley.Errorf(parley.CodeNotFound, "no such message")
	}
	m, err := s.store.Message(ctx, conversationID, seq, s.cfg.Now())
	if err != nil {
		return nil, Receipts{}, err
	}
	shownMsg, err := s.withKey(ctx, p.DeviceID, shown(p.UserID, m))
	if err != nil {
		return nil, Receipts{}, err
	}
	return shownMsg, receiptsOf(c.Members, m), nil
}

// conversationOf returns a conversation with its members if the caller is
// one of them; CodeConversationNotFound otherwise, as for a missing one.
func (s *Service) conversationOf(ctx context.Context, p *parley.Principal, conversationID string) (*parley.Conversation, error) {
	if !parley.ValidID(conversationID) {
		return nil, errNoConversation()
	}
	c, err := s.store.Conversation(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	if c.MemberOf(p.UserID) == nil {
		return nil, errNoConversation()
	}
	views := []parley.ConversationView{{Conversation: *c}}
	if err := s.presentMembers(ctx, p.UserID, views); err != nil {
		return nil, err
	}
	return &views[0].Conversation, nil
}
