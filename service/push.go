package service

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/parleychat/parley"
)

// DefaultMaxPushRegistrations is Config.MaxPushRegistrations' default.
const DefaultMaxPushRegistrations = 20

// pushRules are the registration rules of this server's settings.
func (s *Service) pushRules() parley.PushRules {
	return parley.PushRules{WebPushOff: s.cfg.WebPushOff, CheckEndpoint: s.cfg.Outbound.CheckURL, APNsTopics: s.cfg.APNsTopics}
}

// SetPush registers where the caller's device receives push notifications
// (docs/push.md), replacing what it had, and returns the registration as
// stored. CodeInvalidRequest for a registration that is not valid for its
// provider or breaks the server's rules (a Web Push endpoint that is not
// a public https URL, an APNs topic not configured); CodeLimitExceeded
// when the user's other devices already hold MaxPushRegistrations. (Two
// devices registering at once may both pass the count: the cap can be
// exceeded by the concurrent requests of one user, never more.)
func (s *Service) SetPush(ctx context.Context, p *parley.Principal, r *parley.PushRegistration) (*parley.PushRegistration, error) {
	if err := parley.ValidatePush(r, s.pushRules()); err != nil {
		return nil, err
	}
	if err := s.checkPushCap(ctx, p); err != nil {
		return nil, err
	}
	r.UpdatedAt = s.cfg.Now()
	if err := s.store.SetPush(ctx, p.UserID, p.DeviceID, r); err != nil {
		return nil, err
	}
	if s.push != nil {
		// Every node must know, or it may judge the user's messages to
		// need no push: a registration the others cannot hear of fails
		// (stored, and harmless to make again), so the client retries.
		if err := s.push.PushRegistered(p.UserID, p.DeviceID); err != nil {
			s.log.WarnContext(ctx, "push registration not announced", "err", err)
			return nil, parley.Errorf(parley.CodeUnavailable, "the registration could not reach every server; try again")
		}
	}
	return r, nil
}

// checkPushCap refuses a registration of a device without one when the
// user's devices hold the most registrations allowed.
func (s *Service) checkPushCap(ctx context.Context, p *parley.Principal) error {
	if _, err := s.store.Push(ctx, p.DeviceID); err == nil {
		return nil // a replacement: the count does not grow
	} else if parley.ErrorCode(err) != parley.CodeNotFound {
		return err
	}
	devices, err := s.store.Devices(ctx, p.UserID)
	if err != nil {
		return err
	}
	n := 0
	for _, d := range devices {
		if d.ID == p.DeviceID {
			continue
		}
		switch _, err := s.store.Push(ctx, d.ID); parley.ErrorCode(err) {
		case "":
			n++
		case parley.CodeNotFound:
		default:
			return err
		}
		if n >= s.cfg.MaxPushRegistrations {
			return parley.Errorf(parley.CodeLimitExceeded, "this account already has %d devices registered for push notifications, the most allowed: remove one (DELETE /v1/devices/current/push on it, or log it out) first", s.cfg.MaxPushRegistrations)
		}
	}
	return nil
}

// DeletePush removes the caller's device's push registration; having none
// is not an error.
func (s *Service) DeletePush(ctx context.Context, p *parley.Principal) error {
	return s.store.DeletePush(ctx, p.UserID, p.DeviceID)
}

// vapidSecret names the VAPID private key among the store's secrets.
const vapidSecret = "vapid/private-key"

// vapidKeys holds the server's VAPID key pair once loaded.
type vapidKeys struct {
	mu      sync.Mutex
	private *ecdh.PrivateKey
}

// VAPIDPublicKey returns the server's VAPID public key, an uncompressed
// P-256 point in unpadded base64url: what a browser passes to
// pushManager.subscribe as applicationServerKey. The key pair is
// Config.VAPIDPrivateKey if set; otherwise it is made once, on first use,
// and kept in the store (sealed), so every node of a cluster has the same.
func (s *Service) VAPIDPublicKey(ctx context.Context) (string, error) {
	key, err := s.vapidKey(ctx)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()), nil
}

