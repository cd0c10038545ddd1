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

// MaxGroupMembers bounds the size of a group.
const MaxGroupMembers = 1000

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
	E2EE    bool     `json:"e2ee,omitempty"`
	Members []Member `json:"members"`
}

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

// MemberOf returns the member entry for userID, or nil.
func (c *Conversation) MemberOf(userID string) *Member {
	for i := range c.Members {
		if c.Members[i].UserID == userID {
			return &c.Members[i]
		}
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
