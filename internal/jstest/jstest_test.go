// Package jstest runs the JavaScript tests of clients/ (the TypeScript
// SDK's unit, conformance and integration tests, and the web client's
// browser tests) from `go test ./...`, against a parleyd binary built
// here, so that the README's one test command runs everything.
//
// Node.js 20 and npm are needed; `npm ci` runs first when
// clients/node_modules is missing. Without node the tests skip, unless
// PARLEY_TEST_REQUIRE_SERVICES=1 (CI), when they fail.
package jstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/spawn"
)

var (
	clientsDir string // absolute path of clients/
	parleydBin string // built once in TestMain
	npmOnce    sync.Once
	npmErr     error
)

func TestMain(m *testing.M) {
	abs, err := filepath.Abs(filepath.Join("..", "..", "clients"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	clientsDir = abs
	dir, err := os.MkdirTemp("", "jstest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	parleydBin = filepath.Join(dir, "parleyd")
	if err := spawn.Build(parleydBin, "../../cmd/parleyd", false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func required() bool { return os.Getenv("PARLEY_TEST_REQUIRE_SERVICES") == "1" }

// needNode skips (or, in CI, fails) the test when node or npm is missing,
// and installs clients/node_modules with `npm ci` once when absent.
func needNode(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if required() {
				t.Fatalf("%s not found (PARLEY_TEST_REQUIRE_SERVICES=1)", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
	npmOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(clientsDir, "node_modules")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = clientsDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			npmErr = fmt.Errorf("npm ci: %v\n%s", err, out)
		}
	})
	if npmErr != nil {
		t.Fatal(npmErr)
	}
}

// npmRun runs `npm run script` in the workspace (sdk, web) with the
// built parleyd in PARLEY_BIN and env added, and fails the test with the
// output when it fails. It logs the output either way (go test -v shows it).
func npmRun(t *testing.T, workspace, script string, env ...string) {
	t.Helper()
	needNode(t)
	// A stalled scenario is killed with its process group (npm, node and
	// the parleyd it started; chromium, which Playwright starts in a
	// session of its own, ends when its DevTools pipe closes) shortly
	// before the package's deadline, so the failure comes with npm's
	// output instead of a bare timeout panic that leaves the processes
	// loading the machine. (Being a group of its own, it does not get a
	// terminal's Ctrl-C: a local run interrupted by hand leaves it to end
	// by itself.)
	ctx, cancel := context.WithCancel(context.Background())
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-min(2*time.Minute, time.Until(dl)/4)))
	}
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "run", "--silent", script, "--workspace", workspace)
	cmd.Dir = clientsDir
	cmd.Env = append(append(os.Environ(), "PARLEY_BIN="+parleydBin), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("npm run %s -w %s:\n%s", script, workspace, out)
	if err != nil {
		if ctx.Err() != nil {
			t.Fatalf("npm run %s -w %s: %v (killed: %v, close to the test deadline)", script, workspace, err, ctx.Err())
		}
		t.Fatalf("npm run %s -w %s: %v", script, workspace, err)
	}
}
