package cluster_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/clustertest"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/testenv"
)

// TestTwoNodesShareTheStore runs two parleyd nodes on one PostgreSQL store
// and the machine's NATS, each with its own empty data directory: a token
// one node issued works on the other, users connected to different nodes
// chat live with receipts and typing, a key rotation by the command
// reaches both, and a node restarted on a fresh data directory serves the
// same users.
func TestTwoNodesShareTheStore(t *testing.T) {
	env := e2e.ClusterEnv(t)
	n1 := e2e.StartParleyd(t, t.TempDir(), env, "--presence-grace", "300ms")
	// Node 2 gets a list of NATS servers, the first of them down: it
	// connects to one that answers.
	nats := testenv.Service(t, "PARLEY_TEST_NATS_URL", "nats://127.0.0.1:4222")
	n2 := e2e.StartParleyd(t, t.TempDir(), env, "--presence-grace", "300ms", "--nats-url", "nats://127.0.0.1:1,"+nats)

	aliceID, aliceToken := e2e.Signup(t, n1.Base, "alice")
	// Node 1's token on node 2.
	e2e.MustAPI(t, 200, "GET", n2.Base+"/v1/conversations", aliceToken, nil)
	e2e.Signup(t, n2.Base, "bob")
	a := e2e.LoginDevice(t, n1.Base, "alice", "phone")
	b := e2e.LoginDevice(t, n2.Base, "bob", "phone")
	conv := e2e.MustAPI(t, 201, "POST", n1.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)

	ac := e2e.Connect(t, n1.Base, a)
	bc := e2e.Connect(t, n2.Base, b)
	ac.MustWrite(map[string]any{"type": "send", "id": "s1", "conversation_id": conv, "client_msg_id": "c1", "body": "across nodes"})
	if m := e2e.ExpectMessage(t, bc, "ack"); m.Body != "across nodes" || m.Seq != 1 || m.SenderID != aliceID {
		t.Fatalf("bob on node 2 got %+v", m)
	}
	// Bob's receipts reach Alice on node 1, and so does his typing.
	bc.MustWrite(map[string]any{"type": "delivered", "conversation_id": conv, "seq": 1})
	e2e.ExpectReceipt(t, ac, "delivered", b.User)
	bc.MustWrite(map[string]any{"type": "read", "conversation_id": conv, "seq": 1})
	e2e.ExpectReceipt(t, ac, "read", b.User)
	bc.MustWrite(map[string]any{"type": "typing", "conversation_id": conv, "state": "start"})
	ac.Expect("typing", "receipt", "presence", "ack", "message")

	// The same send retried through the other node is the same message.
	retry := e2e.MustAPI(t, 200, "POST", n2.Base+"/v1/conversations/"+conv+"/messages", a.Token, map[string]any{"client_msg_id": "c1", "body": "across nodes"})
	if seq := retry["message"].(map[string]any)["seq"].(float64); seq != 1 {
		t.Fatalf("retry through node 2 got seq %v, want 1", seq)
	}

	// A rotation by the command (on a third data directory) is taken up by
	// both nodes: their JWKS lists the new key at the next maintenance, and
	// old tokens keep working meanwhile.
	cmd := exec.Command(e2e.Bin(), "keys", "rotate", "--data", t.TempDir())
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "is active") {
		t.Fatalf("parleyd keys rotate: %v\n%s", err, out)
	}
	kid := strings.Fields(string(out))[3]
	e2e.MustAPI(t, 200, "GET", n2.Base+"/v1/conversations", aliceToken, nil)

	// A node replaced by one on a fresh data directory serves everyone.
	n1.Kill()
	n3 := e2e.StartParleyd(t, t.TempDir(), env)
	if !strings.Contains(e2e.GetText(t, n3.Base+"/.well-known/jwks.json"), kid) {
		t.Fatalf("a new node's JWKS lacks the rotated key %s", kid)
	}
	e2e.MustAPI(t, 200, "GET", n3.Base+"/v1/conversations/"+conv+"/messages", b.Token, nil)
	hist := e2e.MustAPI(t, 200, "GET", n3.Base+"/v1/conversations/"+conv+"/messages", aliceToken, nil)
	if msgs := hist["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["body"] != "across nodes" {
		t.Fatalf("history on a fresh node: %v", hist)
	}
}

