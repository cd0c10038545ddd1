package push_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/spawn"
	"github.com/parleychat/parley/internal/testenv"
	"github.com/parleychat/parley/push/pushtest"
)

// webPushBody is a registration of a Web Push subscription at endpoint,
// with keys a browser could have made.
func webPushBody(endpoint string) map[string]any {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return map[string]any{"provider": "webpush", "subscription": map[string]any{"endpoint": endpoint, "keys": map[string]any{
		"p256dh": base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
		"auth":   base64.RawURLEncoding.EncodeToString(randomBytes(16)),
	}}}
}

// TestSSRFEndpointsRefusedAtRegistration: the review's endpoints (cloud
// metadata, a private database port, loopback in every spelling, a name
// under .internal, numeric host forms) and plain http are refused with
// invalid_request and nothing is stored; so are APNs tokens that are not
// hex and topics the server does not send for. Without --outbound-allow
// even the local fake push service is refused. A server without
// --vapid-subject takes no Web Push registration, and one given a VAPID
// key but no subject refuses to start.
func TestSSRFEndpointsRefusedAtRegistration(t *testing.T) {
	wp := pushtest.NewWebPush(t)
	srv := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off", "PARLEY_VAPID_SUBJECT=mailto:ops@example.com",
		"PARLEY_APNS_TOPICS=com.example.parley"})
	e2e.Signup(t, srv.Base, "mallory")
	d := e2e.LoginDevice(t, srv.Base, "mallory", "browser")
	const path = "/v1/devices/current/push"
	for _, endpoint := range []string{
		"https://169.254.169.254/latest/meta-data/iam/security-credentials/",
		"https://10.0.0.5:5432/",
		"https://[::1]/push",
		"https://[::ffff:127.0.0.1]/push",
		"https://[::ffff:a9fe:a9fe]/push",
		"https://metadata.google.internal/computeMetadata/v1/",
		"https://0x7f000001/push",
		"https://2130706433/push",
		"https://127.1/push",
		"https://0177.0.0.1/push",
		"https://localhost/push",
		"https://admin.localhost/push",
		"https://100.64.0.1/push",
		"https://[fe80::1]/push",
		"https://0.0.0.0/push",
		"http://push.example.com/push",
		wp.NewSubscription().Endpoint, // https://127.0.0.1:port, not allowed here
	} {
		code, out := e2e.API(t, http.DefaultClient, "PUT", srv.Base+path, d.Token, webPushBody(endpoint))
		e, _ := out["error"].(map[string]any)
		if code != 400 || e["code"] != "invalid_request" {
			t.Errorf("%s: %d %v, want 400 invalid_request", endpoint, code, out)
			continue
		}
		t.Logf("%s: %v", endpoint, e["message"])
	}
	apns := func(token, topic string) map[string]any {
		return map[string]any{"provider": "apns", "token": token, "topic": topic, "environment": "production"}
	}
	good := strings.Repeat("a1", 32)
	for name, body := range map[string]map[string]any{
		"short token":   apns("abc123", "com.example.parley"),
		"odd length":    apns(good+"a", "com.example.parley"),
		"not hex":       apns(strings.Repeat("zz", 32), "com.example.parley"),
		"path in token": apns(good+"/../../3/device/x", "com.example.parley"),
		"other topic":   apns(good, "com.attacker.app"),
	} {
		if code, out := e2e.API(t, http.DefaultClient, "PUT", srv.Base+path, d.Token, body); code != 400 {
			t.Errorf("APNs %s: %d %v, want 400", name, code, out)
		}
	}
	e2e.MustAPI(t, 200, "PUT", srv.Base+path, d.Token, apns(good, "com.example.parley"))
	e2e.MustAPI(t, 200, "PUT", srv.Base+path, d.Token, webPushBody("https://fcm.googleapis.com/fcm/send/abc:def"))

	// No VAPID subject: no Web Push.
	off := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off"})
	e2e.Signup(t, off.Base, "mallory")
	od := e2e.LoginDevice(t, off.Base, "mallory", "browser")
	if code, out := e2e.API(t, http.DefaultClient, "PUT", off.Base+path, od.Token, webPushBody("https://fcm.googleapis.com/fcm/send/x")); code != 400 ||
		!strings.Contains(fmt.Sprint(out), "VAPID subject") {
		t.Fatalf("Web Push without a VAPID subject: %d %v", code, out)
	}
	if strings.Contains(off.Logs(), "mailto:push@") {
		t.Fatal("a made-up VAPID subject is still in use")
	}
	key := make([]byte, 32)
	rand.Read(key)
	_, err := spawn.Start(e2e.Bin(), t.TempDir(), []string{"PARLEY_VAPID_PRIVATE_KEY=" + base64.RawURLEncoding.EncodeToString(key)})
	if err == nil || !strings.Contains(err.Error(), "--vapid-subject") {
		t.Fatalf("a VAPID key without a subject: %v, want a refusal to start naming --vapid-subject", err)
	}
}

