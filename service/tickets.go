package service

import (
	"context"
	"encoding/json"
	"time"

	"github.com/parleychat/parley"
)

// TicketStore keeps WebSocket tickets where every node of a cluster sees
// them, for its TTL at most; bus/natsbus implements it on a JetStream
// key-value bucket. Keys are hashes of tickets and values name a session
// (ids and times, nothing secret). Safe for concurrent use.
type TicketStore interface {
	// Put stores value under key, which must be new.
	Put(ctx context.Context, key string, value []byte) error
	// Take returns the value under key and deletes it. Of any number of
	// Takes of one key, on any nodes, at most one gets the value; the
	// others, and any Take of an unknown or expired key, get ok false.
	Take(ctx context.Context, key string) (value []byte, ok bool, err error)
	// TTL is how long a value lives at most.
	TTL() time.Duration
}

// UseTickets makes the service issue and redeem WebSocket tickets through
// t. Call it before serving; without it, IssueTicket and RedeemTicket
// answer CodeUnavailable.
func (s *Service) UseTickets(t TicketStore) { s.tickets = t }

// Ticket is what IssueTicket hands the client.
type Ticket struct {
	Ticket    string `json:"ticket"`
	ExpiresIn int64  `json:"expires_in"` // seconds
}

// ticketRecord is a ticket's value in the TicketStore.
type ticketRecord struct {
	UserID        string `json:"u"`
	DeviceID      string `json:"d"`
	SessionID     string `json:"s"`
	AccessExpires int64  `json:"a"` // Unix ms: the access token's expiry, the socket's until renewed
	Expires       int64  `json:"e"` // Unix ms: the ticket's own expiry
}

// IssueTicket returns a single-use ticket that opens one WebSocket for
// p's session (GET /v1/ws?ticket=) within the store's TTL. Browsers use
// it, since their WebSocket API cannot send an Authorization header and a
// token in the URL ends up in proxies' logs. The socket lives until p's
// access token expires, as if that token had opened it.
func (s *Service) IssueTicket(ctx context.Context, p *parley.Principal) (*Ticket, error) {
	if s.tickets == nil {
		return nil, parley.Errorf(parley.CodeUnavailable, "WebSocket tickets are not available on this server")
	}
	if p.ExpiresAt.IsZero() {
		return nil, parley.Errorf(parley.CodeUnauthorized, "a ticket is issued only to an access token's bearer")
	}
	now := s.cfg.Now()
	ttl := s.tickets.TTL()
	ticket, key := s.tokens.NewTicket()
	value, err := json.Marshal(ticketRecord{UserID: p.UserID, DeviceID: p.DeviceID, SessionID: p.SessionID,
		AccessExpires: p.ExpiresAt.UnixMilli(), Expires: now.Add(ttl).UnixMilli()})
	if err != nil {
		return nil, err
	}
	if err := s.tickets.Put(ctx, key, value); err != nil {
		return nil, err
	}
	return &Ticket{Ticket: ticket, ExpiresIn: int64(ttl / time.Second)}, nil
}

// RedeemTicket uses up a ticket and returns the principal of the session
// it was issued for, once: a second use, an expired ticket or one never
// issued get CodeUnauthorized, as does a ticket whose session has ended
// since; a suspended user gets CodeSuspended.
func (s *Service) RedeemTicket(ctx context.Context, ticket string) (*parley.Principal, error) {
	if s.tickets == nil {
		return nil, parley.Errorf(parley.CodeUnavailable, "WebSocket tickets are not available on this server")
	}
	bad := parley.Errorf(parley.CodeUnauthorized, "unknown, used or expired ticket")
	key, ok := s.tokens.TicketKey(ticket)
	if !ok {
		return nil, bad
	}
	value, ok, err := s.tickets.Take(ctx, key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, bad
	}
	var rec ticketRecord
	if err := json.Unmarshal(value, &rec); err != nil || rec.UserID == "" || rec.DeviceID == "" || rec.SessionID == "" {
		return nil, bad
	}
	now := s.cfg.Now()
	if now.UnixMilli() >= rec.Expires {
		return nil, bad
	}
	if now.UnixMilli() >= rec.AccessExpires {
		return nil, parley.Errorf(parley.CodeTokenExpired, "the access token this ticket was issued with has expired")
	}
	return s.liveSession(ctx, parley.Principal{UserID: rec.UserID, DeviceID: rec.DeviceID, SessionID: rec.SessionID,
		ExpiresAt: time.UnixMilli(rec.AccessExpires)})
}
