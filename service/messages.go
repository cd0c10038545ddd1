package service

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/parleychat/parley"
)

// SendRequest is the input of Send, shared by REST and WebSocket.
type SendRequest struct {
	ConversationID string
	ClientMsgID    string
	Type           parley.MessageType // default text
	Body           string
	TTLSeconds     int64 // 0 = never expires
	// Attachments name media the caller uploaded for this conversation
	// (ready, not attached yet); at most parley.MaxAttachments. In an
	// encrypted message they must have been uploaded encrypted.
	Attachments []parley.AttachmentRef
	// Envelope is the content of a message of type encrypted (Body
	// empty), with every recipient device's key; nil for other types.
	Envelope *parley.Envelope
}

// Send validates, authorizes and commits a message, and returns it once the
// commit is durable. A retry with a ClientMsgID the caller already used
// returns the original message with created=false and stores nothing. This is
// the one path every transport uses to send.
func (s *Service) Send(ctx context.Context, p *parley.Principal, req SendRequest) (*parley.Message, bool, error) {
	m, err := s.prepareSend(ctx, p, &req, nil)
	if err != nil {
		return nil, false, err
	}
	// Membership is checked by the store inside the commit, so a member
	// removed a moment ago cannot slip a message in.
	defer s.shared(req.ConversationID)()
	msg, created, err := s.store.AppendMessage(ctx, m)
	if err != nil {
		return nil, false, err
	}
	return s.sent(ctx, p, msg, created)
}

// SendResult is the outcome of one request of SendMany: what Send would
// return for it.
type SendResult struct {
	Message *parley.Message
	Created bool
	Err     error
}

// SendMany is Send for each of reqs, in their order, from one caller (a
// connection's pipelined sends): each is checked and authorized as Send
// does, one after another, and those that pass go to the store together
// (parley.Store.AppendMessages), so they share group commits instead of
// waiting one commit each, and messages of one conversation get rising
// seqs in the order of reqs. The event of each is published once it has
// committed, in the order of reqs too, without waiting for the commits of
// those after it. Result i is the outcome of reqs[i]; one failing fails
// none of the others. If each is not nil, it gets every result in order
// of i as soon as it is known (after the event), on the caller's
// goroutine, before SendMany returns.
func (s *Service) SendMany(ctx context.Context, p *parley.Principal, reqs []SendRequest, each func(i int, r SendResult)) []SendResult {
	out := make([]SendResult, len(reqs))
	ready := make([]bool, len(reqs))
	next := 0
	set := func(i int, r SendResult) {
		out[i], ready[i] = r, true
		for next < len(out) && ready[next] {
			if each != nil {
				each(next, out[next])
			}
			next++
		}
	}
	ms := make([]*parley.Message, 0, len(reqs))
	idx := make([]int, 0, len(reqs))
	convs := make([]string, 0, len(reqs))
	var refused []int
	rel := make(map[string]*parley.Relations) // per conversation, for this call
	for i := range reqs {
		m, err := s.prepareSend(ctx, p, &reqs[i], rel)
		if err != nil {
			out[i].Err = err
			refused = append(refused, i)
			continue
		}
		ms, idx, convs = append(ms, m), append(idx, i), append(convs, m.ConversationID)
	}
	for _, i := range refused {
		set(i, out[i])
	}
	if len(ms) == 0 {
		return out
	}
	defer s.sharedAll(convs)()
	s.store.AppendMessages(ctx, ms, func(k int, r parley.AppendResult) {
		var o SendResult
		if o.Err = r.Err; o.Err == nil {
			o.Message, o.Created, o.Err = s.sent(ctx, p, r.Message, r.Created)
		}
		set(idx[k], o)
	})
	return out
}

