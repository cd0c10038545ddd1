package jstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/parleychat/parley/internal/spawn"
)

// chromium is the browser the web client's tests drive (Debian's package).
const chromium = "/usr/bin/chromium"

// TestWebBrowser runs the web client's browser tests (clients/web/test):
// two users chatting through a server restart, Web Push in the service
// worker, the build's determinism and size budget. parleyd embeds the
// client at compile time, so the client is built first and a parleyd
// built after it serves this build (not the one TestMain built before).
// Without Chromium it skips, or fails with PARLEY_TEST_REQUIRE_SERVICES=1.
func TestWebBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		if required() {
			t.Fatalf("%s not found (PARLEY_TEST_REQUIRE_SERVICES=1): apt-get install chromium", chromium)
		}
		t.Skipf("%s not found", chromium)
	}
	needNode(t)
	build := exec.Command("npm", "run", "--silent", "build", "--workspace", "web")
	build.Dir = clientsDir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("npm run build -w web: %v\n%s", err, out)
	}
	bin := filepath.Join(t.TempDir(), "parleyd")
	if err := spawn.Build(bin, "../../cmd/parleyd", false); err != nil {
		t.Fatal(err)
	}
	npmRun(t, "web", "test", "PARLEY_BIN="+bin)
}
