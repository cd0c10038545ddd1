package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// adminCommand runs `parleyd admin grant HANDLE` (and `parleyd admin
// bench-accounts`) against the data directory. It opens the same store the
// server uses; SQLite lets it do so while a server runs.
func adminCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "bench-accounts" {
		return benchAccountsCommand(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "grant" {
		return fmt.Errorf("usage: parleyd admin grant [flags] HANDLE, or parleyd admin bench-accounts [flags] FILE")
	}
	// Flags may come before or after the handle.
	args = args[1:]
	fs := flag.NewFlagSet("parleyd admin grant", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, rest, err := loadConfig(fs, args, getenv)
	if err != nil {
		return err
	}
	if len(rest) > 1 {
		handle := rest[0]
		again := append(append([]string(nil), args[:len(args)-len(rest)]...), rest[1:]...)
		fs = flag.NewFlagSet("parleyd admin grant", flag.ContinueOnError)
		fs.SetOutput(stderr)
		if cfg, rest, err = loadConfig(fs, again, getenv); err != nil {
			return err
		}
		rest = append([]string{handle}, rest...)
	}
	if len(rest) != 1 {
		return fmt.Errorf("usage: parleyd admin grant [flags] HANDLE")
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := openNode(ctx, cfg, getenv, log, nil)
	if err != nil {
		return err
	}
	defer n.store.Close()
	u, err := n.svc.GrantAdmin(ctx, rest[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (%s) is now an admin\n", u.Handle, u.ID)
	return nil
}

// keysCommand runs `parleyd keys rotate`: a new signing key becomes active
// in the store; the old one keeps verifying until its tokens expire. Every
// running node picks the change up within a minute.
func keysCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		return fmt.Errorf("usage: parleyd keys rotate [flags]")
	}
	fs := flag.NewFlagSet("parleyd keys rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, _, err := loadConfig(fs, args[1:], getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := openNode(ctx, cfg, getenv, log, nil)
	if err != nil {
		return err
	}
	defer n.store.Close()
	kid, err := n.keys.Rotate(time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new signing key %s is active\n", kid)
	return nil
}