func (s *Service) vapidKey(ctx context.Context) (*ecdh.PrivateKey, error) {
	s.vapid.mu.Lock()
	defer s.vapid.mu.Unlock()
	if s.vapid.private != nil {
		return s.vapid.private, nil
	}
	if len(s.cfg.VAPIDPrivateKey) > 0 {
		key, err := ecdh.P256().NewPrivateKey(s.cfg.VAPIDPrivateKey)
		if err != nil {
			return nil, fmt.Errorf("service: the configured VAPID private key: %w", err)
		}
		s.vapid.private = key
		return key, nil
	}
	var scalar []byte
	err := s.store.UpdateSecrets(ctx, "vapid/", func(cur map[string][]byte) (map[string][]byte, []string, error) {
		if existing, ok := cur[vapidSecret]; ok {
			scalar = existing
			return nil, nil, nil
		}
		key, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		scalar = key.Bytes()
		return map[string][]byte{vapidSecret: scalar}, nil, nil
	})
	if err != nil {
		return nil, err
	}
	key, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		return nil, fmt.Errorf("service: the stored VAPID private key: %w", err)
	}
	s.vapid.private = key
	return key, nil
}

// PushQueue is the notification service's work queue as the core uses it
// (push.Queue): the hooks never block.
type PushQueue interface {
	// MessageCommitted enqueues the push job of a committed message.
	MessageCommitted(m *parley.Message)
	// ReadRaised enqueues the silent clear of the reader's other devices.
	ReadRaised(conversationID, userID, deviceID string, readSeq int64)
	// Fetched notes a device's sync or history call (for push traces).
	Fetched(deviceID string)
	// PushRegistered announces a new registration (stored) to every
	// node's view of who may need a push; an error says it could not.
	PushRegistered(userID, deviceID string) error
	// ConversationChanged says a conversation's membership changed or
	// it was deleted (every such event, local or heard on the bus).
	ConversationChanged(conversationID string)
	// Trace returns what happened to one message's notifications.
	Trace(ctx context.Context, messageID string) (*parley.PushTrace, error)
}

// UsePush connects the core to the notification service's queue. Call it
// before serving.
func (s *Service) UsePush(q PushQueue) { s.push = q }

// VAPIDKeys returns the server's VAPID key pair in unpadded base64url
// (private scalar, public point): what the Web Push provider signs with.
func (s *Service) VAPIDKeys(ctx context.Context) (private, public string, err error) {
	key, err := s.vapidKey(ctx)
	if err != nil {
		return "", "", err
	}
	return base64.RawURLEncoding.EncodeToString(key.Bytes()), base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()), nil
}

// muteUntil checks a mute or do-not-disturb end: the zero time ends it;
// otherwise it must be in the future, and is capped at MaxMuteUntil.
func (s *Service) muteUntil(until time.Time) (time.Time, error) {
	if until.IsZero() {
		return time.Time{}, nil
	}
	now := s.cfg.Now()
	if !until.After(now) {
		return time.Time{}, parley.Errorf(parley.CodeInvalidRequest, "until must be in the future (or null to end it)")
	}
	if limit := now.Add(parley.MaxMuteUntil); until.After(limit) {
		until = limit
	}
	return until.UTC().Truncate(time.Millisecond), nil
}

// SetMute mutes the caller's notifications of a conversation until the
// given time (zero: unmute) and returns the conversation as the caller
// sees it. Messages still arrive and count as unread; only pushes stop.
func (s *Service) SetMute(ctx context.Context, p *parley.Principal, conversationID string, until time.Time) (*parley.ConversationView, error) {
	until, err := s.muteUntil(until)
	if err != nil {
		return nil, err
	}
	if !parley.ValidID(conversationID) {
		return nil, errNoConversation()
	}
	if err := s.store.SetMute(ctx, conversationID, p.UserID, until); err != nil {
		return nil, err
	}
	return s.store.ConversationView(ctx, conversationID, p.UserID, s.cfg.Now())
}

// SetDND puts the caller in do-not-disturb until the given time (zero:
// off): no notification reaches any of their devices meanwhile.
func (s *Service) SetDND(ctx context.Context, p *parley.Principal, until time.Time) (time.Time, error) {
	until, err := s.muteUntil(until)
	if err != nil {
		return time.Time{}, err
	}
	return until, s.store.SetDND(ctx, p.UserID, until)
}

// PushTrace returns the push trace of a message, named by its
// conversation and seq. Only admins may read traces.
func (s *Service) PushTrace(ctx context.Context, p *parley.Principal, conversationID string, seq int64) (*parley.PushTrace, error) {
	if p.Role != parley.SystemRoleAdmin {
		return nil, parley.Errorf(parley.CodeForbidden, "only admins may read push traces")
	}
	if s.push == nil {
		return nil, parley.Errorf(parley.CodeNotFound, "push is not running")
	}
	if !parley.ValidID(conversationID) {
		return nil, errNoConversation()
	}
	m, err := s.store.Message(ctx, conversationID, seq, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	return s.push.Trace(ctx, m.ID)
}
