package client

import (
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/e2ee"
)

// OutFrame is a client frame of /v1/ws (docs/protocol.md, section 3).
// Unset fields are left out.
type OutFrame struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`

	ConversationID string                 `json:"conversation_id,omitempty"`
	ClientMsgID    string                 `json:"client_msg_id,omitempty"`
	MessageType    parley.MessageType     `json:"message_type,omitempty"`
	Body           string                 `json:"body,omitempty"`
	TTLSeconds     int64                  `json:"ttl_seconds,omitempty"`
	Attachments    []parley.AttachmentRef `json:"attachments,omitempty"`
	Envelope       *e2ee.Envelope         `json:"envelope,omitempty"` // an e2ee send, with every recipient's key

	Seq   *int64 `json:"seq,omitempty"`
	State string `json:"state,omitempty"`

	Position string `json:"position,omitempty"`
	Before   *int64 `json:"before,omitempty"`
	After    *int64 `json:"after,omitempty"`
	Limit    *int   `json:"limit,omitempty"`

	AccessToken string `json:"access_token,omitempty"`
}

func attachmentRefs(ids []string) []parley.AttachmentRef {
	if len(ids) == 0 {
		return nil
	}
	out := make([]parley.AttachmentRef, len(ids))
	for i, id := range ids {
		out[i] = parley.AttachmentRef{MediaID: id}
	}
	return out
}

// InFrame is any server frame of /v1/ws (docs/protocol.md, section 4),
// decoded into one struct: Type says which fields are set.
type InFrame struct {
	Type  string        `json:"type"`
	ID    string        `json:"id"`
	Error *parley.Error `json:"error"`

	// message, ack
	Message *parley.Message `json:"message"`

	// receipt, typing, presence, history_result
	ConversationID string     `json:"conversation_id"`
	UserID         string     `json:"user_id"`
	DeviceID       string     `json:"device_id"`
	Kind           string     `json:"kind"`
	Seq            int64      `json:"seq"`
	State          string     `json:"state"`
	ExpiresIn      int        `json:"expires_in"`
	LastSeen       *time.Time `json:"last_seen"`
	Blocked        bool       `json:"blocked"` // block

	// device_list
	DeviceListVersion int64 `json:"device_list_version"`

	// sync_result
	Position      string      `json:"position"`
	HasMore       bool        `json:"has_more"`
	FullState     bool        `json:"full_state"`
	Conversations []SyncEntry `json:"conversations"`

	// history_result
	Messages  []parley.Message `json:"messages"`
	Truncated bool             `json:"truncated"`

	// conversation
	Action       string               `json:"action"`
	Conversation *parley.Conversation `json:"conversation"`
	UserIDs      []string             `json:"user_ids"`
	Members      []parley.Member      `json:"members"` // paged conversations: the entries of UserIDs after the change
	ByUserID     string               `json:"by_user_id"`

	// ready, authenticated
	PingInterval   int       `json:"ping_interval"`
	TokenExpiresAt time.Time `json:"token_expires_at"`
	MaxFrameBytes  int       `json:"max_frame_bytes"`
}

// SyncEntry is one conversation of a sync_result.
type SyncEntry struct {
	Conversation parley.Conversation `json:"conversation"`
	Removed      bool                `json:"removed"`
	ReadSeq      int64               `json:"read_seq"`
	UnreadCount  int64               `json:"unread_count"`
	Messages     []parley.Message    `json:"messages"`
	MoreMessages bool                `json:"more_messages"`
}

// Frame types.
const (
	frameReady         = "ready"
	frameAck           = "ack"
	frameError         = "error"
	frameMessage       = "message"
	frameReceipt       = "receipt"
	frameTyping        = "typing"
	framePresence      = "presence"
	frameSyncResult    = "sync_result"
	frameHistoryResult = "history_result"
	frameConversation  = "conversation"
	framePong          = "pong"
	frameAuthenticated = "authenticated"
	frameBlock         = "block"
	frameDeviceList    = "device_list"
	frameKeyRequest    = "key_request"
)