// FuzzPushRegistrationBody is in the service (FuzzPushEndpointRules) and
// the domain (FuzzValidatePush); outbound.FuzzCheckURL fuzzes the URL
// rules alone.

// TestSSRFRedirectNotFollowedBodyNotKept: an endpoint allowed at
// registration answers with a redirect to a plain-http service on
// 127.0.0.1; another answers 500. Both bodies carry a marker. The local
// service sees no request (the redirect is the answer, not followed, and
// never turned into a GET), and the marker is in neither the log, the
// dead-letter stream nor the admin trace: only status lines are kept.
func TestSSRFRedirectNotFollowedBodyNotKept(t *testing.T) {
	natsURL := testenv.Service(t, "PARLEY_TEST_NATS_URL", "nats://127.0.0.1:4222")
	marker := "MARKER-" + hex.EncodeToString(randomBytes(8))
	var stolen atomic.Int64
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolen.Add(1)
		io.WriteString(w, "internal secret")
	}))
	t.Cleanup(internal.Close)
	var mu sync.Mutex
	var seen []string
	evil := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		if strings.HasPrefix(r.URL.Path, "/redirect") {
			w.Header().Set("Location", internal.URL+"/admin/delete-everything")
			w.WriteHeader(http.StatusFound)
		} else {
			w.WriteHeader(http.StatusInternalServerError)
		}
		io.WriteString(w, marker+" response body the server must not keep")
	}))
	t.Cleanup(evil.Close)

	prov := e2e.StartProviders(t)
	ns := e2e.PushNamespace(t, natsURL)
	data := t.TempDir()
	// 127.0.0.1 is allowed, so only the refusal to follow redirects keeps
	// the internal service safe here.
	env := append(prov.Env, "PARLEY_NATS_URL="+natsURL, "PARLEY_PUSH_NAMESPACE="+ns, "PARLEY_PUSH_ATTEMPTS=2")
	srv := e2e.StartParleyd(t, data, env)
	e2e.Signup(t, srv.Base, "alice")
	bobID, _ := e2e.Signup(t, srv.Base, "bob")
	alice := e2e.LoginDevice(t, srv.Base, "alice", "laptop")
	redirected := e2e.LoginDevice(t, srv.Base, "bob", "browser one")
	failing := e2e.LoginDevice(t, srv.Base, "bob", "browser two")
	e2e.MustAPI(t, 200, "PUT", srv.Base+"/v1/devices/current/push", redirected.Token, webPushBody(evil.URL+"/redirect/1"))
	e2e.MustAPI(t, 200, "PUT", srv.Base+"/v1/devices/current/push", failing.Token, webPushBody(evil.URL+"/fail/1"))
	conv := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	seq := e2e.SendText(t, srv.Base, alice.Token, conv, "m1", "hello")

	e2e.Eventually(t, 20*time.Second, "both notifications dead-lettered", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_dead_letter_total{provider="webpush"}`) >= 2
	})
	mu.Lock()
	requests := append([]string(nil), seen...)
	mu.Unlock()
	if n := stolen.Load(); n != 0 {
		t.Fatalf("the internal http service got %d requests through the redirect", n)
	}
	redirects := 0
	for _, r := range requests {
		if !strings.HasPrefix(r, "POST ") {
			t.Fatalf("the endpoint got %q: a redirect turned into another method", r)
		}
		if strings.HasPrefix(r, "POST /redirect/") {
			redirects++
		}
	}
	if redirects != 1 {
		t.Fatalf("the redirecting endpoint got %d requests (%v), want 1: a 3xx is final", redirects, requests)
	}

	// The marker is nowhere the server keeps things.
	if out, err := exec.Command(e2e.Bin(), "admin", "grant", "alice", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	trace := fmt.Sprint(e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.Base, conv, seq), alice.Token, nil))
	if !strings.Contains(trace, "dead_lettered") || !strings.Contains(trace, "302 Found") {
		t.Fatalf("the trace lacks the dead letters or the status line: %s", trace)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "PARLEY_PUSH_DEAD_"+ns, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var dead []string
	for len(dead) < 2 {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("dead letters: %v (have %d)", err, len(dead))
		}
		dead = append(dead, fmt.Sprint(msg.Headers(), string(msg.Data())))
	}
	for where, text := range map[string]string{"log": srv.Logs(), "trace": trace, "dead letters": strings.Join(dead, "\n")} {
		if strings.Contains(text, marker) {
			t.Errorf("the response body's marker is in the %s", where)
		}
	}
	if !strings.Contains(strings.Join(dead, "\n"), "500 Internal Server Error") {
		t.Errorf("dead letters lack the status line: %v", dead)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// tarpit is a Web Push endpoint that holds every request until released
// (or the sender gives up), recording how many it held at once, when the
// first one ended and how long each was held. Tarpits made with the same
// inFlightGroup also count together.
type tarpit struct {
	*httptest.Server
	release chan struct{}
	group   *inFlightGroup

	mu       sync.Mutex
	inFlight int
	most     int
	started  int
	firstEnd time.Time
	held     []time.Duration
}

// inFlightGroup counts the requests several tarpits hold at once.
type inFlightGroup struct {
	mu             sync.Mutex
	inFlight, most int
}

func (g *inFlightGroup) add(n int) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight += n
	g.most = max(g.most, g.inFlight)
}

func (g *inFlightGroup) state() (inFlight, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight, g.most
}

func newTarpit(t *testing.T) *tarpit { return newTarpitOn(t, "127.0.0.1:0", nil) }

// newTarpitOn starts a tarpit listening on addr ("[::1]:0" for a second
// host: the test certificate names 127.0.0.1 and ::1), counted in group
// if not nil.
func newTarpitOn(t *testing.T, addr string, group *inFlightGroup) *tarpit {
	tp := &tarpit{release: make(chan struct{}), group: group}
	tp.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body: only then does the server watch the connection,
		// and so notice (r.Context) when the sender gives up.
		_, _ = io.Copy(io.Discard, r.Body)
		start := time.Now()
		tp.mu.Lock()
		tp.inFlight++
		tp.started++
		tp.most = max(tp.most, tp.inFlight)
		tp.mu.Unlock()
		tp.group.add(1)
		select {
		case <-tp.release:
		case <-r.Context().Done():
		}
		tp.group.add(-1)
		tp.mu.Lock()
		tp.inFlight--
		tp.held = append(tp.held, time.Since(start))
		if tp.firstEnd.IsZero() {
			tp.firstEnd = time.Now()
		}
		tp.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tp.Listener.Close()
	tp.Listener = l
	tp.StartTLS()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { close(tp.release) })
		tp.Close()
	})
	return tp
}

func (tp *tarpit) state() (inFlight, most, started int, firstEnd time.Time) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.inFlight, tp.most, tp.started, tp.firstEnd
}

// heldFor returns how long each request that ended was held.
func (tp *tarpit) heldFor() []time.Duration {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]time.Duration(nil), tp.held...)
}

// TestPushTarpitDoesNotDelayOthers reproduces the review's attack: one
// account registers many devices at an endpoint that holds every request
// (a tarpit), and a friend sends it messages, so that every push worker
// waits on the tarpit. With a pool of 8 and 12 such devices, the old
// worker had no slot left: an unrelated user's notification waited for
// the tarpit's requests to time out. Now sends are limited per endpoint
// host (2 here) and per user (4), so the unrelated notification arrives
// while the tarpit still holds every request it got, and the tarpit never
// sees more than the per-host limit at once.
func TestPushTarpitDoesNotDelayOthers(t *testing.T) {
	t.Parallel() // mostly waiting (for a claim to lapse, a tarpit to answer): overlaps the other waiters
	prov := e2e.StartProviders(t)
	tp := newTarpit(t)
	const hostLimit, devices = 2, 12
	env := append(prov.Env, "PARLEY_PUSH_CONCURRENCY=8", fmt.Sprint("PARLEY_PUSH_HOST_CONCURRENCY=", hostLimit),
		"PARLEY_PUSH_USER_CONCURRENCY=4", "PARLEY_PUSH_UNKNOWN_HOST_TIMEOUT=10s")
	srv := e2e.StartParleyd(t, t.TempDir(), env)
	malloryID, _ := e2e.Signup(t, srv.Base, "mallory")
	e2e.Signup(t, srv.Base, "eve")
	e2e.Signup(t, srv.Base, "alice")
	bobID, _ := e2e.Signup(t, srv.Base, "bob")
	eve := e2e.LoginDevice(t, srv.Base, "eve", "laptop")
	alice := e2e.LoginDevice(t, srv.Base, "alice", "laptop")
	bob := e2e.LoginDevice(t, srv.Base, "bob", "phone")
	bobToken := prov.RegisterAPNs(t, srv.Base, bob)
	for i := range devices {
		d := e2e.LoginDevice(t, srv.Base, "mallory", fmt.Sprint("tarpit ", i))
		e2e.MustAPI(t, 200, "PUT", srv.Base+"/v1/devices/current/push", d.Token, webPushBody(fmt.Sprintf("%s/push/%d", tp.URL, i)))
	}
	evil := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", eve.Token, map[string]any{"kind": "direct", "members": []string{malloryID}})["conversation"].(map[string]any)["id"].(string)
	e2e.SendText(t, srv.Base, eve.Token, evil, "e1", "wake the tarpit")
	e2e.SendText(t, srv.Base, eve.Token, evil, "e2", "and again")
	e2e.Eventually(t, 30*time.Second, "the tarpit to hold requests", func() bool { n, _, _, _ := tp.state(); return n >= 1 })
	e2e.Eventually(t, 30*time.Second, "jobs deferred at the host limit", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_deferred_total{reason="host_busy"}`) >= 1
	})

	conv := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	e2e.SendText(t, srv.Base, alice.Token, conv, "a1", "lunch?")
	e2e.Eventually(t, 30*time.Second, "bob's notification", func() bool { return len(prov.APNsFor(bobToken)) >= 1 })
	arrived := prov.APNsFor(bobToken)[0].Time
	inFlight, most, started, firstEnd := tp.state()
	t.Logf("bob's notification arrived; the tarpit holds %d, held at most %d at once, got %d in all; first ended at %v",
		inFlight, most, started, firstEnd)
	if !firstEnd.IsZero() && firstEnd.Before(arrived) {
		t.Fatalf("bob's notification arrived only after a tarpit request ended (%v before %v): the tarpit held the pool",
			firstEnd.Format(time.StampMilli), arrived.Format(time.StampMilli))
	}
	if most > hostLimit {
		t.Fatalf("the tarpit held %d requests at once; the per-host limit is %d", most, hostLimit)
	}
}

