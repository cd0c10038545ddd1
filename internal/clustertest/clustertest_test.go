package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestPostgresReplicaAndRestart(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t, PostgresOptions{Replica: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	run := func(dsn, sql string, args ...any) {
		t.Helper()
		conn := connect(ctx, t, dsn)
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	count := func(dsn string) int {
		t.Helper()
		conn := connect(ctx, t, dsn)
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM notes").Scan(&n); err != nil {
			t.Fatalf("counting notes: %v", err)
		}
		return n
	}

	run(pg.DSN(), "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)")
	run(pg.DSN(), "INSERT INTO notes VALUES (1, $1)", "before the restart")
	pg.WaitReplica(ctx)
	conn := connect(ctx, t, pg.ReplicaDSN())
	var body string
	if err := conn.QueryRow(ctx, "SELECT body FROM notes WHERE id = 1").Scan(&body); err != nil {
		t.Fatalf("reading the replica: %v", err)
	}
	if body != "before the restart" {
		t.Fatalf("replica has %q", body)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO notes VALUES (2, 'x')"); err == nil {
		t.Fatal("the replica accepted a write")
	}
	conn.Close(ctx)

	pg.Stop()
	if conn, err := pgx.Connect(ctx, pg.DSN()); err == nil {
		conn.Close(ctx)
		t.Fatal("the stopped primary accepted a connection")
	}
	pg.Start()
	run(pg.DSN(), "INSERT INTO notes VALUES (2, $1)", "after the restart")
	if n := count(pg.DSN()); n != 2 {
		t.Fatalf("primary has %d notes after the restart, want 2", n)
	}
	// The replica reconnects to the restarted primary by itself.
	pg.WaitReplica(ctx)
	if n := count(pg.ReplicaDSN()); n != 2 {
		t.Fatalf("replica has %d notes after the restart, want 2", n)
	}
}

func TestPostgresWithoutReplica(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t, PostgresOptions{})
	if pg.ReplicaDSN() != "" {
		t.Fatalf("ReplicaDSN = %q without a replica", pg.ReplicaDSN())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := connect(ctx, t, pg.DSN())
	defer conn.Close(ctx)
	var maxConnections string
	if err := conn.QueryRow(ctx, "SHOW max_connections").Scan(&maxConnections); err != nil {
		t.Fatal(err)
	}
	if maxConnections != "200" {
		t.Errorf("max_connections = %s, want 200", maxConnections)
	}
}

func connect(ctx context.Context, t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	return conn
}

func TestNATSRestartKeepsJetStream(t *testing.T) {
	t.Parallel()
	srv := StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got := make(chan string, 10)
	if _, err := nc.Subscribe("clustertest.hello", func(m *nats.Msg) { got <- string(m.Data) }); err != nil {
		t.Fatal(err)
	}
	publishAndReceive := func(payload string) {
		t.Helper()
		if err := nc.Publish("clustertest.hello", []byte(payload)); err != nil {
			t.Fatalf("publishing %q: %v", payload, err)
		}
		select {
		case m := <-got:
			if m != payload {
				t.Fatalf("received %q, want %q", m, payload)
			}
		case <-ctx.Done():
			t.Fatalf("%q never arrived", payload)
		}
	}
	publishAndReceive("before")

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CLUSTERTEST", Subjects: []string{"clustertest.stored"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("creating a stream: %v", err)
	}
	if _, err := js.Publish(ctx, "clustertest.stored", []byte("kept")); err != nil {
		t.Fatalf("publishing to the stream: %v", err)
	}

	srv.Stop()
	srv.Start()
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			t.Fatalf("the client did not reconnect: %v", nc.Status())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The subscription came back with the reconnect.
	publishAndReceive("after")

	stream, err := js.Stream(ctx, "CLUSTERTEST")
	if err != nil {
		t.Fatalf("the stream is gone after the restart: %v", err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, "clustertest.stored")
	if err != nil {
		t.Fatalf("the stream's message is gone after the restart: %v", err)
	}
	if string(msg.Data) != "kept" {
		t.Fatalf("stored message is %q", msg.Data)
	}
}

// backend is a stand-in parleyd node: / answers its name, /readyz 200
// until it is told to fail, /ws greets a WebSocket with its name and then
// holds it open.
type backend struct {
	name    string
	addr    string
	failing atomic.Bool
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if b.failing.Load() {
			http.Error(w, "store unreachable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready")
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		if err := wsutil.WriteServerText(conn, []byte(b.name)); err != nil {
			return
		}
		for {
			if _, err := wsutil.ReadClientText(conn); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, b.name) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = l.Addr().String()
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return b
}

func TestHAProxyBalancesAndDropsFailingNode(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, "a"), startBackend(t, "b")
	proxy := StartHAProxy(t, HAProxyConfig{Backends: []string{a.addr, b.addr}})
	client := &http.Client{Timeout: 2 * time.Second}
	get := func() (string, error) {
		resp, err := client.Get(proxy.URL() + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", resp.Status, body)
		}
		return string(body), nil
	}

	seen := map[string]bool{}
	for deadline := time.Now().Add(5 * time.Second); len(seen) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("requests reached only %v", seen)
		}
		name, err := get()
		if err != nil {
			t.Fatal(err)
		}
		seen[name] = true
	}

	// A WebSocket through the proxy: upgraded, then a tunnel.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(ctx, strings.Replace(proxy.URL(), "http://", "ws://", 1)+"/ws")
	if err != nil {
		t.Fatalf("WebSocket through HAProxy: %v", err)
	}
	defer conn.Close()
	// The greeting may have come in the same read as the handshake's
	// response, and then it is in br.
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	wsConn := struct {
		io.Reader
		io.Writer
	}{r, conn}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	greeting, err := wsutil.ReadServerText(wsConn)
	if err != nil {
		t.Fatalf("reading the greeting: %v", err)
	}
	failing, healthy := a, b
	if string(greeting) == b.name {
		failing, healthy = b, a
	}

	// The node whose WebSocket we hold starts failing /readyz: HAProxy must
	// cut that WebSocket and send every request to the other node.
	failing.failing.Store(true)
	markedAt := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = wsutil.ReadServerText(wsConn)
	var netErr net.Error
	switch {
	case err == nil:
		t.Fatal("the failing node's WebSocket got a message; want it cut")
	case errors.As(err, &netErr) && netErr.Timeout():
		t.Fatal("HAProxy did not cut the failing node's WebSocket within 5 s")
	}
	t.Logf("WebSocket on node %s cut %v after its /readyz failed (%v)", failing.name, time.Since(markedAt).Round(time.Millisecond), err)
	for i := 0; i < 20; i++ {
		name, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if name != healthy.name {
			t.Fatalf("request %d reached %s, whose /readyz fails", i, name)
		}
	}

	proxy.Stop()
	if _, err := get(); err == nil {
		t.Fatal("the stopped proxy answered")
	}
	proxy.Start()
	// A restarted HAProxy counts every server up until its first check,
	// so the failing node may take a request or two at first.
	for deadline, inARow := time.Now().Add(5*time.Second), 0; inARow < 5; {
		if time.Now().After(deadline) {
			t.Fatal("after Start, requests did not settle on the healthy node within 5 s")
		}
		if name, err := get(); err == nil && name == healthy.name {
			inARow++
		} else {
			inARow = 0
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// parleySettings are the lines that make HAProxy fit Parley; the generated
// configuration and deploy/haproxy.cfg must both have each.
var parleySettings = []string{
	"balance leastconn",
	"option httpchk GET /readyz",
	"http-check expect status 200",
	"default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions",
	"timeout tunnel 1h",
	"timeout check 3s",
	"retries 3",
	"option redispatch 1",
	// No query strings (WebSocket tickets, tokens) in the access log.
	`log-format "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %HM %HPO %HV"`,
	// No /metrics from outside.
	"http-request deny deny_status 404 if { path,url_dec -m beg /metrics }",
}

func TestHAProxyConfigsAgree(t *testing.T) {
	var generated bytes.Buffer
	if err := haproxyTemplate.Execute(&generated, map[string]any{
		"Port":    8080,
		"Servers": []map[string]string{{"Name": "node1", "Addr": "127.0.0.1:8081"}},
	}); err != nil {
		t.Fatal(err)
	}
	deploy, err := os.ReadFile("../../deploy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	for name, config := range map[string]string{"generated": generated.String(), "deploy/haproxy.cfg": string(deploy)} {
		lines := map[string]bool{}
		for _, line := range strings.Split(config, "\n") {
			lines[strings.Join(strings.Fields(line), " ")] = true
		}
		for _, want := range parleySettings {
			if !lines[want] {
				t.Errorf("%s lacks %q", name, want)
			}
		}
		if lines["option http-server-close"] {
			t.Errorf("%s closes server connections, which WebSockets need kept", name)
		}
	}
	// haproxy -c reads the file as it would start, without binding.
	bin, err := findProgram("/usr/sbin/haproxy", "haproxy")
	if err != nil {
		missing(t, "HAProxy", err, "install Debian's haproxy package (apt-get install haproxy)")
	}
	out, err := exec.Command(bin, "-c", "-f", "../../deploy/haproxy.cfg").CombinedOutput()
	if err != nil {
		t.Errorf("haproxy -c -f deploy/haproxy.cfg: %v\n%s", err, out)
	}
}

func TestFreePortAvoidsEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	if low <= lowestPort {
		t.Skipf("ephemeral range starts at %d", low)
	}
	for range 20 {
		if port := FreePort(t); port < lowestPort || port >= low {
			t.Fatalf("FreePort = %d, want [%d, %d)", port, lowestPort, low)
		}
	}
}
