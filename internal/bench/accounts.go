package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/benchaccounts"
)

// accountUsers is setupUsers from an accounts file (Options.Accounts,
// written by `parleyd admin bench-accounts`): the first n accounts'
// refresh tokens are exchanged for access tokens (POST
// /v1/sessions/refresh: a SHA-256 and a store write each, no argon2), and
// the rotated refresh tokens are written back before the run goes on, so
// the file serves the next run too. The file is locked meanwhile, so two
// benches sharing it take turns instead of presenting each other's used
// tokens (which revokes the device).
func (b *bench) accountUsers(ctx context.Context, n int) ([]device, error) {
	path := b.o.Accounts
	unlock, err := benchaccounts.Lock(path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	f, err := benchaccounts.Read(path)
	if err != nil {
		return nil, err
	}
	if len(f.Accounts) < n {
		return nil, fmt.Errorf("%s has %d accounts and this run needs %d: make more with parleyd admin bench-accounts --count %d", path, len(f.Accounts), n, n)
	}
	devs := make([]device, n)
	var done, rotated atomic.Int64
	err = forEach(ctx, n, b.o.SetupConc, func(ctx context.Context, i int) error {
		a := &f.Accounts[i]
		c := client.New(client.Config{Server: b.o.Server, HTTPClient: b.http,
			Tokens: &client.Tokens{UserID: a.UserID, DeviceID: a.DeviceID, RefreshToken: a.RefreshToken}})
		if err := c.Refresh(ctx); err != nil {
			if parley.ErrorCode(err) == parley.CodeUnauthorized {
				// The CLI prints a parley error's own message: say it there.
				return parley.Errorf(parley.CodeUnauthorized, "refreshing %s from %s: %s (was the file made for this server's store, and did no run use it without writing the new tokens back?)",
					a.Handle, path, parley.ErrorMessage(err))
			}
			return fmt.Errorf("refreshing %s: %w", a.Handle, err)
		}
		t := c.Tokens()
		a.RefreshToken = t.RefreshToken // each goroutine writes its own element
		rotated.Add(1)
		if t.UserID != a.UserID || t.DeviceID != a.DeviceID {
			return fmt.Errorf("refreshing %s: the server answered for user %s device %s, the file says %s %s", a.Handle, t.UserID, t.DeviceID, a.UserID, a.DeviceID)
		}
		devs[i] = device{userID: t.UserID, deviceID: t.DeviceID, token: t.AccessToken, handle: a.Handle}
		if k := done.Add(1); k%1000 == 0 {
			b.o.Progress(fmt.Sprintf("setup: %d/%d sessions refreshed from %s", k, n, path))
		}
		return nil
	})
	// The used tokens are spent whatever happened: write the new ones.
	if rotated.Load() > 0 {
		if werr := benchaccounts.Replace(path, f); werr != nil {
			return nil, errors.Join(err, fmt.Errorf("writing the rotated refresh tokens back to %s: %w", path, werr))
		}
	}
	return devs, err
}

// UsersNeeded is how many accounts a run with o registers (or takes from
// Options.Accounts), its defaults applied.
func UsersNeeded(o Options) int {
	o.defaults()
	switch o.Scenario {
	case "connections", "storm":
		return (o.Conns + o.PerToken - 1) / o.PerToken
	case "direct":
		return o.Conns / 2 * 2
	case "group":
		return o.Conns / o.GroupSize * o.GroupSize
	case "offline":
		return o.Conns + 1
	}
	return o.Conns
}
