package cluster_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/clustertest"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/spawn"
)

// cluster is three gateway nodes and a worker behind HAProxy, on a
// PostgreSQL and a NATS of the test's own (so that stopping them disturbs
// nobody else).
type cluster struct {
	pg    *clustertest.Postgres
	nats  *clustertest.NATS
	nodes []*e2e.Proc // gateways, behind HAProxy
	hap   *clustertest.HAProxy
	env   []string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{pg: clustertest.StartPostgres(t, clustertest.PostgresOptions{}), nats: clustertest.StartNATS(t)}
	key := make([]byte, 32)
	rand.Read(key)
	c.env = []string{
		"PARLEY_STORE=" + c.pg.DSN(),
		"PARLEY_NATS_URL=" + c.nats.URL(),
		"PARLEY_MASTER_KEY=" + base64.StdEncoding.EncodeToString(key),
		"PARLEY_LIMITS=off",
	}
	var backends []string
	for range 3 {
		addr := fmt.Sprintf("127.0.0.1:%d", clustertest.FreePort(t))
		backends = append(backends, addr)
		c.nodes = append(c.nodes, e2e.StartParleyd(t, t.TempDir(), c.env, "--listen", addr, "--roles", "gateway",
			"--presence-grace", "300ms", "--shutdown-timeout", "3s"))
	}
	// The background jobs run on a node of their own, outside HAProxy.
	e2e.StartParleyd(t, t.TempDir(), c.env, "--roles", "worker")
	c.hap = clustertest.StartHAProxy(t, clustertest.HAProxyConfig{Backends: backends})
	return c
}

