package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/parleychat/parley"
)

// MaxSeedAccounts caps the accounts of one SeedAccounts call.
const MaxSeedAccounts = 100_000

// SeededAccount is an account SeedAccounts created, with the refresh
// token of its one device.
type SeededAccount struct {
	Handle       string
	UserID       string
	DeviceID     string
	RefreshToken string
}

// SeedAccounts creates count accounts for a load test, handles PREFIX_0
// to PREFIX_{count-1}, each with one device (platform cli, named "bench")
// logged in: it returns their refresh tokens. It is for the operator's
// command line (`parleyd admin bench-accounts`), so it takes no
// principal; no API reaches it.
//
// What it saves is the argon2id work of a registration and a login per
// account (about 0.1 s of CPU each), not any check: every account gets
// the same password hash, made once with the server's own parameters
// from 32 random bytes that are then discarded, so nobody can log in to
// these accounts with a password; their only sessions are the refresh
// tokens returned, which expire (Config.RefreshTTL) and rotate like any
// other. Otherwise they are ordinary users (an admin suspends them like
// any other).
//
// count is 1 to MaxSeedAccounts and every handle must be valid
// (CodeInvalidRequest otherwise, before anything is written). workers
// (at least 1) accounts are created at once, so that the store's group
// commit batches them. A handle already taken fails with CodeConflict;
// on any failure the accounts created before it are returned with the
// error, in handle order.
func (s *Service) SeedAccounts(ctx context.Context, prefix string, count, workers int) ([]SeededAccount, error) {
	if count < 1 || count > MaxSeedAccounts {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "count must be 1 to %d", MaxSeedAccounts)
	}
	for _, i := range []int{0, count - 1} {
		h := prefix + "_" + strconv.Itoa(i)
		if n, err := parley.NormalizeHandle(h); err != nil || n != h {
			return nil, parley.Errorf(parley.CodeInvalidRequest, "prefix %q does not make valid handles (%s: lower-case a-z, 0-9, '_' and '.', %d to %d characters)",
				prefix, h, parley.HandleMinLen, parley.HandleMaxLen)
		}
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	hash, err := s.passwords.Hash(ctx, base64.RawURLEncoding.EncodeToString(secret))
	if err != nil {
		return nil, err
	}
	out := make([]SeededAccount, count)
	done := make([]bool, count)
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range max(1, min(workers, count)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= count || ctx.Err() != nil {
					return
				}
				a, err := s.seedAccount(ctx, prefix+"_"+strconv.Itoa(i), hash)
				if err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				out[i], done[i] = a, true
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if first != nil {
		var created []SeededAccount
		for i, ok := range done {
			if ok {
				created = append(created, out[i])
			}
		}
		return created, first
	}
	return out, nil
}

// seedAccount creates one account with passwordHash and logs in one
// device: Register and Login without their hashing.
func (s *Service) seedAccount(ctx context.Context, handle, passwordHash string) (SeededAccount, error) {
	now := s.cfg.Now().UTC()
	u := &parley.User{
		ID: parley.NewID(), Handle: handle, DisplayName: handle, PasswordHash: passwordHash,
		Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: now,
	}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return SeededAccount{}, err
	}
	d := &parley.Device{
		ID: parley.NewID(), UserID: u.ID, Platform: parley.PlatformCLI, Name: "bench",
		CreatedAt: now, LastSeenAt: now, SessionID: parley.NewID(),
	}
	refresh, hash := s.tokens.NewRefreshToken()
	rt := &parley.RefreshToken{
		Hash: hash, UserID: u.ID, DeviceID: d.ID, SessionID: d.SessionID,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTTL),
	}
	if err := s.store.CreateSession(ctx, d, rt, s.cfg.MaxDevicesPerUser); err != nil {
		return SeededAccount{}, err
	}
	return SeededAccount{Handle: handle, UserID: u.ID, DeviceID: d.ID, RefreshToken: refresh}, nil
}
