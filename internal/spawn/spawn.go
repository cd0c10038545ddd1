// Package spawn runs a parleyd process on a data directory and waits until
// it listens: for `parley bench --spawn` and for tests that need the real
// binary (the SDK's and the CLI's).
package spawn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a running parleyd.
type Process struct {
	Bin  string
	Data string
	Env  []string
	Args []string
	// Base is the API's base URL (http://127.0.0.1:PORT).
	Base string
	// Listen is the address it listens on, kept across Restart.
	Listen string

	cmd    *exec.Cmd
	mu     sync.Mutex
	logs   bytes.Buffer
	exited chan struct{}
}

// Start runs bin with --listen 127.0.0.1:0 (unless args has --listen),
// --data data and args, env added to the environment, and waits at most
// 60 s for its "parleyd listening" log line.
func Start(bin, data string, env []string, args ...string) (*Process, error) {
	p := &Process{Bin: bin, Data: data, Env: env, Args: args, Listen: "127.0.0.1:0"}
	return p, p.start()
}

func (p *Process) start() error {
	args := append([]string{"--listen", p.Listen, "--data", p.Data}, p.Args...)
	cmd := exec.Command(p.Bin, args...)
	// The tests written before message requests and the stranger limit
	// (issue 16) expect strangers' conversations to be ordinary; tests of
	// those controls turn them on in p.Env (the last value of a variable
	// wins).
	cmd.Env = append(append(os.Environ(), "PARLEY_MESSAGE_REQUESTS=off", "PARLEY_STRANGER_ADDS=0"), p.Env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	addrs := make(chan string, 1)
	exited := p.exited
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.mu.Lock()
			p.logs.Write(line)
			p.logs.WriteByte('\n')
			p.mu.Unlock()
			var rec struct{ Msg, Addr, Scheme string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "parleyd listening" {
				select {
				case addrs <- rec.Scheme + "://" + rec.Addr:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case base := <-addrs:
		p.Base = base
		if u, err := url.Parse(base); err == nil {
			p.Listen = u.Host // the port it got, for Restart
		}
		return nil
	case <-exited:
		return fmt.Errorf("parleyd exited before listening:\n%s", p.Logs())
	case <-time.After(60 * time.Second):
		p.Kill()
		return errors.New("parleyd did not listen within 60s")
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitCode is the exit status, after Exited (-1 if killed by a signal).
func (p *Process) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Logs is everything it wrote to stderr.
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Kill ends it at once (SIGKILL), as a crash would.
func (p *Process) Kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Stop asks it to shut down (SIGTERM) and waits at most timeout before
// killing it.
func (p *Process) Stop(timeout time.Duration) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.Kill()
	}
}

// Restart kills it and starts it again on the same address and data.
func (p *Process) Restart() error {
	p.Kill()
	return p.start()
}

// Build compiles the main package pkg (a path as `go build` takes it,
// relative to the caller's directory) to dst, for tests that run the real
// binaries; race builds it with the race detector.
func Build(dst, pkg string, race bool) error {
	args := []string{"build", "-o", dst}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s: %w", pkg, err)
	}
	return nil
}
