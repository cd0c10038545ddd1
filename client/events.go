package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/e2ee"
)

// EventKind says what an Event is about.
type EventKind string

// Event kinds.
const (
	// EventConnected: a connection reached "ready". Reconnect is true
	// after the first.
	EventConnected EventKind = "connected"
	// EventSynced: the sync pass after a connect, and the backfill it
	// called for, are done: the app holds every change up to now.
	EventSynced EventKind = "synced"
	// EventDisconnected: the connection ended (Err says why); the client
	// reconnects unless it stopped.
	EventDisconnected EventKind = "disconnected"
	// EventStopped: the client gave up for good (Err says why: the session
	// ended, the account is suspended, or Close was called).
	EventStopped EventKind = "stopped"
	// EventMessage: a message the app has not had, with Message set.
	// Within a conversation these come in seq order, each seq once
	// (seqs that expired or were purged are skipped).
	EventMessage EventKind = "message"
	// EventMessageChanged: a new version (edited, or a deletion
	// tombstone) of a message the app already had.
	EventMessageChanged EventKind = "message_changed"
	// EventStale: messages of a conversation below Seq may have been
	// edited or deleted while the device was away (the sync had more than
	// it returned); re-read them with history if you keep them.
	EventStale EventKind = "stale"
	// EventReceipt: a member's delivered or read watermark rose.
	EventReceipt EventKind = "receipt"
	// EventTyping: another member started or stopped typing.
	EventTyping EventKind = "typing"
	// EventPresence: a contact came online or went offline.
	EventPresence EventKind = "presence"
	// EventConversation: a conversation appeared, changed or went away
	// (Conversation.Action: created, member_added, member_removed,
	// role_changed, deleted from live frames; synced or removed from a
	// sync).
	EventConversation EventKind = "conversation"
	// EventSendFailed: the server refused a queued message for good
	// (Pending and Err set); it left the outbox.
	EventSendFailed EventKind = "send_failed"
	// EventBlock: the user blocked or unblocked someone, on this device
	// or another (Block set).
	EventBlock EventKind = "block"
	// EventDevices: a user's devices changed as this device saw them
	// (Devices set): a device added (show "Bob added a new device"), a
	// verified user's security code changed, or a listed device is not
	// trusted.
	EventDevices EventKind = "devices"
)

// Event is one thing that happened. Kind says which fields are set.
type Event struct {
	Kind           EventKind
	ConversationID string
	Seq            int64 // EventStale
	Message        *parley.Message
	Receipt        *Receipt
	Typing         *Typing
	Presence       *Presence
	Conversation   *ConversationChange
	Pending        *Pending
	Block          *BlockChange
	// E2EE is set for every message of an e2ee conversation
	// (EventMessage, EventMessageChanged): how it opened on this device.
	// An undecryptable message is handed over all the same (type
	// "encrypted", empty body, E2EE.Reason saying why); if its key comes
	// later it is handed again as EventMessageChanged, decrypted.
	E2EE      *Decryption
	Devices   *DeviceChange
	Reconnect bool
	Err       error
}

// Receipt is a member's watermark: everything up to Seq is delivered to
// (Kind "delivered") or read by (Kind "read") the user.
type Receipt struct {
	ConversationID string
	UserID         string
	DeviceID       string
	Kind           string
	Seq            int64
}

// Typing is a typing indicator; a "start" lapses after ExpiresIn seconds
// unless renewed.
type Typing struct {
	ConversationID string
	UserID         string
	State          string
	ExpiresIn      int
}

// BlockChange is a block the user made (Blocked) or lifted.
type BlockChange struct {
	UserID  string
	Blocked bool
}

// Presence is a contact's state; LastSeen is set with "offline".
type Presence struct {
	UserID   string
	State    string
	LastSeen time.Time
}

// ConversationChange is a conversation as it is now and what happened to
// it. For "removed" and "deleted" only Conversation.ID is meaningful.
// ReadSeq and UnreadCount are set for "synced".
//
// A big group's Conversation is paged (MembersPaged; docs/protocol.md,
// "Big groups"): no Members, but MemberCount, and in "synced" changes the
// user's own entry (Me) and the receipts summary (Receipts). A live
// change of a paged conversation carries the entries of the UserIDs
// after the change in Members (Me is the user's entry among them, if
// any); page through all members with Client.Members.
type ConversationChange struct {
	Action       string
	Conversation *parley.Conversation
	UserIDs      []string
	Members      []parley.Member
	ByUserID     string
	ReadSeq      int64
	UnreadCount  int64
}

