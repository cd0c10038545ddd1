package service

import (
	"context"
	"errors"
	"time"

	"github.com/parleychat/parley"
)

// PasswordBusyRetry is the retry hint of a registration or login that
// gave up waiting for its turn to hash the password (WithPasswordWait).
const PasswordBusyRetry = 5 * time.Second

type passwordWaitKey struct{}

// WithPasswordWait returns ctx carrying a deadline for the wait of a
// Register or Login run under it for its turn to hash the password (the
// Passwords port runs a fixed number of hashes at once; the others
// queue). A transport whose replies are cut after a while (HTTP's write
// timeout) sets it, so that a request that would wait too long gives up
// in time to say so: it fails with CodeUnavailable and a retry hint
// (*RetryError) and has changed nothing. The hash itself and the store
// writes after it are not bound by the deadline.
func WithPasswordWait(ctx context.Context, deadline time.Time) context.Context {
	return context.WithValue(ctx, passwordWaitKey{}, deadline)
}

// passwordWait returns the context for the Passwords calls of a request
// run under ctx: ctx with the deadline of WithPasswordWait, if any.
func passwordWait(ctx context.Context) (context.Context, context.CancelFunc) {
	if deadline, ok := ctx.Value(passwordWaitKey{}).(time.Time); ok {
		return context.WithDeadline(ctx, deadline)
	}
	return context.WithCancel(ctx)
}

// passwordBusy turns the failure err of a Passwords call made under wait
// (from passwordWait(ctx)) into CodeUnavailable with a retry hint when
// the wait's deadline, not ctx, ended it.
func passwordBusy(ctx, wait context.Context, err error) error {
	if ctx.Err() != nil || !errors.Is(wait.Err(), context.DeadlineExceeded) {
		return err
	}
	return &RetryError{RetryAfter: PasswordBusyRetry, Err: parley.Errorf(parley.CodeUnavailable,
		"the server is busy checking passwords; retry in %d s", RetryAfterSeconds(PasswordBusyRetry))}
}

// Session is what a login or a refresh hands the client.
type Session struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"` // seconds
	UserID       string `json:"user_id"`
	DeviceID     string `json:"device_id"`
}

// Register creates an account with the system role user. Errors:
// CodeInvalidRequest for a bad handle, password or display name;
// CodeConflict if the handle is taken.
func (s *Service) Register(ctx context.Context, handle, password, displayName string) (*parley.User, error) {
	h, err := parley.NormalizeHandle(handle)
	if err != nil {
		return nil, err
	}
	if err := parley.CheckPassword(password); err != nil {
		return nil, err
	}
	name, err := parley.CleanText("display_name", displayName, parley.DisplayNameMaxLen)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = h
	}
	wait, stop := passwordWait(ctx)
	defer stop()
	hash, err := s.passwords.Hash(wait, password)
	if err != nil {
		return nil, passwordBusy(ctx, wait, err)
	}
	u := &parley.User{
		ID: parley.NewID(), Handle: h, DisplayName: name, PasswordHash: hash,
		Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: s.cfg.Now().UTC(),
	}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// LoginRequest is the input of Login.
type LoginRequest struct {
	Handle     string
	Password   string
	Platform   parley.Platform
	DeviceName string
}

// Login checks a handle and password and opens a session on a new device.
// Unknown handle and wrong password get the same CodeUnauthorized answer in
// the same time; a suspended account gets CodeSuspended; a user with
// MaxDevicesPerUser devices gets CodeLimitExceeded (log one out first).
func (s *Service) Login(ctx context.Context, req LoginRequest) (*Session, error) {
	if !req.Platform.Valid() {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "device.platform must be one of ios, android, web, cli")
	}
	name, err := parley.CleanText("device.name", req.DeviceName, parley.DeviceNameMaxLen)
	if err != nil {
		return nil, err
	}
	if len(req.Password) > parley.PasswordMaxLen {
		return nil, parley.Errorf(parley.CodeUnauthorized, "wrong handle or password")
	}
	bad := parley.Errorf(parley.CodeUnauthorized, "wrong handle or password")
	wait, stop := passwordWait(ctx)
	defer stop()
	h, err := parley.NormalizeHandle(req.Handle)
	if err != nil {
		if err := s.passwords.DummyVerify(wait, req.Password); err != nil {
			return nil, passwordBusy(ctx, wait, err)
		}
		return nil, bad
	}
	u, err := s.store.UserByHandle(ctx, h)
	if parley.ErrorCode(err) == parley.CodeNotFound {
		if err := s.passwords.DummyVerify(wait, req.Password); err != nil {
			return nil, passwordBusy(ctx, wait, err)
		}
		return nil, bad
	}
	if err != nil {
		return nil, err
	}
	ok, err := s.passwords.Verify(wait, req.Password, u.PasswordHash)
	if err != nil {
		return nil, passwordBusy(ctx, wait, err)
	}
	if !ok {
		return nil, bad
	}
	if u.State != parley.UserActive {
		return nil, parley.Errorf(parley.CodeSuspended, "this account is suspended")
	}
	now := s.cfg.Now().UTC()
	if name == "" {
		name = string(req.Platform)
	}
	d := &parley.Device{
		ID: parley.NewID(), UserID: u.ID, Platform: req.Platform, Name: name,
		CreatedAt: now, LastSeenAt: now, SessionID: parley.NewID(),
	}
	refresh, hash := s.tokens.NewRefreshToken()
	rt := &parley.RefreshToken{
		Hash: hash, UserID: u.ID, DeviceID: d.ID, SessionID: d.SessionID,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTTL),
	}
	if err := s.store.CreateSession(ctx, d, rt, s.cfg.MaxDevicesPerUser); err != nil {
		return nil, err
	}
	return s.session(u, d, refresh)
}

