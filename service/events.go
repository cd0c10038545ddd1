package service

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/parleychat/parley"
)

// Live events. After a change commits, the core publishes what happened on
// the bus; every node's WebSocket gateway (wsgate) decides which of its
// local sessions get it. The bus is news, not truth: an event may be lost
// (a crash between commit and publish) and clients heal by sync, so a
// failed publish is logged, never returned to the caller whose change did
// commit.
//
// Subjects hash ids into a fixed number of buckets so that a node can
// subscribe to the buckets it needs instead of one subject per
// conversation (docs/design/realtime.md): events about a conversation go
// to ConversationSubject, events about a user (presence, revoked sessions)
// to UserSubject. One publisher (the commit path of one call) publishes in
// order on one subject.

// Event kinds.
const (
	// EventMessage: a new message (Message set). Published when it
	// commits, and again when its client_msg_id is retried (the first
	// attempt's event may have been lost with its ack); subscribers drop
	// a seq they hold.
	EventMessage = "message"
	// EventMessageChanged: a message was edited or deleted (Message set,
	// as stored now).
	EventMessageChanged = "message_changed"
	// EventReceipt: a member's delivered or read watermark rose
	// (UserID, Receipt, Seq; DeviceID for delivered).
	EventReceipt = "receipt"
	// EventTyping: a member started or stopped typing (UserID, State).
	//
	// Receipt and typing events are not shown to the users in Hide (the
	// privacy rules: blocks, settings, message requests).
	EventTyping = "typing"
	// EventConversation: a conversation was created or its membership,
	// roles or existence changed (Action, Conversation as it is now, nil
	// after a delete; Users names the users the change is about).
	EventConversation = "conversation"
	// EventPresence: a user came online or went offline (UserID, State,
	// LastSeen). The audience is the users in Users: this core names
	// them all (presenceAudience), in several events if they are many.
	// An event with Conversations instead, from a node before that, is
	// for their members except the users in Hide.
	EventPresence = "presence"
	// EventBlock: UserID blocked (State "blocked") or unblocked
	// ("unblocked") the user in Users; for the user's own devices.
	EventBlock = "block"
	// EventRevoked: sessions ended (UserID; DeviceID, or every device of
	// the user when empty); live connections of them close at once.
	EventRevoked = "revoked"
	// EventDeviceList: UserID's device list is now at version Seq; for
	// the user's sessions and the members of Conversations (the user's).
	EventDeviceList = "device_list"
	// EventKeyRequest: the device DeviceID of the user in Users asks the
	// sender (UserID) of message Seq of ConversationID for its key again;
	// for the sender's sessions.
	EventKeyRequest = "key_request"
	// EventMessageKey: keys were added to an encrypted message (Message,
	// without keys; Keys the added ones); each device given a key gets
	// the message again with it.
	EventMessageKey = "message_key"
)

// Conversation event actions.
const (
	ActionCreated       = "created"
	ActionMemberAdded   = "member_added"
	ActionMemberRemoved = "member_removed"
	ActionRoleChanged   = "role_changed"
	ActionDeleted       = "deleted"
)

// Event is the bus payload (JSON). Fields are set per Kind.
type Event struct {
	Kind           string `json:"kind"`
	ConversationID string `json:"conversation_id,omitempty"`
	UserID         string `json:"user_id,omitempty"`
	DeviceID       string `json:"device_id,omitempty"`

	Message *parley.Message `json:"message,omitempty"`
	// Keys are the keys of an encrypted Message: every recipient's on
	// EventMessage, the added ones on EventMessageKey. (The bus is
	// sealed; the keys themselves are sealed to their devices.)
	Keys []parley.EnvelopeKey `json:"keys,omitempty"`

	Receipt string `json:"receipt,omitempty"` // delivered or read
	Seq     int64  `json:"seq,omitempty"`

	State    string    `json:"state,omitempty"` // typing: start/stop; presence: online/offline
	LastSeen time.Time `json:"last_seen,omitzero"`

	Action       string               `json:"action,omitempty"`
	Conversation *parley.Conversation `json:"conversation,omitempty"`
	Users        []string             `json:"users,omitempty"`
	// Members, in an event about a paged conversation (whose
	// Conversation lists no members), are the entries of the Users still
	// members after the change (none for created: every member is new).
	Members []parley.Member `json:"members,omitempty"`

	Conversations []string `json:"conversations,omitempty"`

	// Hide lists users who must not be shown the event (see above);
	// Private says only UserID's own sessions may be.
	Hide    []string `json:"hide,omitempty"`
	Private bool     `json:"private,omitempty"`
}

