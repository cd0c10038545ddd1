// Package wsgate is Parley's WebSocket transport (/v1/ws). This file is its
// wire format: JSON text frames, each an object with a "type"; requests
// carry a client-chosen "id" that the reply echoes. DecodeClientFrame is the
// one decoder of client frames; server frames are built from the structs
// below and encoded once per event, whatever the number of recipients.
package wsgate

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// Client frame types.
const (
	FrameSend      = "send"
	FrameDelivered = "delivered"
	FrameRead      = "read"
	FrameTyping    = "typing"
	FrameSync      = "sync"
	FrameHistory   = "history"
	FramePing      = "ping"
	FrameAuth      = "auth"
)

// Server frame types.
const (
	FrameAck           = "ack"
	FrameError         = "error"
	FrameMessage       = "message"
	FrameReceipt       = "receipt"
	FramePresence      = "presence"
	FrameSyncResult    = "sync_result"
	FrameHistoryResult = "history_result"
	FrameConversation  = "conversation"
	FramePong          = "pong"
	FrameReady         = "ready"
	FrameAuthenticated = "authenticated"
	FrameBlock         = "block"
	FrameDeviceList    = "device_list"
	FrameKeyRequest    = "key_request"
)

// Limits on client frames.
const (
	// DefaultMaxFrame is the largest client frame, in bytes (128 KiB).
	DefaultMaxFrame = 128 << 10
	// MaxRequestID bounds a request id, in bytes.
	MaxRequestID = 64
	// MaxSyncLimit bounds the messages per conversation in a sync_result
	// (the core's bound; the decoder rejects more early).
	MaxSyncLimit = service.MaxSyncMessages
)

