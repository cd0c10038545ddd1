package push_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/push/pushtest"
)

// startPushCluster runs, on the machine's PostgreSQL and NATS, a gateway
// node and a push-only node pointed at local providers (APNs answering
// after apnsDelay).
func startPushCluster(t *testing.T, apnsDelay time.Duration) (prov *e2e.Providers, gw, pusher *e2e.Proc) {
	t.Helper()
	prov = e2e.StartProviders(t)
	prov.APNs.SetDelay(apnsDelay)
	env := append(e2e.ClusterEnv(t), prov.Env...)
	gw = e2e.StartParleyd(t, t.TempDir(), env, "--roles", "gateway,worker")
	pusher = e2e.StartParleyd(t, t.TempDir(), env, "--roles", "push")
	return prov, gw, pusher
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

// TestPushEndToEnd runs the notification service inside one parleyd
// against local APNs, FCM and Web Push servers. Bob has a phone (APNs), a
// tablet (FCM) and a browser (Web Push). Offline, three messages from
// Alice make one collapsed notification per device with badge 3; Bob
// reading on the phone sends the tablet and browser a silent clear; a
// device online that acks delivered gets no push, one whose socket does
// not ack is pushed after the grace; mute and do-not-disturb stop pushes;
// the admin trace shows each step down to the phone's next fetch.
func TestPushEndToEnd(t *testing.T) {
	prov := e2e.StartProviders(t)
	data := t.TempDir()
	srv := e2e.StartParleyd(t, data, prov.Env)
	prov.TrustVAPID(t, srv.Base)
	aliceID, _ := e2e.Signup(t, srv.Base, "alice")
	bobID, _ := e2e.Signup(t, srv.Base, "bob")
	alice := e2e.LoginDevice(t, srv.Base, "alice", "laptop")
	phone := e2e.LoginDevice(t, srv.Base, "bob", "phone")
	tablet := e2e.LoginDevice(t, srv.Base, "bob", "tablet")
	browser := e2e.LoginDevice(t, srv.Base, "bob", "browser")
	apnsTok := prov.RegisterAPNs(t, srv.Base, phone)
	fcmTok := prov.RegisterFCM(t, srv.Base, tablet)
	sub := prov.RegisterWebPush(t, srv.Base, browser)
	// Alice's own registered device must never be pushed for her sends.
	aliceTok := prov.RegisterAPNs(t, srv.Base, alice)
	conv := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)

	// 1. Bob offline everywhere; three messages in a burst.
	for i := range 3 {
		e2e.SendText(t, srv.Base, alice.Token, conv, fmt.Sprint("m", i), fmt.Sprint("hello ", i))
	}
	e2e.Eventually(t, 30*time.Second, "one notification per device", func() bool {
		return len(prov.APNsFor(apnsTok)) >= 1 && len(prov.FCMFor(fcmTok)) >= 1 && len(prov.WebPushFor(sub)) >= 1
	})
	time.Sleep(2 * e2e.PushCollapse) // a second notification would come by now
	ap, fc, wp := prov.APNsFor(apnsTok), prov.FCMFor(fcmTok), prov.WebPushFor(sub)
	if len(ap) != 1 || len(fc) != 1 || len(wp) != 1 {
		t.Fatalf("a burst of 3 made %d APNs, %d FCM, %d Web Push notifications; want 1 each", len(ap), len(fc), len(wp))
	}
	if n := len(prov.APNsFor(aliceTok)); n != 0 {
		t.Fatalf("the sender's own device was pushed %d times", n)
	}
	// APNs: the exact request.
	a := ap[0]
	pp, aps := e2e.APNsParley(t, a)
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
	if f.Proto != "HTTP/2.0" || f.Project != prov.FCM.ProjectID() || f.CollapseKey != conv || f.AndroidPriority != "high" ||
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
	e2e.MustAPI(t, 200, "POST", srv.Base+"/v1/conversations/"+conv+"/read", phone.Token, map[string]any{"seq": 3})
	e2e.Eventually(t, 30*time.Second, "silent clears", func() bool { return len(prov.FCMFor(fcmTok)) >= 2 && len(prov.WebPushFor(sub)) >= 2 })
	f = prov.FCMFor(fcmTok)[1]
	if f.Data["type"] != "read" || f.Data["badge"] != "0" || f.Data["count"] != "0" || f.Data["seq"] != "3" ||
		f.APNSHeaders["apns-push-type"] != "background" || f.AndroidPriority != "normal" {
		t.Fatalf("FCM clear: %+v", f)
	}
	if d := wpData(t, prov.WebPushFor(sub)[1]); d["type"] != "read" || d["badge"] != "0" {
		t.Fatalf("Web Push clear: %v", d)
	}
	t.Logf("observed FCM clear: message=%v", f.Message)
	time.Sleep(e2e.PushCollapse)
	if n := len(prov.APNsFor(apnsTok)); n != 1 {
		t.Fatalf("the reading phone was pushed again (%d requests)", n)
	}

	// 3. The tablet is online and acks delivered: no push for it. The
	// browser is connected too but its socket never acks (a dead app):
	// it is pushed after the grace. The phone is offline: pushed.
	tc := e2e.Connect(t, srv.Base, tablet)
	bc := e2e.Connect(t, srv.Base, browser)
	sentAt := time.Now()
	seq := e2e.SendText(t, srv.Base, alice.Token, conv, "m3", "are you there?")
	if m := e2e.ExpectMessage(t, tc, "ack"); m.Seq != seq {
		t.Fatalf("tablet got seq %d", m.Seq)
	}
	// It acks after the collapse window, within the grace: only a push
	// role that knows it is live waits long enough not to push it.
	time.Sleep(time.Until(sentAt.Add(e2e.PushGrace / 2)))
	tc.MustWrite(map[string]any{"type": "delivered", "id": "d1", "conversation_id": conv, "seq": seq})
	e2e.Eventually(t, 30*time.Second, "the phone's and the silent browser's pushes", func() bool {
		return len(prov.APNsFor(apnsTok)) >= 2 && len(prov.WebPushFor(sub)) >= 3
	})
	if pushed := prov.WebPushFor(sub)[2]; pushed.Time.Sub(sentAt) < e2e.PushGrace {
		t.Fatalf("the live browser was pushed %v after the send, before the grace (%v)", pushed.Time.Sub(sentAt), e2e.PushGrace)
	}
	time.Sleep(e2e.PushGrace)
	if n := len(prov.FCMFor(fcmTok)); n != 2 {
		t.Fatalf("the tablet received the message live and acked it, yet was pushed (%d FCM requests)", n)
	}
	if pp, aps := e2e.APNsParley(t, prov.APNsFor(apnsTok)[1]); pp["count"] != "1" || aps["badge"] != float64(1) {
		t.Fatalf("after the read, one new message: %s", prov.APNsFor(apnsTok)[1].Body)
	}
	tc.Close()
	bc.Close()

	// 4. The trace of that message, read by an admin: the phone's send,
	// the tablet's delivered skip, then the phone's fetch once it reads
	// history.
	if out, err := exec.Command(e2e.Bin(), "admin", "grant", "alice", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	traceURL := fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.Base, conv, seq)
	e2e.MustAPI(t, 403, "GET", traceURL, phone.Token, nil)
	e2e.MustAPI(t, 200, "GET", srv.Base+"/v1/conversations/"+conv+"/messages", phone.Token, nil)
	var stages []string
	e2e.Eventually(t, 30*time.Second, "the phone's fetch in the trace", func() bool {
		stages = e2e.TraceStages(t, e2e.MustAPI(t, 200, "GET", traceURL, alice.Token, nil))
		return hasStage(stages, "fetched", phone.ID)
	})
	for _, want := range [][2]string{{"committed", ""}, {"enqueued", ""}, {"fanned_out", ""}, {"queued", phone.ID}, {"sent", phone.ID},
		{"waiting", tablet.ID}, {"skipped", tablet.ID}, {"waiting", browser.ID}, {"sent", browser.ID}} {
		if !hasStage(stages, want[0], want[1]) {
			t.Fatalf("trace lacks %v: %v", want, stages)
		}
	}
	t.Logf("trace of seq %d: %v", seq, stages)

	// 5. Muted, then do-not-disturb: no pushes; the trace says why.
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	muted := e2e.MustAPI(t, 200, "PUT", srv.Base+"/v1/conversations/"+conv+"/mute", phone.Token, map[string]any{"until": until})
	if muted["conversation"].(map[string]any)["muted_until"] == nil {
		t.Fatalf("mute not shown: %v", muted)
	}
	before := len(prov.APNs.Requests()) + len(prov.FCM.Requests()) + len(prov.WebPush.Requests())
	seq = e2e.SendText(t, srv.Base, alice.Token, conv, "m4", "muted")
	time.Sleep(3 * e2e.PushCollapse)
	if after := len(prov.APNs.Requests()) + len(prov.FCM.Requests()) + len(prov.WebPush.Requests()); after != before {
		t.Fatalf("a muted conversation was pushed (%d requests)", after-before)
	}
	stages = e2e.TraceStages(t, e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.Base, conv, seq), alice.Token, nil))
	if !hasStage(stages, "skipped", phone.ID) {
		t.Fatalf("trace of a muted message: %v", stages)
	}
	e2e.MustAPI(t, 200, "PUT", srv.Base+"/v1/conversations/"+conv+"/mute", phone.Token, map[string]any{"until": nil})
	e2e.MustAPI(t, 400, "PUT", srv.Base+"/v1/me/dnd", phone.Token, map[string]any{"until": "yesterday"})
	if d := e2e.MustAPI(t, 200, "PUT", srv.Base+"/v1/me/dnd", phone.Token, map[string]any{"until": until}); d["dnd_until"] == nil {
		t.Fatalf("dnd not set: %v", d)
	}
	if me := e2e.MustAPI(t, 200, "GET", srv.Base+"/v1/me", tablet.Token, nil); me["dnd_until"] == nil {
		t.Fatalf("GET /v1/me lacks dnd_until: %v", me)
	}
	e2e.SendText(t, srv.Base, alice.Token, conv, "m5", "do not disturb")
	time.Sleep(3 * e2e.PushCollapse)
	if after := len(prov.APNs.Requests()) + len(prov.FCM.Requests()) + len(prov.WebPush.Requests()); after != before {
		t.Fatalf("a user in do-not-disturb was pushed (%d requests)", after-before)
	}
	e2e.MustAPI(t, 200, "PUT", srv.Base+"/v1/me/dnd", phone.Token, map[string]any{"until": nil})
	e2e.SendText(t, srv.Base, alice.Token, conv, "m6", "back")
	e2e.Eventually(t, 30*time.Second, "pushes after do-not-disturb", func() bool { return len(prov.APNsFor(apnsTok)) >= 3 })
	// The count and badge include what waited meanwhile: seqs 4 to 7 are
	// unread (4 was delivered to the tablet, not read).
	if pp, _ := e2e.APNsParley(t, prov.APNsFor(apnsTok)[2]); pp["count"] != "4" || pp["badge"] != "4" || pp["seq"] != "7" {
		t.Fatalf("after do-not-disturb: %s", prov.APNsFor(apnsTok)[2].Body)
	}
	// The fake provider has the request before the role has its answer
	// and counts it: wait for the counters.
	e2e.Eventually(t, 30*time.Second, "parley_push_sent_total and parley_push_latency_seconds_count for apns at 3", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_sent_total{kind="message",provider="apns"}`) >= 3 &&
			e2e.MetricValue(t, srv.Base, `parley_push_latency_seconds_count{provider="apns"}`) >= 3
	})
	if v := e2e.MetricValue(t, srv.Base, `parley_push_skipped_total{reason="muted"}`); v < 1 {
		t.Fatalf("muted skips: %v", v)
	}
	metrics := e2e.GetText(t, srv.Base+"/metrics")
	for _, gauge := range []string{"parley_push_queue_depth ", "parley_push_queue_oldest_seconds "} {
		if !strings.Contains(metrics, "\n"+gauge) {
			t.Fatalf("no %s gauge", gauge)
		}
	}
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
	prov := e2e.StartProviders(t)
	data := t.TempDir()
	srv := e2e.StartParleyd(t, data, append(prov.Env, "PARLEY_PUSH_ATTEMPTS=3"))
	prov.TrustVAPID(t, srv.Base)
	e2e.Signup(t, srv.Base, "alice")
	bobID, _ := e2e.Signup(t, srv.Base, "bob")
	alice := e2e.LoginDevice(t, srv.Base, "alice", "laptop")
	gone := prov.RegisterAPNs(t, srv.Base, e2e.LoginDevice(t, srv.Base, "bob", "old phone"))
	failing := prov.RegisterAPNs(t, srv.Base, e2e.LoginDevice(t, srv.Base, "bob", "phone"))
	limited := prov.RegisterFCM(t, srv.Base, e2e.LoginDevice(t, srv.Base, "bob", "tablet"))
	sub := prov.RegisterWebPush(t, srv.Base, e2e.LoginDevice(t, srv.Base, "bob", "browser"))
	prov.APNs.Fail(gone, pushtest.Answer{Status: 410, Reason: "Unregistered"})
	prov.APNs.Fail(failing, pushtest.Answer{Status: 500}, pushtest.Answer{Status: 500}, pushtest.Answer{Status: 500})
	prov.FCM.Fail(limited, pushtest.Answer{Status: 429, Reason: "QUOTA_EXCEEDED", RetryAfter: 2})
	prov.WebPush.Fail(sub.Endpoint, pushtest.Answer{Status: 500})
	conv := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	seq := e2e.SendText(t, srv.Base, alice.Token, conv, "m1", "hello")

	e2e.Eventually(t, 30*time.Second, "every retry", func() bool {
		return len(prov.APNsFor(failing)) >= 3 && len(prov.FCMFor(limited)) >= 2 && len(prov.WebPushFor(sub)) >= 2
	})
	e2e.Eventually(t, 5*time.Second, "the dead letter", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_dead_letter_total{provider="apns"}`) == 1
	})
	time.Sleep(time.Second) // no further attempt may come
	if r := prov.APNsFor(failing); len(r) != 3 || r[2].Status != 500 {
		t.Fatalf("APNs 500s: %d requests, want the 3 attempts", len(r))
	}
	fr := prov.FCMFor(limited)
	if len(fr) != 2 || fr[0].Status != 429 || fr[1].Status != 200 {
		t.Fatalf("FCM 429 then success: %+v", fr)
	}
	if gap := fr[1].Time.Sub(fr[0].Time); gap < 2*time.Second {
		t.Fatalf("FCM retried %v after a 429 with Retry-After: 2", gap)
	}
	if wr := prov.WebPushFor(sub); len(wr) != 2 || wr[0].Status != 500 || wr[1].Status != 201 {
		t.Fatalf("Web Push 500 then success: %+v", wr)
	}
	if r := prov.APNsFor(gone); len(r) != 1 || r[0].Status != 410 {
		t.Fatalf("APNs 410: %+v", r)
	}
	if v := e2e.MetricValue(t, srv.Base, `parley_push_failed_total{provider="apns",reason="unregistered"}`); v != 1 {
		t.Fatalf("unregistered metric: %v", v)
	}
	if v := e2e.MetricValue(t, srv.Base, `parley_push_failed_total{provider="fcm",reason="retry"}`); v != 1 {
		t.Fatalf("FCM retry metric: %v", v)
	}
	// The trace tells the whole story.
	if out, err := exec.Command(e2e.Bin(), "admin", "grant", "alice", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	stages := e2e.TraceStages(t, e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", srv.Base, conv, seq), alice.Token, nil))
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
	e2e.SendText(t, srv.Base, alice.Token, conv, "m2", "again")
	e2e.Eventually(t, 30*time.Second, "the second message's pushes", func() bool {
		return len(prov.APNsFor(failing)) >= 4 && len(prov.FCMFor(limited)) >= 3 && len(prov.WebPushFor(sub)) >= 3
	})
	if r := prov.APNsFor(gone); len(r) != 1 {
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
	e2e.Signup(t, gw.Base, "alice")
	alice := e2e.LoginDevice(t, gw.Base, "alice", "laptop")
	const devices, rounds = 12, 4
	tokens := make([]string, devices)
	convs := make([]string, devices)
	for i := range devices {
		id, _ := e2e.Signup(t, gw.Base, fmt.Sprint("bob", i))
		tokens[i] = prov.RegisterAPNs(t, gw.Base, e2e.LoginDevice(t, gw.Base, fmt.Sprint("bob", i), "phone"))
		convs[i] = e2e.MustAPI(t, 201, "POST", gw.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{id}})["conversation"].(map[string]any)["id"].(string)
	}
	var killedAt time.Time
	for r := range rounds {
		for i := range devices {
			e2e.SendText(t, gw.Base, alice.Token, convs[i], fmt.Sprint("r", r, "-", i), "burst")
		}
		if r != 0 {
			time.Sleep(400 * time.Millisecond)
			continue
		}
		// Round 0's notifications fall due after the collapse window and
		// go out, each answered after the fake's 150 ms: kill once the
		// first is at the provider (not after a fixed time: under load the
		// fan-out may not have started by then).
		e2e.Eventually(t, 30*time.Second, "round 0's first notification at the provider", func() bool {
			for _, tok := range tokens {
				if len(prov.APNsFor(tok)) > 0 {
					return true
				}
			}
			return false
		})
		pusher.Kill()
		killedAt = time.Now()
		time.Sleep(300 * time.Millisecond)
		if err := pusher.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	last := fmt.Sprint(rounds)
	e2e.Eventually(t, 90*time.Second, "every device's notification of its last message", func() bool {
		for _, tok := range tokens {
			rs := prov.APNsFor(tok)
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
		for _, r := range prov.APNsFor(tok) {
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
		rs := prov.APNsFor(tok)
		if pp, aps := e2e.APNsParley(t, rs[len(rs)-1]); pp["count"] != last || aps["badge"] != float64(rounds) {
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
	prov := e2e.StartProviders(t)
	// 5 s: the first send (after the 1 s collapse) must come before the
	// TTL even on a loaded machine; the retry the provider asks for, 8 s
	// on, comes after it.
	srv := e2e.StartParleyd(t, t.TempDir(), append(prov.Env, "PARLEY_PUSH_TTL=5s"))
	prov.TrustVAPID(t, srv.Base)
	e2e.Signup(t, srv.Base, "alice")
	bobID, _ := e2e.Signup(t, srv.Base, "bob")
	alice := e2e.LoginDevice(t, srv.Base, "alice", "laptop")
	sub := prov.RegisterWebPush(t, srv.Base, e2e.LoginDevice(t, srv.Base, "bob", "browser"))
	prov.WebPush.Fail(sub.Endpoint, pushtest.Answer{Status: 503, RetryAfter: 8})
	conv := e2e.MustAPI(t, 201, "POST", srv.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	e2e.SendText(t, srv.Base, alice.Token, conv, "m1", "hello")
	e2e.Eventually(t, 30*time.Second, "the TTL drop", func() bool {
		return e2e.MetricValue(t, srv.Base, `parley_push_dropped_total{reason="ttl"}`) == 1
	})
	if r := prov.WebPushFor(sub); len(r) != 1 || r[0].Status != 503 || r[0].TTL > 5 {
		t.Fatalf("want one failed request with TTL at most 5s: %+v", r)
	}
}

// TestPushLiveAcrossNodes: the push role runs on a node of its own and
// learns from the gateway node which devices are live (the presence
// directory names the node; the node answers for its sessions). Bob's
// tablet, connected to the gateway and acking, gets no push; his offline
// phone is pushed after the collapse window, not the grace.
func TestPushLiveAcrossNodes(t *testing.T) {
	prov, gw, _ := startPushCluster(t, 0)
	e2e.Signup(t, gw.Base, "alice")
	bobID, _ := e2e.Signup(t, gw.Base, "bob")
	alice := e2e.LoginDevice(t, gw.Base, "alice", "laptop")
	phone, tablet := e2e.LoginDevice(t, gw.Base, "bob", "phone"), e2e.LoginDevice(t, gw.Base, "bob", "tablet")
	apnsTok, fcmTok := prov.RegisterAPNs(t, gw.Base, phone), prov.RegisterFCM(t, gw.Base, tablet)
	conv := e2e.MustAPI(t, 201, "POST", gw.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	tc := e2e.Connect(t, gw.Base, tablet)
	defer tc.Close()
	time.Sleep(500 * time.Millisecond) // the push node's presence mirror sees bob

	sentAt := time.Now()
	seq := e2e.SendText(t, gw.Base, alice.Token, conv, "m1", "hi")
	if m := e2e.ExpectMessage(t, tc); m.Seq != seq {
		t.Fatalf("tablet got seq %d", m.Seq)
	}
	// The tablet acks after the collapse window, within the grace: only
	// a push role that knows it is live waits long enough.
	time.Sleep(time.Until(sentAt.Add(e2e.PushGrace / 2)))
	tc.MustWrite(map[string]any{"type": "delivered", "id": "d1", "conversation_id": conv, "seq": seq})
	e2e.Eventually(t, 30*time.Second, "the phone's push", func() bool { return len(prov.APNsFor(apnsTok)) == 1 })
	if after := prov.APNsFor(apnsTok)[0].Time.Sub(sentAt); after >= e2e.PushGrace {
		t.Fatalf("the offline phone was pushed %v after the send: treated as live", after)
	}
	time.Sleep(e2e.PushGrace + time.Second)
	if n := len(prov.FCMFor(fcmTok)); n != 0 {
		t.Fatalf("the live tablet on the other node was pushed %d times", n)
	}
	// The trace shows the push node knew: the tablet waited out the
	// grace (live), the phone was queued (not live).
	grant := exec.Command(e2e.Bin(), "admin", "grant", "alice", "--data", t.TempDir())
	grant.Env = append(os.Environ(), gw.Env...)
	if out, err := grant.CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	stages := e2e.TraceStages(t, e2e.MustAPI(t, 200, "GET", fmt.Sprintf("%s/v1/admin/push/trace?conversation_id=%s&seq=%d", gw.Base, conv, seq), alice.Token, nil))
	for _, want := range [][2]string{{"queued", phone.ID}, {"sent", phone.ID}, {"waiting", tablet.ID}, {"skipped", tablet.ID}} {
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
	e2e.Signup(t, gw.Base, "alice")
	bobID, _ := e2e.Signup(t, gw.Base, "bob")
	alice := e2e.LoginDevice(t, gw.Base, "alice", "laptop")
	tok := prov.RegisterAPNs(t, gw.Base, e2e.LoginDevice(t, gw.Base, "bob", "phone"))
	conv := e2e.MustAPI(t, 201, "POST", gw.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	e2e.SendText(t, gw.Base, alice.Token, conv, "m1", "are you awake?")
	e2e.Eventually(t, 30*time.Second, "the request in flight", func() bool { return len(prov.APNsFor(tok)) == 1 })
	pusher.Kill()
	killedAt := time.Now()
	if err := pusher.Restart(); err != nil {
		t.Fatal(err)
	}
	prov.APNs.SetDelay(0)
	e2e.Eventually(t, 90*time.Second, "the notification sent again", func() bool { return len(prov.APNsFor(tok)) >= 2 })
	time.Sleep(3 * time.Second) // no third
	rs := prov.APNsFor(tok)
	if len(rs) != 2 || !rs[0].Abandoned || rs[1].Abandoned || rs[1].Status != 200 {
		t.Fatalf("want the abandoned request and one answered resend: %+v", rs)
	}
	p0, _ := e2e.APNsParley(t, rs[0])
	p1, _ := e2e.APNsParley(t, rs[1])
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
	prov := e2e.StartProviders(t)
	env := append(e2e.ClusterEnv(t), prov.Env...)
	gw1 := e2e.StartParleyd(t, t.TempDir(), env, "--roles", "gateway,worker")
	gw2 := e2e.StartParleyd(t, t.TempDir(), env, "--roles", "gateway")
	e2e.StartParleyd(t, t.TempDir(), env, "--roles", "push")
	e2e.Signup(t, gw1.Base, "alice")
	bobID, _ := e2e.Signup(t, gw1.Base, "bob")
	carolID, _ := e2e.Signup(t, gw1.Base, "carol")
	alice := e2e.LoginDevice(t, gw1.Base, "alice", "laptop")
	bobPhone := e2e.LoginDevice(t, gw2.Base, "bob", "phone")
	carolPhone := e2e.LoginDevice(t, gw2.Base, "carol", "phone")
	// alice's socket on gw1 is the barrier for gw1's view: the view has
	// taken a conversation event (and dropped what it knew of the
	// conversation's members) before the event's frame reaches her.
	ac := e2e.Connect(t, gw1.Base, alice)
	defer ac.Close()
	untilConv := func(action, id string) {
		t.Helper()
		for f := e2e.UntilFrame(t, ac, "conversation"); !strings.Contains(string(f.Raw), `"`+action+`"`) || !strings.Contains(string(f.Raw), id); {
			f = e2e.UntilFrame(t, ac, "conversation")
		}
	}
	direct := e2e.MustAPI(t, 201, "POST", gw1.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "direct", "members": []string{bobID}})["conversation"].(map[string]any)["id"].(string)
	untilConv("created", direct)
	e2e.Eventually(t, 30*time.Second, "gw1's view loaded", func() bool { return e2e.MetricValue(t, gw1.Base, "parley_push_view_ready") == 1 })

	// Nobody but alice could be pushed: once the view has read the
	// members (the first message starts the read and is enqueued
	// meanwhile), no job.
	sent := 0
	e2e.Eventually(t, 30*time.Second, "gw1's view to know the conversation's members", func() bool {
		e2e.SendText(t, gw1.Base, alice.Token, direct, fmt.Sprint("a", sent), "nobody to wake")
		sent++
		return e2e.MetricValue(t, gw1.Base, "parley_push_jobs_avoided_total") >= 1
	})
	base := e2e.MetricValue(t, gw1.Base, "parley_push_jobs_avoided_total")
	for range 3 {
		e2e.SendText(t, gw1.Base, alice.Token, direct, fmt.Sprint("a", sent), "nobody to wake")
		sent++
	}
	if n := e2e.MetricValue(t, gw1.Base, "parley_push_jobs_avoided_total"); n != base+3 {
		t.Fatalf("gw1 avoided %v jobs of 3 messages no registered device needed, want 3", n-base)
	}

	// Bob registers through gw2; alice's next message, through gw1, wakes
	// him.
	// (When gw1 hears of the registration it also revisits the last
	// message it judged, so a notification of that one may come first:
	// what matters is that the new message's comes.)
	bobTok := prov.RegisterAPNs(t, gw2.Base, bobPhone)
	seq := e2e.SendText(t, gw1.Base, alice.Token, direct, "after", "wake up")
	e2e.Eventually(t, 30*time.Second, "bob's push of the new message", func() bool {
		rs := prov.APNsFor(bobTok)
		if len(rs) == 0 {
			return false
		}
		pp, _ := e2e.APNsParley(t, rs[len(rs)-1])
		return pp["seq"] == fmt.Sprint(seq)
	})
	if rs := prov.APNsFor(bobTok); len(rs) > 2 {
		t.Fatalf("bob got %d notifications, want at most 2", len(rs))
	} else if pp, _ := e2e.APNsParley(t, rs[len(rs)-1]); pp["count"] != fmt.Sprint(sent+1) {
		t.Fatalf("bob's notification: %s; want a count of %d", rs[len(rs)-1].Body, sent+1)
	}

	// A group of alice and dave (no registration); carol, registered,
	// joins through gw2: alice's next message through gw1 wakes her.
	carolTok := prov.RegisterAPNs(t, gw2.Base, carolPhone)
	daveID, _ := e2e.Signup(t, gw1.Base, "dave")
	group := e2e.MustAPI(t, 201, "POST", gw1.Base+"/v1/conversations", alice.Token, map[string]any{"kind": "group", "title": "g", "members": []string{daveID}})["conversation"].(map[string]any)["id"].(string)
	for i := range 3 {
		e2e.SendText(t, gw1.Base, alice.Token, group, fmt.Sprint("g", i), "dave only")
		time.Sleep(50 * time.Millisecond)
	}
	avoided := e2e.MetricValue(t, gw1.Base, "parley_push_jobs_avoided_total")
	e2e.MustAPI(t, 201, "POST", gw2.Base+"/v1/conversations/"+group+"/members", alice.Token, map[string]any{"user_id": carolID})
	untilConv("member_added", group)
	e2e.SendText(t, gw1.Base, alice.Token, group, "g-after", "carol too")
	e2e.Eventually(t, 30*time.Second, "carol's push", func() bool { return len(prov.APNsFor(carolTok)) == 1 })
	if n := e2e.MetricValue(t, gw1.Base, "parley_push_jobs_avoided_total"); n != avoided {
		t.Fatalf("gw1 avoided the job of a message to a registered member (%v, was %v)", n, avoided)
	}
}
