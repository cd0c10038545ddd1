package realtime_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/testenv"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// TestKillAfterAckLosesNothing sends from several goroutines, SIGKILLs the
// server right after an ack arrives, restarts it on the same data, and
// finds every acked message, gap-free, still idempotent, and the old access
// token still valid (the signing keys persisted).
func TestKillAfterAckLosesNothing(t *testing.T) {
	data := t.TempDir()
	p := e2e.StartParleyd(t, data, nil)
	_, aliceTok := e2e.Signup(t, p.Base, "alice")
	bobID, bobTok := e2e.Signup(t, p.Base, "bob")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", aliceTok, map[string]any{"kind": "direct", "members": []string{bobID}})
	convID := conv["conversation"].(map[string]any)["id"].(string)
	msgs := p.Base + "/v1/conversations/" + convID + "/messages"

	// Senders run until the kill; every acked message is recorded.
	var mu sync.Mutex
	acked := map[string]float64{} // client_msg_id -> seq
	killed := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-killed:
					return
				default:
				}
				id := fmt.Sprintf("g%d-%d", g, i)
				req, _ := http.NewRequest("POST", msgs, strings.NewReader(fmt.Sprintf(`{"client_msg_id":%q,"body":"secret-body-%s"}`, id, id)))
				req.Header.Set("Authorization", "Bearer "+aliceTok)
				res, err := client.Do(req)
				if err != nil {
					return // the server died under us: that send was never acked
				}
				var out struct{ Message struct{ Seq float64 } }
				err = json.NewDecoder(res.Body).Decode(&out)
				res.Body.Close()
				if err == nil && res.StatusCode == 201 {
					mu.Lock()
					acked[id] = out.Message.Seq
					n := len(acked)
					mu.Unlock()
					if n == 200 {
						// Kill right after this ack, while the others are mid-send.
						_ = p.Signal(syscall.SIGKILL)
						close(killed)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	<-p.Exited()

	p2 := e2e.StartParleyd(t, data, nil)
	var got []map[string]any
	after := 0.0
	for {
		out := e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/conversations/%s/messages?after=%v&limit=200", p2.Base, convID, after), bobTok, nil)
		page := out["messages"].([]any)
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			got = append(got, m.(map[string]any))
		}
		after = got[len(got)-1]["seq"].(float64)
	}
	bySeq := map[float64]string{}
	for i, m := range got {
		if m["seq"].(float64) != float64(i+1) {
			t.Fatalf("message %d has seq %v: gap or reorder", i, m["seq"])
		}
		bySeq[m["seq"].(float64)] = m["client_msg_id"].(string)
	}
	for id, seq := range acked {
		if bySeq[seq] != id {
			t.Errorf("acked %s at seq %v, after restart seq %v holds %q", id, seq, seq, bySeq[seq])
		}
	}
	t.Logf("%d acked before SIGKILL, %d found after restart", len(acked), len(got))

	// A retry after the restart is still recognized.
	for id, seq := range acked {
		out := e2e.MustAPI(t, 200, "POST", p2.Base+"/v1/conversations/"+convID+"/messages", aliceTok, map[string]any{"client_msg_id": id, "body": "retry"})
		if out["message"].(map[string]any)["seq"].(float64) != seq {
			t.Fatalf("replay of %s after restart = %v", id, out)
		}
		break
	}

	// Bodies are encrypted at rest: no plaintext in any file of the data directory.
	p2.Kill()
	filepath.Walk(data, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte("secret-body-")) {
			t.Errorf("plaintext body found in %s", path)
		}
		return nil
	})
}