// Subject buckets. Fixed for a deployment: every node must agree.
const subjectBuckets = 64

// Subject prefixes; a node that wants everything subscribes to
// ConversationSubjects and UserSubjects.
const (
	ConversationSubjects = "parley.conv.>"
	UserSubjects         = "parley.user.>"
)

// ConversationSubject is the subject of events about a conversation.
func ConversationSubject(conversationID string) string {
	return "parley.conv." + bucket(conversationID)
}

// UserSubject is the subject of events about a user.
func UserSubject(userID string) string {
	return "parley.user." + bucket(userID)
}

func bucket(id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	return strconv.Itoa(int(h.Sum32() % subjectBuckets))
}

// publishOrder keeps a conversation's events published on this node in
// the order their changes committed where it matters: a membership change
// (exclusive) is never overtaken by a message, receipt or typing event
// (shared) committed after it, nor published before one committed before
// it. Without it a message committed just after a member's removal could
// reach that member, and a stale "added" could re-attach them. Shared
// holders (sends) still run concurrently and share group commits. Striped
// by conversation; one node only: a cluster orders by change stamps.
type publishOrder [256]sync.RWMutex

func (o *publishOrder) stripe(conversationID string) *sync.RWMutex {
	return &o[o.index(conversationID)]
}

func (o *publishOrder) index(conversationID string) int {
	h := fnv.New32a()
	h.Write([]byte(conversationID))
	return int(h.Sum32() % uint32(len(o)))
}

// shared holds the conversation's publish order for a change that may run
// alongside others; call the returned func after publishing.
func (s *Service) shared(conversationID string) func() {
	m := s.order.stripe(conversationID)
	m.RLock()
	return m.RUnlock
}

// sharedAll is shared for several conversations at once (SendMany's).
// It takes each stripe once, in ascending order: an exclusive holder
// holds one stripe only, so readers taking several in one order cannot
// wait on each other in a cycle.
func (s *Service) sharedAll(conversationIDs []string) func() {
	var held [len(publishOrder{})]bool
	for _, id := range conversationIDs {
		held[s.order.index(id)] = true
	}
	for i := range held {
		if held[i] {
			s.order[i].RLock()
		}
	}
	return func() {
		for i := range held {
			if held[i] {
				s.order[i].RUnlock()
			}
		}
	}
}

// exclusive holds it for a membership change. Until it is released the
// relations cache reads the conversation's answers from the store
// (relcache.go).
func (s *Service) exclusive(conversationID string) func() {
	m := s.order.stripe(conversationID)
	m.Lock()
	done := s.rel.changing(nil, conversationID)
	return func() {
		done()
		m.Unlock()
	}
}

// UseBus makes the service publish live events on b. Call it before
// serving; without a bus nothing is published.
func (s *Service) UseBus(b parley.Bus) { s.bus = b }

// publish sends e on subject. Failures are logged and counted: the change
// is committed; clients heal by sync.
func (s *Service) publish(ctx context.Context, subject string, e *Event) {
	if s.bus == nil {
		return
	}
	data, err := json.Marshal(e)
	if err == nil {
		s.loop.keep(data, e)
		// A caller's cancelled request must not stop the news of a commit.
		err = s.bus.Publish(context.WithoutCancel(ctx), subject, data)
	}
	if err != nil {
		s.log.WarnContext(ctx, "publish event", "kind", e.Kind, "err", err)
	}
}

func (s *Service) publishConversation(ctx context.Context, e *Event) {
	if e.Message != nil && e.Message.Envelope != nil && e.Kind == EventMessage {
		e.Keys = e.Message.Envelope.Keys
	}
	if e.Kind == EventConversation && e.Conversation != nil {
		// Every member gets it: no read watermark anyone may not see.
		c := *e
		c.Conversation = s.scrubConversation(ctx, e.UserID, e.Conversation)
		s.shapeEvent(&c)
		e = &c
	}
	// This node's history cache first, so the caller reads its own write.
	s.ObserveEvent(e)
	s.publish(ctx, ConversationSubject(e.ConversationID), e)
}