// TestPushFailingEndpointBacksOff: a Web Push registration whose sends
// fail backs off instead of being retried at full rate: after two
// failures in a row its notification's further retries, and the next
// message's notification, are skipped (traced as endpoint_backoff), so
// the endpoint sees two requests where it used to see the eight attempts.
func TestPushFailingEndpointBacksOff(t *testing.T) {
	prov := e2e.StartProviders(t)
	data := t.TempDir()
	srv := e2e.StartParleyd(t, data, append(prov.Env, "PARLEY_PUSH_ATTEMPTS=8", "PARLEY_PUSH_ENDPOINT_BACKOFF=1h"))
	prov.TrustVAPID(t, srv.Base)
	e2e.Signup(t, srv.Base, "alice")
	bobID, _ := e2e.Signup(t, srv.Base, "bob")
	alice := e2e.LoginDevice(t, srv.Base, "alice", "laptop")
	browser := e2e.LoginDevice(t, srv.Base, "bob", "browser")
	sub := prov.RegisterWebPush(t, srv.Base, browser)
	answers := make([]pushtest.Answer, 10)
	for i := range answers {
		answers[i] = pushtest.Answer{Status: 503}
	}
	prov.WebPush.Fail(sub.Endpoint, answers...)
	conv := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	e2e.SendText(t, srv.Base, alice.Token, conv, "m1", "hello")
	e2e.Eventually(t, 20*time.Second, "a retry skipped for the backoff", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_skipped_total{reason="endpoint_backoff"}`) >= 1
	})
	seq := e2e.SendText(t, srv.Base, alice.Token, conv, "m2", "again")
	e2e.Eventually(t, 20*time.Second, "the next message skipped too", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_skipped_total{reason="endpoint_backoff"}`) >= 2
	})
	if n := len(prov.WebPushFor(sub)); n != 2 {
		t.Fatalf("the failing endpoint got %d requests, want 2 (then the backoff)", n)
	}
	if out, err := exec.Command(e2e.Bin(), "admin", "grant", "alice", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	trace := fmt.Sprint(e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.Base, conv, seq), alice.Token, nil))
	if !strings.Contains(trace, "endpoint_backoff") {
		t.Fatalf("the trace does not say why: %s", trace)
	}
}

