package realtime_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/wstest"
)

// The attacks of issue 16, items 3 (one user slowing others: devices,
// connections, sends) and 4 (response amplification), run against the
// real binary.

// TestSixtyConnectionsOneToken: 60 connections on one token were all
// accepted. Now a device keeps at most --max-connections-per-device: each
// one past it closes the device's oldest with 4004 (newest wins), and a
// user past --max-connections-per-user is refused with 409
// limit_exceeded, unless the connection replaces one of its own device.
func TestSixtyConnectionsOneToken(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off"}, "--max-connections-per-device", "10", "--max-connections-per-user", "12")
	e2e.Signup(t, p.Base, "alice")
	a := e2e.LoginDevice(t, p.Base, "alice", "phone")
	conns := make([]*wstest.Conn, 60)
	for i := range conns {
		conns[i] = e2e.Connect(t, p.Base, a)
	}
	for i, c := range conns[:50] {
		code, err := c.WaitClosed(10 * time.Second)
		if err != nil || code != 4004 {
			t.Fatalf("connection %d of 60 on one token: close %d, %v; want 4004 (replaced by a newer one)", i, code, err)
		}
	}
	for i, c := range conns[50:] {
		c.MustWrite(map[string]any{"type": "ping", "id": fmt.Sprint("p", i)})
		c.Expect("pong", "presence")
	}

	// Two more devices: the user's cap (12) is reached at the second
	// connection of b; c's first is refused at the handshake.
	b, d := e2e.LoginDevice(t, p.Base, "alice", "tablet"), e2e.LoginDevice(t, p.Base, "alice", "laptop")
	e2e.Connect(t, p.Base, b)
	e2e.Connect(t, p.Base, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := wstest.Dial(ctx, e2e.WSURL(p.Base), d.Token, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("13th connection of the user: %v %+v; want 409", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"limit_exceeded"`) {
		t.Fatalf("refusal body %s", body)
	}
	// The phone at its own cap still gets through, replacing its oldest.
	e2e.Connect(t, p.Base, a)
	if code, err := conns[50].WaitClosed(10 * time.Second); err != nil || code != 4004 {
		t.Fatalf("the phone's oldest after one more: close %d, %v", code, err)
	}
}

// loginAnswer logs handle in on a new device named name and returns the
// answer, retrying after Retry-After while the server answers 503
// unavailable (the login waited too long for its turn to hash the
// password, and created nothing). A request that gets no answer at all
// (EOF: the server's write timeout cut it) is an error: every login must
// be answered. Safe to call from any goroutine.
func loginAnswer(base, handle, name string) (int, map[string]any, error) {
	body, _ := json.Marshal(map[string]any{"handle": handle, "password": "correct horse battery", "device": map[string]any{"platform": "cli", "name": name}})
	client := &http.Client{Timeout: 2 * time.Minute}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		res, err := client.Post(base+"/v1/sessions", "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		retry := res.Header.Get("Retry-After")
		if res.StatusCode != http.StatusServiceUnavailable || retry == "" || time.Now().After(deadline) {
			return res.StatusCode, out, nil
		}
		secs, err := strconv.Atoi(retry)
		if err != nil || secs < 1 {
			return 0, nil, fmt.Errorf("503 with Retry-After %q", retry)
		}
		time.Sleep(time.Duration(secs) * time.Second)
	}
}

// TestDeviceCap: logins past --max-devices-per-user are refused with
// limit_exceeded saying how to log one out, even when they race; logging
// a device out makes room.
func TestDeviceCap(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off"}, "--max-devices-per-user", "3")
	e2e.Signup(t, p.Base, "alice") // one device
	login := func(name string) (int, map[string]any) {
		t.Helper()
		code, out, err := loginAnswer(p.Base, "alice", name)
		if err != nil {
			t.Fatalf("login %s: %v", name, err)
		}
		return code, out
	}
	// Eight logins at once for the two places left.
	var wg sync.WaitGroup
	codes := make([]int, 8)
	bodies := make([]map[string]any, 8)
	errs := make([]error, 8)
	for i := range codes {
		wg.Go(func() { codes[i], bodies[i], errs[i] = loginAnswer(p.Base, "alice", fmt.Sprint("racer", i)) })
	}
	wg.Wait()
	ok := 0
	var refusal map[string]any
	for i, code := range codes {
		switch {
		case errs[i] != nil:
			t.Fatalf("login %d got no answer: %v", i, errs[i])
		case code == http.StatusOK:
			ok++
		case code == http.StatusConflict:
			refusal = bodies[i]
		default:
			t.Fatalf("login %d: %d %v", i, code, bodies[i])
		}
	}
	if ok != 2 || refusal == nil {
		t.Fatalf("8 racing logins with 2 places left: %d succeeded (codes %v)", ok, codes)
	}
	e, _ := refusal["error"].(map[string]any)
	if e["code"] != "limit_exceeded" || !strings.Contains(fmt.Sprint(e["message"]), "log out") {
		t.Fatalf("refusal %v", refusal)
	}
	var token string
	for i, code := range codes {
		if code == http.StatusOK {
			token = bodies[i]["access_token"].(string)
		}
	}
	devices := e2e.MustAPI(t, 200, "GET", p.Base+"/v1/devices", token, nil)["devices"].([]any)
	if len(devices) != 3 {
		t.Fatalf("%d devices stored, cap 3", len(devices))
	}
	if code, out := login("one too many"); code != http.StatusConflict {
		t.Fatalf("login at the cap: %d %v", code, out)
	}
	// Logging the sign-up's device out (the oldest) makes room.
	oldest := devices[0].(map[string]any)["id"].(string)
	e2e.MustAPI(t, 204, "DELETE", p.Base+"/v1/devices/"+oldest, token, nil)
	if code, out := login("after logout"); code != http.StatusOK {
		t.Fatalf("login after a device was logged out: %d %v", code, out)
	}
}

// TestDeviceCapExpiredSessions: sessions that ran out (reinstalled apps,
// scripted logins) counted against --max-devices-per-user for good, so the
// user was locked out of every login and, without a session, could not
// log a device out. Now only live sessions count, and the purge deletes
// the dead devices.
//
// The first session must still be live when the login at the cap is
// tried, and a login can take many seconds on a loaded machine, so the
// refresh-token TTL (20 s) is long enough for that, and the test then
// waits for it to run out. Should one login take longer than the TTL
// after all (the check at the cap would prove nothing), the test starts
// over with twice the TTL.
func TestDeviceCapExpiredSessions(t *testing.T) {
	t.Parallel() // mostly waiting (timeouts, expiries, a tarpit): overlaps the other waiters
	var p *e2e.Proc
	login := func(name string) (int, map[string]any) {
		t.Helper()
		code, out, err := loginAnswer(p.Base, "alice", name)
		if err != nil {
			t.Fatalf("login %s: %v", name, err)
		}
		return code, out
	}
	var ttl time.Duration
	for ttl = 20 * time.Second; ; ttl *= 2 {
		p = e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off"}, "--max-devices-per-user", "1",
			"--refresh-token-ttl", ttl.String(), "--purge-interval", "200ms")
		e2e.MustAPI(t, 201, "POST", p.Base+"/v1/accounts", "", map[string]any{"handle": "alice", "password": "correct horse battery"})
		start := time.Now() // the first session is younger
		if code, out := login("first"); code != http.StatusOK {
			t.Fatalf("first login: %d %v", code, out)
		}
		code, out := login("second")
		if code == http.StatusConflict {
			break
		}
		if time.Since(start) < ttl {
			t.Fatalf("login at the cap, the first session live: %d %v", code, out)
		}
		if ttl >= 2*time.Minute {
			t.Fatalf("two logins took %v, longer than a refresh-token TTL of %v", time.Since(start), ttl)
		}
		t.Logf("two logins took %v, longer than the refresh-token TTL of %v: again with twice the TTL", time.Since(start), ttl)
		p.Kill()
	}
	// Nobody refreshes: the first session runs out, and a login gets
	// through.
	var refresh string
	e2e.Eventually(t, ttl+2*time.Minute, "a login after the first session expired", func() bool {
		code, out := login("after expiry")
		if code == http.StatusOK {
			refresh = out["refresh_token"].(string)
			return true
		}
		if code != http.StatusConflict {
			t.Fatalf("login: %d %v", code, out)
		}
		time.Sleep(time.Second) // each login costs a hash; the expiry is seconds away
		return false
	})
	// And the dead device is deleted: the new one, kept alive by
	// refreshing, is alone.
	e2e.Eventually(t, time.Minute, "the expired device purged", func() bool {
		s := e2e.MustAPI(t, 200, "POST", p.Base+"/v1/sessions/refresh", "", map[string]any{"refresh_token": refresh})
		refresh = s["refresh_token"].(string)
		devices := e2e.MustAPI(t, 200, "GET", p.Base+"/v1/devices", s["access_token"].(string), nil)["devices"].([]any)
		return len(devices) == 1
	})
}

// TestUserSendRateAcrossConnections: nine connections of one user (three
// devices, three sockets each) together cannot send faster than the
// per-user rate, whatever each connection's own limit allows; REST sends
// share the bucket; another user is not slowed.
func TestUserSendRateAcrossConnections(t *testing.T) {
	// 0.01/s: the burst of 5 is all a test run can send.
	p := e2e.StartParleyd(t, t.TempDir(), nil, "--user-send-rate", "0.01", "--user-send-burst", "5")
	e2e.Signup(t, p.Base, "alice")
	bobID, bobTok := e2e.Signup(t, p.Base, "bob")
	a := e2e.LoginDevice(t, p.Base, "alice", "phone")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	var conns []*wstest.Conn
	for i := range 3 {
		d := a
		if i > 0 {
			d = e2e.LoginDevice(t, p.Base, "alice", fmt.Sprint("device", i))
		}
		for range 3 {
			conns = append(conns, e2e.Connect(t, p.Base, d))
		}
	}
	const perConn = 10 // well within each connection's burst of 40
	acked, limited := 0, 0
	for i, c := range conns {
		for j := range perConn {
			c.MustWrite(map[string]any{"type": "send", "id": fmt.Sprint(j), "conversation_id": conv, "client_msg_id": fmt.Sprint(i, "-", j), "body": "spam"})
		}
	}
	for i, c := range conns {
		for answered := 0; answered < perConn; {
			f, err := c.Next(10 * time.Second)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			switch f.Type {
			case "ack":
				acked++
				answered++
			case "error":
				var e struct {
					Error struct {
						Code       string `json:"code"`
						RetryAfter int    `json:"retry_after"`
					} `json:"error"`
				}
				if err := f.Decode(&e); err != nil || e.Error.Code != "rate_limited" || e.Error.RetryAfter < 1 {
					t.Fatalf("connection %d: %s; want rate_limited with retry_after", i, f.Raw)
				}
				limited++
				answered++
			}
		}
	}
	if acked < 5 || acked > 6 || acked+limited != len(conns)*perConn {
		t.Fatalf("%d connections x %d sends: %d acked, %d rate_limited; want the user's burst of 5 acked", len(conns), perConn, acked, limited)
	}
	// REST sends share the bucket.
	code, out := e2e.API(t, http.DefaultClient, "POST", p.Base+"/v1/conversations/"+conv+"/messages", a.Token, map[string]any{"client_msg_id": "rest", "body": "more"})
	if code != http.StatusTooManyRequests {
		t.Fatalf("REST send after the burst: %d %v", code, out)
	}
	// Bob is not slowed by Alice.
	e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations/"+conv+"/messages", bobTok, map[string]any{"client_msg_id": "bob", "body": "hi"})
}

// amplificationConversation makes a conversation of alice and bob holding
// n messages of 64 KiB of '<' (escaped as \u003c, six bytes, they made a
// 640-byte history request answer 19.7 MB).
func amplificationConversation(t *testing.T, p *e2e.Proc, n int) (conv, token string) {
	t.Helper()
	e2e.Signup(t, p.Base, "alice")
	bobID, _ := e2e.Signup(t, p.Base, "bob")
	a := e2e.LoginDevice(t, p.Base, "alice", "phone")
	conv = e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	// Written by hand: json.Marshal would escape the body past the
	// request size limit.
	body := strings.Repeat("<", parley.DefaultMaxBodySize)
	for i := range n {
		req, _ := http.NewRequest("POST", p.Base+"/v1/conversations/"+conv+"/messages", strings.NewReader(`{"client_msg_id":"`+fmt.Sprint(i)+`","body":"`+body+`"}`))
		req.Header.Set("Authorization", "Bearer "+a.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 201 {
			t.Fatalf("send %d: %d", i, res.StatusCode)
		}
	}
	return conv, a.Token
}

// TestHistoryAmplification: the request (the largest limit over
// '<'-heavy bodies) now answers at most the reply budget, unescaped,
// marked truncated, and the client continues from the edge it got.
func TestHistoryAmplification(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off"})
	const n = 20 // 20 x 64 KiB: 7.9 MB escaped before the fix; now 7 pages of 3
	conv, token := amplificationConversation(t, p, n)
	get := func(query string) ([]byte, historyPage) {
		t.Helper()
		req, _ := http.NewRequest("GET", p.Base+"/v1/conversations/"+conv+"/messages?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<20))
		var page historyPage
		if res.StatusCode != 200 || json.Unmarshal(raw, &page) != nil {
			t.Fatalf("GET ?%s: %d, %d bytes", query, res.StatusCode, len(raw))
		}
		return raw, page
	}
	got := 0
	for _, dir := range []string{"backward", "forward"} {
		query := "limit=200"
		if dir == "forward" {
			query = "limit=200&after=0"
		}
		got = 0
		for {
			raw, page := get(query)
			if len(raw) > parley.ReplyBudget+1024 || bytes.Contains(raw, []byte(`\u003c`)) {
				t.Fatalf("%s ?%s: %d bytes (budget %d), escaped %v", dir, query, len(raw), parley.ReplyBudget, bytes.Contains(raw, []byte(`\u003c`)))
			}
			m := len(page.Messages)
			if m == 0 {
				t.Fatalf("%s ?%s: empty page", dir, query)
			}
			got += m
			if !page.Truncated {
				break
			}
			if dir == "forward" {
				query = fmt.Sprint("limit=200&after=", page.Messages[m-1].Seq)
			} else {
				query = fmt.Sprint("limit=200&before=", page.Messages[0].Seq)
			}
		}
		if got != n {
			t.Fatalf("paging %s through truncated pages: %d messages, want %d", dir, got, n)
		}
	}
}

type historyPage struct {
	Messages  []parley.Message `json:"messages"`
	Truncated bool             `json:"truncated"`
}

// TestSlowReaderCutOff: a client that pipelines history requests and
// never reads was held forever (no write timeout), each pinning its
// response. Now the write timeout cuts it off: the server gives up the
// write and closes the connection, and the client, reading at last, gets
// fewer responses than it asked for and then the end of the stream.
func TestSlowReaderCutOff(t *testing.T) {
	data := t.TempDir()
	p := e2e.StartParleyd(t, data, []string{"PARLEY_LIMITS=off"})
	conv, token := amplificationConversation(t, p, 8)
	// The same data with a short write timeout (a login's password hash
	// alone may take longer on a busy machine).
	p.Kill()
	p = e2e.StartParleyd(t, data, []string{"PARLEY_LIMITS=off"}, "--http-write-timeout", "1s", "--log-level", "debug")
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(p.Base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const requests = 100 // ~500 kB each: far beyond the socket buffers
	var reqs bytes.Buffer
	for range requests {
		fmt.Fprintf(&reqs, "GET /v1/conversations/%s/messages?limit=200 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", conv, token)
	}
	if _, err := conn.Write(reqs.Bytes()); err != nil {
		t.Fatal(err)
	}
	// Never read until the server has given up on a write.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Logs(), "history reply not delivered") {
		if time.Now().After(deadline) {
			t.Fatal("the server is still writing to a client that does not read")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	complete := 0
	for {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil {
			break
		}
		complete++
	}
	if complete >= requests {
		t.Fatalf("all %d responses arrived: the slow reader was not cut off", complete)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("after %d responses the connection is still open: %v", complete, err)
	}
	t.Logf("cut off after %d of %d responses", complete, requests)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestWebSocketOutlivesHTTPTimeouts: the HTTP read, write and idle
// timeouts do not reach a WebSocket (net/http clears the deadlines of a
// hijacked connection; nbio owns it after), on the poller and in
// nbio's blocking mode (in-process TLS keeps the *tls.Conn net/http had).
func TestWebSocketOutlivesHTTPTimeouts(t *testing.T) {
	timeouts := []string{"--http-read-timeout", "500ms", "--http-write-timeout", "500ms", "--http-idle-timeout", "500ms"}
	for _, mode := range []string{"plain", "tls"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			args := slices.Clone(timeouts)
			var tlsConf *tls.Config
			client := http.DefaultClient
			if mode == "tls" {
				cert, key := e2e.WriteSelfSigned(t, dir)
				args = append(args, "--tls-cert", cert, "--tls-key", key)
				tlsConf = &tls.Config{InsecureSkipVerify: true}
				client = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}
			}
			// Sign up with the default timeouts (a password hash may take
			// longer than the short ones on a busy machine), then restart
			// on the same data with the short ones.
			p := e2e.StartParleyd(t, filepath.Join(dir, "data"), []string{"PARLEY_LIMITS=off"}, args[len(timeouts):]...)
			if code, out := e2e.API(t, client, "POST", p.Base+"/v1/accounts", "", map[string]any{"handle": "alice", "password": "correct horse battery"}); code != 201 {
				t.Fatalf("register: %d %v", code, out)
			}
			_, s := e2e.API(t, client, "POST", p.Base+"/v1/sessions", "", map[string]any{"handle": "alice", "password": "correct horse battery", "device": map[string]any{"platform": "cli", "name": "x"}})
			token, _ := s["access_token"].(string)
			p.Kill()
			p = e2e.StartParleyd(t, filepath.Join(dir, "data"), []string{"PARLEY_LIMITS=off"}, args...)
			dialer := ws.Dialer{TLSConfig: tlsConf, Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}})}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			url := "ws" + strings.TrimPrefix(p.Base, "http") + "/v1/ws"
			conn, br, _, err := dialer.Dial(ctx, url)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			var r io.Reader = conn
			if br != nil {
				r = io.MultiReader(br, conn)
			}
			rw := struct {
				io.Reader
				io.Writer
			}{r, conn}
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			expect := func(typ string) {
				t.Helper()
				for {
					data, err := wsutil.ReadServerText(rw)
					if err != nil {
						t.Fatalf("waiting for %s: %v", typ, err)
					}
					if bytes.Contains(data, []byte(`"type":"`+typ+`"`)) {
						return
					}
				}
			}
			expect("ready")
			// Quiet past every HTTP timeout (four times the longest), then
			// a request and its answer: the connection is alive.
			time.Sleep(2 * time.Second)
			if err := wsutil.WriteClientText(conn, []byte(`{"type":"ping","id":"alive"}`)); err != nil {
				t.Fatalf("write after the HTTP timeouts: %v", err)
			}
			expect("pong")
		})
	}
}

// TestHTTPReadAndIdleTimeouts: without read and idle timeouts one client
// could hold a connection (and its goroutine and buffers) for ever: by
// sending its headers a line at a time (slowloris), its body a byte at a
// time, or by keeping an idle keep-alive connection. With
// --http-read-timeout and --http-idle-timeout of 2 s (the defaults are
// 60 s and 120 s; headers get at most 10 s) each is cut after about 2 s,
// and the slow body gets no 2xx.
func TestHTTPReadAndIdleTimeouts(t *testing.T) {
	t.Parallel() // mostly waiting (timeouts, expiries, a tarpit): overlaps the other waiters
	const limit = 2 * time.Second
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off"}, "--http-read-timeout", limit.String(), "--http-idle-timeout", limit.String())
	addr := strings.TrimPrefix(p.Base, "http://")
	// dial opens a connection and reads everything the server sends
	// until it closes the connection: the answer, and when it closed.
	dial := func(t *testing.T) (net.Conn, <-chan closed) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		done := make(chan closed, 1)
		go func() {
			got, _ := io.ReadAll(conn) // until the server closes (or the test does)
			done <- closed{at: time.Now(), got: string(got)}
		}()
		return conn, done
	}
	// The server's timers run from the moment it has the connection (or
	// its answer is out); the bound above is generous for a loaded
	// machine, and below the defaults that would apply without the flags.
	within := func(t *testing.T, what string, start time.Time, done <-chan closed, trickle func()) closed {
		t.Helper()
		stop := time.After(8 * time.Second)
		for {
			select {
			case c := <-done:
				if took := c.at.Sub(start); took < limit-200*time.Millisecond {
					t.Fatalf("%s: closed after %v, before the %v timeout", what, took, limit)
				}
				t.Logf("%s: closed after %v", what, c.at.Sub(start))
				return c
			case <-stop:
				t.Fatalf("%s: the connection is still open after 8 s; the timeout is %v", what, limit)
			case <-time.After(300 * time.Millisecond):
				if trickle != nil {
					trickle()
				}
			}
		}
	}

	t.Run("slow headers", func(t *testing.T) {
		start := time.Now() // the server's clock starts at its accept, before dial returns
		conn, done := dial(t)
		io.WriteString(conn, "POST /v1/sessions HTTP/1.1\r\nHost: parley\r\n")
		i := 0
		within(t, "headers a line at a time", start, done, func() {
			i++
			fmt.Fprintf(conn, "X-Slow-%d: x\r\n", i) // fails once the server has closed: no matter
		})
	})
	t.Run("slow body", func(t *testing.T) {
		start := time.Now()
		conn, done := dial(t)
		io.WriteString(conn, "POST /v1/sessions HTTP/1.1\r\nHost: parley\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		c := within(t, "a body a byte at a time", start, done, func() { io.WriteString(conn, " ") })
		if strings.HasPrefix(c.got, "HTTP/1.1 2") {
			t.Fatalf("a body cut by the read timeout got %q", c.got)
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		conn, done := dial(t)
		// The answer arrives at once; the idle timer starts then. The
		// reader goroutine holds the bytes, so the start is taken before
		// the request is written (the answer, and so the server's idle
		// clock, can come before a start taken after the write returns),
		// and the answer checked at the end.
		start := time.Now()
		io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: parley\r\n\r\n")
		c := within(t, "an idle keep-alive connection", start, done, nil)
		if !strings.HasPrefix(c.got, "HTTP/1.1 200") {
			t.Fatalf("the request before the idle wait got %q", c.got)
		}
	})
}

// closed is what a raw connection received before the server closed it,
// and when.
type closed struct {
	at  time.Time
	got string
}