// ObserveEvent keeps the history cache, the relations cache and the
// push view's members coherent with an event about a conversation or a
// block, heard from the bus (the gateway passes on every one) or
// published here.
func (s *Service) ObserveEvent(e *Event) {
	if s.cache != nil {
		s.cache.apply(e)
	}
	s.rel.observe(e)
	if s.push != nil && e.Kind == EventConversation {
		s.push.ConversationChanged(e.ConversationID) // the push view's members
	}
	if e.Kind == EventConversation {
		if c := e.Conversation; c == nil {
			s.paged.forget(e.ConversationID)
		} else {
			n := c.MemberCount
			if n == 0 { // from a node that sets no count
				n = len(c.Members)
			}
			s.paged.note(c.ID, s.isPaged(n))
		}
	}
}

// ClearHistoryCache drops the history cache and the relations cache;
// call it when events may have been missed (the bus connection dropped).
func (s *Service) ClearHistoryCache() {
	if s.cache != nil {
		s.cache.clear()
	}
	s.rel.clear()
}

// HistoryCacheStats returns the history cache's hits and misses so far.
func (s *Service) HistoryCacheStats() (hits, misses int64) {
	if s.cache == nil {
		return 0, 0
	}
	return s.cache.hits.Load(), s.cache.misses.Load()
}

// Typing publishes that the caller started or stopped typing in a
// conversation it is a member of. Typing is never stored.
func (s *Service) Typing(ctx context.Context, p *parley.Principal, conversationID, state string) error {
	if state != "start" && state != "stop" {
		return parley.Errorf(parley.CodeInvalidRequest, "state must be start or stop")
	}
	defer s.shared(conversationID)()
	me, err := s.member(ctx, p, conversationID)
	if err != nil {
		return err
	}
	if me.Request {
		return nil // a message request: nobody sees the user type
	}
	r, err := s.relations(ctx, p.UserID, conversationID)
	if err != nil {
		return err
	}
	s.publishConversation(ctx, &Event{Kind: EventTyping, ConversationID: conversationID, UserID: p.UserID, DeviceID: p.DeviceID, State: state, Hide: blockedIDs(r)})
	return nil
}

// Presence publishes that userID came online or went offline. The
// gateway calls it on a user's first live session and after the grace
// period that follows the last one; the audience is the user's contacts
// whom the privacy rules let see it (presenceAudience).
func (s *Service) Presence(ctx context.Context, userID string, online bool, lastSeen time.Time) error {
	audience, err := s.presenceAudience(ctx, userID)
	if err != nil {
		return err
	}
	e := &Event{Kind: EventPresence, UserID: userID, State: "offline"}
	if online {
		e.State = "online"
	} else {
		e.LastSeen = lastSeen.UTC().Truncate(time.Second)
	}
	s.publishPresence(ctx, e, audience)
	return nil
}

// Contacts returns the users whose presence userID may see: those who
// share a conversation that is not paged with the user, less those the
// privacy rules hide (blocks either way, their settings, their requests
// to the user: they have accepted nothing shared with the user), from
// one read of the contacts and their settings. The gateway lists the
// online ones to a new session.
func (s *Service) Contacts(ctx context.Context, userID string) ([]string, error) {
	return s.contacts(ctx, userID, func(p parley.Peer) bool {
		return !p.PeerUnaccepted && p.Privacy.Presence.Allows(!p.Stranger)
	})
}

// LastSeqs returns the last_seq of every conversation the caller is a
// member of; the gateway starts live delivery from these.
func (s *Service) LastSeqs(ctx context.Context, p *parley.Principal) (map[string]int64, error) {
	return s.store.LastSeqs(ctx, p.UserID)
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.cfg.Now() }

// LiveMessages returns up to limit messages of a conversation after seq,
// oldest first, skipping expired ones. It takes no principal: the gateway
// calls it to fill a gap in live delivery, for conversations whose local
// members it already delivers to.
func (s *Service) LiveMessages(ctx context.Context, conversationID string, after int64, limit int) ([]parley.Message, error) {
	return s.store.Messages(ctx, conversationID, parley.HistoryQuery{After: after, Forward: true, Limit: limit}, s.cfg.Now())
}

// CheckSession reports whether p's session is still alive (its device
// exists with the same session and the user is active); the gateway asks
// periodically so that a lost "revoked" event cannot keep a socket open.
func (s *Service) CheckSession(ctx context.Context, p *parley.Principal) error {
	d, err := s.store.Device(ctx, p.DeviceID)
	if parley.ErrorCode(err) == parley.CodeNotFound || (err == nil && (d.SessionID != p.SessionID || d.UserID != p.UserID)) {
		return parley.Errorf(parley.CodeUnauthorized, "session has ended; log in again")
	}
	return err
}