// TestPushFailingEndpointDropped: after --push-endpoint-drop-after
// failures in a row spanning --push-endpoint-drop-span, the registration
// is removed: the next message's fan-out no longer counts the browser.
// The per-user registration cap refuses one device too many with
// limit_exceeded.
func TestPushFailingEndpointDropped(t *testing.T) {
	prov := e2e.StartProviders(t)
	data := t.TempDir()
	srv := e2e.StartParleyd(t, data, append(prov.Env, "PARLEY_PUSH_ATTEMPTS=8", "PARLEY_PUSH_ENDPOINT_BACKOFF=1ms",
		"PARLEY_PUSH_ENDPOINT_DROP_AFTER=3", "PARLEY_PUSH_ENDPOINT_DROP_SPAN=1ms", "PARLEY_PUSH_MAX_REGISTRATIONS=2"))
	prov.TrustVAPID(t, srv.Base)
	e2e.Signup(t, srv.Base, "alice")
	bobID, _ := e2e.Signup(t, srv.Base, "bob")
	alice := e2e.LoginDevice(t, srv.Base, "alice", "laptop")
	browser := e2e.LoginDevice(t, srv.Base, "bob", "browser")
	phone := e2e.LoginDevice(t, srv.Base, "bob", "phone")
	sub := prov.RegisterWebPush(t, srv.Base, browser)
	phoneToken := prov.RegisterAPNs(t, srv.Base, phone)
	tablet := e2e.LoginDevice(t, srv.Base, "bob", "tablet")
	code, out := e2e.API(t, http.DefaultClient, "PUT", srv.Base+"/v1/devices/current/push", tablet.Token, map[string]any{"provider": "fcm", "token": prov.FCM.NewToken()})
	if e, _ := out["error"].(map[string]any); code != 409 || e["code"] != "limit_exceeded" {
		t.Fatalf("a third registration with a cap of 2: %d %v", code, out)
	}
	prov.WebPush.Fail(sub.Endpoint, pushtest.Answer{Status: 500}, pushtest.Answer{Status: 500}, pushtest.Answer{Status: 500}, pushtest.Answer{Status: 500})
	conv := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	e2e.SendText(t, srv.Base, alice.Token, conv, "m1", "hello")
	e2e.Eventually(t, 20*time.Second, "the registration dropped", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_failed_total{provider="webpush",reason="endpoint_dropped"}`) == 1
	})
	if n := len(prov.WebPushFor(sub)); n != 3 {
		t.Fatalf("the endpoint got %d requests before it was dropped, want 3", n)
	}
	// Now the tablet may register: the browser's slot is free.
	e2e.MustAPI(t, 200, "PUT", srv.Base+"/v1/devices/current/push", tablet.Token, map[string]any{"provider": "fcm", "token": prov.FCM.NewToken()})
	seq := e2e.SendText(t, srv.Base, alice.Token, conv, "m2", "still there?")
	e2e.Eventually(t, 20*time.Second, "the phone's notification of m2", func() bool { return len(prov.APNsFor(phoneToken)) >= 2 })
	if out, err := exec.Command(e2e.Bin(), "admin", "grant", "alice", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	stages := e2e.TraceStages(t, e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.Base, conv, seq), alice.Token, nil))
	for _, s := range stages {
		if strings.HasSuffix(s, " "+browser.ID) {
			t.Fatalf("the dropped registration is still a target: %v", stages)
		}
	}
	if len(prov.WebPushFor(sub)) != 3 {
		t.Fatalf("the dropped endpoint got more requests: %d", len(prov.WebPushFor(sub)))
	}
}

// withoutEnv returns env without the settings of key.
func withoutEnv(env []string, key string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, key+"=") {
			out = append(out, e)
		}
	}
	return out
}

// TestSSRFBlockedAtConnectTime: the endpoint rules at registration are
// not the only check. A Web Push endpoint on 127.0.0.1, accepted while
// --outbound-allow let it (and pushed to), stays registered when the
// server restarts without the allow list, as an endpoint whose name
// rebinds to a blocked address would be; now its sends are refused when
// the connection is made: the endpoint gets no request, and the
// notification is dead-lettered as a refused destination.
func TestSSRFBlockedAtConnectTime(t *testing.T) {
	t.Parallel() // mostly waiting (timeouts, expiries, a tarpit): overlaps the other waiters
	prov := e2e.StartProviders(t)
	data := t.TempDir()
	env := append(prov.Env, "PARLEY_PUSH_ATTEMPTS=2")
	srv := e2e.StartParleyd(t, data, env)
	prov.TrustVAPID(t, srv.Base)
	e2e.Signup(t, srv.Base, "alice")
	bobID, _ := e2e.Signup(t, srv.Base, "bob")
	alice := e2e.LoginDevice(t, srv.Base, "alice", "laptop")
	browser := e2e.LoginDevice(t, srv.Base, "bob", "browser")
	sub := prov.RegisterWebPush(t, srv.Base, browser)
	conv := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	e2e.SendText(t, srv.Base, alice.Token, conv, "m1", "hello")
	e2e.Eventually(t, 30*time.Second, "the allowed endpoint's notification", func() bool { return len(prov.WebPushFor(sub)) >= 1 })
	// The endpoint has the notification before its job is acknowledged
	// (the outcome and the trace are recorded first). A restart in that
	// window redelivers m1's job, which then fails twice on the refused
	// destination and puts the registration in backoff, so m2's trace
	// would say "endpoint_backoff" instead (seen once in CI). Wait for
	// the queue to be empty and stop cleanly.
	e2e.Eventually(t, 30*time.Second, "m1's push job acknowledged", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_sent_total{kind="message",provider="webpush"}`) >= 1 &&
			e2e.MetricValue(t, srv.Base, "parley_push_queue_depth") == 0
	})
	srv.Stop(20 * time.Second)
	srv = e2e.StartParleyd(t, data, withoutEnv(env, "PARLEY_OUTBOUND_ALLOW"))
	before := len(prov.WebPushFor(sub))
	seq := e2e.SendText(t, srv.Base, alice.Token, conv, "m2", "still there?")
	e2e.Eventually(t, 60*time.Second, "the notification dead-lettered", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_dead_letter_total{provider="webpush"}`) >= 1
	})
	if n := len(prov.WebPushFor(sub)); n != before {
		t.Fatalf("the endpoint on 127.0.0.1 got %d requests after the restart without the allow list", n-before)
	}
	if out, err := exec.Command(e2e.Bin(), "admin", "grant", "alice", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	trace := fmt.Sprint(e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.Base, conv, seq), alice.Token, nil))
	if !strings.Contains(trace, "dead_lettered") || !strings.Contains(trace, "destination refused: 127.0.0.1 (loopback") {
		t.Fatalf("the trace does not say the destination was refused: %s", trace)
	}
}

// TestPushUnknownHostTimeout: a send to a host that is not a known push
// service is cut at --push-unknown-host-timeout (1 s here), not the 10 s
// a push service gets, and counts as a failed attempt: a tarpit holds the
// request only that long, and the notification is dead-lettered with a
// timeout.
func TestPushUnknownHostTimeout(t *testing.T) {
	t.Parallel() // mostly waiting for the timeout: overlaps the other waiters
	prov := e2e.StartProviders(t)
	tp := newTarpit(t)
	data := t.TempDir()
	srv := e2e.StartParleyd(t, data, append(prov.Env, "PARLEY_PUSH_UNKNOWN_HOST_TIMEOUT=1s", "PARLEY_PUSH_ATTEMPTS=1"))
	e2e.Signup(t, srv.Base, "alice")
	bobID, _ := e2e.Signup(t, srv.Base, "bob")
	alice := e2e.LoginDevice(t, srv.Base, "alice", "laptop")
	browser := e2e.LoginDevice(t, srv.Base, "bob", "browser")
	e2e.MustAPI(t, 200, "PUT", srv.Base+"/v1/devices/current/push", browser.Token, webPushBody(tp.URL+"/push/1"))
	conv := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	seq := e2e.SendText(t, srv.Base, alice.Token, conv, "m1", "hello")
	for deadline := time.Now().Add(60 * time.Second); len(tp.heldFor()) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			inFlight, _, started, _ := tp.state()
			t.Fatalf("after 60 s the tarpit got %d requests and holds %d; server log:\n%s", started, inFlight, srv.Logs())
		}
	}
	// The server cancels at 1 s; the tarpit notices a moment later. Well
	// under the 10 s a known push service gets, even on a loaded machine.
	// The 1 s runs from the start of the send, before the payload's
	// encryption, the dial and the TLS handshake, so the tarpit sees less
	// of it when the machine is busy (839 ms once in CI under -race): the
	// lower bound only tells a cut at the timeout from an immediate
	// failure, and the trace below says it was a timeout.
	if held := tp.heldFor()[0]; held < 250*time.Millisecond || held > 7*time.Second {
		t.Fatalf("the tarpit held the request %v; want it cut at the unknown-host timeout of 1 s", held)
	}
	e2e.Eventually(t, 30*time.Second, "the failure counted", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_failed_total{provider="webpush",reason="retry"}`) >= 1 &&
			e2e.MetricValue(t, srv.Base, `parley_push_dead_letter_total{provider="webpush"}`) >= 1
	})
	if out, err := exec.Command(e2e.Bin(), "admin", "grant", "alice", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	trace := fmt.Sprint(e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.Base, conv, seq), alice.Token, nil))
	if !strings.Contains(trace, "network: timeout") {
		t.Fatalf("the trace does not say the send timed out: %s", trace)
	}
}