// TestPostgresNeedsMasterKey: nodes of a cluster must share the master
// key, so a PostgreSQL store without PARLEY_MASTER_KEY is refused at start.
func TestPostgresNeedsMasterKey(t *testing.T) {
	dsn := testenv.Postgres(t)
	out, err := exec.Command(e2e.Bin(), "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--store", dsn).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs PARLEY_MASTER_KEY") {
		t.Fatalf("err=%v\n%s", err, out)
	}
}

// TestRoles splits a cluster by role: a gateway-only node serves clients
// and runs no background jobs; a worker-only node serves health, readiness
// and metrics but no API, and purges what expires. They meet only through
// the store and the bus.
func TestRoles(t *testing.T) {
	env := e2e.ClusterEnv(t)
	gw := e2e.StartParleyd(t, t.TempDir(), env, "--roles", "gateway", "--purge-interval", "200ms")
	wk := e2e.StartParleyd(t, t.TempDir(), env, "--roles", "worker", "--purge-interval", "200ms")
	if !strings.Contains(gw.Logs(), `"roles":"gateway"`) || !strings.Contains(wk.Logs(), `"roles":"worker"`) {
		t.Fatalf("roles not logged:\n%s\n%s", gw.Logs(), wk.Logs())
	}

	// The worker has no API and no WebSocket endpoint, but is ready.
	e2e.MustAPI(t, 200, "GET", wk.Base+"/readyz", "", nil)
	code, out := e2e.API(t, http.DefaultClient, "POST", wk.Base+"/v1/accounts", "", map[string]any{"handle": "nobody", "password": "correct horse battery"})
	if code != 404 {
		t.Fatalf("a worker-only node answered an API call: %d %v", code, out)
	}
	code, _ = e2e.API(t, http.DefaultClient, "GET", wk.Base+"/v1/ws", "", nil)
	if code != 404 {
		t.Fatalf("a worker-only node has /v1/ws: %d", code)
	}

	// Messages sent through the gateway that expire are purged by the
	// worker, not the gateway.
	_, token := e2e.Signup(t, gw.Base, "alice")
	conv := e2e.MustAPI(t, 201, "POST", gw.Base+"/v1/conversations", token, map[string]any{"kind": "group", "title": "t"})["conversation"].(map[string]any)["id"].(string)
	for i := range 3 {
		e2e.MustAPI(t, 201, "POST", gw.Base+"/v1/conversations/"+conv+"/messages", token, map[string]any{"client_msg_id": fmt.Sprint("e", i), "body": "gone soon", "ttl_seconds": 1})
	}
	purged := regexp.MustCompile(`(?m)^parley_messages_purged_total (\d+)`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := purged.FindStringSubmatch(e2e.GetText(t, wk.Base+"/metrics"))
		if m != nil && m[1] == "3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker purged %v, want 3", m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if m := purged.FindStringSubmatch(e2e.GetText(t, gw.Base+"/metrics")); m != nil && m[1] != "0" {
		t.Fatalf("the gateway-only node purged %s messages", m[1])
	}
	// Bad role lists are refused.
	out2, err := exec.Command(e2e.Bin(), "--roles", "gateway,push-everything", "--data", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out2), `unknown role "push-everything"`) {
		t.Fatalf("bad roles: %v\n%s", err, out2)
	}
}

