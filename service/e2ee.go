package service

import (
	"context"
	"time"

	"github.com/parleychat/parley"
)

// End-to-end encryption (docs/design/e2ee.md): the key directory, the
// per-device delivery of message keys, and asking a sender for a key
// again. The server checks shapes, the device lists and who may ask; it
// never holds a content key or plaintext.

// PublishDeviceKeys publishes or rotates the keys of the caller's device
// and returns them as stored with the user's device list version. A
// change (not a retried identical publish) is announced to the user's
// devices and to everyone who shares a conversation with the user.
func (s *Service) PublishDeviceKeys(ctx context.Context, p *parley.Principal, k parley.DeviceKeys) (*parley.DeviceKeys, int64, error) {
	k.UserID, k.DeviceID = p.UserID, p.DeviceID
	if err := k.Check(); err != nil {
		return nil, 0, err
	}
	version, changed, err := s.store.SetDeviceKeys(ctx, &k, s.cfg.Now().UTC())
	if err != nil {
		return nil, 0, err
	}
	if changed {
		s.announceDeviceList(ctx, p.UserID, version)
	}
	l, err := s.store.DeviceList(ctx, p.UserID)
	if err != nil {
		return nil, 0, err
	}
	for i := range l.Devices {
		if l.Devices[i].DeviceID == p.DeviceID {
			return &l.Devices[i], version, nil
		}
	}
	// Deleted in between (a logout racing the publish).
	return nil, 0, parley.Errorf(parley.CodeUnauthorized, "session has ended; log in again")
}

// UserDevices returns a user's keyed devices with the user's device list
// version, to the user and to users who share a conversation with them;
// anyone else gets CodeNotFound, as for an unknown user.
func (s *Service) UserDevices(ctx context.Context, p *parley.Principal, userID string) (*parley.DeviceList, error) {
	if !parley.ValidID(userID) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such user")
	}
	if userID != p.UserID {
		shared, err := s.store.SharesConversation(ctx, p.UserID, userID)
		if err != nil {
			return nil, err
		}
		if !shared {
			return nil, parley.Errorf(parley.CodeNotFound, "no such user")
		}
	}
	return s.store.DeviceList(ctx, userID)
}

// ConversationDevices returns the device list of every member of a
// conversation the caller is a member of.
func (s *Service) ConversationDevices(ctx context.Context, p *parley.Principal, conversationID string) ([]parley.DeviceList, error) {
	if _, err := s.member(ctx, p, conversationID); err != nil {
		return nil, err
	}
	return s.store.ConversationDeviceLists(ctx, conversationID)
}

// announceDeviceList publishes that userID's device list is now at
// version: to the user's sessions and to the members of the user's
// conversations. Ids and a number only.
func (s *Service) announceDeviceList(ctx context.Context, userID string, version int64) {
	ids, err := s.store.ConversationIDs(ctx, userID)
	if err != nil {
		s.log.WarnContext(ctx, "announce device list", "user_id", userID, "err", err)
		return
	}
	s.publish(ctx, UserSubject(userID), &Event{Kind: EventDeviceList, UserID: userID, Seq: version, Conversations: ids})
}

// DeviceListNews announces the device lists of the users a keyed device
// of whom was deleted since the news was last taken (parley.Store's
// TakeDeviceListNews): after a logout, removal or revocation at once, and
// every PurgeInterval for the sessions that expired. Each deletion is
// announced once, by whichever node takes its news.
func (s *Service) DeviceListNews(ctx context.Context) {
	const batch = 1000
	for ctx.Err() == nil {
		ids, err := s.store.TakeDeviceListNews(ctx, batch)
		if err != nil {
			s.log.WarnContext(ctx, "take device list news", "err", err)
			return
		}
		for _, id := range ids {
			l, err := s.store.DeviceList(ctx, id)
			if err != nil {
				s.log.WarnContext(ctx, "read device list", "user_id", id, "err", err)
				continue
			}
			s.announceDeviceList(ctx, id, l.Version)
		}
		if len(ids) < batch {
			return
		}
	}
}

