package service

import (
	"context"
	"slices"

	"github.com/parleychat/parley"
)

// Privacy settings (docs/protocol.md, section 16). Presence (online,
// offline, last seen) and read receipts each have a visibility:
// everyone, contacts (users who share an accepted conversation with the
// user; see parley.Peer) or nobody. Read receipts are reciprocal, as in
// WhatsApp: a user whose read receipts are nobody sees no one's read
// watermark either. Delivered receipts are not covered (they say that a
// device is reachable, which push does anyway).

// PrivacyChange is the input of SetPrivacy; a nil field is kept.
type PrivacyChange struct {
	Presence     *parley.Visibility
	ReadReceipts *parley.Visibility
}

// Privacy returns the caller's privacy settings.
func (s *Service) Privacy(ctx context.Context, p *parley.Principal) (parley.Privacy, error) {
	u, err := s.store.User(ctx, p.UserID)
	if err != nil {
		return parley.Privacy{}, err
	}
	return u.Privacy, nil
}

// SetPrivacy changes the caller's privacy settings and returns them.
// Restricting presence takes effect at once: those who may no longer see
// it see the caller go offline (without last seen). Loosening it takes
// effect at the caller's next change of presence.
func (s *Service) SetPrivacy(ctx context.Context, p *parley.Principal, c PrivacyChange) (parley.Privacy, error) {
	for _, v := range []*parley.Visibility{c.Presence, c.ReadReceipts} {
		if v != nil && !v.Valid() {
			return parley.Privacy{}, parley.Errorf(parley.CodeInvalidRequest, "a visibility is everyone, contacts or nobody")
		}
	}
	u, err := s.store.User(ctx, p.UserID)
	if err != nil {
		return parley.Privacy{}, err
	}
	next := u.Privacy
	if c.Presence != nil {
		next.Presence = *c.Presence
	}
	if c.ReadReceipts != nil {
		next.ReadReceipts = *c.ReadReceipts
	}
	if err := s.store.SetPrivacy(ctx, p.UserID, next); err != nil {
		return parley.Privacy{}, err
	}
	if next.Presence != u.Privacy.Presence && next.Presence != parley.VisibleEveryone {
		s.hidePresence(ctx, p.UserID, next.Presence)
	}
	return next, nil
}

// hidePresence shows the user offline, without last seen, to everyone
// who may no longer see the user's presence under visibility v. Errors
// are logged: the setting is stored, and holds from the next change on.
func (s *Service) hidePresence(ctx context.Context, userID string, v parley.Visibility) {
	peers, err := s.store.ContactPeers(ctx, userID, s.cfg.MaxInlineMembers)
	if err != nil {
		s.log.WarnContext(ctx, "hide presence", "err", err)
		return
	}
	var audience []string
	for _, p := range peers {
		// With contacts, the contacts keep seeing it.
		if v == parley.VisibleNobody || p.Stranger {
			audience = append(audience, p.UserID)
		}
	}
	s.publishPresence(ctx, &Event{Kind: EventPresence, UserID: userID, State: "offline"}, audience)
}

// peerMap indexes peers by user id.
func peerMap(peers []parley.Peer) map[string]parley.Peer {
	m := make(map[string]parley.Peer, len(peers))
	for _, p := range peers {
		m[p.UserID] = p
	}
	return m
}

// Presence goes only between contacts (Store.ContactPeers): users who
// share a conversation that is not paged (ten thousand members coming
// online would be a hundred million frames), less those the privacy
// rules hide. Who is a contact and what the rules say of each come from
// one read, so a membership change cannot fall between the two: a
// conversation crossing the inline limit, or a message request arriving,
// is either wholly seen or not at all. (The paged cache, forgotten on
// membership events, is for the receipt path; presence does not use it.)

// presenceAudience returns the users who may see userID's presence: its
// contacts but those it shares only unaccepted requests with (the
// requesters), the strangers if its presence is for contacts, and those
// who block it or whom it blocks. None if its presence is nobody's.
func (s *Service) presenceAudience(ctx context.Context, userID string) ([]string, error) {
	u, err := s.store.User(ctx, userID)
	if err != nil || u.Privacy.Presence == parley.VisibleNobody {
		return nil, err
	}
	return s.contacts(ctx, userID, func(p parley.Peer) bool {
		return !p.Unaccepted && (!p.Stranger || u.Privacy.Presence != parley.VisibleContacts)
	})
}

// contacts returns userID's contacts for presence (Store.ContactPeers)
// that keep says yes to, less those who block the user or whom it
// blocks.
func (s *Service) contacts(ctx context.Context, userID string, keep func(parley.Peer) bool) ([]string, error) {
	r, err := s.relations(ctx, userID, "")
	if err != nil {
		return nil, err
	}
	peers, err := s.store.ContactPeers(ctx, userID, s.cfg.MaxInlineMembers)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(peers))
	for _, p := range peers {
		if keep(p) && !r.Blocking(p.UserID) {
			ids = append(ids, p.UserID)
		}
	}
	return ids, nil
}