// Pending is a message in the outbox: queued, sent, and retried with the
// same ClientMsgID across reconnects until the server acknowledges (or
// refuses) it.
type Pending struct {
	ClientMsgID    string
	ConversationID string
	Type           parley.MessageType
	Body           string
	TTL            time.Duration
	Attachments    []string  // media ids
	Queued         time.Time // when it entered the outbox
	// E2EEAttachments are the keys and metadata of attachments uploaded
	// encrypted (for an e2ee conversation, in Attachments' order).
	E2EEAttachments []e2ee.Attachment

	attempts atomic.Int32 // times written to a connection
	done     chan struct{}
	msg      *parley.Message
	err      error

	inFlight bool
	retryAt  time.Time

	// End-to-end encryption (owned by the connection loop).
	encrypted       bool    // the conversation is e2ee
	unknown         bool    // whether it is e2ee was not known at Enqueue: ask before sending
	sealed          *sealed // the envelope to send
	resealFrom      *sealed // after device_mismatch: redo its keys
	preparing       bool    // sealing in the background
	prepareFailures int
	mismatches      int
	checkedE2EE     bool // asked whether the conversation is e2ee after a refusal
}

func (p *Pending) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Attempts is how many times the message was written to a connection.
func (p *Pending) Attempts() int { return int(p.attempts.Load()) }

// Done is closed when the message is acknowledged or refused.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Result is the stored message (after Done), or the refusal.
func (p *Pending) Result() (*parley.Message, error) {
	select {
	case <-p.done:
		return p.msg, p.err
	default:
		return nil, parley.Errorf(parley.CodeUnavailable, "not acknowledged yet")
	}
}

// Wait waits for the acknowledgement. If ctx ends first the message stays
// in the outbox and is still sent.
func (p *Pending) Wait(ctx context.Context) (*parley.Message, error) {
	select {
	case <-p.done:
		return p.msg, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// SendOption adjusts a message to send.
type SendOption func(*sendOpts)

type sendOpts struct {
	ClientMsgID string
	Type        parley.MessageType
	TTL         time.Duration
	Attachments []string
}

// WithClientMsgID sets the idempotency key (default: 16 random bytes, hex).
func WithClientMsgID(id string) SendOption { return func(o *sendOpts) { o.ClientMsgID = id } }

// WithType sets the message type (default text).
func WithType(t parley.MessageType) SendOption { return func(o *sendOpts) { o.Type = t } }

// WithTTL makes the message expire after d (whole seconds).
func WithTTL(d time.Duration) SendOption { return func(o *sendOpts) { o.TTL = d } }

// WithAttachments attaches uploaded media (their media ids, from Upload or
// UploadFile) to the message, at most parley.MaxAttachments. Each must be
// ready, uploaded by this user for this conversation and not attached
// yet; the server refuses the send otherwise. Pair it with WithType
// (image, video or file) so that clients render it.
func WithAttachments(mediaIDs ...string) SendOption {
	return func(o *sendOpts) { o.Attachments = append(o.Attachments, mediaIDs...) }
}

func sendOptions(opts []SendOption) sendOpts {
	o := sendOpts{Type: parley.MessageText}
	for _, f := range opts {
		f(&o)
	}
	if o.ClientMsgID == "" {
		o.ClientMsgID = NewClientMsgID()
	}
	return o
}

// NewClientMsgID returns a fresh random idempotency key.
func NewClientMsgID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// State is what a device keeps to resume where it left off: the sync
// position, per conversation the highest seq up to which it has every
// message, and the outbox. Save it (JSON) after events and pass it in
// Config.State on the next start.
type State struct {
	Position string           `json:"position"`
	Held     map[string]int64 `json:"held"`
	Outbox   []OutboxEntry    `json:"outbox"`
}

// OutboxEntry is a saved Pending.
type OutboxEntry struct {
	ClientMsgID    string             `json:"client_msg_id"`
	ConversationID string             `json:"conversation_id"`
	Type           parley.MessageType `json:"type"`
	Body           string             `json:"body"`
	TTLSeconds     int64              `json:"ttl_seconds,omitempty"`
	Attachments    []string           `json:"attachments,omitempty"` // media ids
	Queued         time.Time          `json:"queued"`
	// E2EEAttachments holds the keys of attachments uploaded encrypted:
	// secret, like the body (the State is the device's own storage).
	E2EEAttachments []e2ee.Attachment `json:"e2ee_attachments,omitempty"`
	// Encrypted: the conversation is e2ee (the message is sealed before it
	// goes, never sent in plaintext). CheckE2EE: that was not known when
	// it was queued; the client asks the server before sending it.
	Encrypted bool `json:"encrypted,omitempty"`
	CheckE2EE bool `json:"check_e2ee,omitempty"`
}