// Refresh exchanges a refresh token for a new access token and a new
// refresh token; the old one is used up. Presenting a used one revokes the
// session (theft detection) and fails with CodeUnauthorized.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Session, error) {
	if refreshToken == "" || len(refreshToken) > 128 {
		return nil, parley.Errorf(parley.CodeUnauthorized, "invalid refresh token")
	}
	now := s.cfg.Now().UTC()
	next, hash := s.tokens.NewRefreshToken()
	rt := &parley.RefreshToken{Hash: hash, CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTTL)}
	d, err := s.store.RotateRefreshToken(ctx, s.tokens.HashRefreshToken(refreshToken), rt, now)
	if err != nil {
		if parley.ErrorCode(err) == parley.CodeUnauthorized {
			s.log.WarnContext(ctx, "refresh refused", "err", err)
		}
		// A used token came back: the store revoked its session (theft or
		// a replay). Its live sockets close now, not at the gateway's next
		// recheck, or a thief holding a fresh access token keeps them.
		var reuse *parley.RefreshReuseError
		if errors.As(err, &reuse) {
			s.revoked(ctx, reuse.UserID, reuse.DeviceID)
		}
		return nil, err
	}
	u, err := s.store.User(ctx, d.UserID)
	if err != nil {
		return nil, err
	}
	if u.State != parley.UserActive {
		return nil, parley.Errorf(parley.CodeSuspended, "this account is suspended")
	}
	return s.session(u, d, next)
}

