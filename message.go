package parley

import "time"

// MessageType says how a client renders a message body.
type MessageType string

// Message types. System messages are written only by the server.
const (
	MessageText   MessageType = "text"
	MessageImage  MessageType = "image"
	MessageVideo  MessageType = "video"
	MessageFile   MessageType = "file"
	MessageSystem MessageType = "system"
	// MessageEncrypted (e2ee.go) is the type of every message of an e2ee
	// conversation.
)

// Valid reports whether t is a known message type.
func (t MessageType) Valid() bool {
	switch t {
	case MessageText, MessageImage, MessageVideo, MessageFile, MessageSystem, MessageEncrypted:
		return true
	}
	return false
}

// Limits on message fields.
const (
	ClientMsgIDMaxLen   = 64       // bytes
	DefaultMaxBodySize  = 64 << 10 // bytes
	MaxHistoryLimit     = 200
	DefaultHistoryLimit = 50
	MaxTTL              = 365 * 24 * time.Hour
)

// Message is one message in a conversation, identified by (ConversationID,
// Seq) and globally by ID. Body is opaque to the server (a later end-to-end
// encryption layer puts ciphertext here). A deleted message is a tombstone:
// Deleted is set and Body is empty, so clients can tell deleted from missing.
type Message struct {
	ID             string      `json:"id"`
	ConversationID string      `json:"conversation_id"`
	Seq            int64       `json:"seq"`
	SenderID       string      `json:"sender_id"`
	SenderDeviceID string      `json:"sender_device_id"`
	ClientMsgID    string      `json:"client_msg_id"`
	Type           MessageType `json:"type"`
	Body           string      `json:"body"`
	CreatedAt      time.Time   `json:"created_at"`
	ExpiresAt      time.Time   `json:"expires_at,omitzero"`
	EditedAt       time.Time   `json:"edited_at,omitzero"`
	Deleted        bool        `json:"deleted,omitempty"`
	// Withheld marks a message sent in a direct conversation by a user
	// the other member blocks: it is stored and numbered (seqs stay
	// gap-free) but only its sender ever sees its content. The core
	// shows it to everyone else as a withheld tombstone (empty body,
	// Deleted and Withheld set) and to its sender as an ordinary
	// message, without this field.
	Withheld bool `json:"withheld,omitempty"`
	// Attachments are the media the message carries (at most
	// MaxAttachments), in the order the sender gave them; none on a
	// tombstone.
	Attachments []Attachment `json:"attachments,omitempty"`
	// Envelope is the content of an encrypted message (Type
	// MessageEncrypted, Body empty), as the device it is delivered to
	// gets it: with only that device's key. None on a tombstone.
	Envelope *Envelope `json:"envelope,omitempty"`
}

// HistoryQuery selects a page of a conversation's history. At most one of
// Before and After is set (0 means unset). With Before, the page is the
// Limit messages just before that seq; with After, the Limit messages just
// after it (see Forward); with neither, the newest Limit messages. Pages are always in
// ascending seq order.
type HistoryQuery struct {
	Before int64
	After  int64
	// Forward pages forward from After even when After is 0, giving the
	// oldest Limit messages; it is implied when After > 0.
	Forward bool
	Limit   int
}

// Forwards reports whether q pages forward (oldest first from After).
func (q HistoryQuery) Forwards() bool { return q.After > 0 || q.Forward }

// Estimated JSON sizes for reply budgets (sync pages, history replies):
// a conversation object without members, one member in it, and a message
// object without its body. Store, core and transport cut replies with
// the same figures.
const (
	EstimatedConversationBytes = 300
	EstimatedMemberBytes       = 160
	EstimatedMessageBytes      = 400
)

// EstimatedMembersBytes is the estimated JSON size of the members part
// of a conversation object with n members, when objects list at most
// inline members (0: no limit): every member inline, or the paged form
// (the viewer's own entry and the receipts summary, about as much as
// four members).
func EstimatedMembersBytes(n, inline int) int {
	if inline > 0 && n > inline {
		return 4 * EstimatedMemberBytes
	}
	return n * EstimatedMemberBytes
}

// EstimatedAttachmentBytes is the JSON size of one attachment object
// without its filename, for reply budgets.
const EstimatedAttachmentBytes = 400

// EstimatedEnvelopeBytes is the JSON size of an envelope without its
// ciphertext and signature (the fields and one device's key).
const EstimatedEnvelopeBytes = 300

// EstimatedSize estimates m's JSON size for reply budgets: the fields
// around the body, the body and filenames as escaped, and
// EstimatedAttachmentBytes per attachment.
func EstimatedSize(m *Message) int {
	n := EstimatedMessageBytes + JSONLen(m.Body)
	for i := range m.Attachments {
		n += EstimatedAttachmentBytes + JSONLen(m.Attachments[i].Filename)
	}
	if e := m.Envelope; e != nil {
		n += EstimatedEnvelopeBytes + len(e.Ciphertext) + len(e.Signature)
	}
	return n
}

// ReplyBudget bounds the messages of one history reply, in bytes of
// JSON, on REST (GET .../messages, counted exactly) and on the WebSocket
// (history_result, counted with EstimatedMessageBytes and JSONLen): a
// page that would pass it is cut at the budget, keeping the messages
// nearest to where the page starts, and marked truncated. At least one
// message always goes, so a single large message is still readable.
// Without it a 640-byte request could ask for 200 bodies of 64 KiB.
const ReplyBudget = 256 << 10

// JSONLen is the length of s as a JSON string's content, escapes included
// (without HTML escaping): a control character takes up to 6 bytes, a quote
// or backslash 2, U+2028 and U+2029 6. Reply budgets count with it, so a
// body of escapes cannot make a reply several times its estimate.
func JSONLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n++
		case c < 0x20:
			n += 5
		case c == 0xe2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9):
			n += 3
		}
	}
	return n
}
