// Package service is Parley's core: every use case (register, log in, create
// a conversation, send a message, ...) is one method here, and every
// permission check happens here, once. Transports (httpapi, and the WebSocket
// gateway) decode input, call a method with the caller's Principal, and encode
// the result; they never decide who may do what.
package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/metrics"
	"github.com/parleychat/parley/ratelimit"
)

// Tokens issues and verifies access tokens. auth.Keys does the work; cmd
// wires it in.
type Tokens interface {
	// IssueAccess returns a signed access token for p and its lifetime.
	IssueAccess(p parley.Principal, now time.Time) (token string, expiresIn time.Duration, err error)
	// VerifyAccess checks a token's signature and expiry and returns its
	// principal; errors carry CodeUnauthorized or CodeTokenExpired.
	VerifyAccess(token string, now time.Time) (parley.Principal, error)
	// NewRefreshToken returns a new opaque refresh token and the hash under
	// which the store keeps it.
	NewRefreshToken() (token, hash string)
	// HashRefreshToken returns the stored hash of a presented token.
	HashRefreshToken(token string) string
}

// Passwords hashes and checks passwords (argon2id in package auth).
type Passwords interface {
	Hash(password string) (string, error)
	Verify(password, encoded string) (bool, error)
	// DummyVerify costs what Verify costs, for unknown handles.
	DummyVerify(password string)
}

// Config holds the core's settings. Zero values mean the defaults given.
type Config struct {
	// MaxBodyBytes is the largest message body in bytes. Default 65536.
	MaxBodyBytes int
	// RefreshTTL is how long a refresh token lives unused. Default 30 days.
	RefreshTTL time.Duration
	// PurgeInterval is how often expired messages are deleted. Default 30 s.
	PurgeInterval time.Duration
	// Retention is how long messages are kept: every PurgeInterval, those
	// created longer ago are purged (see parley.Store.PurgeHistory). Default
	// 0: kept forever.
	Retention time.Duration
	// HistoryCache is how many conversations' newest history page are
	// kept in memory (see historyCache). Default 0: 10,000; negative: no
	// cache.
	HistoryCache int
	// PushAllowHTTP accepts Web Push endpoints over plain http (local
	// testing only; browsers' push services are https).
	PushAllowHTTP bool
	// VAPIDPrivateKey, if set, is the server's VAPID key (a P-256 scalar,
	// 32 bytes); otherwise one is made and kept in the store.
	VAPIDPrivateKey []byte
	// MessageRequests makes a conversation that a stranger (a user one
	// shares no accepted conversation with) puts one into a message
	// request (see requests.go). Default false; parleyd turns it on.
	MessageRequests bool
	// StrangerAdds bounds how many strangers one user may put into
	// conversations per hour (burst up to 20), on this node; above it
	// CodeRateLimited. 0: no limit.
	StrangerAdds int
	// Now returns the current time; tests set it. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = parley.DefaultMaxBodySize
	}
	if c.RefreshTTL <= 0 {
		c.RefreshTTL = 30 * 24 * time.Hour
	}
	if c.PurgeInterval <= 0 {
		c.PurgeInterval = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HistoryCache == 0 {
		c.HistoryCache = 10_000
	}
}

// Service implements the use cases on top of a Store. Safe for concurrent
// use; it holds no per-user state, so any number of nodes may run it over
// the same store.
type Service struct {
	store     parley.Store
	tokens    Tokens
	passwords Passwords
	cfg       Config
	log       *slog.Logger
	metrics   *metrics.Metrics
	bus       parley.Bus // nil: no live events (see UseBus)
	order     publishOrder
	cache     *historyCache // nil: off
	vapid     vapidKeys
	push      PushQueue        // nil: no notifications (see UsePush)
	strangers *ratelimit.Keyed // nil: no limit on adding strangers
}

// New returns a Service. log must not be nil; m may be nil.
func New(store parley.Store, tokens Tokens, passwords Passwords, cfg Config, log *slog.Logger, m *metrics.Metrics) *Service {
	cfg.setDefaults()
	s := &Service{store: store, tokens: tokens, passwords: passwords, cfg: cfg, log: log, metrics: m}
	if cfg.HistoryCache > 0 {
		s.cache = newHistoryCache(cfg.HistoryCache, parley.DefaultHistoryLimit)
	}
	if cfg.StrangerAdds > 0 {
		s.strangers = ratelimit.New(float64(cfg.StrangerAdds)/3600, min(cfg.StrangerAdds, 20))
	}
	return s
}

// Config returns the effective configuration (defaults filled in).
func (s *Service) Config() Config { return s.cfg }

// Run deletes expired messages and refresh tokens, and messages past the
// Retention if one is set, every PurgeInterval until ctx ends. It returns
// nil when ctx ends; a failing purge is logged and retried at the next
// tick.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.PurgeExpired(ctx)
			s.PurgeHistory(ctx)
		}
	}
}

// PurgeExpired deletes every message whose TTL has run out, in batches, and
// returns how many it deleted.
func (s *Service) PurgeExpired(ctx context.Context) int {
	const batch = 1000
	total := 0
	for ctx.Err() == nil {
		n, err := s.store.PurgeExpired(ctx, s.cfg.Now(), batch)
		total += n
		if err != nil {
			s.log.ErrorContext(ctx, "purge expired", "err", err)
			break
		}
		if n < batch {
			break
		}
	}
	s.metrics.Purged(total)
	if total > 0 {
		s.log.InfoContext(ctx, "purged expired messages", "count", total)
	}
	return total
}

// PurgeHistory purges every message created more than Retention ago, in
// batches, and returns how many it purged; with no Retention (0) it does
// nothing.
func (s *Service) PurgeHistory(ctx context.Context) int {
	if s.cfg.Retention <= 0 {
		return 0
	}
	const batch = 1000
	before := s.cfg.Now().Add(-s.cfg.Retention)
	total := 0
	for ctx.Err() == nil {
		n, err := s.store.PurgeHistory(ctx, before, batch)
		total += n
		if err != nil {
			s.log.ErrorContext(ctx, "purge history", "err", err)
			break
		}
		if n < batch {
			break
		}
	}
	s.metrics.PurgedHistory(total)
	if total > 0 {
		s.log.InfoContext(ctx, "purged messages past the retention", "count", total, "retention", s.cfg.Retention)
	}
	return total
}

// Ready reports whether the store answers.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ping(ctx) }
