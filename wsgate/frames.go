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

	"github.com/parleychat/parley"
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
)

// Limits on client frames.
const (
	// DefaultMaxFrame is the largest client frame, in bytes (128 KiB).
	DefaultMaxFrame = 128 << 10
	// MaxRequestID bounds a request id, in bytes.
	MaxRequestID = 64
	// MaxSyncLimit bounds the messages per conversation in a sync_result.
	MaxSyncLimit = 100
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

	Seq   *int64 `json:"seq,omitempty"`   // delivered, read
	State string `json:"state,omitempty"` // typing: start or stop

	Position string `json:"position,omitempty"` // sync: opaque cursor
	Before   *int64 `json:"before,omitempty"`   // history
	After    *int64 `json:"after,omitempty"`    // history
	Limit    *int   `json:"limit,omitempty"`    // sync, history
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
		return errors.Join(needID(), needConversation())
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
}

// Encode marshals a server frame. The frames above always marshal; an
// error means a programming mistake.
func Encode(frame any) ([]byte, error) { return json.Marshal(frame) }

// ErrorFrameFor builds the error frame answering request id with err's
// code and message (internal details never reach the client).
func ErrorFrameFor(id string, err error) ErrorFrame {
	return ErrorFrame{Type: FrameError, ID: id, Error: ErrorBody{Code: parley.ErrorCode(err), Message: parley.ErrorMessage(err)}}
}