// wsConnections reads a node's live WebSocket sessions from its metrics.
func wsConnections(t *testing.T, p *e2e.Proc) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^parley_ws_connections (\d+)`).FindStringSubmatch(e2e.GetText(t, p.Base+"/metrics"))
	if m == nil {
		t.Fatalf("no parley_ws_connections in %s/metrics", p.Base)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// waitReady waits until every node's /readyz answers want, and with 200
// until HAProxy has taken them back (it needs two good checks).
func (c *cluster) waitReady(t *testing.T, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	bases := []string{}
	for _, p := range c.nodes {
		bases = append(bases, p.Base)
	}
	if want == 200 {
		bases = append(bases, c.hap.URL())
	}
	for _, base := range bases {
		for {
			resp, err := http.Get(base + "/readyz")
			code := 0
			if err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			if code == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s/readyz: %d (%v), want %d", base, code, err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestClusterThroughHAProxy: users whose devices land on different nodes
// (HAProxy balances by least connections) chat, with receipts, typing and
// presence crossing nodes.
func TestClusterThroughHAProxy(t *testing.T) {
	c := startCluster(t)
	base := c.hap.URL()
	e2e.Signup(t, base, "alice")
	e2e.Signup(t, base, "bob")
	e2e.Signup(t, base, "carol")
	a, b, cl := e2e.LoginDevice(t, base, "alice", "phone"), e2e.LoginDevice(t, base, "bob", "phone"), e2e.LoginDevice(t, base, "carol", "phone")
	conv := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", a.Token, map[string]any{"kind": "group", "title": "three nodes", "members": []string{b.User, cl.User}})["conversation"].(map[string]any)["id"].(string)

	ac := e2e.Connect(t, base, a)
	bc := e2e.Connect(t, base, b)
	cc := e2e.Connect(t, base, cl)
	for i, p := range c.nodes {
		if n := wsConnections(t, p); n != 1 {
			t.Fatalf("node %d has %d connections; HAProxy should have spread the three", i+1, n)
		}
	}
	ac.MustWrite(map[string]any{"type": "send", "id": "s1", "conversation_id": conv, "client_msg_id": "c1", "body": "hello from one node"})
	if m := e2e.ExpectMessage(t, bc, "ack"); m.Body != "hello from one node" {
		t.Fatalf("bob: %+v", m)
	}
	if m := e2e.ExpectMessage(t, cc, "ack"); m.Body != "hello from one node" {
		t.Fatalf("carol: %+v", m)
	}
	bc.MustWrite(map[string]any{"type": "read", "conversation_id": conv, "seq": 1})
	e2e.ExpectReceipt(t, ac, "read", b.User)
	e2e.ExpectReceipt(t, cc, "read", b.User)
	cc.MustWrite(map[string]any{"type": "typing", "conversation_id": conv, "state": "start"})
	ac.Expect("typing", "receipt", "presence", "ack", "message")
	var pres struct {
		UserID string `json:"user_id"`
		State  string `json:"state"`
	}
	cc.Close()
	for {
		if err := ac.Expect("presence", "receipt", "typing", "message", "ack").Decode(&pres); err != nil {
			t.Fatal(err)
		}
		if pres.UserID == cl.User && pres.State == "offline" {
			break
		}
	}
}

// benchResult is what the failover test reads of `parley bench --json`.
type benchResult struct {
	Sent, Acked, Expected, Delivered, Lost, Duplicates, Reordered int64
	Reconnects                                                    int64
	FinalSyncDeliveries                                           int64                            `json:"final_sync_deliveries"`
	ReconnectMs                                                   *struct{ P50, P99, Max float64 } `json:"reconnect_ms"`
	Errors                                                        map[string]int64
}

// TestClusterFailover runs a fixed load of `parley bench direct` through
// HAProxy and, while it runs, kills a node with SIGKILL and restarts it,
// stops NATS for a few seconds, and stops PostgreSQL for a few seconds.
// The bench's clients reconnect through HAProxy, resync and resend; at
// the end every acked message was delivered, none twice, none out of
// order, and the nodes recovered without help.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("long: a cluster under load through three failures")
	}
	c := startCluster(t)
	parleyBin := filepath.Join(t.TempDir(), "parley")
	if err := spawn.Build(parleyBin, "github.com/parleychat/parley/cmd/parley", false); err != nil {
		t.Fatal(err)
	}
	const duration = 30 * time.Second
	cmd := exec.Command(parleyBin, "bench", "direct", "--server", c.hap.URL(), "--conns", "40", "--rate", "300",
		"--duration", duration.String(), "--reconnect", "--drain", "30s", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	benchDone := make(chan error, 1)
	wg.Go(func() { benchDone <- cmd.Wait() })
	defer wg.Wait()
	// Wait for the load to be running: connections on every node.
	deadline := time.Now().Add(60 * time.Second)
	for wsConnections(t, c.nodes[1]) == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the bench never connected to node 2:\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)

	// 1. A node dies. Its clients reconnect to the others.
	killed := time.Now()
	c.nodes[1].Kill()
	for wsConnections(t, c.nodes[0])+wsConnections(t, c.nodes[2]) < 40 {
		if time.Since(killed) > 20*time.Second {
			t.Fatalf("node 2's clients did not come back on the other nodes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("node 2 killed: its clients were back on the other nodes within %v", time.Since(killed).Round(10*time.Millisecond))
	time.Sleep(2 * time.Second)
	if err := c.nodes[1].Restart(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(t, 200, 15*time.Second)

	// A user of our own, to send by REST during the outages.
	_, writer := e2e.Signup(t, c.nodes[0].Base, "writer")
	conv := e2e.MustAPI(t, 201, "POST", c.nodes[0].Base+"/v1/conversations", writer, map[string]any{"kind": "group", "title": "outages"})["conversation"].(map[string]any)["id"].(string)
	send := func(base, id string) (int, map[string]any) {
		return e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations/"+conv+"/messages", writer, map[string]any{"client_msg_id": id, "body": id})
	}

	// 2. NATS goes away for a few seconds. Through HAProxy every node is
	// out (503, retryable); a send that reaches a node directly still
	// commits (the store is the truth; its event is lost, sync heals).
	time.Sleep(2 * time.Second)
	c.nats.Stop()
	c.waitReady(t, 503, 10*time.Second)
	// HAProxy marks a node down after two failed checks 500 ms apart; a
	// node still up in its view answers a read with 200.
	e2e.Eventually(t, 15*time.Second, "HAProxy to mark every node down", func() bool {
		code, _ := e2e.API(t, http.DefaultClient, "GET", c.hap.URL()+"/v1/conversations", writer, nil)
		return code == 503
	})
	if code, _ := send(c.hap.URL(), "via-haproxy-nats-down"); code != 503 {
		t.Fatalf("a send through HAProxy while NATS is down: %d, want 503", code)
	}
	if code, out := send(c.nodes[0].Base, "direct-nats-down"); code != 201 {
		t.Fatalf("a send to a node while NATS is down: %d %v, want 201 (committed)", code, out)
	}
	time.Sleep(1500 * time.Millisecond)
	c.nats.Start()
	c.waitReady(t, 200, 30*time.Second)

	// 3. PostgreSQL goes away for a few seconds: sends are refused with a
	// retryable code meanwhile.
	time.Sleep(2 * time.Second)
	c.pg.Stop()
	c.waitReady(t, 503, 10*time.Second)
	code, out := e2e.API(t, http.DefaultClient, "POST", c.nodes[0].Base+"/v1/accounts", "", map[string]any{"handle": "during_outage", "password": "correct horse battery"})
	if code != 503 || out["error"].(map[string]any)["code"] != "unavailable" {
		t.Fatalf("a write while PostgreSQL is down: %d %v, want 503 unavailable", code, out)
	}
	if code, out := send(c.nodes[2].Base, "direct-pg-down"); code != 503 || out["error"].(map[string]any)["code"] != "unavailable" {
		t.Fatalf("a send while PostgreSQL is down: %d %v, want 503 unavailable", code, out)
	}
	time.Sleep(3 * time.Second)
	c.pg.Start()
	c.waitReady(t, 200, 30*time.Second)
	// After recovery: the send committed during the NATS outage is there,
	// the refused one is not, and its retry commits.
	e2e.MustAPI(t, 201, "POST", c.hap.URL()+"/v1/conversations/"+conv+"/messages", writer, map[string]any{"client_msg_id": "direct-pg-down", "body": "direct-pg-down"})
	hist := e2e.MustAPI(t, 200, "GET", c.hap.URL()+"/v1/conversations/"+conv+"/messages", writer, nil)["messages"].([]any)
	if len(hist) != 2 || hist[0].(map[string]any)["body"] != "direct-nats-down" || hist[1].(map[string]any)["body"] != "direct-pg-down" {
		t.Fatalf("after the outages the conversation holds %v", hist)
	}

	// The restarted node takes traffic again: new connections reach it
	// once HAProxy has seen it healthy (two checks after it answers).
	e2e.Signup(t, c.hap.URL(), "late")
	late := e2e.LoginDevice(t, c.hap.URL(), "late", "phone")
	for deadline := time.Now().Add(10 * time.Second); wsConnections(t, c.nodes[1]) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted node takes no connections")
		}
		e2e.Connect(t, c.hap.URL(), late)
		time.Sleep(200 * time.Millisecond)
	}

	select {
	case err := <-benchDone:
		if err != nil {
			t.Fatalf("parley bench: %v\n%s\n%s", err, stdout.String(), stderr.String())
		}
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("parley bench did not finish:\n%s", stderr.String())
	}
	var r benchResult
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("bench output: %v\n%s", err, stdout.String())
	}
	t.Logf("bench: sent %d acked %d delivered %d/%d (%d only by the final sync), lost %d duplicates %d reordered %d, reconnects %d (close to ready ms %+v), errors %v",
		r.Sent, r.Acked, r.Delivered, r.Expected, r.FinalSyncDeliveries, r.Lost, r.Duplicates, r.Reordered, r.Reconnects, r.ReconnectMs, r.Errors)
	if r.Lost != 0 || r.Duplicates != 0 || r.Reordered != 0 {
		t.Fatalf("lost %d, duplicates %d, reordered %d: want 0", r.Lost, r.Duplicates, r.Reordered)
	}
	if r.Acked == 0 || r.Acked != r.Sent || r.Delivered < r.Expected {
		t.Fatalf("sent %d, acked %d, delivered %d of %d", r.Sent, r.Acked, r.Delivered, r.Expected)
	}
	if r.Reconnects == 0 {
		t.Fatal("no connection reconnected: the failures did not reach the load")
	}
}
