package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/parleychat/parley/internal/benchaccounts"
	"github.com/parleychat/parley/service"
)

// benchAccountsCommand runs `parleyd admin bench-accounts --count N
// [--prefix P] [flags] FILE`: it creates N load-test accounts in the store,
// each with one logged-in device, and writes their refresh tokens to FILE
// for `parley bench --accounts FILE`. See service.SeedAccounts for what it
// saves (the argon2id work of N registrations and logins) and what it
// does not (every account's password is a discarded random secret).
func benchAccountsCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const usage = `usage: parleyd admin bench-accounts --count N [--prefix P] [flags] FILE

Creates N accounts PREFIX_0 .. PREFIX_{N-1} for load tests in the store of
this configuration (--data or --store), each with one logged-in device, and
writes their refresh tokens to FILE (created with mode 0600; an existing FILE
is refused) for "parley bench --accounts FILE". No password can log in to
these accounts: they share one argon2id hash of a random secret that is
discarded. FILE holds credentials: delete it when the test is over. Runs
while servers run.`
	var (
		count  int
		prefix string
	)
	cfg, file, err := loadConfigWithFile("parleyd admin bench-accounts", usage, args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&count, "count", 0, "how many accounts (1 to "+strconv.Itoa(service.MaxSeedAccounts)+")")
		fs.StringVar(&prefix, "prefix", "", "handle prefix (default bench and 6 random characters)")
	})
	if err != nil {
		return err
	}
	if count < 1 || count > service.MaxSeedAccounts {
		return fmt.Errorf("--count must be 1 to %d", service.MaxSeedAccounts)
	}
	if prefix == "" {
		prefix = "bench" + strconv.FormatInt(rand.Int64N(36*36*36*36*36*36), 36)
	}
	// Refuse an existing FILE before writing anything to the store.
	if _, err := os.Lstat(file); err == nil {
		return fmt.Errorf("%s exists: bench-accounts never overwrites a credentials file", file)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := openNode(ctx, cfg, getenv, log, nil)
	if err != nil {
		return err
	}
	defer n.store.Close()
	start := time.Now()
	created, serr := n.svc.SeedAccounts(ctx, prefix, count, 64)
	if len(created) == 0 {
		return serr
	}
	f := &benchaccounts.File{Prefix: prefix, Accounts: make([]benchaccounts.Account, len(created))}
	for i, a := range created {
		f.Accounts[i] = benchaccounts.Account{Handle: a.Handle, UserID: a.UserID, DeviceID: a.DeviceID, RefreshToken: a.RefreshToken}
	}
	// What was created is written even after a failure, so that no
	// session is left that nobody holds.
	if err := benchaccounts.Write(file, f); err != nil {
		return errors.Join(serr, fmt.Errorf("writing %s: %w", file, err))
	}
	if serr != nil {
		return fmt.Errorf("created %d of %d accounts (written to %s): %w", len(created), count, file, serr)
	}
	fmt.Fprintf(stdout, "created %d accounts %s_0 .. %s_%d in %.1fs; their refresh tokens are in %s (mode 0600)\n",
		count, prefix, prefix, count-1, time.Since(start).Seconds(), file)
	return nil
}
