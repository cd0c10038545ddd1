package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/parleychat/parley/store/sqlite"
)

// databaseFile is the embedded store's file in the data directory (see
// openStore).
const databaseFile = "parley.db"

// backupCommand runs `parleyd backup [flags] FILE`: a consistent snapshot
// of the embedded store, taken while servers run and write. It needs no
// master key: the file holds bodies and signing keys sealed as they are.
func backupCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const usage = `usage: parleyd backup [flags] FILE

Writes a consistent snapshot of the embedded SQLite store of the data
directory (--data) to FILE, atomically, while servers run. The master key is
not in it: keep it separately. For a PostgreSQL store see "Backups" in
docs/operations.md.`
	cfg, file, err := loadConfigWithFile("parleyd backup", usage, args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	if cfg.Store != "" {
		return errors.New(`parleyd backup copies the embedded SQLite store, and this configuration uses PostgreSQL (--store/PARLEY_STORE): back that up with pg_dump, or with a base backup and WAL archiving for point-in-time recovery (see "Backups" in docs/operations.md)`)
	}
	info, err := sqlite.Backup(ctx, filepath.Join(cfg.Data, databaseFile), file)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", file)
	printBackupInfo(stdout, info)
	fmt.Fprintln(stdout, "The master key is not in the backup. Keep it (PARLEY_MASTER_KEY or master.key) apart from it: restoring needs it.")
	return nil
}

// restoreCommand runs `parleyd restore [--force] [flags] FILE`: it installs a
// backup as the data directory's database, when no process has that open.
func restoreCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const usage = `usage: parleyd restore [--force] [flags] FILE

Installs the backup FILE (made by parleyd backup) as the database of the
data directory (--data). The servers using that directory must be stopped.
An existing database is replaced only with --force. Start parleyd afterwards
with the master key that was in use when the backup was made.`
	var force bool
	cfg, file, err := loadConfigWithFile("parleyd restore", usage, args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "replace an existing database (everything in it is lost)")
	})
	if err != nil {
		return err
	}
	if cfg.Store != "" {
		return errors.New(`parleyd restore installs an embedded SQLite database, and this configuration uses PostgreSQL (--store/PARLEY_STORE): restore that with pg_restore into an empty database, or by point-in-time recovery (see "Backups" in docs/operations.md)`)
	}
	// As openNode does: the database holds password and token hashes.
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	dbPath := filepath.Join(cfg.Data, databaseFile)
	info, err := sqlite.Restore(ctx, file, dbPath, force)
	switch {
	case errors.Is(err, sqlite.ErrInUse):
		return fmt.Errorf("%s is open in another process: stop the parleyd serving %s (and any parleyd admin, keys or backup command on it), then restore", dbPath, cfg.Data)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s already exists: pass --force to replace it (everything in it is lost)", dbPath)
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "restored %s to %s\n", file, dbPath)
	printBackupInfo(stdout, info)
	keyFile := filepath.Join(cfg.Data, "master.key")
	if cfg.MasterKeyFile != "" {
		keyFile = cfg.MasterKeyFile
	}
	switch _, statErr := os.Stat(keyFile); {
	case getenv("PARLEY_MASTER_KEY") != "":
		fmt.Fprintln(stdout, "Start parleyd with PARLEY_MASTER_KEY holding the master key that was in use when the backup was made (older keys after it).")
	case statErr == nil:
		fmt.Fprintf(stdout, "parleyd will read the master key from %s: it must be the key that was in use when the backup was made.\n", keyFile)
	default:
		fmt.Fprintf(stdout, "There is no master key yet. Before starting parleyd, put the master key that was in use when the backup was made in %s, or set PARLEY_MASTER_KEY: started without it, parleyd makes a new key and cannot read the signing keys or the message bodies.\n", keyFile)
	}
	return nil
}

// printBackupInfo writes what a backup holds, a field a line.
func printBackupInfo(w io.Writer, info *sqlite.BackupInfo) {
	fmt.Fprintf(w, "  bytes           %d\n", info.Bytes)
	fmt.Fprintf(w, "  schema version  %d\n", info.SchemaVersion)
	fmt.Fprintf(w, "  change stamp    %d\n", info.ChangeStamp)
	fmt.Fprintf(w, "  users           %d\n", info.Users)
	fmt.Fprintf(w, "  conversations   %d\n", info.Conversations)
	fmt.Fprintf(w, "  messages        %d\n", info.Messages)
	fmt.Fprintf(w, "  signing keys    %d (sealed under the master key)\n", info.Secrets)
}

// loadConfigWithFile parses the flags of a command that takes one FILE
// argument, accepting flags before and after it. extra, if not nil, adds
// the command's own flags; it is called once per parse.
func loadConfigWithFile(name, usage string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (*Config, string, error) {
	parse := func(args []string) (*Config, []string, error) {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.Usage = func() {
			fmt.Fprintf(stderr, "%s\n\nflags:\n", usage)
			fs.PrintDefaults()
		}
		if extra != nil {
			extra(fs)
		}
		return loadConfig(fs, args, getenv)
	}
	cfg, rest, err := parse(args)
	if err != nil {
		return nil, "", err
	}
	if len(rest) > 1 {
		// Flags after FILE: parse them again without it.
		file := rest[0]
		again := append(append([]string(nil), args[:len(args)-len(rest)]...), rest[1:]...)
		if cfg, rest, err = parse(again); err != nil {
			return nil, "", err
		}
		rest = append([]string{file}, rest...)
	}
	if len(rest) != 1 || rest[0] == "" {
		line, _, _ := strings.Cut(usage, "\n")
		return nil, "", errors.New(line)
	}
	return cfg, rest[0], nil
}
