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
	"github.com/parleychat/parley/outbound"
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
	// NewTicket returns a new WebSocket ticket and the key under which
	// it is kept (a hash: the key does not open a socket).
	NewTicket() (ticket, key string)
	// TicketKey returns a presented ticket's key; ok is false if it is
	// not a well-formed ticket.
	TicketKey(ticket string) (key string, ok bool)
}

// Passwords hashes and checks passwords (argon2id in package auth). Each
// call may wait for its turn (hashes are bounded in number); one whose ctx
// ends while it waits returns ctx's error without hashing.
type Passwords interface {
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, password, encoded string) (bool, error)
	// DummyVerify costs what Verify costs, for unknown handles.
	DummyVerify(ctx context.Context, password string) error
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
	// HistoryCacheBytes bounds the history cache's memory, in bytes
	// (bodies plus about 512 bytes a message); entries are evicted at
	// random past it, and a page larger than all of it is not cached.
	// Default 0: 64 MiB.
	HistoryCacheBytes int64
	// MaxDevicesPerUser caps the devices (logged-in sessions) of one
	// user: a login past it fails with CodeLimitExceeded. Default 0: no
	// cap (parleyd sets 20).
	MaxDevicesPerUser int
	// UserSendRate and UserSendBurst limit the messages one user may send
	// per second (and in a burst) over all of the user's WebSocket
	// connections and REST sends together, on this node; one bucket per
	// user. Default 0: no limit (parleyd sets 20/s, burst 40).
	UserSendRate  float64
	UserSendBurst int
	// Outbound names the exceptions (--outbound-allow) to where a Web
	// Push endpoint may point: by default only https URLs of public hosts
	// (outbound.Policy.CheckURL). Nil: no exceptions.
	Outbound *outbound.Policy
	// WebPushOff refuses Web Push registrations: the server has no VAPID
	// subject, so it sends no Web Push.
	WebPushOff bool
	// APNsTopics are the apps (bundle ids) APNs registrations may name;
	// empty refuses APNs registrations.
	APNsTopics []string
	// MaxPushRegistrations bounds the devices of one user with a push
	// registration. Default 20.
	MaxPushRegistrations int
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
	// MaxE2EEMembers bounds the members of an end-to-end encrypted
	// conversation (creating or adding past it is CodeLimitExceeded).
	// Default parley.DefaultMaxE2EEMembers (100).
	MaxE2EEMembers int
	// MaxGroupMembers bounds the members of a group (creating one with
	// more is CodeInvalidRequest, adding past it CodeConflict). Default
	// parley.DefaultMaxGroupMembers (10,000); at most
	// parley.MaxGroupMembersCap.
	MaxGroupMembers int
	// MaxInlineMembers is the most members a conversation object lists
	// inline; above it the object is paged (biggroups.go). Default
	// parley.DefaultMaxInlineMembers (100); never below MaxE2EEMembers.
	MaxInlineMembers int
	// KeyRequestRate and KeyRequestBurst limit the key requests one
	// device may make per second (and in a burst), on this node.
	// Default 1/s, burst 60.
	KeyRequestRate  float64
	KeyRequestBurst int
	// MediaLinkLifetime is the longest a media download link stays valid
	// (parleyd: --media-url-ttl plus --media-url-bucket): a deleted
	// message's media are collected this long after the delete. Default
	// DefaultMediaLinkLifetime (2h).
	MediaLinkLifetime time.Duration
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
	if c.MaxPushRegistrations <= 0 {
		c.MaxPushRegistrations = DefaultMaxPushRegistrations
	}
	if c.HistoryCache == 0 {
		c.HistoryCache = 10_000
	}
	if c.MediaLinkLifetime <= 0 {
		c.MediaLinkLifetime = DefaultMediaLinkLifetime
	}
	if c.HistoryCacheBytes <= 0 {
		c.HistoryCacheBytes = 64 << 20
	}
	if c.MaxE2EEMembers <= 0 {
		c.MaxE2EEMembers = parley.DefaultMaxE2EEMembers
	}
	if c.MaxGroupMembers <= 0 {
		c.MaxGroupMembers = parley.DefaultMaxGroupMembers
	}
	c.MaxGroupMembers = min(c.MaxGroupMembers, parley.MaxGroupMembersCap)
	if c.MaxInlineMembers <= 0 {
		c.MaxInlineMembers = parley.DefaultMaxInlineMembers
	}
	c.MaxInlineMembers = max(c.MaxInlineMembers, c.MaxE2EEMembers)
	if c.KeyRequestRate <= 0 {
		c.KeyRequestRate = 1
	}
	if c.KeyRequestBurst <= 0 {
		c.KeyRequestBurst = 60
	}
}

// RetryError is a CodeRateLimited (or CodeUnavailable) error that says
// how long to wait before trying again; transports show it (REST's Retry-After, the
// WebSocket error's retry_after). errors.As finds the *parley.Error in
// it, so ErrorCode and ErrorMessage work on it as on any error.
type RetryError struct {
	Err        *parley.Error
	RetryAfter time.Duration
}

func (e *RetryError) Error() string { return e.Err.Error() }
func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfterSeconds rounds d up to whole seconds, at least 1: the unit
// of the hints clients get.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
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
	sendLimit *ratelimit.Keyed // per user; nil: none
	tickets   TicketStore      // nil: no WebSocket tickets (see UseTickets)
	strangers *ratelimit.Keyed // nil: no limit on adding strangers
	// keyRequests limits key requests per device.
	keyRequests *ratelimit.Keyed
	// paged remembers which conversations are paged (biggroups.go).
	paged pagedCache
	// rel holds Store.Relations' answers for users in conversations
	// (relcache.go).
	rel relationsCache
	// loop keeps this node's message events for its own gateway
	// (loopback.go).
	loop loopback
}

// New returns a Service. log must not be nil; m may be nil.
func New(store parley.Store, tokens Tokens, passwords Passwords, cfg Config, log *slog.Logger, m *metrics.Metrics) *Service {
	cfg.setDefaults()
	s := &Service{store: store, tokens: tokens, passwords: passwords, cfg: cfg, log: log, metrics: m}
	if cfg.UserSendRate > 0 {
		s.sendLimit = ratelimit.New(cfg.UserSendRate, cfg.UserSendBurst)
	}
	if cfg.HistoryCache > 0 {
		s.cache = newHistoryCache(cfg.HistoryCache, parley.DefaultHistoryLimit)
		s.cache.maxBytes = cfg.HistoryCacheBytes
	}
	s.keyRequests = ratelimit.New(cfg.KeyRequestRate, cfg.KeyRequestBurst)
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
			s.DeviceListNews(ctx) // keyed devices whose sessions expired
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
