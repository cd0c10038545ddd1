package realtime_test

// Issue 16, item 6 (tokens and logins) and the HTTP parts of item 7,
// through the real binary: WebSocket tickets, logins that a guesser cannot
// lock, refresh-token reuse closing live sockets at once, an HAProxy log
// without query strings, and /metrics kept private.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/clustertest"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/wstest"
)

// issueTicket asks for a WebSocket ticket with d's access token.
func issueTicket(t testing.TB, base string, d e2e.Device) string {
	t.Helper()
	out := e2e.MustAPI(t, 200, "POST", base+"/v1/ws/ticket", d.Token, nil)
	ticket, _ := out["ticket"].(string)
	if !strings.HasPrefix(ticket, "wst_") {
		t.Fatalf("ticket answer %v", out)
	}
	return ticket
}

// dialTicket opens /v1/ws?ticket= with no Authorization header, as a
// browser does, and returns the HTTP status (101 when upgraded) and, when
// upgraded, the ready frame's user and device.
func dialTicket(t testing.TB, base, ticket string) (status int, user, deviceID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := wstest.Dial(ctx, e2e.WSURL(base)+"?ticket="+ticket, "", nil)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		return resp.StatusCode, "", ""
	}
	defer c.Close()
	var ready struct {
		UserID   string `json:"user_id"`
		DeviceID string `json:"device_id"`
	}
	f, err := c.Next(10 * time.Second)
	if err != nil || f.Type != "ready" || f.Decode(&ready) != nil {
		t.Fatalf("first frame %s, %v; want ready", f.Raw, err)
	}
	return 101, ready.UserID, ready.DeviceID
}

// TestWSTicket: a ticket opens one socket for the session it was issued
// to, once; a second use, an expired ticket, a forged one, an access token
// passed as one, and a ticket of a session that ended are refused.
func TestWSTicket(t *testing.T) {
	// Long enough for an issue and a dial on a loaded, race-built server.
	const ttl = 4 * time.Second
	p := e2e.StartRealtime(t, "--ws-ticket-ttl", ttl.String())
	e2e.Signup(t, p.Base, "alice")
	e2e.Signup(t, p.Base, "bob")
	a := e2e.LoginDevice(t, p.Base, "alice", "browser")
	b := e2e.LoginDevice(t, p.Base, "bob", "browser")

	ticket := issueTicket(t, p.Base, a)
	if status, user, dev := dialTicket(t, p.Base, ticket); status != 101 || user != a.User || dev != a.ID {
		t.Fatalf("first use: %d user %s device %s; want 101 for %s/%s", status, user, dev, a.User, a.ID)
	}
	if status, _, _ := dialTicket(t, p.Base, ticket); status != 401 {
		t.Fatalf("second use: %d, want 401", status)
	}
	// Bound to its session: bob's ticket opens bob's socket, not alice's.
	if status, user, dev := dialTicket(t, p.Base, issueTicket(t, p.Base, b)); status != 101 || user != b.User || dev != b.ID {
		t.Fatalf("bob's ticket: %d user %s device %s", status, user, dev)
	}
	forged := "wst_" + strings.Repeat("A", 42) + "Q"
	for name, tk := range map[string]string{"forged": forged, "access token": a.Token, "garbage": "x"} {
		if status, _, _ := dialTicket(t, p.Base, tk); status != 401 {
			t.Errorf("%s as a ticket: %d, want 401", name, status)
		}
	}
	// Expiry: a ticket unused for longer than the TTL is refused. (Time
	// itself is the condition here, so the test waits it out.)
	late := issueTicket(t, p.Base, a)
	time.Sleep(ttl + 500*time.Millisecond)
	if status, _, _ := dialTicket(t, p.Base, late); status != 401 {
		t.Fatalf("expired ticket: %d, want 401", status)
	}
	// A ticket outlives nothing: once its session is logged out, it is void.
	orphan := issueTicket(t, p.Base, b)
	e2e.MustAPI(t, 204, "DELETE", p.Base+"/v1/sessions/current", b.Token, nil)
	if status, _, _ := dialTicket(t, p.Base, orphan); status != 401 {
		t.Fatalf("ticket of a logged-out session: %d, want 401", status)
	}
	if _, _, err := wstest.Dial(context.Background(), e2e.WSURL(p.Base), "", nil); err == nil {
		t.Fatal("a socket without token or ticket opened")
	}
	if strings.Contains(p.Logs(), ticket) {
		t.Error("a ticket reached parleyd's log")
	}
}

