package parley

import "time"

// ConversationKind is direct (exactly two users) or group.
type ConversationKind string

// Conversation kinds.
const (
	KindDirect ConversationKind = "direct"
	KindGroup  ConversationKind = "group"
)

// MemberRole is a member's role in a group. In a direct conversation both
// members are MemberRoleMember.
type MemberRole string

// Member roles, from most to least powerful.
const (
	MemberRoleOwner  MemberRole = "owner"
	MemberRoleAdmin  MemberRole = "admin"
	MemberRoleMember MemberRole = "member"
)

// Valid reports whether r is a known member role.
func (r MemberRole) Valid() bool {
	switch r {
	case MemberRoleOwner, MemberRoleAdmin, MemberRoleMember:
		return true
	}
	return false
}

// DefaultMaxGroupMembers is the default bound on the members of a group
// (the server's --max-group-members).
const DefaultMaxGroupMembers = 10000

// MaxGroupMembersCap is the highest --max-group-members may be set to.
// Stores refuse a conversation with more members, and bound
// Store.Strangers by it.
const MaxGroupMembersCap = 100000

// DefaultMaxInlineMembers is the default number of members a
// conversation object lists inline (--max-inline-members); above it the
// object is paged (docs/protocol.md, "Big groups: paged members").
const DefaultMaxInlineMembers = 100

// ReceiptsWindow is how many of the newest seqs a ReceiptsSummary covers.
const ReceiptsWindow = 50

// Conversation is a direct or group chat. LastSeq is the seq of the newest
// message ever committed in it (0 when empty); seqs run 1..LastSeq with no
// gap, though expired messages are gone and deleted ones are tombstones.
type Conversation struct {
	ID        string           `json:"id"`
	Kind      ConversationKind `json:"kind"`
	Title     string           `json:"title"`
	LastSeq   int64            `json:"last_seq"`
	CreatedAt time.Time        `json:"created_at"`
	// E2EE says the conversation is end-to-end encrypted: set at
	// creation, never turned off; every message in it is of type
	// encrypted (docs/design/e2ee.md). Absent means false.
	E2EE bool `json:"e2ee,omitempty"`
	// MemberCount is the number of members. Stores leave it 0 and fill
	// Members; the core sets it when it presents a conversation.
	MemberCount int `json:"member_count"`
	// Members lists every member. Stores always fill it; a presented
	// conversation has it only while it is not paged.
	Members []Member `json:"members,omitempty"`
	// MembersPaged says the conversation has more members than the inline
	// limit: Members is nil, and Me and Receipts stand in for it (Me and
	// Receipts only where one member is the viewer, not in events).
	MembersPaged bool             `json:"members_paged,omitempty"`
	Me           *Member          `json:"me,omitempty"`
	Receipts     *ReceiptsSummary `json:"receipts,omitempty"`
}

// ReceiptsSummary counts, for each of the newest ReceiptsWindow seqs of
// a conversation from FromSeq on, the members (the viewer included) who
// have that message (Delivered: delivered_seq or read_seq at or above
// it) and who have read it (Read), as the viewer may see their
// watermarks. Both slices have last_seq-FromSeq+1 entries.
type ReceiptsSummary struct {
	FromSeq   int64 `json:"from_seq"`
	Delivered []int `json:"delivered"`
	Read      []int `json:"read"`
}

// SummarizeReceipts computes the summary of a conversation whose last
// seq is lastSeq from its members' watermarks (as the viewer is to see
// them), in one pass over members.
func SummarizeReceipts(lastSeq int64, members []Member) *ReceiptsSummary {
	from := max(1, lastSeq-ReceiptsWindow+1)
	n := int(max(0, lastSeq-from+1))
	r := &ReceiptsSummary{FromSeq: from, Delivered: make([]int, n), Read: make([]int, n)}
	if n == 0 {
		return r
	}
	// Count each watermark at its slot, then sum from the top down.
	slot := func(seq int64) int { return int(min(seq, lastSeq) - from) }
	for i := range members {
		m := &members[i]
		if d := max(m.DeliveredSeq, m.ReadSeq); d >= from {
			r.Delivered[slot(d)]++
		}
		if m.ReadSeq >= from {
			r.Read[slot(m.ReadSeq)]++
		}
	}
	for i := n - 2; i >= 0; i-- {
		r.Delivered[i] += r.Delivered[i+1]
		r.Read[i] += r.Read[i+1]
	}
	return r
}

// MembersQuery asks Store.Members for one page of a conversation's
// members, by user id ascending.
type MembersQuery struct {
	// After is a user id; members whose id sorts after it are returned
	// ("" from the start).
	After string
	// Limit is the page size, 1..MaxMembersPage.
	Limit int
}

// Members page bounds (GET /v1/conversations/{id}/members).
const (
	DefaultMembersPage = 200
	MaxMembersPage     = 1000
)

// Member is a user's membership of a conversation. ReadSeq is the highest
// seq the user has read; DeliveredSeq the highest seq any of the user's
// devices has received. Neither moves backwards.
type Member struct {
	UserID       string     `json:"user_id"`
	Role         MemberRole `json:"role"`
	ReadSeq      int64      `json:"read_seq"`
	DeliveredSeq int64      `json:"delivered_seq"`
	JoinedAt     time.Time  `json:"joined_at"`
	// Request says the user has not accepted the conversation yet: it
	// is a message request (docs/protocol.md, section 16). Until the user
	// accepts, none of the user's presence, typing or receipts reach the
	// other members, who see the user's watermarks as 0.
	Request bool `json:"request,omitempty"`
}

// Size is the number of members: MemberCount, or for an object without
// it (from a server before it) the length of Members.
func (c *Conversation) Size() int {
	if c.MemberCount > 0 {
		return c.MemberCount
	}
	return len(c.Members)
}

// MemberOf returns the member entry for userID, or nil. In a paged
// conversation, whose Members are absent, only the viewer's own entry
// (Me) is known.
func (c *Conversation) MemberOf(userID string) *Member {
	for i := range c.Members {
		if c.Members[i].UserID == userID {
			return &c.Members[i]
		}
	}
	if c.Me != nil && c.Me.UserID == userID {
		return c.Me
	}
	return nil
}

// ConversationView is a conversation as one member sees it: with the
// member's read state, the number of unread messages from others, and the
// newest message still visible.
type ConversationView struct {
	Conversation
	ReadSeq     int64 `json:"read_seq"`
	UnreadCount int64 `json:"unread_count"`
	// MutedUntil is when the member's mute of the conversation ends
	// (PUT /v1/conversations/{id}/mute); absent if not muted now.
	MutedUntil  *time.Time `json:"muted_until,omitempty"`
	LastMessage *Message   `json:"last_message"`
}
