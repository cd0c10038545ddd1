package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/parleychat/parley"
)

// Sync bounds.
const (
	// DefaultSyncMessages is the default number of newest messages per
	// conversation in a sync page; MaxSyncMessages the most a client may ask.
	DefaultSyncMessages = 50
	MaxSyncMessages     = 100
	// SyncConversations is the number of conversations per sync page.
	SyncConversations = 100
	// SyncBudget bounds the estimated size of one sync page in bytes: a
	// page stops early (HasMore) and a conversation's messages are cut
	// (MoreMessages, oldest first) to stay under it, so a reply never
	// outgrows a connection's write queue. At least one conversation with
	// one message is always returned. 512 KiB holds a typical offline
	// catch-up (1,000 short messages in 50 conversations, ~400 KB) in one
	// page, measured with parley bench offline; a quarter of the 2 MiB a
	// connection may have waiting.
	SyncBudget = 512 << 10
)

// SyncResult is one page of changes for a device (see Sync).
type SyncResult struct {
	// Position is what the client stores and sends next: after the last
	// page (HasMore false), the position to resume from later; otherwise
	// the position of the next page of this pass.
	Position      string
	Conversations []parley.SyncConversation
	HasMore       bool
	// FullState says this pass lists every conversation the user is a
	// member of (no position was given, or the server's store went back
	// behind the position): at the end of the pass, a client drops the
	// conversations it holds that the pass did not list.
	FullState bool
}

// syncPosition is the decoded opaque cursor. Since is the store change
// stamp the client holds everything up to. A position in the middle of a
// paged pass also carries the pass's upper bound and where it stopped.
type syncPosition struct {
	Since, Until, AfterStamp int64
	AfterID                  string
}

const positionVersion = "v1"

func (p syncPosition) encode() string {
	s := positionVersion + ":" + strconv.FormatInt(p.Since, 10)
	if p.Until > 0 {
		s += ":" + strconv.FormatInt(p.Until, 10) + ":" + strconv.FormatInt(p.AfterStamp, 10) + ":" + p.AfterID
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func decodePosition(s string) (syncPosition, error) {
	var p syncPosition
	if s == "" {
		return p, nil
	}
	bad := parley.Errorf(parley.CodeInvalidRequest, "position is not one this server issued")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) > 128 {
		return p, bad
	}
	parts := strings.Split(string(raw), ":")
	if parts[0] != positionVersion || (len(parts) != 2 && len(parts) != 5) {
		return p, bad
	}
	nums := []*int64{&p.Since}
	if len(parts) == 5 {
		nums = append(nums, &p.Until, &p.AfterStamp)
		p.AfterID = parts[4]
		if !parley.ValidID(p.AfterID) {
			return p, bad
		}
	}
	for i, n := range nums {
		v, err := strconv.ParseInt(parts[i+1], 10, 64)
		if err != nil || v < 0 {
			return p, bad
		}
		*n = v
	}
	if p.Until != 0 && (p.Until < p.Since || p.AfterStamp > p.Until) {
		return p, bad
	}
	return p, nil
}

// Sync returns what changed for the caller since position ("" for the
// full current state): every conversation with new, edited or deleted
// messages, changed receipts or membership, each with the caller's
// read_seq, unread count and up to messages newest changed messages
// (0 means DefaultSyncMessages). Results are paged; while HasMore, the
// client asks again with the returned Position. A position from a store
// that has since gone back (a restore from backup) yields the full state.
func (s *Service) Sync(ctx context.Context, p *parley.Principal, position string, messages int) (*SyncResult, error) {
	pos, err := decodePosition(position)
	if err != nil {
		return nil, err
	}
	if messages == 0 {
		messages = DefaultSyncMessages
	}
	if messages < 1 || messages > MaxSyncMessages {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to %d", MaxSyncMessages)
	}
	q := parley.SyncQuery{Since: pos.Since, Until: pos.Until, AfterStamp: pos.AfterStamp, AfterID: pos.AfterID, Conversations: SyncConversations, Messages: messages, Budget: SyncBudget, InlineMembers: s.cfg.MaxInlineMembers}
	page, err := s.store.Sync(ctx, p.UserID, q, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	if s.push != nil {
		s.push.Fetched(p.DeviceID)
	}
	if pos.Since > page.Until {
		// The client is ahead of the store: it was restored from an
		// older backup. Start over with the full state.
		q = parley.SyncQuery{Conversations: SyncConversations, Messages: messages, Budget: SyncBudget, InlineMembers: s.cfg.MaxInlineMembers}
		if page, err = s.store.Sync(ctx, p.UserID, q, s.cfg.Now()); err != nil {
			return nil, err
		}
	}
	fitBudget(page, SyncBudget, s.cfg.MaxInlineMembers)
	if err := s.presentSync(ctx, p.UserID, page); err != nil {
		return nil, err
	}
	if err := s.dropBlockedSync(ctx, p.UserID, page); err != nil {
		return nil, err
	}
	for i := range page.Conversations {
		c := &page.Conversations[i]
		if c.Messages, err = s.withKeys(ctx, p.DeviceID, c.Messages); err != nil {
			return nil, err
		}
	}
	res := &SyncResult{Conversations: page.Conversations, HasMore: page.HasMore, FullState: q.Since == 0}
	if page.HasMore {
		res.Position = syncPosition{Since: q.Since, Until: page.Until, AfterStamp: page.NextStamp, AfterID: page.NextID}.encode()
	} else {
		res.Position = syncPosition{Since: page.Until}.encode()
	}
	if res.Conversations == nil {
		res.Conversations = []parley.SyncConversation{}
	}
	return res, nil
}

// String is for logs and tests.
func (p syncPosition) String() string {
	return fmt.Sprintf("since=%d until=%d after=%d/%s", p.Since, p.Until, p.AfterStamp, p.AfterID)
}

func syncCost(c *parley.SyncConversation, inline int) int {
	n := parley.EstimatedConversationBytes + parley.EstimatedMembersBytes(len(c.View.Members), inline)
	for i := range c.Messages {
		n += parley.EstimatedSize(&c.Messages[i])
	}
	return n
}

// fitBudget cuts a page to about budget bytes: a conversation bigger than
// the budget alone keeps only its newest messages that fit (at least one),
// and the page ends before the conversation that would pass the budget
// (keeping at least one), continuing after the last one kept.
func fitBudget(page *parley.SyncPage, budget, inline int) {
	total := 0
	for i := range page.Conversations {
		c := &page.Conversations[i]
		for len(c.Messages) > 1 && syncCost(c, inline) > budget {
			c.Messages = c.Messages[1:]
			c.MoreMessages = true
		}
		cost := syncCost(c, inline)
		if i > 0 && total+cost > budget {
			last := &page.Conversations[i-1]
			page.Conversations = page.Conversations[:i]
			page.HasMore, page.NextStamp, page.NextID = true, last.Key, last.View.ID
			return
		}
		total += cost
	}
}