// TestPresenceAcrossNodes: presence is the cluster's, not a node's. A user
// connecting to one node is told about contacts online on another; a user
// with devices on two nodes stays online while either is connected, and
// goes offline (once) when the last one leaves.
func TestPresenceAcrossNodes(t *testing.T) {
	env := e2e.ClusterEnv(t)
	n1 := e2e.StartParleyd(t, t.TempDir(), env, "--presence-grace", "300ms")
	n2 := e2e.StartParleyd(t, t.TempDir(), env, "--presence-grace", "300ms")
	e2e.Signup(t, n1.Base, "alice")
	e2e.Signup(t, n1.Base, "bob")
	a1 := e2e.LoginDevice(t, n1.Base, "alice", "phone")
	a2 := e2e.LoginDevice(t, n2.Base, "alice", "laptop")
	b := e2e.LoginDevice(t, n2.Base, "bob", "phone")
	e2e.MustAPI(t, 201, "POST", n1.Base+"/v1/conversations", a1.Token, map[string]any{"kind": "direct", "members": []string{b.User}})

	var pres struct {
		UserID string `json:"user_id"`
		State  string `json:"state"`
	}
	ac := e2e.Connect(t, n1.Base, a1)
	// Bob connects to node 2 and is told that Alice (on node 1) is online.
	bc := e2e.Connect(t, n2.Base, b)
	if err := bc.Expect("presence", "conversation").Decode(&pres); err != nil || pres.UserID != a1.User || pres.State != "online" {
		t.Fatalf("bob on node 2, alice on node 1: %+v %v", pres, err)
	}
	// Alice, on node 1, hears that Bob came online on node 2.
	if err := ac.Expect("presence", "conversation").Decode(&pres); err != nil || pres.UserID != b.User || pres.State != "online" {
		t.Fatalf("alice hears bob: %+v %v", pres, err)
	}
	// Bob's initial list and node 1's announcement of Alice race: Bob may
	// hear "online" twice, which the protocol allows (a repeated online
	// changes nothing). Let it settle before asserting silence.
	for {
		f, err := bc.Next(600 * time.Millisecond)
		if err != nil {
			break
		}
		if f.Type != "presence" || f.Decode(&pres) != nil || pres.UserID != a1.User || pres.State != "online" {
			t.Fatalf("bob, settling: unexpected frame %s", f.Raw)
		}
	}
	// Alice's laptop joins on node 2 and leaves again: she never went
	// offline (her phone is on node 1), so Bob hears nothing.
	lc := e2e.Connect(t, n2.Base, a2)
	time.Sleep(200 * time.Millisecond)
	lc.Close()
	bc.Quiet(1200*time.Millisecond, "presence")
	// Her phone leaves: now she is offline, once.
	ac.Close()
	if err := bc.Expect("presence").Decode(&pres); err != nil || pres.UserID != a1.User || pres.State != "offline" {
		t.Fatalf("bob hears alice leave her last node: %+v %v", pres, err)
	}
	bc.Quiet(800*time.Millisecond, "presence")
}

