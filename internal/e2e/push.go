package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/parleychat/parley/push/pushtest"
)

// Providers are local servers speaking APNs, FCM and Web Push, and the
// parleyd environment that points the push role at them.
type Providers struct {
	APNs    *pushtest.APNs
	FCM     *pushtest.FCM
	WebPush *pushtest.WebPush
	Env     []string
}

// PushCollapse and PushGrace are the push timings for tests: the collapse
// window (long enough that a burst of REST sends on a loaded CI machine
// falls in one) and the delivered grace of live devices (long enough that
// a test's ack at half of it falls, with seconds to spare on a loaded
// machine, after the fan-out has looked and before the grace is over).
const (
	PushCollapse = time.Second
	PushGrace    = 6 * time.Second
)

// StartProviders runs the three fake providers for the test.
func StartProviders(t *testing.T) *Providers {
	t.Helper()
	p := &Providers{APNs: pushtest.NewAPNs(t), FCM: pushtest.NewFCM(t), WebPush: pushtest.NewWebPush(t)}
	ca := filepath.Join(t.TempDir(), "providers-ca.pem")
	pem := append(append(p.APNs.CertPEM(), p.FCM.CertPEM()...), p.WebPush.CertPEM()...)
	if err := os.WriteFile(ca, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	p.Env = []string{
		"PARLEY_LIMITS=off",
		"PARLEY_PUSH_CA_FILE=" + ca,
		"PARLEY_APNS_KEY_FILE=" + p.APNs.KeyFile(),
		"PARLEY_APNS_KEY_ID=" + p.APNs.KeyID(),
		"PARLEY_APNS_TEAM_ID=" + p.APNs.TeamID(),
		"PARLEY_APNS_URL=" + p.APNs.URL(),
		"PARLEY_FCM_CREDENTIALS=" + p.FCM.CredentialsFile(),
		"PARLEY_FCM_URL=" + p.FCM.Endpoint(),
		"PARLEY_VAPID_SUBJECT=mailto:ops@example.com",
		"PARLEY_APNS_TOPICS=com.example.parley",
		// The fakes listen on 127.0.0.1, a blocked range for Web Push
		// endpoints unless allowed.
		"PARLEY_OUTBOUND_ALLOW=127.0.0.1",
		"PARLEY_PUSH_COLLAPSE=" + PushCollapse.String(),
		"PARLEY_PUSH_DELIVERED_GRACE=" + PushGrace.String(),
		"PARLEY_PUSH_RETRY_BASE=200ms",
	}
	return p
}

// TrustVAPID tells the Web Push fake the server's VAPID public key.
func (p *Providers) TrustVAPID(t *testing.T, base string) {
	t.Helper()
	p.WebPush.SetVAPIDPublicKey(MustAPI(t, 200, "GET", base+"/v1/push/vapid", "", nil)["public_key"].(string))
}

// RegisterAPNs registers d for APNs and returns its token.
func (p *Providers) RegisterAPNs(t *testing.T, base string, d Device) string {
	t.Helper()
	tok := p.APNs.NewToken()
	MustAPI(t, 200, "PUT", base+"/v1/devices/current/push", d.Token, map[string]any{"provider": "apns", "token": tok, "topic": "com.example.parley", "environment": "production"})
	return tok
}

// RegisterFCM registers d for FCM and returns its token.
func (p *Providers) RegisterFCM(t *testing.T, base string, d Device) string {
	t.Helper()
	tok := p.FCM.NewToken()
	MustAPI(t, 200, "PUT", base+"/v1/devices/current/push", d.Token, map[string]any{"provider": "fcm", "token": tok})
	return tok
}

// RegisterWebPush registers d for Web Push and returns its subscription.
func (p *Providers) RegisterWebPush(t *testing.T, base string, d Device) pushtest.Subscription {
	t.Helper()
	sub := p.WebPush.NewSubscription()
	MustAPI(t, 200, "PUT", base+"/v1/devices/current/push", d.Token, map[string]any{"provider": "webpush", "subscription": sub})
	return sub
}

// APNsFor, FCMFor and WebPushFor are the requests a provider received for one
// device.
func (p *Providers) APNsFor(token string) []pushtest.APNsRequest {
	return Only(p.APNs.Requests(), func(r pushtest.APNsRequest) bool { return r.Token == token })
}

func (p *Providers) FCMFor(token string) []pushtest.FCMRequest {
	return Only(p.FCM.Requests(), func(r pushtest.FCMRequest) bool { return r.Token == token })
}

func (p *Providers) WebPushFor(sub pushtest.Subscription) []pushtest.WebPushRequest {
	return Only(p.WebPush.Requests(), func(r pushtest.WebPushRequest) bool { return r.Endpoint == sub.Endpoint })
}

// Only is the elements of rs that keep accepts.
func Only[R any](rs []R, keep func(R) bool) []R {
	var out []R
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// APNsParley returns the "parley" dictionary of an APNs payload and the
// aps dictionary.
func APNsParley(t *testing.T, r pushtest.APNsRequest) (parley map[string]any, aps map[string]any) {
	t.Helper()
	parley, _ = r.Payload["parley"].(map[string]any)
	aps, _ = r.Payload["aps"].(map[string]any)
	if parley == nil || aps == nil {
		t.Fatalf("apns payload without parley or aps: %s", r.Body)
	}
	return parley, aps
}

// SendText sends body over REST and returns its seq.
func SendText(t *testing.T, base, token, conv, clientID, body string) int64 {
	t.Helper()
	m := MustAPI(t, 201, "POST", base+"/v1/conversations/"+conv+"/messages", token, map[string]any{"client_msg_id": clientID, "body": body})
	return int64(m["message"].(map[string]any)["seq"].(float64))
}

// MetricValue reads one sample of a metric (with its labels as written,
// e.g. `{provider="apns"}`), 0 if absent.
func MetricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(GetText(t, base+"/metrics"))
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TraceStages lists a trace's events as "stage device".
func TraceStages(t *testing.T, body map[string]any) []string {
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
