package auth

import (
	"time"

	"github.com/parleychat/parley"
)

// IssueAccess issues an access token for p; with VerifyAccess and the
// refresh-token functions it makes *Keys the core's token port
// (service.Tokens).
func (k *Keys) IssueAccess(p parley.Principal, now time.Time) (string, time.Duration, error) {
	return k.Issue(Claims{UserID: p.UserID, DeviceID: p.DeviceID, SessionID: p.SessionID, Role: string(p.Role)}, now)
}

// VerifyAccess verifies an access token and returns its principal. Errors
// are those of Verify.
func (k *Keys) VerifyAccess(token string, now time.Time) (parley.Principal, error) {
	c, err := k.Verify(token, now)
	if err != nil {
		return parley.Principal{}, err
	}
	return parley.Principal{UserID: c.UserID, DeviceID: c.DeviceID, SessionID: c.SessionID, Role: parley.SystemRole(c.Role)}, nil
}

// NewRefreshToken is the package function NewRefreshToken, as a method.
func (k *Keys) NewRefreshToken() (token, hash string) { return NewRefreshToken() }

// HashRefreshToken is the package function HashRefreshToken, as a method.
func (k *Keys) HashRefreshToken(token string) string { return HashRefreshToken(token) }

// Argon2id hashes and verifies passwords with Params; it is the core's
// password port (service.Passwords). The zero value uses
// DefaultPasswordParams.
type Argon2id struct {
	Params PasswordParams
}

// Hash returns the PHC-encoded argon2id hash of password.
func (a Argon2id) Hash(password string) (string, error) {
	p := a.Params
	if p == (PasswordParams{}) {
		p = DefaultPasswordParams
	}
	return HashPassword(password, p)
}

// Verify reports whether password matches encoded (whatever parameters
// encoded was made with).
func (a Argon2id) Verify(password, encoded string) (bool, error) {
	return VerifyPassword(password, encoded)
}

// DummyVerify costs what Verify costs, for unknown handles.
func (a Argon2id) DummyVerify(password string) { DummyVerify(password) }