// prepareSend checks, rate-limits and authorizes req (the store checks
// membership again at commit) and returns the message to append. rel, if
// not nil, keeps the relations read per conversation for the next
// requests of the same caller (SendMany's): a block that lands meanwhile
// is a block just after those sends, as for one send.
func (s *Service) prepareSend(ctx context.Context, p *parley.Principal, req *SendRequest, rel map[string]*parley.Relations) (*parley.Message, error) {
	if err := s.checkSend(req); err != nil {
		return nil, err
	}
	// One bucket per user for every connection and REST call of theirs:
	// many connections of one user cannot multiply the rate.
	if ok, retry := s.sendLimit.Allow(p.UserID, time.Now()); !ok {
		s.metrics.RateLimited("user_send")
		return nil, &RetryError{RetryAfter: retry, Err: parley.Errorf(parley.CodeRateLimited,
			"too many messages from this user; retry after %d s", RetryAfterSeconds(retry))}
	}
	if !parley.ValidID(req.ConversationID) {
		return nil, errNoConversation()
	}
	attachments, err := s.attachments(ctx, p, req.ConversationID, req.Attachments)
	if err != nil {
		return nil, err
	}
	if req.Type == parley.MessageEncrypted {
		for _, a := range attachments {
			if !a.Encrypted {
				return nil, parley.Errorf(parley.CodeInvalidRequest, "attachment %s: an encrypted message carries only media uploaded with encrypted=true", a.MediaID)
			}
		}
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	m := &parley.Message{
		ID:             parley.NewID(),
		ConversationID: req.ConversationID,
		SenderID:       p.UserID,
		SenderDeviceID: p.DeviceID,
		ClientMsgID:    req.ClientMsgID,
		Type:           req.Type,
		Body:           req.Body,
		CreatedAt:      now,
		Attachments:    attachments,
		Envelope:       req.Envelope,
	}
	if req.TTLSeconds > 0 {
		m.ExpiresAt = now.Add(time.Duration(req.TTLSeconds) * time.Second)
	}
	// In a direct conversation, a message from a user the other member
	// blocks is withheld (see blocks.go). A block that lands between this
	// read and the commit is a block just after the send.
	r := rel[req.ConversationID]
	if r == nil {
		var err error
		if r, err = s.relations(ctx, p.UserID, req.ConversationID); err != nil {
			return nil, err
		}
	}
	m.Withheld = r.Kind == parley.KindDirect && len(r.BlockedBy) > 0
	if r.Pending {
		// Writing into a message request accepts it.
		if err := s.accept(ctx, p, req.ConversationID); err != nil {
			return nil, err
		}
		accepted := *r
		accepted.Pending = false
		r = &accepted
	}
	if rel != nil {
		rel[req.ConversationID] = r
	}
	return m, nil
}

// sent finishes a send once the store has its message: it publishes the
// event (also for a retry) and hands the push queue its job, and returns
// the message as the sender sees it.
func (s *Service) sent(ctx context.Context, p *parley.Principal, msg *parley.Message, created bool) (*parley.Message, bool, error) {
	if created {
		s.metrics.MessageStored()
	} else if msg.Envelope != nil {
		// The retry's event carries the keys too, in case it is the one
		// that delivers.
		if err := s.loadAllKeys(ctx, msg); err != nil {
			return nil, false, err
		}
	}
	// A retry is announced again: its first attempt may have committed
	// with the ack (and the event) lost, a node dying between the two.
	// Subscribers drop what they hold by (conversation, seq).
	s.publishConversation(ctx, &Event{Kind: EventMessage, ConversationID: msg.ConversationID, Message: msg})
	if s.push != nil && !msg.Withheld {
		s.push.MessageCommitted(msg) // a retry's job is deduplicated by the queue
	}
	out := shown(p.UserID, msg)
	if out.Envelope != nil {
		c := *out
		c.Envelope = c.Envelope.For(p.DeviceID)
		out = &c
	}
	return out, created, nil
}

// loadAllKeys sets the Keys of an encrypted message read from the store.
func (s *Service) loadAllKeys(ctx context.Context, m *parley.Message) error {
	keys, err := s.store.MessageKeys(ctx, m.ConversationID, m.Seq, m.Seq, nil)
	if err != nil {
		return err
	}
	e := m.Envelope.Common()
	e.Keys = make([]parley.EnvelopeKey, len(keys))
	for i := range keys {
		e.Keys[i] = keys[i].EnvelopeKey
	}
	m.Envelope = e
	return nil
}

func (s *Service) checkSend(req *SendRequest) error {
	if req.ClientMsgID == "" {
		return parley.Errorf(parley.CodeInvalidRequest, "client_msg_id is required")
	}
	if len(req.ClientMsgID) > parley.ClientMsgIDMaxLen {
		return parley.Errorf(parley.CodeInvalidRequest, "client_msg_id must be at most %d bytes", parley.ClientMsgIDMaxLen)
	}
	for i := 0; i < len(req.ClientMsgID); i++ {
		if c := req.ClientMsgID[i]; c < 0x21 || c > 0x7e {
			return parley.Errorf(parley.CodeInvalidRequest, "client_msg_id must be printable ASCII without spaces")
		}
	}
	if req.Type == "" {
		req.Type = parley.MessageText
	}
	if req.Type == parley.MessageSystem {
		return parley.Errorf(parley.CodeInvalidRequest, "type system is reserved for the server")
	}
	if !req.Type.Valid() {
		return parley.Errorf(parley.CodeInvalidRequest, "type must be text, image, video, file or encrypted")
	}
	if err := checkAttachmentRefs(req.Attachments); err != nil {
		return err
	}
	if req.Type == parley.MessageEncrypted {
		if req.Body != "" {
			return parley.Errorf(parley.CodeInvalidRequest, "an encrypted message has no body: its content is in the envelope")
		}
		if err := parley.CheckEnvelope(req.Envelope, s.cfg.MaxBodyBytes); err != nil {
			return err
		}
	} else if req.Envelope != nil {
		return parley.Errorf(parley.CodeInvalidRequest, "only messages of type encrypted carry an envelope")
	} else if req.Body != "" || len(req.Attachments) == 0 {
		// A message with attachments may have an empty body (no caption).
		if err := s.checkBody(req.Body); err != nil {
			return err
		}
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > int64(parley.MaxTTL/time.Second) {
		return parley.Errorf(parley.CodeInvalidRequest, "ttl_seconds must be between 0 (never expires) and %d", int64(parley.MaxTTL/time.Second))
	}
	return nil
}

func (s *Service) checkBody(body string) error {
	if body == "" {
		return parley.Errorf(parley.CodeInvalidRequest, "body is required")
	}
	if len(body) > s.cfg.MaxBodyBytes {
		return parley.Errorf(parley.CodePayloadTooLarge, "body must be at most %d bytes", s.cfg.MaxBodyBytes)
	}
	if !utf8.ValidString(body) {
		return parley.Errorf(parley.CodeInvalidRequest, "body must be valid UTF-8")
	}
	return nil
}

// History returns a page of a conversation's history in ascending seq
// order (see parley.HistoryQuery); q.Limit 0 means the default.
func (s *Service) History(ctx context.Context, p *parley.Principal, conversationID string, q parley.HistoryQuery) ([]parley.Message, error) {
	if q.Before != 0 && q.Forwards() {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "give before or after, not both")
	}
	if q.Before < 0 || q.After < 0 {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "before and after must be positive seqs")
	}
	if q.Limit == 0 {
		q.Limit = parley.DefaultHistoryLimit
	}
	if q.Limit < 1 || q.Limit > parley.MaxHistoryLimit {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to %d", parley.MaxHistoryLimit)
	}
	if _, err := s.member(ctx, p, conversationID); err != nil {
		return nil, err
	}
	if s.push != nil {
		s.push.Fetched(p.DeviceID)
	}
	now := s.cfg.Now()
	if s.cache != nil && q.Before == 0 && !q.Forwards() {
		var cutoff time.Time
		if s.cfg.Retention > 0 {
			cutoff = now.Add(-s.cfg.Retention)
		}
		msgs, err := s.cache.newest(ctx, conversationID, q.Limit, now, cutoff, func(ctx context.Context, limit int) ([]parley.Message, error) {
			return s.store.Messages(ctx, conversationID, parley.HistoryQuery{Limit: limit}, now)
		})
		if err != nil {
			return nil, err
		}
		return s.withKeys(ctx, p.DeviceID, shownAll(p.UserID, msgs))
	}
	msgs, err := s.store.Messages(ctx, conversationID, q, now)
	if err != nil {
		return nil, err
	}
	return s.withKeys(ctx, p.DeviceID, shownAll(p.UserID, msgs))
}