// TestWSTicketAcrossNodes: a ticket issued by one node opens a socket on
// another, and then on neither (its state is on the cluster's NATS).
func TestWSTicketAcrossNodes(t *testing.T) {
	env := e2e.ClusterEnv(t)
	n1 := e2e.StartParleyd(t, t.TempDir(), env)
	n2 := e2e.StartParleyd(t, t.TempDir(), env)
	e2e.Signup(t, n1.Base, "alice")
	a := e2e.LoginDevice(t, n1.Base, "alice", "browser")
	ticket := issueTicket(t, n1.Base, a)
	if status, user, _ := dialTicket(t, n2.Base, ticket); status != 101 || user != a.User {
		t.Fatalf("ticket from node 1 on node 2: %d %s", status, user)
	}
	for _, n := range []*e2e.Proc{n1, n2} {
		if status, _, _ := dialTicket(t, n.Base, ticket); status != 401 {
			t.Fatalf("ticket reused on %s: %d, want 401", n.Base, status)
		}
	}
}

// login posts a login from client address addr (X-Forwarded-For, believed
// from the trusted proxy 127.0.0.1) and returns the status and answer.
func loginFrom(t testing.TB, base, addr, password, deviceToken string) (int, map[string]any) {
	t.Helper()
	body := fmt.Sprintf(`{"handle":"alice","password":%q,"device":{"platform":"web"},"device_token":%q}`, password, deviceToken)
	req, _ := http.NewRequest("POST", base+"/v1/sessions", strings.NewReader(body))
	req.Header.Set("X-Forwarded-For", addr)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("login answer headers: Cache-Control %q, X-Content-Type-Options %q", res.Header.Get("Cache-Control"), res.Header.Get("X-Content-Type-Options"))
	}
	return res.StatusCode, out
}

