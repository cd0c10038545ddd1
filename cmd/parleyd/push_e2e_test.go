package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/push/pushtest"
)

// startPushCluster runs, on the machine's PostgreSQL and NATS, a gateway
// node and a push-only node pointed at local providers (APNs answering
// after apnsDelay).
func startPushCluster(t *testing.T, apnsDelay time.Duration) (prov *providers, gw, pusher *proc) {
	t.Helper()
	prov = startProviders(t)
	prov.apns.SetDelay(apnsDelay)
	env := append(clusterEnv(t), prov.env...)
	gw = startParleyd(t, t.TempDir(), env, "--roles", "gateway,worker")
	pusher = startParleyd(t, t.TempDir(), env, "--roles", "push")
	return prov, gw, pusher
}

// providers are local servers speaking APNs, FCM and Web Push, and the
// parleyd environment that points the push role at them.
type providers struct {
	apns *pushtest.APNs
	fcm  *pushtest.FCM
	wp   *pushtest.WebPush
	env  []string
}

// Push timings for tests: the collapse window (long enough that a burst
// of REST sends on a loaded CI machine falls in one) and the delivered
// grace of live devices.
const (
	testCollapse = time.Second
	testGrace    = 3 * time.Second
)

func startProviders(t *testing.T) *providers {
	t.Helper()
	p := &providers{apns: pushtest.NewAPNs(t), fcm: pushtest.NewFCM(t), wp: pushtest.NewWebPush(t)}
	ca := filepath.Join(t.TempDir(), "providers-ca.pem")
	pem := append(append(p.apns.CertPEM(), p.fcm.CertPEM()...), p.wp.CertPEM()...)
	if err := os.WriteFile(ca, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	p.env = []string{
		"PARLEY_LIMITS=off",
		"PARLEY_PUSH_CA_FILE=" + ca,
		"PARLEY_APNS_KEY_FILE=" + p.apns.KeyFile(),
		"PARLEY_APNS_KEY_ID=" + p.apns.KeyID(),
		"PARLEY_APNS_TEAM_ID=" + p.apns.TeamID(),
		"PARLEY_APNS_URL=" + p.apns.URL(),
		"PARLEY_FCM_CREDENTIALS=" + p.fcm.CredentialsFile(),
		"PARLEY_FCM_URL=" + p.fcm.Endpoint(),
		"PARLEY_VAPID_SUBJECT=mailto:ops@example.com",
		"PARLEY_APNS_TOPICS=com.example.parley",
		// The fakes listen on 127.0.0.1, a blocked range for Web Push
		// endpoints unless allowed.
		"PARLEY_OUTBOUND_ALLOW=127.0.0.1",
		"PARLEY_PUSH_COLLAPSE=" + testCollapse.String(),
		"PARLEY_PUSH_DELIVERED_GRACE=" + testGrace.String(),
		"PARLEY_PUSH_RETRY_BASE=200ms",
	}
	return p
}

// trustVAPID tells the Web Push fake the server's VAPID public key.
func (p *providers) trustVAPID(t *testing.T, base string) {
	t.Helper()
	p.wp.SetVAPIDPublicKey(mustAPI(t, 200, "GET", base+"/v1/push/vapid", "", nil)["public_key"].(string))
}

// registerAPNs registers d for APNs and returns its token.
func (p *providers) registerAPNs(t *testing.T, base string, d device) string {
	t.Helper()
	tok := p.apns.NewToken()
	mustAPI(t, 200, "PUT", base+"/v1/devices/current/push", d.token, map[string]any{"provider": "apns", "token": tok, "topic": "com.example.parley", "environment": "production"})
	return tok
}

func (p *providers) registerFCM(t *testing.T, base string, d device) string {
	t.Helper()
	tok := p.fcm.NewToken()
	mustAPI(t, 200, "PUT", base+"/v1/devices/current/push", d.token, map[string]any{"provider": "fcm", "token": tok})
	return tok
}

func (p *providers) registerWebPush(t *testing.T, base string, d device) pushtest.Subscription {
	t.Helper()
	sub := p.wp.NewSubscription()
	mustAPI(t, 200, "PUT", base+"/v1/devices/current/push", d.token, map[string]any{"provider": "webpush", "subscription": sub})
	return sub
}

// apnsFor, fcmFor and wpFor are the requests a provider received for one
// device.
func (p *providers) apnsFor(token string) []pushtest.APNsRequest {
	return only(p.apns.Requests(), func(r pushtest.APNsRequest) bool { return r.Token == token })
}

func (p *providers) fcmFor(token string) []pushtest.FCMRequest {
	return only(p.fcm.Requests(), func(r pushtest.FCMRequest) bool { return r.Token == token })
}

func (p *providers) wpFor(sub pushtest.Subscription) []pushtest.WebPushRequest {
	return only(p.wp.Requests(), func(r pushtest.WebPushRequest) bool { return r.Endpoint == sub.Endpoint })
}

func only[R any](rs []R, keep func(R) bool) []R {
	var out []R
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// wpData decodes a Web Push request's decrypted payload.
func wpData(t *testing.T, r pushtest.WebPushRequest) map[string]string {
	t.Helper()
	var d map[string]string
	if err := json.Unmarshal(r.Payload, &d); err != nil {
		t.Fatalf("web push payload %q: %v", r.Payload, err)
	}
	return d
}

// apnsParley returns the "parley" dictionary of an APNs payload and the
// aps dictionary.
func apnsParley(t *testing.T, r pushtest.APNsRequest) (parley map[string]any, aps map[string]any) {
	t.Helper()
	parley, _ = r.Payload["parley"].(map[string]any)
	aps, _ = r.Payload["aps"].(map[string]any)
	if parley == nil || aps == nil {
		t.Fatalf("apns payload without parley or aps: %s", r.Body)
	}
	return parley, aps
}

func sendText(t *testing.T, base, token, conv, clientID, body string) int64 {
	t.Helper()
	m := mustAPI(t, 201, "POST", base+"/v1/conversations/"+conv+"/messages", token, map[string]any{"client_msg_id": clientID, "body": body})
	return int64(m["message"].(map[string]any)["seq"].(float64))
}

// metricValue reads one sample of a metric (with its labels as written,
// e.g. `{provider="apns"}`), 0 if absent.
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(getText(t, base+"/metrics"))
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestPushEndToEnd runs the notification service inside one parleyd
// against local APNs, FCM and Web Push servers. Bob has a phone (APNs), a
// tablet (FCM) and a browser (Web Push). Offline, three messages from
// Alice make one collapsed notification per device with badge 3; Bob
// reading on the phone sends the tablet and browser a silent clear; a
// device online that acks delivered gets no push, one whose socket does
// not ack is pushed after the grace; mute and do-not-disturb stop pushes;
// the admin trace shows each step down to the phone's next fetch.
func TestPushEndToEnd(t *testing.T) {
	prov := startProviders(t)
	data := t.TempDir()
	srv := startParleyd(t, data, prov.env)
	prov.trustVAPID(t, srv.base)
	aliceID, _ := signup(t, srv.base, "alice")
	bobID, _ := signup(t, srv.base, "bob")
	alice := loginDevice(t, srv.base, "alice", "laptop")
	phone := loginDevice(t, srv.base, "bob", "phone")
	tablet := loginDevice(t, srv.base, "bob", "tablet")
	browser := loginDevice(t, srv.base, "bob", "browser")
	apnsTok := prov.registerAPNs(t, srv.base, phone)
	fcmTok := prov.registerFCM(t, srv.base, tablet)
	sub := prov.registerWebPush(t, srv.base, browser)
	// Alice's own registered device must never be pushed for her sends.
	aliceTok := prov.registerAPNs(t, srv.base, alice)
	conv := mustAPI(t, 201, "POST", srv.base+"/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)

	// 1. Bob offline everywhere; three messages in a burst.
	for i := range 3 {
		sendText(t, srv.base, alice.token, conv, fmt.Sprint("m", i), fmt.Sprint("hello ", i))
	}
	eventually(t, 10*time.Second, "one notification per device", func() bool {
		return len(prov.apnsFor(apnsTok)) >= 1 && len(prov.fcmFor(fcmTok)) >= 1 && len(prov.wpFor(sub)) >= 1
	})
	time.Sleep(2 * testCollapse) // a second notification would come by now
	ap, fc, wp := prov.apnsFor(apnsTok), prov.fcmFor(fcmTok), prov.wpFor(sub)
	if len(ap) != 1 || len(fc) != 1 || len(wp) != 1 {
		t.Fatalf("a burst of 3 made %d APNs, %d FCM, %d Web Push notifications; want 1 each", len(ap), len(fc), len(wp))
	}
	if n := len(prov.apnsFor(aliceTok)); n != 0 {
		t.Fatalf("the sender's own device was pushed %d times", n)
	}
	// APNs: the exact request.
	a := ap[0]
	pp, aps := apnsParley(t, a)
	if a.Proto != "HTTP/2.0" || a.Method != "POST" || a.Path != "/3/device/"+apnsTok || a.Topic != "com.example.parley" ||
		a.PushType != "alert" || a.CollapseID != conv || a.Priority != 10 || a.Status != 200 {
		t.Fatalf("APNs request: %+v", a)
	}
	if aps["badge"] != float64(3) || aps["mutable-content"] != float64(1) || aps["thread-id"] != conv ||
		pp["count"] != "3" || pp["seq"] != "3" || pp["badge"] != "3" || pp["type"] != "message" || pp["sender_name"] != "alice" || pp["sender_id"] != aliceID {
		t.Fatalf("APNs payload: %s", a.Body)
	}
	if alert, _ := aps["alert"].(map[string]any); alert["title"] != "alice" || alert["body"] != "3 new messages" {
		t.Fatalf("APNs alert: %s", a.Body)
	}
	// FCM.
	f := fc[0]
	if f.Proto != "HTTP/2.0" || f.Project != prov.fcm.ProjectID() || f.CollapseKey != conv || f.AndroidPriority != "high" ||
		f.Data["count"] != "3" || f.Data["badge"] != "3" || f.Data["conversation_id"] != conv || f.Data["type"] != "message" ||
		f.APNSHeaders["apns-collapse-id"] != conv || f.APNSHeaders["apns-push-type"] != "alert" || f.Status != 200 {
		t.Fatalf("FCM request: %+v", f)
	}
	if fapns, _ := f.APNSPayload["aps"].(map[string]any); fapns["badge"] != float64(3) {
		t.Fatalf("FCM apns payload: %v", f.APNSPayload)
	}
	// Web Push: decrypted by the fake with the browser's keys, VAPID
	// verified against the server's public key.
	w := wp[0]
	if d := wpData(t, w); d["count"] != "3" || d["badge"] != "3" || d["type"] != "message" || d["conversation_id"] != conv {
		t.Fatalf("Web Push payload: %s", w.Payload)
	}
	if w.Topic != strings.ReplaceAll(conv, "-", "") || w.Urgency != "high" || w.TTL <= 0 || w.Subscriber != "mailto:ops@example.com" || w.Status != 201 {
		t.Fatalf("Web Push request: %+v", w)
	}
	t.Logf("observed APNs: %s %s apns-topic=%s apns-push-type=%s apns-collapse-id=%s apns-priority=%d body=%s",
		a.Method, a.Path, a.Topic, a.PushType, a.CollapseID, a.Priority, a.Body)
	t.Logf("observed FCM: POST /v1/projects/%s/messages:send message=%v", f.Project, f.Message)
	t.Logf("observed Web Push: POST %s TTL=%d Topic=%s Urgency=%s payload=%s", w.Endpoint, w.TTL, w.Topic, w.Urgency, w.Payload)

	// 2. Bob reads on the phone: the tablet and the browser get a silent
	// clear with badge 0; the phone gets nothing.
	mustAPI(t, 200, "POST", srv.base+"/v1/conversations/"+conv+"/read", phone.token, map[string]any{"seq": 3})
	eventually(t, 10*time.Second, "silent clears", func() bool { return len(prov.fcmFor(fcmTok)) >= 2 && len(prov.wpFor(sub)) >= 2 })
	f = prov.fcmFor(fcmTok)[1]
	if f.Data["type"] != "read" || f.Data["badge"] != "0" || f.Data["count"] != "0" || f.Data["seq"] != "3" ||
		f.APNSHeaders["apns-push-type"] != "background" || f.AndroidPriority != "normal" {
		t.Fatalf("FCM clear: %+v", f)
	}
	if d := wpData(t, prov.wpFor(sub)[1]); d["type"] != "read" || d["badge"] != "0" {
		t.Fatalf("Web Push clear: %v", d)
	}
	t.Logf("observed FCM clear: message=%v", f.Message)
	time.Sleep(testCollapse)
	if n := len(prov.apnsFor(apnsTok)); n != 1 {
		t.Fatalf("the reading phone was pushed again (%d requests)", n)
	}

	// 3. The tablet is online and acks delivered: no push for it. The
	// browser is connected too but its socket never acks (a dead app):
	// it is pushed after the grace. The phone is offline: pushed.
	tc := connect(t, srv.base, tablet)
	bc := connect(t, srv.base, browser)
	sentAt := time.Now()
	seq := sendText(t, srv.base, alice.token, conv, "m3", "are you there?")
	if m := expectMessage(t, tc, "ack"); m.Seq != seq {
		t.Fatalf("tablet got seq %d", m.Seq)
	}
	// It acks after the collapse window, within the grace: only a push
	// role that knows it is live waits long enough not to push it.
	time.Sleep(testCollapse + 500*time.Millisecond)
	tc.MustWrite(map[string]any{"type": "delivered", "id": "d1", "conversation_id": conv, "seq": seq})
	eventually(t, 10*time.Second, "the phone's and the silent browser's pushes", func() bool {
		return len(prov.apnsFor(apnsTok)) >= 2 && len(prov.wpFor(sub)) >= 3
	})
	if pushed := prov.wpFor(sub)[2]; pushed.Time.Sub(sentAt) < testGrace {
		t.Fatalf("the live browser was pushed %v after the send, before the grace (%v)", pushed.Time.Sub(sentAt), testGrace)
	}
	time.Sleep(testGrace)
	if n := len(prov.fcmFor(fcmTok)); n != 2 {
		t.Fatalf("the tablet received the message live and acked it, yet was pushed (%d FCM requests)", n)
	}
	if pp, aps := apnsParley(t, prov.apnsFor(apnsTok)[1]); pp["count"] != "1" || aps["badge"] != float64(1) {
		t.Fatalf("after the read, one new message: %s", prov.apnsFor(apnsTok)[1].Body)
	}
	tc.Close()
	bc.Close()

	// 4. The trace of that message, read by an admin: the phone's send,
	// the tablet's delivered skip, then the phone's fetch once it reads
	// history.
	if out, err := exec.Command(parleydBin, "admin", "grant", "alice", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	traceURL := fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.base, conv, seq)
	mustAPI(t, 403, "GET", traceURL, phone.token, nil)
	mustAPI(t, 200, "GET", srv.base+"/v1/conversations/"+conv+"/messages", phone.token, nil)
	var stages []string
	eventually(t, 10*time.Second, "the phone's fetch in the trace", func() bool {
		stages = traceStages(t, mustAPI(t, 200, "GET", traceURL, alice.token, nil))
		return hasStage(stages, "fetched", phone.id)
	})
	for _, want := range [][2]string{{"committed", ""}, {"enqueued", ""}, {"fanned_out", ""}, {"queued", phone.id}, {"sent", phone.id},
		{"waiting", tablet.id}, {"skipped", tablet.id}, {"waiting", browser.id}, {"sent", browser.id}} {
		if !hasStage(stages, want[0], want[1]) {
			t.Fatalf("trace lacks %v: %v", want, stages)
		}
	}
	t.Logf("trace of seq %d: %v", seq, stages)

	// 5. Muted, then do-not-disturb: no pushes; the trace says why.
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	muted := mustAPI(t, 200, "PUT", srv.base+"/v1/conversations/"+conv+"/mute", phone.token, map[string]any{"until": until})
	if muted["conversation"].(map[string]any)["muted_until"] == nil {
		t.Fatalf("mute not shown: %v", muted)
	}
	before := len(prov.apns.Requests()) + len(prov.fcm.Requests()) + len(prov.wp.Requests())
	seq = sendText(t, srv.base, alice.token, conv, "m4", "muted")
	time.Sleep(3 * testCollapse)
	if after := len(prov.apns.Requests()) + len(prov.fcm.Requests()) + len(prov.wp.Requests()); after != before {
		t.Fatalf("a muted conversation was pushed (%d requests)", after-before)
	}
	stages = traceStages(t, mustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.base, conv, seq), alice.token, nil))
	if !hasStage(stages, "skipped", phone.id) {
		t.Fatalf("trace of a muted message: %v", stages)
	}
	mustAPI(t, 200, "PUT", srv.base+"/v1/conversations/"+conv+"/mute", phone.token, map[string]any{"until": nil})
	mustAPI(t, 400, "PUT", srv.base+"/v1/me/dnd", phone.token, map[string]any{"until": "yesterday"})
	if d := mustAPI(t, 200, "PUT", srv.base+"/v1/me/dnd", phone.token, map[string]any{"until": until}); d["dnd_until"] == nil {
		t.Fatalf("dnd not set: %v", d)
	}
	if me := mustAPI(t, 200, "GET", srv.base+"/v1/me", tablet.token, nil); me["dnd_until"] == nil {
		t.Fatalf("GET /v1/me lacks dnd_until: %v", me)
	}
	sendText(t, srv.base, alice.token, conv, "m5", "do not disturb")
	time.Sleep(3 * testCollapse)
	if after := len(prov.apns.Requests()) + len(prov.fcm.Requests()) + len(prov.wp.Requests()); after != before {
		t.Fatalf("a user in do-not-disturb was pushed (%d requests)", after-before)
	}
	mustAPI(t, 200, "PUT", srv.base+"/v1/me/dnd", phone.token, map[string]any{"until": nil})
	sendText(t, srv.base, alice.token, conv, "m6", "back")
	eventually(t, 10*time.Second, "pushes after do-not-disturb", func() bool { return len(prov.apnsFor(apnsTok)) >= 3 })
	// The count and badge include what waited meanwhile: seqs 4 to 7 are
	// unread (4 was delivered to the tablet, not read).
	if pp, _ := apnsParley(t, prov.apnsFor(apnsTok)[2]); pp["count"] != "4" || pp["badge"] != "4" || pp["seq"] != "7" {
		t.Fatalf("after do-not-disturb: %s", prov.apnsFor(apnsTok)[2].Body)
	}
	// The fake provider has the request before the role has its answer
	// and counts it: wait for the counters.
	eventually(t, 10*time.Second, "parley_push_sent_total and parley_push_latency_seconds_count for apns at 3", func() bool {
		return metricValue(t, srv.base, `parley_push_sent_total{kind="message",provider="apns"}`) >= 3 &&
			metricValue(t, srv.base, `parley_push_latency_seconds_count{provider="apns"}`) >= 3
	})
	if v := metricValue(t, srv.base, `parley_push_skipped_total{reason="muted"}`); v < 1 {
		t.Fatalf("muted skips: %v", v)
	}
	metrics := getText(t, srv.base+"/metrics")
	for _, gauge := range []string{"parley_push_queue_depth ", "parley_push_queue_oldest_seconds "} {
		if !strings.Contains(metrics, "\n"+gauge) {
			t.Fatalf("no %s gauge", gauge)
		}
	}
}

// traceStages lists a trace's events as "stage device".
func traceStages(t *testing.T, body map[string]any) []string {
	t.Helper()
	tr, _ := body["trace"].(map[string]any)
	evs, _ := tr["events"].([]any)
	var out []string
	for _, e := range evs {
		ev := e.(map[string]any)
		s, _ := ev["stage"].(string)
		if d, _ := ev["device_id"].(string); d != "" {
			s += " " + d
		}
		out = append(out, s)
	}
	return out
}

func hasStage(stages []string, stage, device string) bool {
	want := stage
	if device != "" {
		want += " " + device
	}
	for _, s := range stages {
		if s == want {
			return true
		}
	}
	return false
}

// TestPushProviderErrors: each provider's error answers through the real
// binary. APNs 410 Unregistered removes the registration; APNs 500 three
// times (the attempts) dead-letters the job; FCM 429 with Retry-After is
// retried no sooner than it says; a Web Push 500 is retried.
func TestPushProviderErrors(t *testing.T) {
	prov := startProviders(t)
	data := t.TempDir()
	srv := startParleyd(t, data, append(prov.env, "PARLEY_PUSH_ATTEMPTS=3"))
	prov.trustVAPID(t, srv.base)
	signup(t, srv.base, "alice")
	bobID, _ := signup(t, srv.base, "bob")
	alice := loginDevice(t, srv.base, "alice", "laptop")
	gone := prov.registerAPNs(t, srv.base, loginDevice(t, srv.base, "bob", "old phone"))
	failing := prov.registerAPNs(t, srv.base, loginDevice(t, srv.base, "bob", "phone"))
	limited := prov.registerFCM(t, srv.base, loginDevice(t, srv.base, "bob", "tablet"))
	sub := prov.registerWebPush(t, srv.base, loginDevice(t, srv.base, "bob", "browser"))
	prov.apns.Fail(gone, pushtest.Answer{Status: 410, Reason: "Unregistered"})
	prov.apns.Fail(failing, pushtest.Answer{Status: 500}, pushtest.Answer{Status: 500}, pushtest.Answer{Status: 500})
	prov.fcm.Fail(limited, pushtest.Answer{Status: 429, Reason: "QUOTA_EXCEEDED", RetryAfter: 2})
	prov.wp.Fail(sub.Endpoint, pushtest.Answer{Status: 500})
	conv := mustAPI(t, 201, "POST", srv.base+"/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	seq := sendText(t, srv.base, alice.token, conv, "m1", "hello")

	eventually(t, 15*time.Second, "every retry", func() bool {
		return len(prov.apnsFor(failing)) >= 3 && len(prov.fcmFor(limited)) >= 2 && len(prov.wpFor(sub)) >= 2
	})
	eventually(t, 5*time.Second, "the dead letter", func() bool {
		return metricValue(t, srv.base, `parley_push_dead_letter_total{provider="apns"}`) == 1
	})
	time.Sleep(time.Second) // no further attempt may come
	if r := prov.apnsFor(failing); len(r) != 3 || r[2].Status != 500 {
		t.Fatalf("APNs 500s: %d requests, want the 3 attempts", len(r))
	}
	fr := prov.fcmFor(limited)
	if len(fr) != 2 || fr[0].Status != 429 || fr[1].Status != 200 {
		t.Fatalf("FCM 429 then success: %+v", fr)
	}
	if gap := fr[1].Time.Sub(fr[0].Time); gap < 2*time.Second {
		t.Fatalf("FCM retried %v after a 429 with Retry-After: 2", gap)
	}
	if wr := prov.wpFor(sub); len(wr) != 2 || wr[0].Status != 500 || wr[1].Status != 201 {
		t.Fatalf("Web Push 500 then success: %+v", wr)
	}
	if r := prov.apnsFor(gone); len(r) != 1 || r[0].Status != 410 {
		t.Fatalf("APNs 410: %+v", r)
	}
	if v := metricValue(t, srv.base, `parley_push_failed_total{provider="apns",reason="unregistered"}`); v != 1 {
		t.Fatalf("unregistered metric: %v", v)
	}
	if v := metricValue(t, srv.base, `parley_push_failed_total{provider="fcm",reason="retry"}`); v != 1 {
		t.Fatalf("FCM retry metric: %v", v)
	}
	// The trace tells the whole story.
	if out, err := exec.Command(parleydBin, "admin", "grant", "alice", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	stages := traceStages(t, mustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.base, conv, seq), alice.token, nil))
	for _, want := range []string{"unregistered", "retrying", "dead_lettered", "sent"} {
		found := false
		for _, s := range stages {
			found = found || strings.HasPrefix(s, want+" ")
		}
		if !found {
			t.Fatalf("trace lacks %s: %v", want, stages)
		}
	}

	// The next message: the unregistered device is not tried again; the
	// phone whose job was dead-lettered is (its token is fine now).
	sendText(t, srv.base, alice.token, conv, "m2", "again")
	eventually(t, 10*time.Second, "the second message's pushes", func() bool {
		return len(prov.apnsFor(failing)) >= 4 && len(prov.fcmFor(limited)) >= 3 && len(prov.wpFor(sub)) >= 3
	})
	if r := prov.apnsFor(gone); len(r) != 1 {
		t.Fatalf("the unregistered token was tried again: %d requests", len(r))
	}
}

// TestPushRoleKilledMidBurst runs the push role as a node of its own
// (cluster mode: the machine's PostgreSQL and NATS) and SIGKILLs it in the
// middle of a burst to twelve devices, then starts it again. Every device
// ends with a notification covering its last message, with the right
// count; no notification is sent twice, except one whose request was in
// flight at the kill (the sender never learned it was accepted, so it must
// send again to lose nothing).
func TestPushRoleKilledMidBurst(t *testing.T) {
	t.Parallel() // mostly waiting (for a claim to lapse, a tarpit to answer): overlaps the other waiters
	prov, gw, pusher := startPushCluster(t, 150*time.Millisecond)
	signup(t, gw.base, "alice")
	alice := loginDevice(t, gw.base, "alice", "laptop")
	const devices, rounds = 12, 4
	tokens := make([]string, devices)
	convs := make([]string, devices)
	for i := range devices {
		id, _ := signup(t, gw.base, fmt.Sprint("bob", i))
		tokens[i] = prov.registerAPNs(t, gw.base, loginDevice(t, gw.base, fmt.Sprint("bob", i), "phone"))
		convs[i] = mustAPI(t, 201, "POST", gw.base+"/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{id}})["conversation"].(map[string]any)["id"].(string)
	}
	var killedAt time.Time
	for r := range rounds {
		for i := range devices {
			sendText(t, gw.base, alice.token, convs[i], fmt.Sprint("r", r, "-", i), "burst")
		}
		if r != 0 {
			time.Sleep(400 * time.Millisecond)
			continue
		}
		// Round 0's notifications fall due after the collapse window and
		// go out, each answered after the fake's 150 ms: kill once the
		// first is at the provider (not after a fixed time: under load the
		// fan-out may not have started by then).
		eventually(t, 30*time.Second, "round 0's first notification at the provider", func() bool {
			for _, tok := range tokens {
				if len(prov.apnsFor(tok)) > 0 {
					return true
				}
			}
			return false
		})
		pusher.kill()
		killedAt = time.Now()
		time.Sleep(300 * time.Millisecond)
		if err := pusher.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	last := fmt.Sprint(rounds)
	eventually(t, 90*time.Second, "every device's notification of its last message", func() bool {
		for _, tok := range tokens {
			rs := prov.apnsFor(tok)
			if len(rs) == 0 {
				return false
			}
			if pp, _ := rs[len(rs)-1].Payload["parley"].(map[string]any); pp["seq"] != last {
				return false
			}
		}
		return true
	})
	var total, abandoned, before, after int
	for i, tok := range tokens {
		seen := map[string]bool{}
		for _, r := range prov.apnsFor(tok) {
			total++
			if r.Time.Before(killedAt) {
				before++
			} else {
				after++
			}
			pp, _ := r.Payload["parley"].(map[string]any)
			key := fmt.Sprint(pp["seq"])
			if r.Abandoned {
				abandoned++
				continue // its outcome never reached the sender
			}
			if seen[key] {
				t.Errorf("device %d: the notification up to seq %s was sent twice", i, key)
			}
			seen[key] = true
		}
		rs := prov.apnsFor(tok)
		if pp, aps := apnsParley(t, rs[len(rs)-1]); pp["count"] != last || aps["badge"] != float64(rounds) {
			t.Errorf("device %d's last notification: %s", i, rs[len(rs)-1].Body)
		}
	}
	if before == 0 || after == 0 {
		t.Fatalf("the kill was not mid-burst: %d requests before it, %d after", before, after)
	}
	t.Logf("%d devices, %d messages each: %d APNs requests (%d before the kill, %d after), %d in flight at the kill (outcome unknown to the role; their messages were notified again after the restart)",
		devices, rounds, total, before, after, abandoned)
}

// TestPushTTL: a notification still failing when the push TTL has passed
// since the commit is dropped, not retried.
func TestPushTTL(t *testing.T) {
	prov := startProviders(t)
	srv := startParleyd(t, t.TempDir(), append(prov.env, "PARLEY_PUSH_TTL=2s"))
	prov.trustVAPID(t, srv.base)
	signup(t, srv.base, "alice")
	bobID, _ := signup(t, srv.base, "bob")
	alice := loginDevice(t, srv.base, "alice", "laptop")
	sub := prov.registerWebPush(t, srv.base, loginDevice(t, srv.base, "bob", "browser"))
	prov.wp.Fail(sub.Endpoint, pushtest.Answer{Status: 503, RetryAfter: 3})
	conv := mustAPI(t, 201, "POST", srv.base+"/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	sendText(t, srv.base, alice.token, conv, "m1", "hello")
	eventually(t, 10*time.Second, "the TTL drop", func() bool {
		return metricValue(t, srv.base, `parley_push_dropped_total{reason="ttl"}`) == 1
	})
	if r := prov.wpFor(sub); len(r) != 1 || r[0].Status != 503 || r[0].TTL > 2 {
		t.Fatalf("want one failed request with TTL at most 2s: %+v", r)
	}
}

// TestPushLiveAcrossNodes: the push role runs on a node of its own and
// learns from the gateway node which devices are live (the presence
// directory names the node; the node answers for its sessions). Bob's
// tablet, connected to the gateway and acking, gets no push; his offline
// phone is pushed after the collapse window, not the grace.
func TestPushLiveAcrossNodes(t *testing.T) {
	prov, gw, _ := startPushCluster(t, 0)
	signup(t, gw.base, "alice")
	bobID, _ := signup(t, gw.base, "bob")
	alice := loginDevice(t, gw.base, "alice", "laptop")
	phone, tablet := loginDevice(t, gw.base, "bob", "phone"), loginDevice(t, gw.base, "bob", "tablet")
	apnsTok, fcmTok := prov.registerAPNs(t, gw.base, phone), prov.registerFCM(t, gw.base, tablet)
	conv := mustAPI(t, 201, "POST", gw.base+"/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	tc := connect(t, gw.base, tablet)
	defer tc.Close()
	time.Sleep(500 * time.Millisecond) // the push node's presence mirror sees bob

	sentAt := time.Now()
	seq := sendText(t, gw.base, alice.token, conv, "m1", "hi")
	if m := expectMessage(t, tc); m.Seq != seq {
		t.Fatalf("tablet got seq %d", m.Seq)
	}
	// The tablet acks after the collapse window, within the grace: only
	// a push role that knows it is live waits long enough.
	time.Sleep(testCollapse + 500*time.Millisecond)
	tc.MustWrite(map[string]any{"type": "delivered", "id": "d1", "conversation_id": conv, "seq": seq})
	eventually(t, 10*time.Second, "the phone's push", func() bool { return len(prov.apnsFor(apnsTok)) == 1 })
	if after := prov.apnsFor(apnsTok)[0].Time.Sub(sentAt); after >= testGrace {
		t.Fatalf("the offline phone was pushed %v after the send: treated as live", after)
	}
	time.Sleep(testGrace + time.Second)
	if n := len(prov.fcmFor(fcmTok)); n != 0 {
		t.Fatalf("the live tablet on the other node was pushed %d times", n)
	}
	// The trace shows the push node knew: the tablet waited out the
	// grace (live), the phone was queued (not live).
	grant := exec.Command(parleydBin, "admin", "grant", "alice", "--data", t.TempDir())
	grant.Env = append(os.Environ(), gw.Env...)
	if out, err := grant.CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	stages := traceStages(t, mustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", gw.base, conv, seq), alice.token, nil))
	for _, want := range [][2]string{{"queued", phone.id}, {"sent", phone.id}, {"waiting", tablet.id}, {"skipped", tablet.id}} {
		if !hasStage(stages, want[0], want[1]) {
			t.Fatalf("trace lacks %v: %v", want, stages)
		}
	}
}

// TestPushInFlightAtKill: the push role dies while the provider holds its
// request (the role never learns whether it was accepted). After a
// restart the notification goes out again once the dead role's claim
// expires: lost never, sent again only because its outcome was unknown.
func TestPushInFlightAtKill(t *testing.T) {
	t.Parallel() // mostly waiting (for a claim to lapse, a tarpit to answer): overlaps the other waiters
	prov, gw, pusher := startPushCluster(t, 5*time.Second)
	signup(t, gw.base, "alice")
	bobID, _ := signup(t, gw.base, "bob")
	alice := loginDevice(t, gw.base, "alice", "laptop")
	tok := prov.registerAPNs(t, gw.base, loginDevice(t, gw.base, "bob", "phone"))
	conv := mustAPI(t, 201, "POST", gw.base+"/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	sendText(t, gw.base, alice.token, conv, "m1", "are you awake?")
	eventually(t, 10*time.Second, "the request in flight", func() bool { return len(prov.apnsFor(tok)) == 1 })
	pusher.kill()
	killedAt := time.Now()
	if err := pusher.Restart(); err != nil {
		t.Fatal(err)
	}
	prov.apns.SetDelay(0)
	eventually(t, 90*time.Second, "the notification sent again", func() bool { return len(prov.apnsFor(tok)) >= 2 })
	time.Sleep(3 * time.Second) // no third
	rs := prov.apnsFor(tok)
	if len(rs) != 2 || !rs[0].Abandoned || rs[1].Abandoned || rs[1].Status != 200 {
		t.Fatalf("want the abandoned request and one answered resend: %+v", rs)
	}
	p0, _ := apnsParley(t, rs[0])
	p1, _ := apnsParley(t, rs[1])
	if p0["seq"] != "1" || p1["seq"] != "1" || p1["count"] != "1" {
		t.Fatalf("payloads: %s then %s", rs[0].Body, rs[1].Body)
	}
	t.Logf("in flight at the kill; sent again %v after it", rs[1].Time.Sub(killedAt).Round(100*time.Millisecond))
}

// TestPushViewAcrossNodes: two gateways and a push node on the machine's
// PostgreSQL and NATS. Messages to a conversation whose other members
// have no push registration get no job (the gateway's view); a
// registration made through the other gateway, and a registered member
// added through it, reach the first gateway's view at once: its next
// messages push.
func TestPushViewAcrossNodes(t *testing.T) {
	prov := startProviders(t)
	env := append(clusterEnv(t), prov.env...)
	gw1 := startParleyd(t, t.TempDir(), env, "--roles", "gateway,worker")
	gw2 := startParleyd(t, t.TempDir(), env, "--roles", "gateway")
	startParleyd(t, t.TempDir(), env, "--roles", "push")
	signup(t, gw1.base, "alice")
	bobID, _ := signup(t, gw1.base, "bob")
	carolID, _ := signup(t, gw1.base, "carol")
	alice := loginDevice(t, gw1.base, "alice", "laptop")
	bobPhone := loginDevice(t, gw2.base, "bob", "phone")
	carolPhone := loginDevice(t, gw2.base, "carol", "phone")
	direct := mustAPI(t, 201, "POST", gw1.base+"/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	eventually(t, 10*time.Second, "gw1's view loaded", func() bool { return metricValue(t, gw1.base, "parley_push_view_ready") == 1 })

	// Nobody but alice could be pushed: after the first message (sent
	// while the view reads the members) no job.
	for i := range 5 {
		sendText(t, gw1.base, alice.token, direct, fmt.Sprint("a", i), "nobody to wake")
		time.Sleep(50 * time.Millisecond)
	}
	if n := metricValue(t, gw1.base, "parley_push_jobs_avoided_total"); n < 3 {
		t.Fatalf("gw1 avoided %v jobs of 5 messages no registered device needed, want at least 3", n)
	}

	// Bob registers through gw2; alice's next message, through gw1, wakes
	// him.
	bobTok := prov.registerAPNs(t, gw2.base, bobPhone)
	seq := sendText(t, gw1.base, alice.token, direct, "after", "wake up")
	eventually(t, 10*time.Second, "bob's push", func() bool { return len(prov.apnsFor(bobTok)) == 1 })
	if pp, _ := apnsParley(t, prov.apnsFor(bobTok)[0]); pp["seq"] != fmt.Sprint(seq) || pp["count"] != "6" {
		t.Fatalf("bob's notification: %s", prov.apnsFor(bobTok)[0].Body)
	}

	// A group of alice and dave (no registration); carol, registered,
	// joins through gw2: alice's next message through gw1 wakes her.
	carolTok := prov.registerAPNs(t, gw2.base, carolPhone)
	daveID, _ := signup(t, gw1.base, "dave")
	group := mustAPI(t, 201, "POST", gw1.base+"/v1/conversations", alice.token, map[string]any{"kind": "group", "title": "g", "members": []string{daveID}})["conversation"].(map[string]any)["id"].(string)
	for i := range 3 {
		sendText(t, gw1.base, alice.token, group, fmt.Sprint("g", i), "dave only")
		time.Sleep(50 * time.Millisecond)
	}
	avoided := metricValue(t, gw1.base, "parley_push_jobs_avoided_total")
	mustAPI(t, 201, "POST", gw2.base+"/v1/conversations/"+group+"/members", alice.token, map[string]any{"user_id": carolID})
	sendText(t, gw1.base, alice.token, group, "g-after", "carol too")
	eventually(t, 10*time.Second, "carol's push", func() bool { return len(prov.apnsFor(carolTok)) == 1 })
	if n := metricValue(t, gw1.base, "parley_push_jobs_avoided_total"); n != avoided {
		t.Fatalf("gw1 avoided the job of a message to a registered member (%v, was %v)", n, avoided)
	}
}