// TestGracefulShutdown: SIGTERM lets an in-flight request finish (its body
// is still arriving when the signal lands), then the process exits 0 having
// closed the store, and the acked message is there after a restart.
func TestGracefulShutdown(t *testing.T) {
	data := t.TempDir()
	p := e2e.StartParleyd(t, data, nil)
	_, tok := e2e.Signup(t, p.Base, "alice")
	bobID, _ := e2e.Signup(t, p.Base, "bob")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", tok, map[string]any{"kind": "direct", "members": []string{bobID}})
	msgs := p.Base + "/v1/conversations/" + conv["conversation"].(map[string]any)["id"].(string) + "/messages"

	body, w := io.Pipe()
	req, _ := http.NewRequest("POST", msgs, body)
	req.Header.Set("Authorization", "Bearer "+tok)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		res.Body.Close()
		done <- result{code: res.StatusCode}
	}()
	if _, err := w.Write([]byte(`{"client_msg_id":"in-flight","body":`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the server is now reading this request
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	w.Write([]byte(`"sent during shutdown"}`))
	w.Close()
	if r := <-done; r.err != nil || r.code != 201 {
		t.Fatalf("in-flight request during shutdown: %d %v", r.code, r.err)
	}
	select {
	case <-p.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("parleyd did not exit within 20s of SIGTERM")
	}
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("exit code %d\n%s", code, p.Logs())
	}
	if !strings.Contains(p.Logs(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in logs:\n%s", p.Logs())
	}
	// The data survives; the same token works after a restart.
	p2 := e2e.StartParleyd(t, data, nil)
	msgs2 := strings.Replace(msgs, p.Base, p2.Base, 1)
	out := e2e.MustAPI(t, 200, "GET", msgs2, tok, nil)
	if got := out["messages"].([]any); len(got) != 1 || got[0].(map[string]any)["client_msg_id"] != "in-flight" {
		t.Fatalf("after restart: %v", out)
	}
}

// TestAdminGrantCommand runs `parleyd admin grant` against the data
// directory of a running server.
func TestAdminGrantCommand(t *testing.T) {
	data := t.TempDir()
	p := e2e.StartParleyd(t, data, nil)
	_, adminTok := e2e.Signup(t, p.Base, "root")
	victimID, victimTok := e2e.Signup(t, p.Base, "victim")
	out, err := exec.Command(e2e.Bin(), "admin", "grant", "root", "--data", data).CombinedOutput() // as docs/operations.md writes it
	if err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	e2e.MustAPI(t, 200, "POST", p.Base+"/v1/admin/users/"+victimID+"/suspend", adminTok, nil)
	if code, _ := e2e.API(t, http.DefaultClient, "GET", p.Base+"/v1/me", victimTok, nil); code != 401 {
		t.Fatalf("suspended user's token: %d, want 401", code)
	}
	if out, err := exec.Command(e2e.Bin(), "admin", "grant", "--data", data, "nobody").CombinedOutput(); err == nil {
		t.Fatalf("granting an unknown handle succeeded: %s", out)
	}
}

// TestTLSAndMetrics serves over TLS and checks the Prometheus endpoint.
func TestTLSAndMetrics(t *testing.T) {
	dir := t.TempDir()
	cert, key := e2e.WriteSelfSigned(t, dir)
	p := e2e.StartParleyd(t, filepath.Join(dir, "data"), nil, "--tls-cert", cert, "--tls-key", key)
	if !strings.HasPrefix(p.Base, "https://") {
		t.Fatalf("base %s is not https", p.Base)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if code, _ := e2e.API(t, client, "GET", p.Base+"/healthz", "", nil); code != 200 {
		t.Fatalf("healthz over TLS: %d", code)
	}
	if code, _ := e2e.API(t, client, "POST", p.Base+"/v1/accounts", "", map[string]any{"handle": "alice", "password": "correct horse battery"}); code != 201 {
		t.Fatalf("register over TLS: %d", code)
	}
	res, err := client.Get(p.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`parley_http_requests_total{method="POST",route="POST /v1/accounts",status="201"} 1`,
		"parley_http_request_duration_seconds_bucket",
		`parley_store_operation_duration_seconds_count{op="create_user"} 1`,
		"parley_messages_stored_total 0",
		"process_resident_memory_bytes",
		"process_cpu_seconds_total",
		"parley_ws_connections 0",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestEventBus: by default parleyd runs an embedded NATS server with no TCP
// port; --nats-listen opens one; --nats-url uses the machine's NATS (and a
// message sent over REST reaches a WebSocket client through it); an
// unreachable --nats-url fails the start with a clear error.
func TestEventBus(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), nil)
	e2e.MustAPI(t, 200, "GET", p.Base+"/readyz", "", nil)
	if !strings.Contains(p.Logs(), `"msg":"event bus: embedded NATS","tcp":""`) {
		t.Errorf("embedded bus log line missing or with a TCP port:\n%s", p.Logs())
	}

	p = e2e.StartParleyd(t, t.TempDir(), nil, "--nats-listen", "127.0.0.1:0")
	if !regexp.MustCompile(`"msg":"event bus: embedded NATS","tcp":"nats://127\.0\.0\.1:\d+"`).MatchString(p.Logs()) {
		t.Errorf("no TCP port with --nats-listen:\n%s", p.Logs())
	}

	url := testenv.Service(t, "PARLEY_TEST_NATS_URL", "nats://127.0.0.1:4222")
	p = e2e.StartParleyd(t, t.TempDir(), nil, "--nats-url", url)
	e2e.MustAPI(t, 200, "GET", p.Base+"/readyz", "", nil)
	if !strings.Contains(p.Logs(), "event bus: external NATS") {
		t.Errorf("external bus not used:\n%s", p.Logs())
	}
	// Live delivery goes through the external bus too.
	e2e.Signup(t, p.Base, "alice")
	e2e.Signup(t, p.Base, "bob")
	a, b := e2e.LoginDevice(t, p.Base, "alice", "phone"), e2e.LoginDevice(t, p.Base, "bob", "phone")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)
	bc := e2e.Connect(t, p.Base, b)
	e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations/"+conv+"/messages", a.Token, map[string]any{"client_msg_id": "x", "body": "over external NATS"})
	if m := e2e.ExpectMessage(t, bc); m.Body != "over external NATS" {
		t.Fatalf("bob got %+v", m)
	}

	out, err := exec.Command(e2e.Bin(), "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--nats-url", "nats://127.0.0.1:1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "natsbus: connect nats://127.0.0.1:1") {
		t.Fatalf("unreachable NATS: err=%v\n%s", err, out)
	}
}