// TestHistoryCacheAcrossNodes: a node's cached newest page follows what
// other nodes commit: new messages and edits arrive through the bus, and
// the reads after the first are answered from memory.
func TestHistoryCacheAcrossNodes(t *testing.T) {
	env := e2e.ClusterEnv(t)
	n1 := e2e.StartParleyd(t, t.TempDir(), env)
	n2 := e2e.StartParleyd(t, t.TempDir(), env)
	_, alice := e2e.Signup(t, n1.Base, "alice")
	bobID, bob := e2e.Signup(t, n1.Base, "bob")
	conv := e2e.MustAPI(t, 201, "POST", n1.Base+"/v1/conversations", alice, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	msgs := "/v1/conversations/" + conv + "/messages"
	for i := range 3 {
		e2e.MustAPI(t, 201, "POST", n1.Base+msgs, bob, map[string]any{"client_msg_id": fmt.Sprint("m", i), "body": fmt.Sprint("message ", i)})
	}
	newest := func(p *e2e.Proc) []any {
		return e2e.MustAPI(t, 200, "GET", p.Base+msgs, alice, nil)["messages"].([]any)
	}
	// Node 2 fills its cache, then Bob sends and edits through node 1.
	if got := newest(n2); len(got) != 3 {
		t.Fatalf("node 2: %d messages, want 3", len(got))
	}
	e2e.MustAPI(t, 201, "POST", n1.Base+msgs, bob, map[string]any{"client_msg_id": "m3", "body": "sent on node 1"})
	e2e.MustAPI(t, 200, "PATCH", n1.Base+msgs+"/2", bob, map[string]any{"body": "edited on node 1"})
	deadline := time.Now().Add(20 * time.Second) // the bus event, on a loaded machine
	for {
		got := newest(n2)
		if len(got) == 4 && got[3].(map[string]any)["body"] == "sent on node 1" && got[1].(map[string]any)["body"] == "edited on node 1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 2's newest page never showed node 1's send and edit: %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	hits := regexp.MustCompile(`(?m)^parley_history_cache_hits_total (\d+)`).FindStringSubmatch(e2e.GetText(t, n2.Base+"/metrics"))
	if hits == nil || hits[1] == "0" {
		t.Fatalf("node 2 answered no read from its cache: %v", hits)
	}
	// The sender reads its own write at once, from its node's cache.
	e2e.MustAPI(t, 201, "POST", n1.Base+msgs, bob, map[string]any{"client_msg_id": "m4", "body": "read your writes"})
	if got := newest(n1); got[len(got)-1].(map[string]any)["body"] != "read your writes" {
		t.Fatalf("node 1 right after the ack: %v", got[len(got)-1])
	}
}

// TestStoreReplica runs parleyd on a private primary with a streaming
// replica (--store-replica): older history pages come from the replica
// once it has caught up, the newest page and a page the replica lacks
// from the primary, and both give what was sent.
func TestStoreReplica(t *testing.T) {
	pg := clustertest.StartPostgres(t, clustertest.PostgresOptions{Replica: true})
	key := make([]byte, 32)
	rand.Read(key)
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_MASTER_KEY=" + base64.StdEncoding.EncodeToString(key), "PARLEY_LIMITS=off"},
		"--store", pg.DSN(), "--store-replica", pg.ReplicaDSN())
	_, alice := e2e.Signup(t, p.Base, "alice")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", alice, map[string]any{"kind": "group", "title": "t"})["conversation"].(map[string]any)["id"].(string)
	msgs := "/v1/conversations/" + conv + "/messages"
	for i := range 120 {
		e2e.MustAPI(t, 201, "POST", p.Base+msgs, alice, map[string]any{"client_msg_id": fmt.Sprint("m", i), "body": fmt.Sprint("message ", i+1)})
	}
	pg.WaitReplica(t.Context())
	replicaReads := func() int {
		m := regexp.MustCompile(`(?m)^parley_store_replica_reads_total (\d+)`).FindStringSubmatch(e2e.GetText(t, p.Base+"/metrics"))
		if m == nil {
			t.Fatal("no parley_store_replica_reads_total")
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	before := replicaReads()
	page := e2e.MustAPI(t, 200, "GET", p.Base+msgs+"?before=61&limit=50", alice, nil)["messages"].([]any)
	if len(page) != 50 || page[0].(map[string]any)["body"] != "message 11" || page[49].(map[string]any)["body"] != "message 60" {
		t.Fatalf("older page: %d messages, %v .. %v", len(page), page[0], page[len(page)-1])
	}
	if replicaReads() != before+1 {
		t.Fatalf("the older page was not read from the replica (%d reads before, %d after)", before, replicaReads())
	}
	newest := e2e.MustAPI(t, 200, "GET", p.Base+msgs, alice, nil)["messages"].([]any)
	if len(newest) != 50 || newest[49].(map[string]any)["body"] != "message 120" || replicaReads() != before+1 {
		t.Fatalf("newest page: %d messages, last %v; replica reads %d", len(newest), newest[len(newest)-1], replicaReads())
	}
}
