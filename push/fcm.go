package push

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/parleychat/parley"
)

// FCMConfig configures the FCM HTTP v1 provider with a service account.
type FCMConfig struct {
	// CredentialsFile is the service account's JSON key file.
	CredentialsFile string
	// ProjectID defaults to the service account's project.
	ProjectID string
	// URL, if set, replaces the messaging endpoint
	// (https://fcm.googleapis.com/v1): a local test server.
	URL string
	TLS *tls.Config
}

// FCM sends through Firebase Cloud Messaging (firebase.google.com/go/v4).
type FCM struct {
	client *messaging.Client
}

// fcmScope is the OAuth scope of FCM sends.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// NewFCM reads the service account and builds the client. The OAuth token
// is fetched (and refreshed) from the account's token_uri over the same
// TLS settings as the sends.
func NewFCM(ctx context.Context, cfg FCMConfig) (*FCM, error) {
	raw, err := os.ReadFile(cfg.CredentialsFile)
	if err != nil {
		return nil, fmt.Errorf("push: FCM credentials: %w", err)
	}
	base := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: cfg.TLS, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second}
	tokenCtx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: base, Timeout: sendTimeout})
	creds, err := google.CredentialsFromJSONWithType(tokenCtx, raw, google.ServiceAccount, fcmScope)
	if err != nil {
		return nil, fmt.Errorf("push: FCM credentials: %w", err)
	}
	project := cfg.ProjectID
	if project == "" {
		project = creds.ProjectID
	}
	if project == "" {
		return nil, fmt.Errorf("push: FCM needs a project id (none in the credentials)")
	}
	hc := &http.Client{Transport: &oauth2.Transport{Source: creds.TokenSource, Base: base}, Timeout: sendTimeout}
	opts := []option.ClientOption{option.WithHTTPClient(hc)}
	if cfg.URL != "" {
		opts = append(opts, option.WithEndpoint(cfg.URL))
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: project}, opts...)
	if err != nil {
		return nil, fmt.Errorf("push: FCM: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("push: FCM: %w", err)
	}
	return &FCM{client: client}, nil
}

// Name implements Provider.
func (*FCM) Name() parley.PushProvider { return parley.PushFCM }

// fcmMessage builds the message for n: data-only for Android (the app
// builds the notification), collapsed per conversation; for iOS devices
// registered through FCM, the same alert or silent update as APNs gets.
func fcmMessage(reg *parley.PushRegistration, n *Notification) *messaging.Message {
	ttl := max(time.Until(n.Expires), 0).Truncate(time.Second)
	badge := int(n.Badge)
	m := &messaging.Message{
		Token: reg.Token,
		Data:  n.Data(),
		Android: &messaging.AndroidConfig{
			CollapseKey: n.collapseID(),
			Priority:    "high",
			TTL:         &ttl,
		},
		APNS: &messaging.APNSConfig{
			Headers: map[string]string{"apns-expiration": strconv.FormatInt(n.Expires.Unix(), 10)},
			Payload: &messaging.APNSPayload{Aps: &messaging.Aps{Badge: &badge}},
		},
	}
	if n.Kind == KindMessage {
		body := n.alertText()
		if n.Preview != "" {
			body = n.Preview
		}
		m.APNS.Headers["apns-push-type"] = "alert"
		m.APNS.Headers["apns-priority"] = "10"
		m.APNS.Headers["apns-collapse-id"] = n.collapseID()
		aps := m.APNS.Payload.Aps
		aps.Alert = &messaging.ApsAlert{Title: n.SenderName, Body: body}
		aps.Sound = "default"
		aps.ThreadID = n.ConversationID
		aps.MutableContent = true
	} else {
		m.Android.Priority = "normal"
		m.APNS.Headers["apns-push-type"] = "background"
		m.APNS.Headers["apns-priority"] = "5"
		m.APNS.Payload.Aps.ContentAvailable = true
	}
	return m
}

// Send implements Provider.
func (f *FCM) Send(ctx context.Context, reg *parley.PushRegistration, n *Notification) Result {
	id, err := f.client.Send(ctx, fcmMessage(reg, n))
	if err == nil {
		return Result{Outcome: Accepted, Status: http.StatusOK, ID: id}
	}
	r := Result{Outcome: Rejected, Reason: err.Error()}
	resp := errorutils.HTTPResponse(err)
	if resp == nil {
		r.Outcome = Retry // no answer: network
		return r
	}
	r.Status = resp.StatusCode
	r.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	switch {
	case messaging.IsUnregistered(err), messaging.IsSenderIDMismatch(err):
		r.Outcome, r.Reason = Unregistered, "UNREGISTERED"
		if messaging.IsSenderIDMismatch(err) {
			r.Reason = "SENDER_ID_MISMATCH"
		}
	case messaging.IsQuotaExceeded(err):
		r.Outcome, r.Reason = Retry, "QUOTA_EXCEEDED"
	case messaging.IsUnavailable(err):
		r.Outcome, r.Reason = Retry, "UNAVAILABLE"
	case messaging.IsInternal(err):
		r.Outcome, r.Reason = Retry, "INTERNAL"
	case messaging.IsThirdPartyAuthError(err):
		r.Outcome, r.Reason = Retry, "THIRD_PARTY_AUTH_ERROR"
	default:
		r.Outcome = classifyStatus(resp.StatusCode)
		if r.Outcome == Unregistered {
			r.Outcome = Rejected // only UNREGISTERED says the token is gone
		}
	}
	return r
}
