package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logTailLines is how much of each server's log a failed test prints.
const logTailLines = 50

// process is one server run as a child of the test binary, with its output
// appended to a log file. It can be started again after it stopped, with
// the same arguments. Not safe for concurrent use.
type process struct {
	name    string // for messages: "postgres primary", "nats", ...
	path    string
	args    []string
	dir     string              // working directory; "" for the test's
	env     []string            // nil for the test's environment
	cred    *syscall.Credential // nil to run as the test's user
	logPath string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// start runs the program. It does not wait for it to be ready.
func (p *process) start() error {
	if p.running() {
		return fmt.Errorf("%s is already running", p.name)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening the %s log: %w", p.name, err)
	}
	defer logFile.Close() // the child has its own copy
	fmt.Fprintf(logFile, "--- clustertest %s: %s %s\n", time.Now().Format(time.RFC3339Nano), p.path, strings.Join(p.args, " "))

	cmd := exec.Command(p.path, p.args...)
	cmd.Dir, cmd.Env = p.dir, p.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Pdeathsig: the kernel kills the server if the test binary dies without
	// running its cleanups (a -timeout panic, a kill). Go sets it after the
	// credentials change, which would otherwise clear it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return nil
}

// running tells whether the program was started and has not exited.
func (p *process) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends sig and waits at most timeout for the program to exit, then
// kills it. Stopping a program that is not running does nothing.
func (p *process) stop(sig syscall.Signal, timeout time.Duration) error {
	if !p.running() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling %s: %w", p.name, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return nil
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within %s after %s; killed it", p.name, timeout, sig)
	}
}

// waitReady calls ready every 50 ms until it returns nil, the program
// exits, or ctx ends; the error then says which, with ready's last error.
func (p *process) waitReady(ctx context.Context, ready func(context.Context) error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited (%s) before it was ready (see its log): %w", p.name, p.cmd.ProcessState, err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last try: %w)", p.name, context.Cause(ctx), err)
		case <-tick.C:
		}
	}
}

// runLogged runs a one-shot program (initdb, pg_basebackup) to completion,
// its output appended to logPath, within ctx.
func runLogged(ctx context.Context, logPath, dir string, env []string, cred *syscall.Credential, path string, args ...string) error {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening %s: %w", logPath, err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "--- clustertest %s: %s %s\n", time.Now().Format(time.RFC3339Nano), path, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("running %s (see %s): %w", path, logPath, err)
	}
	return nil
}

// logTail returns the last n lines of the file at path, or why it could
// not read them.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// logTailsIfFailed prints the end of each log when the test has failed:
// the servers' side of what went wrong.
func logTailsIfFailed(tb testing.TB, logPaths ...string) {
	if !tb.Failed() {
		return
	}
	for _, path := range logPaths {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		tb.Logf("clustertest: last %d lines of %s:\n%s", logTailLines, path, logTail(path, logTailLines))
	}
}
