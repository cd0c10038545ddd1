package service_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/service"
)

// newSeedService is a core with real tokens and (cheap) argon2id
// passwords over a fresh store.
func newSeedService(t *testing.T) (*service.Service, parley.Store) {
	t.Helper()
	st := openStore(t)
	keys, err := auth.LoadKeys(filepath.Join(t.TempDir(), "keys"), auth.KeyOptions{AccessTTL: 15 * time.Minute}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pw := auth.NewArgon2id(auth.PasswordParams{Time: 1, MemoryKiB: 1024, Threads: 1}, 4)
	return service.New(st, keys, pw, service.Config{}, slog.New(slog.DiscardHandler), nil), st
}

// TestSeedAccounts: the accounts exist with one device each, their
// refresh tokens open sessions (and rotate), and no password logs in.
func TestSeedAccounts(t *testing.T) {
	ctx := context.Background()
	svc, st := newSeedService(t)
	accounts, err := svc.SeedAccounts(ctx, "seed", 25, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(accounts) != 25 {
		t.Fatalf("%d accounts, want 25", len(accounts))
	}
	var hash string
	for i, a := range accounts {
		if want := "seed_" + strconv.Itoa(i); a.Handle != want {
			t.Fatalf("account %d is %s, want %s", i, a.Handle, want)
		}
		u, err := st.UserByHandle(ctx, a.Handle)
		if err != nil || u.ID != a.UserID || u.Role != parley.SystemRoleUser || u.State != parley.UserActive {
			t.Fatalf("user %s: %+v, %v", a.Handle, u, err)
		}
		// One hash for all, a full argon2id string of a secret nobody has.
		if hash == "" {
			hash = u.PasswordHash
			if !strings.HasPrefix(hash, "$argon2id$") {
				t.Fatalf("password hash %q", hash)
			}
		} else if u.PasswordHash != hash {
			t.Fatalf("%s has another password hash", a.Handle)
		}
		devs, err := st.Devices(ctx, a.UserID)
		if err != nil || len(devs) != 1 || devs[0].ID != a.DeviceID || devs[0].Platform != parley.PlatformCLI {
			t.Fatalf("devices of %s: %+v, %v", a.Handle, devs, err)
		}
	}
	s, err := svc.Refresh(ctx, accounts[3].RefreshToken)
	if err != nil || s.UserID != accounts[3].UserID || s.DeviceID != accounts[3].DeviceID || s.AccessToken == "" {
		t.Fatalf("refresh: %+v, %v", s, err)
	}
	if _, err := svc.Authenticate(ctx, s.AccessToken); err != nil {
		t.Fatalf("the refreshed session: %v", err)
	}
	// The token rotated: presenting it again revokes the device, as for
	// any session.
	if _, err := svc.Refresh(ctx, accounts[3].RefreshToken); parley.ErrorCode(err) != parley.CodeUnauthorized {
		t.Fatalf("a used refresh token: %v, want unauthorized", err)
	}
	for _, pw := range []string{"", "bench password 0123456789", accounts[0].RefreshToken, hash} {
		_, err := svc.Login(ctx, service.LoginRequest{Handle: accounts[0].Handle, Password: pw, Platform: parley.PlatformCLI})
		if parley.ErrorCode(err) != parley.CodeUnauthorized {
			t.Fatalf("login to a seeded account with %q: %v, want unauthorized", pw, err)
		}
	}
}

func TestSeedAccountsRefuses(t *testing.T) {
	ctx := context.Background()
	svc, st := newSeedService(t)
	for _, c := range []struct {
		prefix string
		count  int
	}{
		{"seed", 0},
		{"seed", service.MaxSeedAccounts + 1},
		{"Seed", 2},                   // not normalized
		{"", 2},                       // "_0" starts with '_'
		{"s-x", 2},                    // '-' is not a handle character
		{strings.Repeat("a", 30), 11}, // ..._9 fits, ..._10 does not: 33 characters
		{strings.Repeat("a", 31), 1},  // 33 characters
	} {
		created, err := svc.SeedAccounts(ctx, c.prefix, c.count, 4)
		if parley.ErrorCode(err) != parley.CodeInvalidRequest || len(created) != 0 {
			t.Errorf("prefix %q count %d: %d created, %v; want invalid_request and nothing", c.prefix, c.count, len(created), err)
		}
	}
	if _, err := st.UserByHandle(ctx, strings.Repeat("a", 30)+"_0"); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("a refused call created a user: %v", err)
	}
	// A taken handle: conflict, and what was created is returned.
	if _, err := svc.SeedAccounts(ctx, "taken", 3, 1); err != nil {
		t.Fatal(err)
	}
	created, err := svc.SeedAccounts(ctx, "taken", 5, 1)
	if parley.ErrorCode(err) != parley.CodeConflict {
		t.Fatalf("seeding over taken handles: %v, want conflict", err)
	}
	if len(created) != 0 {
		t.Fatalf("one worker stops at the first taken handle (taken_0), yet %d were created", len(created))
	}
}