// TestPushUserConcurrencyAcrossHosts: one user's devices spread over
// several tarpit hosts (127.0.0.1 and ::1) cannot take more than
// --push-user-concurrency sends at once (2), although each host would
// allow more (--push-host-concurrency 4): the per-user limit binds, and
// the others wait (deferred as user_busy, never host_busy).
func TestPushUserConcurrencyAcrossHosts(t *testing.T) {
	t.Parallel() // mostly waiting on the tarpits: overlaps the other waiters
	prov := e2e.StartProviders(t)
	var group inFlightGroup
	tarpits := []*tarpit{newTarpitOn(t, "127.0.0.1:0", &group), newTarpitOn(t, "[::1]:0", &group)}
	const userLimit, hostLimit, perHost = 2, 4, 3
	env := append(withoutEnv(prov.Env, "PARLEY_OUTBOUND_ALLOW"), "PARLEY_OUTBOUND_ALLOW=127.0.0.1,::1",
		"PARLEY_PUSH_CONCURRENCY=8", fmt.Sprint("PARLEY_PUSH_HOST_CONCURRENCY=", hostLimit),
		fmt.Sprint("PARLEY_PUSH_USER_CONCURRENCY=", userLimit), "PARLEY_PUSH_UNKNOWN_HOST_TIMEOUT=60s")
	srv := e2e.StartParleyd(t, t.TempDir(), env)
	malloryID, _ := e2e.Signup(t, srv.Base, "mallory")
	e2e.Signup(t, srv.Base, "eve")
	eve := e2e.LoginDevice(t, srv.Base, "eve", "laptop")
	for h, tp := range tarpits {
		for i := range perHost {
			d := e2e.LoginDevice(t, srv.Base, "mallory", fmt.Sprint("tarpit ", h, " ", i))
			e2e.MustAPI(t, 200, "PUT", srv.Base+"/v1/devices/current/push", d.Token, webPushBody(fmt.Sprintf("%s/push/%d", tp.URL, i)))
		}
	}
	conv := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", eve.Token, map[string]any{"kind": "direct", "members": []string{malloryID}})["conversation"].(map[string]any)["id"].(string)
	e2e.SendText(t, srv.Base, eve.Token, conv, "e1", "wake the tarpits")
	e2e.Eventually(t, 60*time.Second, "the user's limit reached", func() bool { n, _ := group.state(); return n >= userLimit })
	e2e.Eventually(t, 60*time.Second, "jobs deferred at the user's limit", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_deferred_total{reason="user_busy"}`) >= 3
	})
	_, most := group.state()
	for i, tp := range tarpits {
		_, m, started, _ := tp.state()
		t.Logf("tarpit %d held at most %d at once, got %d in all", i, m, started)
	}
	if most > userLimit {
		t.Fatalf("the user's tarpits held %d requests at once; the per-user limit is %d", most, userLimit)
	}
	if hb := e2e.MetricValue(t, srv.Base, `parley_push_deferred_total{reason="host_busy"}`); hb != 0 {
		t.Fatalf("%v jobs deferred at the host limit (%d), which the user's limit (%d) should keep them from reaching", hb, hostLimit, userLimit)
	}
}

// TestMessageRequestPush: a stranger's DM must not put their text on the
// user's lock screen. With previews on, a message in a conversation the
// user accepted shows its text (the control); a stranger's DM, a message
// request, is pushed as "Message request", with no preview, and says
// request "true" in its data.
func TestMessageRequestPush(t *testing.T) {
	t.Parallel() // mostly waiting (timeouts, expiries, a tarpit): overlaps the other waiters
	prov := e2e.StartProviders(t)
	srv := e2e.StartParleyd(t, t.TempDir(), append(prov.Env, "PARLEY_MESSAGE_REQUESTS=on", "PARLEY_PUSH_PREVIEW=on"))
	aliceID, _ := e2e.Signup(t, srv.Base, "alice")
	carolID, _ := e2e.Signup(t, srv.Base, "carol")
	e2e.Signup(t, srv.Base, "mallory")
	phone := e2e.LoginDevice(t, srv.Base, "alice", "phone")
	carol := e2e.LoginDevice(t, srv.Base, "carol", "phone")
	mallory := e2e.LoginDevice(t, srv.Base, "mallory", "phone")
	token := prov.RegisterAPNs(t, srv.Base, phone)

	// Alice opened the DM with Carol: hers is an accepted membership.
	friends := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", phone.Token, map[string]any{"kind": "direct", "members": []string{carolID}})["conversation"].(map[string]any)["id"].(string)
	e2e.SendText(t, srv.Base, carol.Token, friends, "c1", "lunch at noon?")
	e2e.Eventually(t, 60*time.Second, "the push of carol's message", func() bool { return len(prov.APNsFor(token)) >= 1 })
	p, aps := e2e.APNsParley(t, prov.APNsFor(token)[0])
	if alert, _ := aps["alert"].(map[string]any); alert["body"] != "lunch at noon?" || p["request"] != nil {
		t.Fatalf("the push of a message in an accepted conversation: %s; want its preview", prov.APNsFor(token)[0].Body)
	}

	dmObj := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", mallory.Token, map[string]any{"kind": "direct", "members": []string{aliceID}})["conversation"].(map[string]any)
	if m := e2e.MemberOf(t, dmObj, aliceID); m["request"] != true {
		t.Fatalf("mallory's DM: alice is %v, want a request", m)
	}
	dm := dmObj["id"].(string)
	e2e.SendText(t, srv.Base, mallory.Token, dm, "m1", "click this link to claim your prize")
	var req pushtest.APNsRequest
	e2e.Eventually(t, 60*time.Second, "the push of mallory's message", func() bool {
		for _, r := range prov.APNsFor(token) {
			if p, _ := e2e.APNsParley(t, r); p["conversation_id"] == dm {
				req = r
				return true
			}
		}
		return false
	})
	p, aps = e2e.APNsParley(t, req)
	alert, _ := aps["alert"].(map[string]any)
	if alert["body"] != "Message request" || p["request"] != "true" || p["preview"] != nil || strings.Contains(string(req.Body), "prize") {
		t.Fatalf("the push of a stranger's DM: %s; want \"Message request\", request true, no preview", req.Body)
	}
}
