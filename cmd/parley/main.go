// Command parley is Parley's command-line client, built on the Go SDK
// (package client).
//
//	parley [--server URL] [--json] [--config DIR] COMMAND [ARGS]
//
//	register HANDLE [--display-name NAME]   create an account
//	login HANDLE [--device NAME]            log in; tokens are kept in the config directory (0600)
//	logout                                  end this device's session
//	whoami                                  the logged-in user
//	users find HANDLE                       look a user up
//	conversations list                      conversations with unread counts
//	conversations create [--e2ee] --direct HANDLE   the direct conversation with a user
//	conversations create [--e2ee] --group TITLE [HANDLE...]
//	                                        --e2ee: end-to-end encrypted, for good
//	conversations add CONV HANDLE           add a member to a group
//	conversations remove CONV HANDLE        remove a member (yourself: leave)
//	send CONV TEXT...                       send a message
//	send-file CONV PATH [--caption TEXT]    upload a file (resumable: run it again to go on) and send it
//	download MEDIA_ID [PATH] [--thumbnail] [--force] [--conv CONV]
//	                                        save an attachment (default name: its file name; never overwrites without --force;
//	                                        --conv: the e2ee conversation whose message holds its key)
//	history CONV [--before SEQ|--after SEQ] [--limit N]
//	read CONV [SEQ]                         mark read (default: everything)
//	tail                                    print live events until interrupted
//	chat CONV                               interactive: lines typed are sent, messages arriving are printed
//	verify @HANDLE [--mark]                 the safety number to compare with a user; --mark: they match
//	bench SCENARIO [flags]                  load test: connections, direct, group, offline, storm (parley bench -h)
//	bench compare --baseline BUILD --candidate BUILD [--rounds N] SCENARIO [flags]
//	                                        two parleyd builds run in turn, medians and ratios (parley bench compare -h)
//
// CONV is a conversation id, or @HANDLE for the (plaintext) direct
// conversation with that user (created if there is none).
//
// End-to-end encryption: login makes this device's keys and publishes
// them; the private keys stay in the config directory (keys/, mode 0600).
// In an e2ee conversation send, send-file, chat, history and tail encrypt
// and decrypt by themselves; a message this device cannot read prints as
// [undecryptable: REASON] (its key is asked for again), and a contact's
// new device or changed security code is announced. Passwords come from
// PARLEY_PASSWORD, or --password-stdin (one line), or a prompt. Errors
// print the server's code and message and exit with status 1.
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

	"github.com/parleychat/parley"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], env{getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		if code := parley.ErrorCode(err); code != parley.CodeInternal || isParleyError(err) {
			fmt.Fprintf(os.Stderr, "parley: %s: %s\n", code, parley.ErrorMessage(err))
		} else {
			fmt.Fprintln(os.Stderr, "parley:", err)
		}
		os.Exit(1)
	}
}

func isParleyError(err error) bool {
	var pe *parley.Error
	return errors.As(err, &pe)
}

// env is the process's surroundings, so tests can run commands in-process.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}