// presenceChunk bounds the users one presence event names, so that a
// user with many contacts makes several events of tens of kilobytes
// rather than one past the bus's largest message.
const presenceChunk = 2048

// publishPresence publishes e to audience, named in e.Users (in events
// of at most presenceChunk users); nothing if audience is empty.
func (s *Service) publishPresence(ctx context.Context, e *Event, audience []string) {
	for len(audience) > 0 {
		n := min(len(audience), presenceChunk)
		part := *e
		part.Users = audience[:n]
		s.publish(ctx, UserSubject(e.UserID), &part)
		audience = audience[n:]
	}
}

// readHide lists the members of a conversation who must not see the
// caller's read receipt, or says (private) that only the caller's own
// devices may: the caller's read receipts are nobody's to see.
func (s *Service) readHide(ctx context.Context, userID, conversationID string) (hide []string, private bool, err error) {
	u, err := s.store.User(ctx, userID)
	if err != nil {
		return nil, false, err
	}
	if u.Privacy.ReadReceipts == parley.VisibleNobody {
		return nil, true, nil
	}
	peers, err := s.store.Peers(ctx, userID, conversationID)
	if err != nil {
		return nil, false, err
	}
	for _, p := range peers {
		if p.Privacy.ReadReceipts == parley.VisibleNobody || !u.Privacy.ReadReceipts.Allows(!p.Stranger) {
			hide = append(hide, p.UserID)
		}
	}
	return hide, false, nil
}

// receiptsView hides, in a conversation as viewer sees it, the read
// watermarks the viewer may not see: all others' if the viewer's own
// read receipts are nobody, else those of members whose settings exclude
// the viewer. A hidden read_seq reads 0; the member's delivered_seq is
// raised to it first (reading implies having).
type receiptsView struct {
	viewerID string
	all      bool
	peers    map[string]parley.Peer
}

func (s *Service) newReceiptsView(ctx context.Context, viewerID string) (*receiptsView, error) {
	u, err := s.store.User(ctx, viewerID)
	if err != nil {
		return nil, err
	}
	v := &receiptsView{viewerID: viewerID, all: u.Privacy.ReadReceipts == parley.VisibleNobody}
	if !v.all {
		peers, err := s.store.Peers(ctx, viewerID, "")
		if err != nil {
			return nil, err
		}
		v.peers = peerMap(peers)
	}
	return v, nil
}

func (v *receiptsView) apply(c *parley.Conversation) {
	for i := range c.Members {
		m := &c.Members[i]
		if m.UserID == v.viewerID {
			continue
		}
		if m.Request { // a request not accepted: no receipts at all
			m.ReadSeq, m.DeliveredSeq = 0, 0
			continue
		}
		if !v.all {
			p, ok := v.peers[m.UserID]
			if !ok || p.Privacy.ReadReceipts.Allows(!p.Stranger) {
				continue
			}
		}
		m.DeliveredSeq = max(m.DeliveredSeq, m.ReadSeq)
		m.ReadSeq = 0
	}
}

// scrubConversation returns c as a conversation event may show it to
// every member: read watermarks of members whose read receipts are not
// everyone's to see read 0, and if any member sees no one's, everyone's
// do. c is not changed.
func (s *Service) scrubConversation(ctx context.Context, actorID string, c *parley.Conversation) *parley.Conversation {
	if c == nil {
		return nil
	}
	peers, err := s.store.Peers(ctx, actorID, c.ID)
	if err != nil {
		s.log.WarnContext(ctx, "conversation event: peers", "err", err)
		peers = nil
	}
	private := map[string]bool{}
	all := err != nil // unsure: show no one's
	requests := false
	for _, m := range c.Members {
		requests = requests || m.Request
	}
	for _, p := range peers {
		if p.Privacy.ReadReceipts != parley.VisibleEveryone {
			private[p.UserID] = true
			all = all || p.Privacy.ReadReceipts == parley.VisibleNobody
		}
	}
	if u, err := s.store.User(ctx, actorID); err != nil || u.Privacy.ReadReceipts != parley.VisibleEveryone {
		private[actorID] = true
		all = all || err != nil || u.Privacy.ReadReceipts == parley.VisibleNobody
	}
	if len(private) == 0 && !all && !requests {
		return c
	}
	out := *c
	out.Members = slices.Clone(c.Members)
	for i := range out.Members {
		m := &out.Members[i]
		if m.Request {
			m.ReadSeq, m.DeliveredSeq = 0, 0
		} else if all || private[m.UserID] {
			m.DeliveredSeq = max(m.DeliveredSeq, m.ReadSeq)
			m.ReadSeq = 0
		}
	}
	return &out
}
