// Command parleyd is the Parley server. With no configuration it runs every
// role on one machine with an embedded SQLite store in ./parley-data and
// serves on 127.0.0.1:8080.
//
//	parleyd [flags]                  serve
//	parleyd admin grant HANDLE       make a user an admin (against the store)
//	parleyd admin bench-accounts --count N FILE
//	                                 create load-test accounts, their tokens in FILE
//	parleyd keys rotate              start a new token signing key (in the store)
//	parleyd backup FILE              snapshot the embedded store, online
//	parleyd restore [--force] FILE   install a snapshot (the server stopped)
//
// Every flag has an environment variable; see docs/operations.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "parleyd:", err)
		os.Exit(1)
	}
}

// run dispatches a command line. It is main without the process globals, so
// tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "admin":
			return adminCommand(ctx, args[1:], getenv, stdout, stderr)
		case "keys":
			return keysCommand(ctx, args[1:], getenv, stdout, stderr)
		case "backup":
			return backupCommand(ctx, args[1:], getenv, stdout, stderr)
		case "restore":
			return restoreCommand(ctx, args[1:], getenv, stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("parleyd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, rest, err := loadConfig(fs, args, getenv)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unknown command %q (want admin, keys, backup or restore, or no command to serve)", rest[0])
	}
	return serve(ctx, cfg, getenv, stderr)
}
