package parley

import "time"

// Platform is the kind of client a device runs.
type Platform string

// Platforms.
const (
	PlatformIOS     Platform = "ios"
	PlatformAndroid Platform = "android"
	PlatformWeb     Platform = "web"
	PlatformCLI     Platform = "cli"
)

// Valid reports whether p is one of the known platforms.
func (p Platform) Valid() bool {
	switch p {
	case PlatformIOS, PlatformAndroid, PlatformWeb, PlatformCLI:
		return true
	}
	return false
}

// Device is one logged-in client of a user. A device is a session: login
// creates it, logout or removal deletes it together with its refresh tokens,
// and an access token is only good while its device exists. SessionID names
// the refresh-token family of the device's current login.
type Device struct {
	ID         string    `json:"id"`
	UserID     string    `json:"user_id"`
	Platform   Platform  `json:"platform"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	SessionID  string    `json:"-"`
}

// RefreshToken is the stored form of an opaque refresh token: only its
// SHA-256 hash is kept. Tokens of one login form a family (the device's
// SessionID); each refresh uses up one token and issues the next.
type RefreshToken struct {
	Hash      string // hex SHA-256 of the token
	UserID    string
	DeviceID  string
	SessionID string
	CreatedAt time.Time
	ExpiresAt time.Time
}
