package realtime_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/e2e"
)

// TestEveryLogLineIsJSON runs the binary with its default roles (the nbio
// engine, the embedded NATS, the push role), serves a request, stops it,
// and finds every line it wrote, on stdout and stderr, to be one JSON
// object with a level and a message: no library prints its own format
// (nbio's "[INF] NBIO Engine ..." lines did).
func TestEveryLogLineIsJSON(t *testing.T) {
	cmd := exec.Command(e2e.Bin(), "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--log-level", "debug")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := regexp.MustCompile(`"msg":"parleyd listening","addr":"([^"]+)"`)
	var base string
	e2e.Eventually(t, 60*time.Second, "parleyd listening", func() bool {
		if m := addr.FindStringSubmatch(stderr.String()); m != nil {
			base = "http://" + m[1]
			return true
		}
		return false
	})
	e2e.Signup(t, base, "alice")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("parleyd: %v\n%s", err, stderr.String())
	}
	for name, out := range map[string]string{"stdout": stdout.String(), "stderr": stderr.String()} {
		lines := bufio.NewScanner(strings.NewReader(out))
		for lines.Scan() {
			var rec struct{ Level, Msg string }
			if err := json.Unmarshal(lines.Bytes(), &rec); err != nil || rec.Level == "" || rec.Msg == "" {
				t.Errorf("%s: a line that is not a JSON log record: %s", name, lines.Text())
			}
		}
	}
	if !strings.Contains(stderr.String(), `"component":"nbio"`) {
		t.Errorf("nbio's start lines are not in the JSON log:\n%s", stderr.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