// changeOwnMessage applies change to one of the caller's messages,
// atomically with the checks (see parley.Store.UpdateMessage): a message
// deleted a moment ago cannot be edited back to life.
func (s *Service) changeOwnMessage(ctx context.Context, p *parley.Principal, conversationID string, seq int64, change func(m *parley.Message) error) (*parley.Message, error) {
	if _, err := s.member(ctx, p, conversationID); err != nil {
		return nil, err
	}
	if seq < 1 {
		return nil, parley.Errorf(parley.CodeNotFound, "no such message")
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	defer s.shared(conversationID)()
	msg, err := s.store.UpdateMessage(ctx, conversationID, seq, now, func(m *parley.Message) error {
		if m.SenderID != p.UserID || m.Type == parley.MessageSystem {
			return parley.Errorf(parley.CodeForbidden, "you may only change your own messages")
		}
		if m.Deleted {
			return parley.Errorf(parley.CodeConflict, "the message was deleted")
		}
		if err := change(m); err != nil {
			return err
		}
		// Versions must order by edited_at (clients keep the latest):
		// never stamp an edit at or before the one it replaces.
		edited := now
		if !edited.After(m.EditedAt) {
			edited = m.EditedAt.Add(time.Millisecond)
		}
		m.EditedAt = edited
		return nil
	})
	if err == nil {
		s.publishConversation(ctx, &Event{Kind: EventMessageChanged, ConversationID: conversationID, Message: msg})
	}
	return shown(p.UserID, msg), err
}

// EditMessage replaces the body of one of the caller's messages.
func (s *Service) EditMessage(ctx context.Context, p *parley.Principal, conversationID string, seq int64, body string) (*parley.Message, error) {
	return s.changeOwnMessage(ctx, p, conversationID, seq, func(m *parley.Message) error {
		if m.Type == parley.MessageEncrypted {
			return parley.Errorf(parley.CodeInvalidRequest, "encrypted messages cannot be edited")
		}
		if err := s.checkBody(body); err != nil {
			return err
		}
		m.Body = body
		return nil
	})
}

// DeleteMessage turns one of the caller's messages into a tombstone: it
// keeps its seq, loses its body, and reads back with deleted=true.
func (s *Service) DeleteMessage(ctx context.Context, p *parley.Principal, conversationID string, seq int64) (*parley.Message, error) {
	var attachments []parley.Attachment
	m, err := s.changeOwnMessage(ctx, p, conversationID, seq, func(m *parley.Message) error {
		attachments = m.Attachments // change may run more than once: the last run's
		m.Body = ""
		m.Deleted = true
		m.Attachments = nil
		m.Envelope = nil
		return nil
	})
	if err == nil {
		s.deleteMedia(ctx, attachments)
	}
	return m, err
}

// MarkRead raises the caller's read_seq in a conversation to seq (clamped
// to last_seq; it never goes down) and returns the resulting read_seq and
// whether it rose.
func (s *Service) MarkRead(ctx context.Context, p *parley.Principal, conversationID string, seq int64) (parley.Watermark, error) {
	if !parley.ValidID(conversationID) {
		return parley.Watermark{}, errNoConversation()
	}
	if seq < 0 {
		return parley.Watermark{}, parley.Errorf(parley.CodeInvalidRequest, "seq must not be negative")
	}
	defer s.shared(conversationID)()
	w, err := s.store.MarkRead(ctx, conversationID, p.UserID, seq)
	if err == nil && w.Raised {
		if e := s.receiptEvent(ctx, p, conversationID, "read", w.Seq); e != nil {
			s.publishConversation(ctx, e)
		}
		if s.push != nil {
			s.push.ReadRaised(conversationID, p.UserID, p.DeviceID, w.Seq)
		}
	}
	return w, err
}

// MarkDelivered records that the caller's device has every message of a
// conversation up to seq (clamped to last_seq; watermarks never go down)
// and returns the device's and the user's delivered watermarks.
func (s *Service) MarkDelivered(ctx context.Context, p *parley.Principal, conversationID string, seq int64) (device, user parley.Watermark, err error) {
	if !parley.ValidID(conversationID) {
		return device, user, errNoConversation()
	}
	if seq < 0 {
		return device, user, parley.Errorf(parley.CodeInvalidRequest, "seq must not be negative")
	}
	defer s.shared(conversationID)()
	device, user, err = s.store.MarkDelivered(ctx, conversationID, p.UserID, p.DeviceID, seq)
	if err == nil && user.Raised {
		if e := s.receiptEvent(ctx, p, conversationID, "delivered", user.Seq); e != nil {
			s.publishConversation(ctx, e)
		}
	}
	return device, user, err
}
