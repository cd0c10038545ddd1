package service

import (
	"context"
	"slices"

	"github.com/parleychat/parley"
)

// Blocking (docs/protocol.md, "Blocking"). A block is per user: it holds
// on every device of both. The blocked user learns nothing they could not
// tell of any user who is offline and does not read: in a direct
// conversation their sends are accepted and numbered as usual, but stored
// withheld (see parley.Message.Withheld): the blocker's devices see only
// a withheld tombstone in its place (never its content, live, by sync, in
// history or by push), and the blocker's delivered and read watermarks,
// as the blocked user sees them, stop where the conversation stood when
// the block began. Neither sees the other's presence, last seen or
// typing. Group messages are not withheld (as in Signal and WhatsApp),
// but a blocked user cannot add the blocker to a group (forbidden, the
// same answer as for any user who cannot be added).

// Block makes the caller block userID; blocking twice is blocking once.
// The caller's other devices learn it with a "block" frame; the blocked
// user's live sessions see the caller go offline (and the caller theirs).
func (s *Service) Block(ctx context.Context, p *parley.Principal, userID string) error {
	return s.setBlock(ctx, p, userID, true)
}

// Unblock lifts the caller's block of userID; lifting a block that does
// not exist is not an error. Messages withheld stay withheld.
func (s *Service) Unblock(ctx context.Context, p *parley.Principal, userID string) error {
	return s.setBlock(ctx, p, userID, false)
}

func (s *Service) setBlock(ctx context.Context, p *parley.Principal, userID string, blocked bool) error {
	if !parley.ValidID(userID) {
		return parley.Errorf(parley.CodeNotFound, "no such user")
	}
	// The relations cache reads the store for both users until the
	// block has committed, then forgets their answers (relcache.go):
	// every send checked on this node after the commit sees it.
	done := s.rel.changing([]string{p.UserID, userID}, "")
	err := s.store.SetBlock(ctx, p.UserID, userID, blocked, s.cfg.Now().UTC())
	done()
	if err != nil {
		return err
	}
	state := "unblocked"
	if blocked {
		state = "blocked"
	}
	s.publish(ctx, UserSubject(p.UserID), &Event{Kind: EventBlock, UserID: p.UserID, State: state, Users: []string{userID}})
	if blocked {
		// Whatever each showed of the other goes: they are offline to
		// each other from now on (presence news of either is hidden).
		s.publish(ctx, UserSubject(p.UserID), &Event{Kind: EventPresence, UserID: p.UserID, State: "offline", Users: []string{userID}})
		s.publish(ctx, UserSubject(userID), &Event{Kind: EventPresence, UserID: userID, State: "offline", Users: []string{p.UserID}})
	}
	return nil
}

// Blocks lists the users the caller blocks, oldest block first.
func (s *Service) Blocks(ctx context.Context, p *parley.Principal) ([]parley.Block, error) {
	return s.store.Blocks(ctx, p.UserID)
}

// relations returns how userID stands with the members of
// conversationID (every user when it is ""), as Store.Relations does. An
// answer for a conversation comes from the relations cache when it can
// (relcache.go: on this node as fresh as the store's, on other nodes as
// fresh as the bus's events) and may be shared: callers must not change
// it. An answer for every user is read from the store.
func (s *Service) relations(ctx context.Context, userID, conversationID string) (*parley.Relations, error) {
	if conversationID != "" {
		return s.conversationRelations(ctx, userID, conversationID)
	}
	return s.store.Relations(ctx, userID, conversationID)
}