func (s *Service) session(u *parley.User, d *parley.Device, refresh string) (*Session, error) {
	p := parley.Principal{UserID: u.ID, DeviceID: d.ID, SessionID: d.SessionID, Role: u.Role}
	tok, ttl, err := s.tokens.IssueAccess(p, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	return &Session{AccessToken: tok, RefreshToken: refresh, ExpiresIn: int64(ttl.Seconds()), UserID: u.ID, DeviceID: d.ID}, nil
}

// Authenticate verifies an access token and that its session is still
// alive: the device exists with the same session and the user is active. A
// logged-out device or a suspended user is refused at once, not only when
// the token expires.
func (s *Service) Authenticate(ctx context.Context, accessToken string) (*parley.Principal, error) {
	p, err := s.tokens.VerifyAccess(accessToken, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	return s.liveSession(ctx, p)
}

// liveSession checks that p's session is alive (its device exists with the
// same session and its user is active) and returns p with the user's
// current role.
func (s *Service) liveSession(ctx context.Context, p parley.Principal) (*parley.Principal, error) {
	d, err := s.store.Device(ctx, p.DeviceID)
	if parley.ErrorCode(err) == parley.CodeNotFound || (err == nil && (d.SessionID != p.SessionID || d.UserID != p.UserID)) {
		return nil, parley.Errorf(parley.CodeUnauthorized, "session has ended; log in again")
	}
	if err != nil {
		return nil, err
	}
	u, err := s.store.User(ctx, p.UserID)
	if parley.ErrorCode(err) == parley.CodeNotFound {
		return nil, parley.Errorf(parley.CodeUnauthorized, "session has ended; log in again")
	}
	if err != nil {
		return nil, err
	}
	if u.State != parley.UserActive {
		return nil, parley.Errorf(parley.CodeSuspended, "this account is suspended")
	}
	p.Role = u.Role // the role as of now, not as of issue
	return &p, nil
}

// Logout ends the caller's session: its device and refresh tokens go.
func (s *Service) Logout(ctx context.Context, p *parley.Principal) error {
	err := s.store.DeleteDevice(ctx, p.UserID, p.DeviceID)
	if err == nil {
		s.revoked(ctx, p.UserID, p.DeviceID)
	}
	return err
}

// revoked tells every node that sessions ended, so live connections of
// them close now (the gateway also rechecks devices periodically, in case
// this news is lost).
func (s *Service) revoked(ctx context.Context, userID, deviceID string) {
	s.publish(ctx, UserSubject(userID), &Event{Kind: EventRevoked, UserID: userID, DeviceID: deviceID})
	s.DeviceListNews(ctx) // a keyed device among them changed the user's list
}

// LogoutAll ends every session of the caller and returns how many.
func (s *Service) LogoutAll(ctx context.Context, p *parley.Principal) (int, error) {
	n, err := s.store.DeleteDevices(ctx, p.UserID)
	if err == nil {
		s.revoked(ctx, p.UserID, "")
	}
	return n, err
}

// Me returns the caller's account.
func (s *Service) Me(ctx context.Context, p *parley.Principal) (*parley.User, error) {
	return s.store.User(ctx, p.UserID)
}

// FindUser looks a user up by handle. Any authenticated user may, so
// people can start conversations; only public fields are returned.
func (s *Service) FindUser(ctx context.Context, p *parley.Principal, handle string) (*parley.User, error) {
	h, err := parley.NormalizeHandle(handle)
	if err != nil {
		return nil, parley.Errorf(parley.CodeNotFound, "no such user")
	}
	u, err := s.store.UserByHandle(ctx, h)
	if err != nil {
		return nil, err
	}
	return publicUser(u), nil
}

// User returns a user's public fields by id.
func (s *Service) User(ctx context.Context, p *parley.Principal, id string) (*parley.User, error) {
	if !parley.ValidID(id) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such user")
	}
	u, err := s.store.User(ctx, id)
	if err != nil {
		return nil, err
	}
	return publicUser(u), nil
}

func publicUser(u *parley.User) *parley.User {
	return &parley.User{ID: u.ID, Handle: u.Handle, DisplayName: u.DisplayName}
}

// Devices lists the caller's devices.
func (s *Service) Devices(ctx context.Context, p *parley.Principal) ([]parley.Device, error) {
	return s.store.Devices(ctx, p.UserID)
}

// RemoveDevice ends the session of one of the caller's devices.
func (s *Service) RemoveDevice(ctx context.Context, p *parley.Principal, deviceID string) error {
	if !parley.ValidID(deviceID) {
		return parley.Errorf(parley.CodeNotFound, "no such device")
	}
	err := s.store.DeleteDevice(ctx, p.UserID, deviceID)
	if err == nil {
		s.revoked(ctx, p.UserID, deviceID)
	}
	return err
}

// SetUserState suspends or reinstates a user. Only admins may; an admin
// cannot suspend themself. Suspending ends every session of the user.
func (s *Service) SetUserState(ctx context.Context, p *parley.Principal, userID string, state parley.UserState) error {
	if p.Role != parley.SystemRoleAdmin {
		return parley.Errorf(parley.CodeForbidden, "only admins may suspend or reinstate users")
	}
	if !parley.ValidID(userID) {
		return parley.Errorf(parley.CodeNotFound, "no such user")
	}
	if userID == p.UserID && state == parley.UserSuspended {
		return parley.Errorf(parley.CodeInvalidRequest, "admins cannot suspend themselves")
	}
	// Suspension ends every session in the same transaction.
	if err := s.store.SetUserState(ctx, userID, state); err != nil {
		return err
	}
	if state == parley.UserSuspended {
		s.revoked(ctx, userID, "")
	}
	s.log.InfoContext(ctx, "user state changed", "user_id", userID, "state", state, "by", p.UserID)
	return nil
}

// GrantAdmin gives the user with handle the admin system role. It is for
// the operator's command line (`parleyd admin grant`), so it takes no
// principal.
func (s *Service) GrantAdmin(ctx context.Context, handle string) (*parley.User, error) {
	h, err := parley.NormalizeHandle(handle)
	if err != nil {
		return nil, err
	}
	u, err := s.store.UserByHandle(ctx, h)
	if err != nil {
		return nil, err
	}
	if err := s.store.SetUserRole(ctx, u.ID, parley.SystemRoleAdmin); err != nil {
		return nil, err
	}
	u.Role = parley.SystemRoleAdmin
	return u, nil
}
