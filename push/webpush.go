package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/parleychat/parley"
)

// WebPushConfig configures Web Push (RFC 8030, 8291, 8292).
type WebPushConfig struct {
	// PublicKey and PrivateKey are the server's VAPID key pair in
	// unpadded base64url (the public key as browsers subscribed with).
	PublicKey, PrivateKey string
	// Subject is the VAPID contact: a mailto: or https: URL.
	Subject string
	// Client sends the requests. Endpoints are chosen by users, so it
	// must be the outbound client (package outbound: no blocked
	// addresses, no proxy, no redirects, capped bodies). Required.
	Client *http.Client
}

// WebPush sends to browsers' push services
// (github.com/SherClockHolmes/webpush-go). Nothing of a response but its
// status and headers is kept: the body is drained (a few KiB at most) and
// dropped, never logged, traced or dead-lettered.
type WebPush struct {
	cfg    WebPushConfig
	client *http.Client
	gates  connGates // per endpoint host: sends share a connection
}

// NewWebPush builds the provider.
func NewWebPush(cfg WebPushConfig) *WebPush {
	// webpush-go puts "mailto:" before any subject not starting with
	// https:, so a mailto: subject is given without it.
	cfg.Subject = strings.TrimPrefix(cfg.Subject, "mailto:")
	if cfg.Client == nil {
		// webpush-go would fall back to a plain http.Client: proxies, any
		// address. Endpoints are users' choice: only the outbound client.
		panic("push: WebPushConfig.Client is required (outbound.NewClient)")
	}
	return &WebPush{cfg: cfg, client: cfg.Client}
}

// Name implements Provider.
func (*WebPush) Name() parley.PushProvider { return parley.PushWebPush }

// webPushTopic is the Topic header that replaces a pending message of the
// same conversation: at most 32 base64url characters, so the
// conversation's UUID without its hyphens.
func webPushTopic(conversationID string) string {
	t := strings.ReplaceAll(conversationID, "-", "")
	if len(t) > 32 {
		t = t[:32]
	}
	return t
}

// Send implements Provider. The body is the notification's data as JSON,
// encrypted for the subscription (aes128gcm).
func (w *WebPush) Send(ctx context.Context, reg *parley.PushRegistration, n *Notification) Result {
	s := reg.Subscription
	if s == nil {
		return Result{Outcome: Rejected, Reason: "no subscription"}
	}
	body, _ := json.Marshal(n.Data()) // a string map: cannot fail
	urgency := webpush.UrgencyHigh
	if n.Kind == KindRead {
		urgency = webpush.UrgencyNormal
	}
	ttl := int(max(time.Until(n.Expires), 0) / time.Second)
	var resp *http.Response
	var err error
	w.gates.get(webPushHost(reg)).do(ctx, func() bool {
		resp, err = webpush.SendNotificationWithContext(ctx, body, &webpush.Subscription{
			Endpoint: s.Endpoint, Keys: webpush.Keys{Auth: s.Keys.Auth, P256dh: s.Keys.P256dh},
		}, &webpush.Options{
			HTTPClient: w.client, Subscriber: w.cfg.Subject, TTL: ttl, Topic: webPushTopic(n.ConversationID), Urgency: urgency,
			VAPIDPublicKey: w.cfg.PublicKey, VAPIDPrivateKey: w.cfg.PrivateKey,
		})
		return err == nil
	})
	var urlErr *url.Error
	if err != nil && !errors.As(err, &urlErr) {
		// Not sent: the subscription's keys do not work (encryption) or
		// the request could not be made. Retrying would not help.
		return Result{Outcome: Rejected, Reason: "request not made: " + err.Error()}
	}
	if err != nil {
		return Result{Outcome: Retry, Reason: networkReason(err)}
	}
	defer resp.Body.Close()
	// Drain a little so the connection can be reused; keep none of it.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	r := Result{Status: resp.StatusCode, Outcome: classifyStatus(resp.StatusCode),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	if r.Outcome == Accepted {
		r.ID = shortHeader(resp.Header.Get("Location"))
	} else {
		r.Reason = strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode)))
	}
	return r
}

// networkReason describes a request that got no answer, without the URL
// (a user's) or anything a server sent.
func networkReason(err error) string {
	var blocked interface{ BlockedAddr() string }
	switch {
	case errors.As(err, &blocked):
		return "destination refused: " + blocked.BlockedAddr()
	case errors.Is(err, context.DeadlineExceeded):
		return "network: timeout"
	case errors.Is(err, context.Canceled):
		return "network: canceled"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "network: DNS lookup failed"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return "network: " + opErr.Op + " failed"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "network: timeout"
	}
	return "network: request failed"
}

// shortHeader keeps a header value a server chose within 256 bytes of
// printable ASCII (it goes into traces).
func shortHeader(v string) string {
	if len(v) > 256 {
		v = v[:256]
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return ""
		}
	}
	return v
}
