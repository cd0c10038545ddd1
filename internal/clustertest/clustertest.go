// Package clustertest runs private copies of PostgreSQL (with a streaming
// replica), NATS and HAProxy for tests, each on free 127.0.0.1 ports with
// its files in a temporary directory. A test may stop and start them at
// will: the machine's own services (PostgreSQL on 5432, NATS on 4222, which
// package testenv finds for other tests) are never touched.
//
// Every server is a child process of the test binary: cleanup stops it when
// the test ends, and the kernel kills it if the test binary dies first (a
// -timeout panic runs no cleanup). Its log is kept in the temporary
// directory, and the last lines are printed when the test has failed.
//
// A missing program skips the test with a message saying what to install,
// or fails it when PARLEY_TEST_REQUIRE_SERVICES=1 (as .ci/run sets).
//
// The values returned here are for the test's goroutine: their methods
// fail the test through testing.TB, which only that goroutine may do.
package clustertest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// requireEnv is the variable that turns a missing program from a skip into
// a failure, as in package testenv.
const requireEnv = "PARLEY_TEST_REQUIRE_SERVICES"

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
// It is below the kernel's ephemeral range when it can be: a server that a
// test stops and starts again leaves its port unbound meanwhile, and there
// any outgoing connection (of this test or another package's, running
// alongside) could take it as its source port. Another process may still
// bind it first; on a test machine that is rare enough.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := freePort()
	if err != nil {
		tb.Fatalf("clustertest: %v", err)
	}
	return port
}

// lowestPort is where FreePort starts looking: above the ports that
// services commonly use.
const lowestPort = 10000

func freePort() (int, error) {
	if ephemeral := ephemeralLow(); ephemeral > lowestPort {
		for range 50 {
			port := lowestPort + rand.IntN(ephemeral-lowestPort)
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range, the
// ports it gives to port-0 listeners and outgoing connections; 0 when
// unknown.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 0
	}
	low, _ := strconv.Atoi(fields[0])
	return low
}

// findProgram returns the path of a program: the Debian package's path
// when it exists (/usr/sbin is not on every user's PATH), else the one on
// PATH.
func findProgram(debianPath, name string) (string, error) {
	if _, err := os.Stat(debianPath); err == nil {
		return debianPath, nil
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("no %s, and no %s on PATH", debianPath, name)
	}
	return path, nil
}

// missing ends a test that cannot run because a program is not installed:
// a skip, or a failure under PARLEY_TEST_REQUIRE_SERVICES=1. install tells
// the reader how to get the program.
func missing(tb testing.TB, what string, err error, install string) {
	tb.Helper()
	if os.Getenv(requireEnv) == "1" {
		tb.Fatalf("clustertest: %s is not available (%v); %s. %s=1 makes that a failure", what, err, install, requireEnv)
	}
	tb.Skipf("skipping: %s is not available (%v); %s, or set %s=1 to fail instead", what, err, install, requireEnv)
}

// workDir makes a temporary directory for one server's files and removes
// it when the test ends, after the servers have stopped (cleanups run last
// registered first, and this one is registered before any server starts).
// Unlike tb.TempDir, whose parent is 0700, every user may traverse it: the
// PostgreSQL programs run as the postgres user when the test runs as root.
func workDir(tb testing.TB, name string) (string, error) {
	tb.Helper()
	dir, err := os.MkdirTemp("", "parley-clustertest-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("making a directory for %s: %w", name, err)
	}
	tb.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			tb.Logf("clustertest: removing %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", fmt.Errorf("opening %s to other users: %w", dir, err)
	}
	return dir, nil
}
