package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
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

	"github.com/parleychat/parley/internal/spawn"
	"github.com/parleychat/parley/internal/testenv"
)

// parleydBin is the real binary, built once for the e2e tests.
var parleydBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parleyd-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	parleydBin = filepath.Join(dir, "parleyd")
	if err := spawn.Build(parleydBin, ".", true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running parleyd.
type proc struct {
	*spawn.Process
	base string // http://127.0.0.1:port
}

// startParleyd runs the binary on a free port with the given data directory
// and extra arguments, and waits until it listens.
func startParleyd(t testing.TB, data string, env []string, args ...string) *proc {
	t.Helper()
	sp, err := spawn.Start(parleydBin, data, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Kill)
	return &proc{Process: sp, base: sp.Base}
}

func (p *proc) logText() string { return p.Logs() }

func (p *proc) kill() { p.Kill() }

// api does a JSON request against a running parleyd.
func api(t testing.TB, client *http.Client, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

func mustAPI(t testing.TB, want int, method, url, token string, body any) map[string]any {
	t.Helper()
	code, out := api(t, http.DefaultClient, method, url, token, body)
	if code != want {
		t.Fatalf("%s %s: %d %v, want %d", method, url, code, out, want)
	}
	return out
}

func signup(t testing.TB, base, handle string) (userID, token string) {
	t.Helper()
	u := mustAPI(t, 201, "POST", base+"/v1/accounts", "", map[string]any{"handle": handle, "password": "correct horse battery"})
	s := mustAPI(t, 200, "POST", base+"/v1/sessions", "", map[string]any{"handle": handle, "password": "correct horse battery", "device": map[string]any{"platform": "cli", "name": "e2e"}})
	return u["user"].(map[string]any)["id"].(string), s["access_token"].(string)
}

// TestKillAfterAckLosesNothing sends from several goroutines, SIGKILLs the
// server right after an ack arrives, restarts it on the same data, and
// finds every acked message, gap-free, still idempotent, and the old access
// token still valid (the signing keys persisted).
func TestKillAfterAckLosesNothing(t *testing.T) {
	data := t.TempDir()
	p := startParleyd(t, data, nil)
	_, aliceTok := signup(t, p.base, "alice")
	bobID, bobTok := signup(t, p.base, "bob")
	conv := mustAPI(t, 201, "POST", p.base+"/v1/conversations", aliceTok, map[string]any{"kind": "direct", "members": []string{bobID}})
	convID := conv["conversation"].(map[string]any)["id"].(string)
	msgs := p.base + "/v1/conversations/" + convID + "/messages"

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

	p2 := startParleyd(t, data, nil)
	var got []map[string]any
	after := 0.0
	for {
		out := mustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/conversations/%s/messages?after=%v&limit=200", p2.base, convID, after), bobTok, nil)
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
		out := mustAPI(t, 200, "POST", p2.base+"/v1/conversations/"+convID+"/messages", aliceTok, map[string]any{"client_msg_id": id, "body": "retry"})
		if out["message"].(map[string]any)["seq"].(float64) != seq {
			t.Fatalf("replay of %s after restart = %v", id, out)
		}
		break
	}

	// Bodies are encrypted at rest: no plaintext in any file of the data directory.
	p2.kill()
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
	p := startParleyd(t, data, nil)
	_, tok := signup(t, p.base, "alice")
	bobID, _ := signup(t, p.base, "bob")
	conv := mustAPI(t, 201, "POST", p.base+"/v1/conversations", tok, map[string]any{"kind": "direct", "members": []string{bobID}})
	msgs := p.base + "/v1/conversations/" + conv["conversation"].(map[string]any)["id"].(string) + "/messages"

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
		t.Fatalf("exit code %d\n%s", code, p.logText())
	}
	if !strings.Contains(p.logText(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in logs:\n%s", p.logText())
	}
	// The data survives; the same token works after a restart.
	p2 := startParleyd(t, data, nil)
	msgs2 := strings.Replace(msgs, p.base, p2.base, 1)
	out := mustAPI(t, 200, "GET", msgs2, tok, nil)
	if got := out["messages"].([]any); len(got) != 1 || got[0].(map[string]any)["client_msg_id"] != "in-flight" {
		t.Fatalf("after restart: %v", out)
	}
}

// TestAdminGrantCommand runs `parleyd admin grant` against the data
// directory of a running server.
func TestAdminGrantCommand(t *testing.T) {
	data := t.TempDir()
	p := startParleyd(t, data, nil)
	_, adminTok := signup(t, p.base, "root")
	victimID, victimTok := signup(t, p.base, "victim")
	out, err := exec.Command(parleydBin, "admin", "grant", "root", "--data", data).CombinedOutput() // as docs/operations.md writes it
	if err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	mustAPI(t, 200, "POST", p.base+"/v1/admin/users/"+victimID+"/suspend", adminTok, nil)
	if code, _ := api(t, http.DefaultClient, "GET", p.base+"/v1/me", victimTok, nil); code != 401 {
		t.Fatalf("suspended user's token: %d, want 401", code)
	}
	if out, err := exec.Command(parleydBin, "admin", "grant", "--data", data, "nobody").CombinedOutput(); err == nil {
		t.Fatalf("granting an unknown handle succeeded: %s", out)
	}
}

// TestTLSAndMetrics serves over TLS and checks the Prometheus endpoint.
func TestTLSAndMetrics(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	p := startParleyd(t, filepath.Join(dir, "data"), nil, "--tls-cert", cert, "--tls-key", key)
	if !strings.HasPrefix(p.base, "https://") {
		t.Fatalf("base %s is not https", p.base)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if code, _ := api(t, client, "GET", p.base+"/healthz", "", nil); code != 200 {
		t.Fatalf("healthz over TLS: %d", code)
	}
	if code, _ := api(t, client, "POST", p.base+"/v1/accounts", "", map[string]any{"handle": "alice", "password": "correct horse battery"}); code != 201 {
		t.Fatalf("register over TLS: %d", code)
	}
	res, err := client.Get(p.base + "/metrics")
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

func writeSelfSigned(t testing.TB, dir string) (certPath, keyPath string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(priv)
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certPath, keyPath
}

// TestEventBus: by default parleyd runs an embedded NATS server with no TCP
// port; --nats-listen opens one; --nats-url uses the machine's NATS (and a
// message sent over REST reaches a WebSocket client through it); an
// unreachable --nats-url fails the start with a clear error.
func TestEventBus(t *testing.T) {
	p := startParleyd(t, t.TempDir(), nil)
	mustAPI(t, 200, "GET", p.base+"/readyz", "", nil)
	if !strings.Contains(p.logText(), `"msg":"event bus: embedded NATS","tcp":""`) {
		t.Errorf("embedded bus log line missing or with a TCP port:\n%s", p.logText())
	}

	p = startParleyd(t, t.TempDir(), nil, "--nats-listen", "127.0.0.1:0")
	if !regexp.MustCompile(`"msg":"event bus: embedded NATS","tcp":"nats://127\.0\.0\.1:\d+"`).MatchString(p.logText()) {
		t.Errorf("no TCP port with --nats-listen:\n%s", p.logText())
	}

	url := testenv.Service(t, "PARLEY_TEST_NATS_URL", "nats://127.0.0.1:4222")
	p = startParleyd(t, t.TempDir(), nil, "--nats-url", url)
	mustAPI(t, 200, "GET", p.base+"/readyz", "", nil)
	if !strings.Contains(p.logText(), "event bus: external NATS") {
		t.Errorf("external bus not used:\n%s", p.logText())
	}
	// Live delivery goes through the external bus too.
	signup(t, p.base, "alice")
	signup(t, p.base, "bob")
	a, b := loginDevice(t, p.base, "alice", "phone"), loginDevice(t, p.base, "bob", "phone")
	conv := mustAPI(t, 201, "POST", p.base+"/v1/conversations", a.token, map[string]any{"kind": "direct", "members": []string{b.user}})["conversation"].(map[string]any)["id"].(string)
	bc := connect(t, p.base, b)
	mustAPI(t, 201, "POST", p.base+"/v1/conversations/"+conv+"/messages", a.token, map[string]any{"client_msg_id": "x", "body": "over external NATS"})
	if m := expectMessage(t, bc); m.Body != "over external NATS" {
		t.Fatalf("bob got %+v", m)
	}

	out, err := exec.Command(parleydBin, "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--nats-url", "nats://127.0.0.1:1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "natsbus: connect nats://127.0.0.1:1") {
		t.Fatalf("unreachable NATS: err=%v\n%s", err, out)
	}
}
