package clustertest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// NATS is a private nats-server with JetStream, on a free port. Its
// methods fail the test on error and are for the test's goroutine.
type NATS struct {
	tb          testing.TB
	port        int
	monitorPort int // serves /healthz, which says when JetStream is ready
	config      string
	proc        process
}

// StartNATS starts nats-server with JetStream storing in a temporary
// directory and returns once it is ready. When the test ends, the server
// stops and the directory is removed.
func StartNATS(tb testing.TB) *NATS {
	tb.Helper()
	return StartNATSConfig(tb, "")
}

// StartNATSConfig is StartNATS with config, the text of a nats-server
// configuration file (authorization, tls, ...) that the command line's
// address, ports and JetStream settings complete.
func StartNATSConfig(tb testing.TB, config string) *NATS {
	tb.Helper()
	bin, err := findProgram("/usr/sbin/nats-server", "nats-server")
	if err != nil {
		missing(tb, "nats-server", err, "install Debian's nats-server package")
		return nil
	}
	n := &NATS{tb: tb, config: config}
	if err := n.start(bin); err != nil {
		tb.Fatalf("clustertest: starting NATS: %v", err)
	}
	return n
}

func (n *NATS) start(bin string) error {
	n.tb.Helper()
	dir, err := workDir(n.tb, "nats")
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "nats.log")
	n.tb.Cleanup(func() {
		if err := n.proc.stop(syscall.SIGTERM, 30*time.Second); err != nil {
			n.tb.Errorf("clustertest: %v", err)
		}
		logTailsIfFailed(n.tb, logPath)
	})
	if n.port, err = freePort(); err != nil {
		return err
	}
	if n.monitorPort, err = freePort(); err != nil {
		return err
	}
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-m", strconv.Itoa(n.monitorPort),
		"-js", "-sd", filepath.Join(dir, "jetstream")}
	if n.config != "" {
		conf := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(conf, []byte(n.config), 0o600); err != nil {
			return err
		}
		args = append([]string{"-c", conf}, args...)
	}
	n.proc = process{
		name:    "nats-server",
		path:    bin,
		args:    args,
		logPath: logPath,
	}
	return n.startAndWait()
}

func (n *NATS) startAndWait() error {
	if err := n.proc.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", n.monitorPort)
	return n.proc.waitReady(ctx, func(ctx context.Context) error {
		return httpOK(ctx, healthz)
	})
}

// URL is the server's client URL, nats://127.0.0.1:PORT.
func (n *NATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// Stop shuts the server down (SIGTERM) and waits for it to exit. Clients
// see their connection drop and, if they are set to, try to reconnect.
func (n *NATS) Stop() {
	n.tb.Helper()
	if err := n.proc.stop(syscall.SIGTERM, 30*time.Second); err != nil {
		n.tb.Fatalf("clustertest: stopping NATS: %v", err)
	}
}

// Start starts a stopped server again on the same port and JetStream
// directory, so streams and their messages are still there, and waits
// until it is ready.
func (n *NATS) Start() {
	n.tb.Helper()
	if err := n.startAndWait(); err != nil {
		n.tb.Fatalf("clustertest: starting NATS again: %v", err)
	}
}

// httpOK tells whether GET url answers 200 within a second.
func httpOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
