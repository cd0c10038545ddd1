package auth

import (
	"context"
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
	return parley.Principal{UserID: c.UserID, DeviceID: c.DeviceID, SessionID: c.SessionID, Role: parley.SystemRole(c.Role), ExpiresAt: c.ExpiresAt}, nil
}

// NewRefreshToken is the package function NewRefreshToken, as a method.
func (k *Keys) NewRefreshToken() (token, hash string) { return NewRefreshToken() }

// HashRefreshToken is the package function HashRefreshToken, as a method.
func (k *Keys) HashRefreshToken(token string) string { return HashRefreshToken(token) }

// Argon2id hashes and verifies passwords with Params; it is the core's
// password port (service.Passwords). Each hash costs Params.MemoryKiB of
// memory, so at most a fixed number run at once (see NewArgon2id); the
// others wait their turn, and one whose context ends while it waits leaves
// the queue without hashing (a client that gave up costs nothing). Safe for
// concurrent use.
type Argon2id struct {
	params PasswordParams
	slots  chan struct{}
}

// NewArgon2id returns an Argon2id with params (the zero value means
// DefaultPasswordParams) that runs at most maxConcurrent hashes at once
// (at least 1), which bounds their memory to maxConcurrent*MemoryKiB.
func NewArgon2id(params PasswordParams, maxConcurrent int) *Argon2id {
	if params == (PasswordParams{}) {
		params = DefaultPasswordParams
	}
	return &Argon2id{params: params, slots: make(chan struct{}, max(maxConcurrent, 1))}
}

// acquire waits for a slot and returns its release, or ctx's error if ctx
// ends first (then no slot is held). A context that has already ended gets
// no slot even if one is free.
func (a *Argon2id) acquire(ctx context.Context) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Hash returns the PHC-encoded argon2id hash of password, or ctx's error
// if ctx ends while it waits for its turn.
func (a *Argon2id) Hash(ctx context.Context, password string) (string, error) {
	release, err := a.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return HashPassword(password, a.params)
}

// Verify reports whether password matches encoded (whatever parameters
// encoded was made with), or returns ctx's error if ctx ends while it
// waits for its turn.
func (a *Argon2id) Verify(ctx context.Context, password, encoded string) (bool, error) {
	release, err := a.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	return VerifyPassword(password, encoded)
}

// DummyVerify costs what Verify costs, for unknown handles; it returns
// ctx's error if ctx ends while it waits for its turn (and then costs
// nothing).
func (a *Argon2id) DummyVerify(ctx context.Context, password string) error {
	release, err := a.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	DummyVerify(password)
	return nil
}