// RequestKey asks the devices of the sender of an encrypted message to
// seal its key to the caller's device again (they answer with
// AddMessageKeys). Only a device that existed when the message was sent,
// of a user who was a member then, may ask (CodeForbidden otherwise):
// history is not offered to new devices or new members. Rate limited per
// device.
func (s *Service) RequestKey(ctx context.Context, p *parley.Principal, conversationID string, seq int64) error {
	me, err := s.member(ctx, p, conversationID)
	if err != nil {
		return err
	}
	if seq < 1 {
		return parley.Errorf(parley.CodeNotFound, "no such message")
	}
	if s.keyRequests != nil {
		if ok, retry := s.keyRequests.Allow(p.DeviceID, time.Now()); !ok {
			s.metrics.RateLimited("key_request")
			return &RetryError{RetryAfter: retry, Err: parley.Errorf(parley.CodeRateLimited,
				"too many key requests from this device; retry after %d s", RetryAfterSeconds(retry))}
		}
	}
	m, err := s.store.Message(ctx, conversationID, seq, s.cfg.Now())
	if err != nil {
		return err
	}
	switch {
	case m.Deleted || m.Withheld && m.SenderID != p.UserID:
		return parley.Errorf(parley.CodeNotFound, "no such message")
	case m.Type != parley.MessageEncrypted:
		return parley.Errorf(parley.CodeInvalidRequest, "the message is not encrypted")
	case m.SenderDeviceID == p.DeviceID:
		return parley.Errorf(parley.CodeInvalidRequest, "this device sent the message")
	case me.JoinedAt.After(m.CreatedAt):
		return parley.Errorf(parley.CodeForbidden, "you joined the conversation after this message was sent")
	}
	d, err := s.store.Device(ctx, p.DeviceID)
	if err != nil {
		return err
	}
	if d.CreatedAt.After(m.CreatedAt) {
		return parley.Errorf(parley.CodeForbidden, "this device was added after the message was sent")
	}
	s.publish(ctx, UserSubject(m.SenderID), &Event{Kind: EventKeyRequest, ConversationID: conversationID, Seq: seq,
		UserID: m.SenderID, Users: []string{p.UserID}, DeviceID: p.DeviceID})
	return nil
}

// AddMessageKeys adds or replaces keys of one of the caller's encrypted
// messages (the answer to a key request) and sends the message again, as
// a message frame with its new key, to each device given a key.
func (s *Service) AddMessageKeys(ctx context.Context, p *parley.Principal, conversationID string, seq int64, keys []parley.EnvelopeKey) error {
	if _, err := s.member(ctx, p, conversationID); err != nil {
		return err
	}
	if seq < 1 {
		return parley.Errorf(parley.CodeNotFound, "no such message")
	}
	if len(keys) == 0 {
		return parley.Errorf(parley.CodeInvalidRequest, "keys must list at least one key")
	}
	if err := parley.CheckEnvelopeKeys(keys); err != nil {
		return err
	}
	defer s.shared(conversationID)()
	m, err := s.store.SetMessageKeys(ctx, conversationID, seq, p.UserID, keys, s.cfg.Now())
	if err != nil {
		return err
	}
	s.publish(ctx, ConversationSubject(conversationID), &Event{Kind: EventMessageKey, ConversationID: conversationID, Message: m, Keys: keys})
	return nil
}

// withKeys returns msgs as deviceID gets them: each encrypted message's
// envelope with only that device's key (none if it has none). The slice
// is copied only if it holds an encrypted message (the history cache's
// slices are shared); plaintext pages cost nothing.
func (s *Service) withKeys(ctx context.Context, deviceID string, msgs []parley.Message) ([]parley.Message, error) {
	type span struct{ from, to int64 }
	var spans map[string]*span
	for i := range msgs {
		m := &msgs[i]
		if m.Envelope == nil {
			continue
		}
		if spans == nil {
			spans = map[string]*span{}
		}
		if sp := spans[m.ConversationID]; sp == nil {
			spans[m.ConversationID] = &span{m.Seq, m.Seq}
		} else {
			sp.from, sp.to = min(sp.from, m.Seq), max(sp.to, m.Seq)
		}
	}
	if spans == nil {
		return msgs, nil
	}
	type ref struct {
		conv string
		seq  int64
	}
	keys := map[ref]parley.EnvelopeKey{}
	for conv, sp := range spans {
		got, err := s.store.MessageKeys(ctx, conv, sp.from, sp.to, []string{deviceID})
		if err != nil {
			return nil, err
		}
		for _, k := range got {
			keys[ref{k.ConversationID, k.Seq}] = k.EnvelopeKey
		}
	}
	out := make([]parley.Message, len(msgs))
	copy(out, msgs)
	for i := range out {
		m := &out[i]
		if m.Envelope == nil {
			continue
		}
		e := m.Envelope.Common()
		if k, ok := keys[ref{m.ConversationID, m.Seq}]; ok {
			e.Key = &k
		}
		m.Envelope = e
	}
	return out, nil
}

// withKey is withKeys for one message (nil stays nil).
func (s *Service) withKey(ctx context.Context, deviceID string, m *parley.Message) (*parley.Message, error) {
	if m == nil || m.Envelope == nil {
		return m, nil
	}
	out, err := s.withKeys(ctx, deviceID, []parley.Message{*m})
	if err != nil {
		return nil, err
	}
	return &out[0], nil
}

// LiveKeys returns the stored keys of messages from..to of a conversation
// for the given devices (the gateway's local ones), to deliver messages
// it read from the store to fill a gap.
func (s *Service) LiveKeys(ctx context.Context, conversationID string, from, to int64, deviceIDs []string) ([]parley.MessageKey, error) {
	return s.store.MessageKeys(ctx, conversationID, from, to, deviceIDs)
}