// ClientFrame is a decoded client frame. Only the fields of its Type are
// set; optional numbers are pointers so that 0 and absent differ (history
// after=0 pages from the oldest message).
type ClientFrame struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`

	ConversationID string             `json:"conversation_id,omitempty"`
	ClientMsgID    string             `json:"client_msg_id,omitempty"`
	MessageType    parley.MessageType `json:"message_type,omitempty"`
	Body           string             `json:"body,omitempty"`
	TTLSeconds     int64              `json:"ttl_seconds,omitempty"`
	// Attachments name media to attach (send; at most
	// parley.MaxAttachments, each with a media_id).
	Attachments []parley.AttachmentRef `json:"attachments,omitempty"`
	// Envelope is the content of a send of message_type encrypted, with
	// every recipient device's key (docs/design/e2ee.md).
	Envelope *parley.EnvelopeInput `json:"envelope,omitempty"`

	Seq   *int64 `json:"seq,omitempty"`   // delivered, read
	State string `json:"state,omitempty"` // typing: start or stop

	Position string `json:"position,omitempty"` // sync: opaque cursor
	Before   *int64 `json:"before,omitempty"`   // history
	After    *int64 `json:"after,omitempty"`    // history
	Limit    *int   `json:"limit,omitempty"`    // sync, history

	AccessToken string `json:"access_token,omitempty"` // auth
}

// DecodeClientFrame parses and checks the shape of one client frame of at
// most maxFrame bytes (0 means DefaultMaxFrame). Errors are *parley.Error:
// payload_too_large for an oversized frame, invalid_request for anything
// else; the error's message names the problem. Semantic checks (membership,
// body size, message type) belong to the core. ID is returned even when the
// frame is otherwise invalid, so the error reply can echo it.
func DecodeClientFrame(data []byte, maxFrame int) (ClientFrame, error) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	var f ClientFrame
	if len(data) > maxFrame {
		return f, parley.Errorf(parley.CodePayloadTooLarge, "frame must be at most %d bytes", maxFrame)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return f, parley.Errorf(parley.CodeInvalidRequest, "a frame is one JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&f); err != nil {
		var typeErr *json.UnmarshalTypeError
		id := f.ID
		f = ClientFrame{ID: validIDOrEmpty(id)}
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return f, parley.Errorf(parley.CodeInvalidRequest, "field %s has the wrong JSON type", typeErr.Field)
		}
		return f, parley.Errorf(parley.CodeInvalidRequest, "a frame is one JSON object")
	}
	if dec.InputOffset() != int64(len(trimmed)) {
		return ClientFrame{ID: validIDOrEmpty(f.ID)}, parley.Errorf(parley.CodeInvalidRequest, "a frame is one JSON object")
	}
	if !validRequestID(f.ID) {
		f.ID = ""
		return f, parley.Errorf(parley.CodeInvalidRequest, "id must be 1 to %d printable ASCII characters", MaxRequestID)
	}
	return f, f.check()
}

// check enforces the fields each frame type requires.
func (f *ClientFrame) check() error {
	needID := func() error {
		if f.ID == "" {
			return parley.Errorf(parley.CodeInvalidRequest, "a %s frame needs an id", f.Type)
		}
		return nil
	}
	needConversation := func() error {
		if f.ConversationID == "" {
			return parley.Errorf(parley.CodeInvalidRequest, "a %s frame needs conversation_id", f.Type)
		}
		return nil
	}
	needSeq := func() error {
		if f.Seq == nil || *f.Seq < 0 {
			return parley.Errorf(parley.CodeInvalidRequest, "a %s frame needs a seq of 0 or more", f.Type)
		}
		return nil
	}
	switch f.Type {
	case FrameSend:
		if err := errors.Join(needID(), needConversation()); err != nil {
			return err
		}
		if len(f.Attachments) > parley.MaxAttachments {
			return parley.Errorf(parley.CodeInvalidRequest, "a message carries at most %d attachments", parley.MaxAttachments)
		}
		for i, a := range f.Attachments {
			if a.MediaID == "" {
				return parley.Errorf(parley.CodeInvalidRequest, "attachment %d needs a media_id", i+1)
			}
		}
	case FrameDelivered, FrameRead:
		return errors.Join(needConversation(), needSeq())
	case FrameTyping:
		if err := needConversation(); err != nil {
			return err
		}
		if f.State != "start" && f.State != "stop" {
			return parley.Errorf(parley.CodeInvalidRequest, "typing state must be start or stop")
		}
	case FrameSync:
		if f.Limit != nil && (*f.Limit < 0 || *f.Limit > MaxSyncLimit) {
			return parley.Errorf(parley.CodeInvalidRequest, "sync limit must be 0 to %d", MaxSyncLimit)
		}
	case FrameHistory:
		if err := errors.Join(needID(), needConversation()); err != nil {
			return err
		}
		if f.Before != nil && f.After != nil {
			return parley.Errorf(parley.CodeInvalidRequest, "give before or after, not both")
		}
		if f.Before != nil && *f.Before < 1 || f.After != nil && *f.After < 0 {
			return parley.Errorf(parley.CodeInvalidRequest, "before must be 1 or more, after 0 or more")
		}
		if f.Limit != nil && (*f.Limit < 1 || *f.Limit > parley.MaxHistoryLimit) {
			return parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to %d", parley.MaxHistoryLimit)
		}
	case FramePing:
	case FrameAuth:
		if err := needID(); err != nil {
			return err
		}
		if f.AccessToken == "" {
			return parley.Errorf(parley.CodeInvalidRequest, "an auth frame needs access_token")
		}
	case "":
		return parley.Errorf(parley.CodeInvalidRequest, "a frame needs a type")
	default:
		return parley.Errorf(parley.CodeInvalidRequest, "unknown frame type %q", truncate(f.Type, 32))
	}
	return nil
}

// HistoryQuery returns the history frame's query in the core's terms.
func (f *ClientFrame) HistoryQuery() parley.HistoryQuery {
	var q parley.HistoryQuery
	if f.Before != nil {
		q.Before = *f.Before
	}
	if f.After != nil {
		q.After, q.Forward = *f.After, true
	}
	if f.Limit != nil {
		q.Limit = *f.Limit
	}
	return q
}

func validRequestID(id string) bool {
	if len(id) > MaxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func validIDOrEmpty(id string) string {
	if validRequestID(id) {
		return id
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// ErrorBody is the error object of an error frame, the same as on REST.
type ErrorBody struct {
	Code    parley.Code `json:"code"`
	Message string      `json:"message"`
	// RetryAfter, on rate_limited, is how many seconds to wait before
	// trying again (REST says it in Retry-After).
	RetryAfter int `json:"retry_after,omitempty"`
	// The lists of a device_mismatch (missing, extra, stale), as on REST.
	*parley.DeviceMismatch
}

// AckFrame answers a send once the message is durable (or a replay).
type AckFrame struct {
	Type    string          `json:"type"` // "ack"
	ID      string          `json:"id"`
	Message *parley.Message `json:"message"`
}

// ErrorFrame reports a failed request (ID set) or a connection-level
// problem (ID empty).
type ErrorFrame struct {
	Type  string    `json:"type"` // "error"
	ID    string    `json:"id,omitempty"`
	Error ErrorBody `json:"error"`
}

// MessageFrame carries a message to every live session of every member.
type MessageFrame struct {
	Type    string          `json:"type"` // "message"
	Message *parley.Message `json:"message"`
}

// ReceiptFrame reports a delivered or read watermark.
type ReceiptFrame struct {
	Type           string `json:"type"` // "receipt"
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	DeviceID       string `json:"device_id,omitempty"`
	Kind           string `json:"kind"` // "delivered" or "read"
	Seq            int64  `json:"seq"`
}

// PongFrame answers a ping.
type PongFrame struct {
	Type string `json:"type"` // "pong"
	ID   string `json:"id,omitempty"`
}

// HistoryResultFrame answers a history request.
type HistoryResultFrame struct {
	Type           string           `json:"type"` // "history_result"
	ID             string           `json:"id"`
	ConversationID string           `json:"conversation_id"`
	Messages       []parley.Message `json:"messages"`
	// Truncated says the page holds fewer messages than asked because it
	// reached the reply size budget (ReplyBudget); it is not the end. Ask
	// again from the edge received, in the same direction: before the
	// first seq when paging back (or after the newest page), after the
	// last seq when paging forward.
	Truncated bool `json:"truncated,omitempty"`
}

// ReplyBudget bounds the message bodies in one history_result or
// sync_result, in bytes (at least one message is always included), so a
// reply never outgrows a connection's write queue. It is the core's
// budget, the same as REST history's.
const ReplyBudget = parley.ReplyBudget

// messageCost estimates a message's share of a frame: its JSON-escaped
// body and the fields around it.
func messageCost(m *parley.Message) int {
	return parley.EstimatedSize(m)
}

// TypingFrame tells a conversation's other live members that someone
// started or stopped typing. A start expires after ExpiresIn seconds unless
// refreshed.
type TypingFrame struct {
	Type           string `json:"type"` // "typing"
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	State          string `json:"state"` // "start" or "stop"
	ExpiresIn      int    `json:"expires_in,omitempty"`
}

// PresenceFrame tells users who share a conversation with UserID that it
// came online or went offline.
type PresenceFrame struct {
	Type     string     `json:"type"` // "presence"
	UserID   string     `json:"user_id"`
	State    string     `json:"state"` // "online" or "offline"
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// BlockFrame tells a user's sessions that the user blocked (Blocked) or
// unblocked another user, on any of the user's devices.
type BlockFrame struct {
	Type    string `json:"type"` // "block"
	UserID  string `json:"user_id"`
	Blocked bool   `json:"blocked"`
}

// DeviceListFrame tells a user's sessions and those of users who share a
// conversation with the user that the user's device list changed: a hint
// to refetch GET /v1/users/{id}/devices if Version is above the one held.
type DeviceListFrame struct {
	Type    string `json:"type"` // "device_list"
	UserID  string `json:"user_id"`
	Version int64  `json:"device_list_version"`
}

// KeyRequestFrame tells the sender's sessions that the device DeviceID
// of UserID cannot decrypt message Seq and asks for its key again (PUT
// .../messages/{seq}/keys answers).
type KeyRequestFrame struct {
	Type           string `json:"type"` // "key_request"
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	UserID         string `json:"user_id"`
	DeviceID       string `json:"device_id"`
}

// SyncConversation is one changed conversation in a sync_result.
type SyncConversation struct {
	// Conversation is a *parley.Conversation, or a ConversationRef with
	// only the id when Removed.
	Conversation any   `json:"conversation"`
	Removed      bool  `json:"removed,omitempty"`
	ReadSeq      int64 `json:"read_seq"`
	UnreadCount  int64 `json:"unread_count"`
	// MutedUntil is when the user's mute of the conversation ends, while
	// it lasts (docs/push.md).
	MutedUntil   *time.Time       `json:"muted_until,omitempty"`
	Messages     []parley.Message `json:"messages"`
	MoreMessages bool             `json:"more_messages,omitempty"`
}

// ConversationRef names a conversation the user no longer sees.
type ConversationRef struct {
	ID string `json:"id"`
}

// SyncResultFrame answers a sync request.
type SyncResultFrame struct {
	Type          string             `json:"type"` // "sync_result"
	ID            string             `json:"id,omitempty"`
	Position      string             `json:"position"`
	Conversations []SyncConversation `json:"conversations"`
	HasMore       bool               `json:"has_more"`
	// FullState: this pass lists every conversation of the user; at its
	// end, drop the ones you hold that it did not list.
	FullState bool `json:"full_state,omitempty"`
}

// ConversationFrame tells members (and a removed member) that a
// conversation was created or its membership or roles changed, or that it
// was deleted (Conversation then holds only the id).
type ConversationFrame struct {
	Type   string `json:"type"`   // "conversation"
	Action string `json:"action"` // created, member_added, member_removed, role_changed, deleted
	// Conversation is the *parley.Conversation after the change, or a
	// ConversationRef (only the id) after deleted.
	Conversation any      `json:"conversation"`
	UserIDs      []string `json:"user_ids,omitempty"` // whom the change is about
	// Members, for a paged conversation (members_paged, no member list),
	// are the entries of the UserIDs still members after the change.
	Members  []parley.Member `json:"members,omitempty"`
	ByUserID string          `json:"by_user_id,omitempty"`
}

// ReadyFrame is the first frame of every connection: live delivery is
// set up, and a sync sent now misses nothing.
type ReadyFrame struct {
	Type          string    `json:"type"` // "ready"
	UserID        string    `json:"user_id"`
	DeviceID      string    `json:"device_id"`
	PingInterval  int       `json:"ping_interval"` // seconds between server pings
	TokenExpires  time.Time `json:"token_expires_at"`
	MaxFrameBytes int       `json:"max_frame_bytes"`
}

// AuthenticatedFrame answers an auth frame: the connection now lives until
// the new token expires.
type AuthenticatedFrame struct {
	Type         string    `json:"type"` // "authenticated"
	ID           string    `json:"id"`
	TokenExpires time.Time `json:"token_expires_at"`
}

// Encode marshals a server frame, without HTML escaping (<, > and & stay
// one byte; frames are not embedded in HTML). The frames above always
// marshal; an error means a programming mistake.
func Encode(frame any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(frame); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ErrorFrameFor builds the error frame answering request id with err's
// code and message (internal details never reach the client).
func ErrorFrameFor(id string, err error) ErrorFrame {
	f := ErrorFrame{Type: FrameError, ID: id, Error: ErrorBody{Code: parley.ErrorCode(err), Message: parley.ErrorMessage(err)}}
	var retry *service.RetryError
	if errors.As(err, &retry) {
		f.Error.RetryAfter = service.RetryAfterSeconds(retry.RetryAfter)
	}
	var mismatch *parley.DeviceMismatchError
	if errors.As(err, &mismatch) {
		f.Error.DeviceMismatch = &mismatch.DeviceMismatch
	}
	return f
}
