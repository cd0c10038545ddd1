package push

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
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
	TLS     *tls.Config
}

// WebPush sends to browsers' push services
// (github.com/SherClockHolmes/webpush-go).
type WebPush struct {
	cfg    WebPushConfig
	client *http.Client
}

// NewWebPush builds the provider.
func NewWebPush(cfg WebPushConfig) *WebPush {
	t := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: cfg.TLS, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second}
	// webpush-go puts "mailto:" before any subject not starting with
	// https:, so a mailto: subject is given without it.
	cfg.Subject = strings.TrimPrefix(cfg.Subject, "mailto:")
	return &WebPush{cfg: cfg, client: &http.Client{Transport: t, Timeout: sendTimeout}}
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
	resp, err := webpush.SendNotificationWithContext(ctx, body, &webpush.Subscription{
		Endpoint: s.Endpoint, Keys: webpush.Keys{Auth: s.Keys.Auth, P256dh: s.Keys.P256dh},
	}, &webpush.Options{
		HTTPClient: w.client, Subscriber: w.cfg.Subject, TTL: ttl, Topic: webPushTopic(n.ConversationID), Urgency: urgency,
		VAPIDPublicKey: w.cfg.PublicKey, VAPIDPrivateKey: w.cfg.PrivateKey,
	})
	if err != nil {
		return Result{Outcome: Retry, Reason: "network: " + err.Error()}
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	r := Result{Status: resp.StatusCode, Outcome: classifyStatus(resp.StatusCode),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()), ID: resp.Header.Get("Location")}
	if r.Outcome != Accepted {
		r.Reason = strings.TrimSpace(http.StatusText(resp.StatusCode) + ": " + strings.TrimSpace(string(text)))
	}
	return r
}
