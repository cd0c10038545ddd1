package push

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	fcm "google.golang.org/api/fcm/v1"
	"google.golang.org/api/googleapi"
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
	// (https://fcm.googleapis.com/v1): a local test server. It must end
	// in /v1, as Google's does; sends go to <URL>/projects/<id>/messages:send.
	URL string
	TLS *tls.Config
}

// FCM sends through Firebase Cloud Messaging's HTTP v1 API with Google's
// generated client (google.golang.org/api/fcm/v1), not the Firebase Admin
// SDK, which links Firestore, Cloud Storage and more for one POST.
type FCM struct {
	messages *fcm.ProjectsMessagesService
	parent   string // projects/<project id>
}

// fcmScope is the OAuth scope of FCM sends.
const fcmScope = fcm.FirebaseMessagingScope

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
	// The token source keeps this context for every later fetch: it is
	// the only way to give the fetch our transport.
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
	// The client never logs: a debug level set through the environment
	// (GOOGLE_SDK_GO_LOGGING_LEVEL) would log requests with their data.
	opts := []option.ClientOption{option.WithHTTPClient(hc), option.WithLogger(slog.New(slog.DiscardHandler))}
	if cfg.URL != "" {
		endpoint, err := fcmBasePath(cfg.URL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, option.WithEndpoint(endpoint))
	}
	svc, err := fcm.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("push: FCM: %w", err)
	}
	return &FCM{messages: svc.Projects.Messages, parent: "projects/" + project}, nil
}

// fcmBasePath turns the messaging endpoint (https://fcm.googleapis.com/v1,
// what --fcm-url names) into the generated client's base path
// (https://fcm.googleapis.com/), to which it adds v1/projects/...
func fcmBasePath(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("push: the FCM URL %q is not an http(s) URL", endpoint)
	}
	path, ok := strings.CutSuffix(strings.TrimSuffix(u.Path, "/"), "/v1")
	if !ok {
		return "", fmt.Errorf("push: the FCM URL %q must end in /v1, as https://fcm.googleapis.com/v1 does", endpoint)
	}
	u.Path = path + "/"
	return u.String(), nil
}

// Name implements Provider.
func (*FCM) Name() parley.PushProvider { return parley.PushFCM }

// fcmAPNsPayload is message.apns.payload: the aps dictionary APNs gets
// for the same notification (Parley's fields travel in message.data).
type fcmAPNsPayload struct {
	APS apsDict `json:"aps"`
}

// fcmMessage builds the message for n: data-only for Android (the app
// builds the notification), collapsed per conversation; for iOS devices
// registered through FCM, the same alert or silent update as APNs gets.
func fcmMessage(reg *parley.PushRegistration, n *Notification) *fcm.Message {
	ttl := max(time.Until(n.Expires), 0)
	badge := n.Badge
	p := fcmAPNsPayload{APS: apsDict{Badge: &badge}}
	m := &fcm.Message{
		Token: reg.Token,
		Data:  n.Data(),
		Android: &fcm.AndroidConfig{
			CollapseKey: n.collapseID(),
			Priority:    "high",
			Ttl:         strconv.FormatInt(int64(ttl/time.Second), 10) + "s", // a protobuf Duration
		},
		Apns: &fcm.ApnsConfig{
			Headers: map[string]string{"apns-expiration": strconv.FormatInt(n.Expires.Unix(), 10)},
		},
	}
	if n.Kind == KindMessage {
		body := n.alertText()
		if n.Preview != "" {
			body = n.Preview
		}
		m.Apns.Headers["apns-push-type"] = "alert"
		m.Apns.Headers["apns-priority"] = "10"
		m.Apns.Headers["apns-collapse-id"] = n.collapseID()
		p.APS.Alert = &apsAlert{Title: n.SenderName, Body: body}
		p.APS.Sound = "default"
		p.APS.ThreadID = n.ConversationID
		p.APS.MutableContent = 1
	} else {
		m.Android.Priority = "normal"
		m.Apns.Headers["apns-push-type"] = "background"
		m.Apns.Headers["apns-priority"] = "5"
		p.APS.ContentAvailable = 1
	}
	m.Apns.Payload, _ = json.Marshal(p) // fixed types: cannot fail
	return m
}

// Send implements Provider. The client retries nothing by itself: every
// failure comes back at once and the worker retries with its backoff.
func (f *FCM) Send(ctx context.Context, reg *parley.PushRegistration, n *Notification) Result {
	sent, err := f.messages.Send(f.parent, &fcm.SendMessageRequest{Message: fcmMessage(reg, n)}).Context(ctx).Do()
	if err == nil {
		return Result{Outcome: Accepted, Status: http.StatusOK, ID: sent.Name}
	}
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		// No answer: the network, or the OAuth token could not be had.
		return Result{Outcome: Retry, Reason: "network: " + err.Error()}
	}
	r := Result{Status: gerr.Code, RetryAfter: parseRetryAfter(gerr.Header.Get("Retry-After"), time.Now())}
	e := parseFCMError(gerr.Body)
	switch e.errorCode {
	case "UNREGISTERED", "SENDER_ID_MISMATCH":
		r.Outcome, r.Reason = Unregistered, e.errorCode
	case "QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL", "THIRD_PARTY_AUTH_ERROR":
		r.Outcome, r.Reason = Retry, e.errorCode
	default:
		r.Outcome = classifyStatus(gerr.Code)
		if r.Outcome == Unregistered {
			r.Outcome = Rejected // only UNREGISTERED says the token is gone
		}
		r.Reason = e.reason(gerr.Code)
	}
	return r
}

// fcmError is what Parley reads of Google's JSON error: the canonical
// status, the message, and the FcmError detail's errorCode
// (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
type fcmError struct {
	status, message, errorCode string
}

func parseFCMError(body string) fcmError {
	var e struct {
		Error struct {
			Status  string `json:"status"`
			Message string `json:"message"`
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	json.Unmarshal([]byte(body), &e) // not JSON (a proxy's page): no code
	out := fcmError{status: e.Error.Status, message: e.Error.Message}
	for _, d := range e.Error.Details {
		if d.Type == "type.googleapis.com/google.firebase.fcm.v1.FcmError" {
			out.errorCode = d.ErrorCode
			break
		}
	}
	return out
}

// reason is the failure's short description: the errorCode or Google
// status and Google's message, at most 200 bytes; the status line when
// the body said nothing.
func (e fcmError) reason(status int) string {
	code := e.errorCode
	if code == "" {
		code = e.status
	}
	if code == "" {
		return strconv.Itoa(status) + " " + http.StatusText(status)
	}
	s := code
	if e.message != "" {
		s += ": " + e.message
	}
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return s
}
