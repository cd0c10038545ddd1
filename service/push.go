package service

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"

	"github.com/parleychat/parley"
)

// SetPush registers where the caller's device receives push notifications
// (docs/push.md), replacing what it had, and returns the registration as
// stored. CodeInvalidRequest for a registration that is not valid for its
// provider.
func (s *Service) SetPush(ctx context.Context, p *parley.Principal, r *parley.PushRegistration) (*parley.PushRegistration, error) {
	if err := parley.ValidatePush(r, s.cfg.PushAllowHTTP); err != nil {
		return nil, err
	}
	r.UpdatedAt = s.cfg.Now()
	if err := s.store.SetPush(ctx, p.UserID, p.DeviceID, r); err != nil {
		return nil, err
	}
	return r, nil
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