// TestLoginLockout: an attacker guessing alice's password from one address
// is limited, and alice still logs in from another address and, with the
// known-device token of an earlier login, from the attacker's own.
// Before: one wrong guess per 6 s from anywhere kept her out everywhere.
func TestLoginLockout(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), nil, "--trusted-proxies", "127.0.0.1",
		"--login-rate", "0.001", "--login-burst", "3")
	e2e.Signup(t, p.Base, "alice")
	code, out := loginFrom(t, p.Base, "198.51.100.7", "correct horse battery", "")
	known, _ := out["device_token"].(string)
	if code != 200 || known == "" {
		t.Fatalf("first login: %d %v", code, out)
	}
	for i := 0; i < 3; i++ {
		if code, _ := loginFrom(t, p.Base, "192.0.2.66", "wrong password!", ""); code != 401 {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	// The attacker is limited, even with the right password.
	for _, pw := range []string{"wrong password!", "correct horse battery"} {
		if code, _ := loginFrom(t, p.Base, "192.0.2.66", pw, ""); code != 429 {
			t.Fatalf("attacker's address after 3 guesses: %d, want 429", code)
		}
	}
	// The owner is not: from another address, and on the known device
	// even from the attacker's address.
	if code, out := loginFrom(t, p.Base, "203.0.113.9", "correct horse battery", ""); code != 200 {
		t.Fatalf("owner from another address: %d %v", code, out)
	}
	if code, out := loginFrom(t, p.Base, "192.0.2.66", "correct horse battery", known); code != 200 {
		t.Fatalf("owner on the known device: %d %v", code, out)
	}
	// A made-up device token buys the attacker nothing.
	if code, _ := loginFrom(t, p.Base, "192.0.2.66", "wrong password!", "dt1."+strings.Repeat("A", 54)); code != 429 {
		t.Fatalf("attacker with a forged device token: %d, want 429", code)
	}
}

// TestRefreshReuseClosesSocket: presenting a used refresh token revokes
// the session and closes its live socket at once (4003), not at the next
// session recheck (a minute away here).
func TestRefreshReuseClosesSocket(t *testing.T) {
	p := e2e.StartRealtime(t, "--ping-interval", "60s", "--idle-timeout", "130s")
	e2e.Signup(t, p.Base, "alice")
	d := e2e.LoginDevice(t, p.Base, "alice", "phone")
	c := e2e.Connect(t, p.Base, d)
	// The legitimate client rotates; then the stolen old token is replayed.
	e2e.MustAPI(t, 200, "POST", p.Base+"/v1/sessions/refresh", "", map[string]any{"refresh_token": d.Refresh})
	code, out := e2e.API(t, http.DefaultClient, "POST", p.Base+"/v1/sessions/refresh", "", map[string]any{"refresh_token": d.Refresh})
	if code != 401 {
		t.Fatalf("replayed refresh token: %d %v", code, out)
	}
	if status, err := c.WaitClosed(10 * time.Second); err != nil || status != 4003 {
		t.Fatalf("socket after refresh reuse: close %d, %v; want 4003 well before the 60 s recheck", status, err)
	}
}

// TestHAProxyLogsNoQueryString: behind HAProxy (the deploy settings, from
// internal/clustertest), a browser's ticket in the URL and anything else
// in a query string stay out of HAProxy's log, and /metrics is refused
// from outside while the node serves it with its token.
func TestHAProxyLogsNoQueryString(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", clustertest.FreePort(t))
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off", "PARLEY_METRICS_TOKEN=scrape-secret"},
		"--listen", addr, "--trusted-proxies", "127.0.0.1")
	hap := clustertest.StartHAProxy(t, clustertest.HAProxyConfig{Backends: []string{addr}})
	base := hap.URL()
	waitProxyReady(t, base)
	e2e.Signup(t, base, "alice")
	a := e2e.LoginDevice(t, base, "alice", "browser")
	ticket := issueTicket(t, base, a)
	if status, _, _ := dialTicket(t, base, ticket); status != 101 {
		t.Fatalf("ticket through HAProxy: %d", status)
	}
	secret := "q" + strings.Repeat("s", 20)
	e2e.API(t, http.DefaultClient, "GET", base+"/v1/users?handle=alice&note="+secret, a.Token, nil)
	for _, path := range []string{"/metrics", "/%6detrics", "/metrics?x=1"} {
		if code, _ := e2e.API(t, http.DefaultClient, "GET", base+path, "", nil); code != 404 {
			t.Errorf("GET %s through HAProxy: %d, want 404", path, code)
		}
	}
	if code, _ := e2e.API(t, http.DefaultClient, "GET", p.Base+"/metrics", "", nil); code != 401 {
		t.Errorf("/metrics on the node without the token: %d, want 401", code)
	}
	if code, _ := e2e.API(t, http.DefaultClient, "GET", p.Base+"/metrics", "scrape-secret", nil); code != 200 {
		t.Errorf("/metrics on the node with the token: %d, want 200", code)
	}
	// HAProxy logs a tunnel when it closes: wait for the WebSocket's line.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(hap.Log(), "GET /v1/ws HTTP/1.1") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line for the WebSocket:\n%s", hap.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	log := hap.Log()
	if !strings.Contains(log, "GET /v1/users HTTP/1.1") {
		t.Fatalf("no log line for GET /v1/users:\n%s", log)
	}
	for _, leak := range []string{ticket, ticket[4:], secret, "ticket=", "handle=alice"} {
		if strings.Contains(log, leak) {
			t.Errorf("HAProxy's log holds %q:\n%s", leak, log)
		}
	}
	if m := regexp.MustCompile(`(GET|POST) \S*\?`).FindString(log); m != "" {
		t.Errorf("a query string in HAProxy's log: %q", m)
	}
}

// TestMetricsOnAdminListener: with --metrics-token the main listener's
// /metrics needs it; the admin listener serves /metrics without it.
func TestMetricsOnAdminListener(t *testing.T) {
	admin := fmt.Sprintf("127.0.0.1:%d", clustertest.FreePort(t))
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_METRICS_TOKEN=scrape-secret"}, "--admin-listen", admin)
	if code, _ := e2e.API(t, http.DefaultClient, "GET", p.Base+"/metrics", "", nil); code != 401 {
		t.Fatalf("/metrics without the token: %d", code)
	}
	if code, _ := e2e.API(t, http.DefaultClient, "GET", p.Base+"/metrics", "wrong", nil); code != 401 {
		t.Fatalf("/metrics with a wrong token: %d", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + admin + "/metrics")
		if err == nil {
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("admin /metrics: %d", res.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin listener: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(e2e.GetText(t, "http://"+admin+"/metrics"), "parley_http_requests_total") {
		t.Fatal("admin /metrics lacks parley's metrics")
	}
}

// waitProxyReady waits until base answers /readyz with 200 (HAProxy has found
// its backend up).
func waitProxyReady(t testing.TB, base string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz never answered 200 (last: %v)", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
