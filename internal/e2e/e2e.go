// Package e2e is what parleyd's end-to-end tests share: Main builds the
// real binary once for a test package, StartParleyd runs it on a free port
// of 127.0.0.1, and the helpers drive it as clients do: REST (API,
// MustAPI, Signup), WebSocket devices (LoginDevice, Connect,
// ExpectMessage), local push providers (StartProviders) and the
// environment of a cluster's nodes on the machine's PostgreSQL and NATS
// (ClusterEnv).
//
// The tests that need parleyd's own functions stay in cmd/parleyd; those
// that only drive the binary live in the packages under internal/e2e, so
// that go test runs them as separate packages, side by side.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/parleychat/parley/internal/spawn"
)

// bin is the binary Main built.
var bin string

// Main builds parleyd with the race detector into a temporary directory,
// runs the package's tests and exits with their status. A test package's
// TestMain calls it.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "parleyd-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "parleyd")
	if err := spawn.Build(bin, "github.com/parleychat/parley/cmd/parleyd", true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Bin is the path of the binary Main built.
func Bin() string { return bin }

// Proc is a running parleyd.
type Proc = spawn.Process

// StartParleyd runs the binary on a free port with the given data
// directory, environment and extra arguments, waits until it listens, and
// kills it when the test ends.
func StartParleyd(t testing.TB, data string, env []string, args ...string) *Proc {
	t.Helper()
	p, err := spawn.Start(bin, data, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}