// blockedIDs lists, sorted, every user who blocks or is blocked by the
// user of r.
func blockedIDs(r *parley.Relations) []string {
	ids := make([]string, 0, len(r.Blocks)+len(r.BlockedBy))
	for id := range r.Blocks {
		ids = append(ids, id)
	}
	for id := range r.BlockedBy {
		if _, ok := r.Blocks[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// shown returns m as viewerID may see it: a withheld message is a
// withheld tombstone to everyone but its sender, and an ordinary message
// (without the mark) to its sender. m itself is never changed; the
// result is m when nothing changes.
func shown(viewerID string, m *parley.Message) *parley.Message {
	if m == nil || !m.Withheld {
		return m
	}
	c := *m
	if m.SenderID == viewerID {
		c.Withheld = false
		return &c
	}
	return &parley.Message{ID: m.ID, ConversationID: m.ConversationID, Seq: m.Seq, SenderID: m.SenderID,
		Type: m.Type, CreatedAt: m.CreatedAt, Deleted: true, Withheld: true}
}

// shownAll returns msgs as viewerID may see them, copying the slice only
// if a message changes (the history cache's slices are shared).
func shownAll(viewerID string, msgs []parley.Message) []parley.Message {
	out := msgs
	copied := false
	for i := range msgs {
		if !msgs[i].Withheld {
			continue
		}
		if !copied {
			out = slices.Clone(msgs)
			copied = true
		}
		out[i] = *shown(viewerID, &msgs[i])
	}
	return out
}

// clampBlocked lowers, in a view of a direct conversation, the watermarks
// of a member who blocks the viewer to where they stood when the block
// began, so that messages sent since never show delivered or read.
func clampBlocked(r *parley.Relations, c *parley.Conversation) {
	if c.Kind != parley.KindDirect || len(r.BlockedBy) == 0 {
		return
	}
	for i := range c.Members {
		m := &c.Members[i]
		if since, ok := r.BlockedBy[m.UserID]; ok {
			m.ReadSeq = min(m.ReadSeq, since)
			m.DeliveredSeq = min(m.DeliveredSeq, since)
		}
	}
}

// presentViews applies the viewer's privacy rules to views the store
// returned (messages withheld from the viewer, watermarks of members who
// block the viewer, read watermarks the viewer may not see), in place,
// and shapes them (biggroups.go): a paged conversation loses its member
// list for the viewer's own entry and a receipts summary.
func (s *Service) presentViews(ctx context.Context, viewerID string, views []parley.ConversationView) error {
	if err := s.presentMembers(ctx, viewerID, views); err != nil {
		return err
	}
	for i := range views {
		s.shape(viewerID, &views[i].Conversation)
	}
	return nil
}

// presentMembers is presentViews without the shaping: every member
// stays listed (to count receipts from).
func (s *Service) presentMembers(ctx context.Context, viewerID string, views []parley.ConversationView) error {
	if len(views) == 0 {
		return nil
	}
	rv, err := s.newReceiptsView(ctx, viewerID)
	if err != nil {
		return err
	}
	var r *parley.Relations
	for i := range views {
		v := &views[i]
		v.LastMessage = shown(viewerID, v.LastMessage)
		rv.apply(&v.Conversation)
		if v.Kind != parley.KindDirect {
			continue
		}
		if r == nil {
			var err error
			if r, err = s.relations(ctx, viewerID, ""); err != nil {
				return err
			}
		}
		clampBlocked(r, &v.Conversation)
	}
	return nil
}

// checkAddable refuses to put users who block the caller into a
// conversation: CodeForbidden, the answer for any user who cannot be
// added, whatever the reason.
func (s *Service) checkAddable(ctx context.Context, p *parley.Principal, userIDs []string) error {
	r, err := s.relations(ctx, p.UserID, "")
	if err != nil {
		return err
	}
	for _, id := range userIDs {
		if _, ok := r.BlockedBy[id]; ok {
			return parley.Errorf(parley.CodeForbidden, "you cannot add this user: %s", id)
		}
	}
	return nil
}

// receiptEvent returns the receipt event of the caller's watermark
// (kind delivered or read) with who must not see it: in a direct
// conversation, a user the caller blocks (their view of the caller's
// watermarks stays clamped); for read, whoever the privacy settings
// exclude (Private: only the caller's own devices). It returns nil if
// the store could not say: the receipt is committed, so the event is then
// not published (clients heal by sync), rather than shown to whom it may
// not be.
func (s *Service) receiptEvent(ctx context.Context, p *parley.Principal, conversationID, kind string, seq int64) *Event {
	e := &Event{Kind: EventReceipt, ConversationID: conversationID, UserID: p.UserID, DeviceID: p.DeviceID, Receipt: kind, Seq: seq}
	// In a paged conversation a receipt goes only to the user's own
	// devices (the others read the receipts summary): no fan-out to every
	// member, and no privacy lookups over them.
	if paged, err := s.conversationPaged(ctx, conversationID); err != nil {
		s.log.WarnContext(ctx, "receipt not published: member count", "err", err)
		return nil
	} else if paged {
		e.Private = true
		return e
	}
	r, err := s.relations(ctx, p.UserID, conversationID)
	if err != nil {
		s.log.WarnContext(ctx, "receipt not published: relations", "err", err)
		return nil
	}
	if r.Kind == parley.KindDirect {
		for id := range r.Blocks {
			e.Hide = append(e.Hide, id)
		}
	}
	if r.Pending {
		// A message request: only the user's own devices hear of it.
		e.Private = true
		return e
	}
	if kind == "read" {
		hide, private, err := s.readHide(ctx, p.UserID, conversationID)
		if err != nil {
			s.log.WarnContext(ctx, "receipt not published: privacy", "err", err)
			return nil
		}
		e.Hide = append(e.Hide, hide...)
		e.Private = private
	}
	return e
}

// presentSync applies the viewer's privacy rules to a sync page, in place
// (the store's page is the caller's own).
func (s *Service) presentSync(ctx context.Context, viewerID string, page *parley.SyncPage) error {
	views := make([]parley.ConversationView, 0, len(page.Conversations))
	for i := range page.Conversations {
		c := &page.Conversations[i]
		c.Messages = shownAll(viewerID, c.Messages)
		views = append(views, c.View)
	}
	if err := s.presentViews(ctx, viewerID, views); err != nil {
		return err
	}
	for i := range page.Conversations {
		page.Conversations[i].View = views[i]
	}
	return nil
}

// presentConversation returns c as viewerID may see it (see
// presentViews); c is not changed.
func (s *Service) presentConversation(ctx context.Context, viewerID string, c *parley.Conversation) (*parley.Conversation, error) {
	if c == nil {
		return nil, nil
	}
	views := []parley.ConversationView{{Conversation: *c}}
	views[0].Members = slices.Clone(c.Members)
	if err := s.presentViews(ctx, viewerID, views); err != nil {
		return nil, err
	}
	return &views[0].Conversation, nil
}

// blockedRequest reports whether a view is a direct message request from
// a user the viewer blocks: such a conversation is left out of the
// viewer's lists and sync while the block holds.
func blockedRequest(r *parley.Relations, viewerID string, v *parley.ConversationView) bool {
	if v.Kind != parley.KindDirect {
		return false
	}
	me := v.MemberOf(viewerID)
	if me == nil || !me.Request {
		return false
	}
	for _, m := range v.Members {
		if _, ok := r.Blocks[m.UserID]; ok && m.UserID != viewerID {
			return true
		}
	}
	return false
}

// dropBlockedRequests leaves out of views the direct message requests
// from users the viewer blocks.
func (s *Service) dropBlockedRequests(ctx context.Context, viewerID string, views []parley.ConversationView) ([]parley.ConversationView, error) {
	r, err := s.relations(ctx, viewerID, "")
	if err != nil || len(r.Blocks) == 0 {
		return views, err
	}
	return slices.DeleteFunc(views, func(v parley.ConversationView) bool { return blockedRequest(r, viewerID, &v) }), nil
}

// dropBlockedSync does the same for a sync page (the page goes on after
// its last conversation as before: dropping entries moves no position).
func (s *Service) dropBlockedSync(ctx context.Context, viewerID string, page *parley.SyncPage) error {
	r, err := s.relations(ctx, viewerID, "")
	if err != nil || len(r.Blocks) == 0 {
		return err
	}
	page.Conversations = slices.DeleteFunc(page.Conversations, func(c parley.SyncConversation) bool {
		return !c.Removed && blockedRequest(r, viewerID, &c.View)
	})
	return nil
}
