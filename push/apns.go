package push

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"

	"github.com/parleychat/parley"
)

// APNsConfig configures the APNs provider: token authentication with a
// .p8 key from the Apple developer account.
type APNsConfig struct {
	KeyFile string // the .p8 file (PKCS#8 ES256 private key)
	KeyID   string // the key's id (10 characters)
	TeamID  string // the developer team id (10 characters)
	// URL, if set, replaces both APNs hosts (a local test server).
	URL string
	TLS *tls.Config
}

// APNs sends through Apple's HTTP/2 provider API (sideshow/apns2).
type APNs struct {
	production, sandbox *apns2.Client
	// Each environment's sends share one HTTP/2 connection (connGate).
	productionGate, sandboxGate *connGate
}

// NewAPNs loads the key and builds the clients of both environments.
func NewAPNs(cfg APNsConfig) (*APNs, error) {
	key, err := token.AuthKeyFromFile(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("push: APNs key: %w", err)
	}
	if cfg.KeyID == "" || cfg.TeamID == "" {
		return nil, fmt.Errorf("push: APNs needs the key id and the team id")
	}
	tok := &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}
	client := func(host string) *apns2.Client {
		c := apns2.NewTokenClient(tok)
		c.Host = host
		if cfg.URL != "" {
			c.Host = cfg.URL
		}
		// APNs speaks HTTP/2 only; ping an idle connection as apns2's
		// own transport does.
		t := &http.Transport{TLSClientConfig: cfg.TLS, ForceAttemptHTTP2: true, IdleConnTimeout: 5 * time.Minute,
			HTTP2: &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 15 * time.Second}}
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP2(true)
		c.HTTPClient = &http.Client{Transport: captureRetryAfter{t}, Timeout: sendTimeout}
		return c
	}
	return &APNs{production: client(apns2.HostProduction), sandbox: client(apns2.HostDevelopment),
		productionGate: newConnGate(), sandboxGate: newConnGate()}, nil
}

// Name implements Provider.
func (*APNs) Name() parley.PushProvider { return parley.PushAPNs }

// apnsPayload is the JSON body: the aps dictionary and Parley's fields.
type apnsPayload struct {
	APS    apsDict           `json:"aps"`
	Parley map[string]string `json:"parley"`
}

type apsDict struct {
	Alert            *apsAlert `json:"alert,omitempty"`
	Badge            *int64    `json:"badge,omitempty"`
	Sound            string    `json:"sound,omitempty"`
	ThreadID         string    `json:"thread-id,omitempty"`
	MutableContent   int       `json:"mutable-content,omitempty"`
	ContentAvailable int       `json:"content-available,omitempty"`
}

type apsAlert struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body"`
}

// apnsNotification builds the request for n: a message is a visible alert
// (generic text, mutable-content for the app's notification service
// extension) collapsed per conversation; a read update is a silent
// background push carrying the new badge.
func apnsNotification(reg *parley.PushRegistration, n *Notification) *apns2.Notification {
	badge := n.Badge
	p := apnsPayload{APS: apsDict{Badge: &badge}, Parley: n.Data()}
	out := &apns2.Notification{DeviceToken: reg.Token, Topic: reg.Topic, Expiration: n.Expires}
	if n.Kind == KindMessage {
		body := n.alertText()
		if n.Preview != "" {
			body = n.Preview
		}
		p.APS.Alert = &apsAlert{Title: n.SenderName, Body: body}
		p.APS.Sound = "default"
		p.APS.ThreadID = n.ConversationID
		p.APS.MutableContent = 1
		out.PushType = apns2.PushTypeAlert
		out.Priority = apns2.PriorityHigh
		out.CollapseID = n.collapseID()
	} else {
		p.APS.ContentAvailable = 1
		out.PushType = apns2.PushTypeBackground
		out.Priority = apns2.PriorityLow
	}
	out.Payload, _ = json.Marshal(p) // fixed types: cannot fail
	return out
}

// Send implements Provider.
func (a *APNs) Send(ctx context.Context, reg *parley.PushRegistration, n *Notification) Result {
	c, gate := a.production, a.productionGate
	if reg.Environment == "sandbox" {
		c, gate = a.sandbox, a.sandboxGate
	}
	var retryAfter time.Duration
	ctx = context.WithValue(ctx, retryAfterKey{}, &retryAfter)
	var resp *apns2.Response
	var err error
	gate.do(ctx, func() bool {
		resp, err = c.PushWithContext(ctx, apnsNotification(reg, n))
		return err == nil
	})
	if err != nil {
		return Result{Outcome: Retry, Reason: "network: " + err.Error()}
	}
	r := Result{Status: resp.StatusCode, Reason: resp.Reason, RetryAfter: retryAfter, ID: resp.ApnsID}
	switch resp.Reason {
	case apns2.ReasonUnregistered, apns2.ReasonBadDeviceToken, apns2.ReasonDeviceTokenNotForTopic, apns2.ReasonExpiredToken:
		r.Outcome = Unregistered
		return r
	}
	r.Outcome = classifyStatus(resp.StatusCode)
	if r.Outcome == Unregistered && resp.StatusCode == http.StatusNotFound {
		r.Outcome = Rejected // APNs 404: a bad :path, not a bad token
	}
	return r
}
