package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// ticketPrefix starts every WebSocket ticket, so that secret scanners and
// people can tell one from an access or refresh token.
const ticketPrefix = "wst_"

// ticketLen is the length of a ticket: the prefix and 32 random bytes in
// unpadded base64url.
const ticketLen = len(ticketPrefix) + 43

// NewTicket returns a new single-use WebSocket ticket, "wst_" and 32
// random bytes in unpadded base64url, and the key under which it is kept
// (see TicketKey). Safe for concurrent use.
func NewTicket() (ticket, key string) {
	b := make([]byte, 32)
	rand.Read(b)
	ticket = ticketPrefix + base64.RawURLEncoding.EncodeToString(b)
	key, _ = TicketKey(ticket)
	return ticket, key
}

// TicketKey checks that ticket, as a client presented it, has the form
// NewTicket gives, and returns its key: the hex SHA-256 of the ticket, so
// that whoever reads the ticket store learns nothing that opens a socket.
// ok is false for anything that is not a well-formed ticket (which then
// needs no look-up). Safe for concurrent use.
func TicketKey(ticket string) (key string, ok bool) {
	body, found := strings.CutPrefix(ticket, ticketPrefix)
	if !found || len(ticket) != ticketLen {
		return "", false
	}
	// With the length fixed, a line break (which the decoder skips)
	// leaves too few bytes.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) != 32 {
		return "", false
	}
	sum := sha256.Sum256([]byte(ticket))
	return hex.EncodeToString(sum[:]), true
}

// NewTicket is the package function NewTicket, as a method (service.Tokens).
func (k *Keys) NewTicket() (ticket, key string) { return NewTicket() }

// TicketKey is the package function TicketKey, as a method (service.Tokens).
func (k *Keys) TicketKey(ticket string) (key string, ok bool) { return TicketKey(ticket) }
