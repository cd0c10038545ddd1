package push

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/parleychat/parley"
)

// FCMConfig configures the FCM HTTP v1 provider with a service account.
type FCMConfig struct {
	// CredentialsFile is the service account's JSON key file.
	CredentialsFile string
	// ProjectID defaults to the service account's project.
	ProjectID string
	// URL, if set, replaces the messaging endpoint
	// (https://fcm.googleapis.com/v1): a local test server. Sends go to
	// <URL>/projects/<project>/messages:send.
	URL string
	TLS *tls.Config
}

// FCM sends through Firebase Cloud Messaging's HTTP v1 API: one JSON POST
// per notification with an OAuth 2 access token of the service account
// (golang.org/x/oauth2/google signs the JWT grant, fetches and refreshes
// the token). Neither the Firebase Admin SDK nor Google's generated client
// (google.golang.org/api/fcm/v1) is linked: each brings gRPC and more into
// the binary for this one request (docs/adr/0004-fcm-http-v1-without-sdk.md).
type FCM struct {
	client  *http.Client // bearer tokens over the pooled HTTP/2 transport
	sendURL string       // <endpoint>/projects/<project>/messages:send
	gate    *connGate    // every send on one HTTP/2 connection
}

// fcmEndpoint is Google's FCM HTTP v1 endpoint.
const fcmEndpoint = "https://fcm.googleapis.com/v1"

// fcmScope is the OAuth scope of FCM sends.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// fcmMaxAnswer bounds what is read of an answer: Google's success is a
// message name, its errors a few hundred bytes.
const fcmMaxAnswer = 64 << 10

// NewFCM reads the service account and builds the client. The OAuth token
// is fetched (and refreshed) from the account's token_uri over the same
// TLS settings and connection pool as the sends, when the first send
// needs it: a node starts while Google is unreachable.
func NewFCM(_ context.Context, cfg FCMConfig) (*FCM, error) {
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
	endpoint := cfg.URL
	if endpoint == "" {
		endpoint = fcmEndpoint
	}
	if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("push: the FCM URL %q is not an http(s) URL without query", endpoint)
	}
	return &FCM{
		client: &http.Client{
			Transport: &oauth2.Transport{Source: creds.TokenSource, Base: base},
			Timeout:   sendTimeout,
			// A redirect would carry the bearer token to wherever it
			// points: the 3xx is the answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		sendURL: strings.TrimSuffix(endpoint, "/") + "/projects/" + url.PathEscape(project) + "/messages:send",
		gate:    newConnGate(),
	}, nil
}

// Name implements Provider.
func (*FCM) Name() parley.PushProvider { return parley.PushFCM }

// The request body of projects.messages.send, with the field names of
// FCM's reference (https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages).
type fcmSendRequest struct {
	Message *fcmMessageJSON `json:"message"`
}

type fcmMessageJSON struct {
	Token   string            `json:"token"`
	Data    map[string]string `json:"data,omitempty"`
	Android *fcmAndroid       `json:"android,omitempty"`
	APNs    *fcmAPNs          `json:"apns,omitempty"`
}

type fcmAndroid struct {
	CollapseKey string `json:"collapse_key,omitempty"`
	Priority    string `json:"priority,omitempty"` // "high" or "normal"
	TTL         string `json:"ttl,omitempty"`      // a protobuf Duration: "3600s"
}

type fcmAPNs struct {
	Headers map[string]string `json:"headers,omitempty"`
	Payload *fcmAPNsPayload   `json:"payload,omitempty"`
}

// fcmAPNsPayload is apns.payload: the aps dictionary APNs gets for the
// same notification (Parley's fields travel in message.data).
type fcmAPNsPayload struct {
	APS apsDict `json:"aps"`
}

// fcmMessage builds the message for n: data-only for Android (the app
// builds the notification), collapsed per conversation; for iOS devices
// registered through FCM, the same alert or silent update as APNs gets.
func fcmMessage(reg *parley.PushRegistration, n *Notification) *fcmMessageJSON {
	ttl := max(time.Until(n.Expires), 0)
	badge := n.Badge
	m := &fcmMessageJSON{
		Token: reg.Token,
		Data:  n.Data(),
		Android: &fcmAndroid{
			CollapseKey: n.collapseID(),
			Priority:    "high",
			TTL:         strconv.FormatInt(int64(ttl/time.Second), 10) + "s",
		},
		APNs: &fcmAPNs{
			Headers: map[string]string{"apns-expiration": strconv.FormatInt(n.Expires.Unix(), 10)},
			Payload: &fcmAPNsPayload{APS: apsDict{Badge: &badge}},
		},
	}
	aps := &m.APNs.Payload.APS
	if n.Kind == KindMessage {
		body := n.alertText()
		if n.Preview != "" {
			body = n.Preview
		}
		m.APNs.Headers["apns-push-type"] = "alert"
		m.APNs.Headers["apns-priority"] = "10"
		m.APNs.Headers["apns-collapse-id"] = n.collapseID()
		aps.Alert = &apsAlert{Title: n.SenderName, Body: body}
		aps.Sound = "default"
		aps.ThreadID = n.ConversationID
		aps.MutableContent = 1
	} else {
		m.Android.Priority = "normal"
		m.APNs.Headers["apns-push-type"] = "background"
		m.APNs.Headers["apns-priority"] = "5"
		aps.ContentAvailable = 1
	}
	return m
}

// Send implements Provider. Nothing is retried here: every failure comes
// back at once and the worker retries with its backoff (never sooner than
// Retry-After), so no send holds a worker through retries.
func (f *FCM) Send(ctx context.Context, reg *parley.PushRegistration, n *Notification) Result {
	body, err := json.Marshal(fcmSendRequest{Message: fcmMessage(reg, n)})
	if err != nil { // fixed types: cannot fail
		return Result{Outcome: Rejected, Reason: err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.sendURL, bytes.NewReader(body))
	if err != nil { // the URL was checked by NewFCM
		return Result{Outcome: Rejected, Reason: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	var resp *http.Response
	f.gate.do(ctx, func() bool {
		resp, err = f.client.Do(req)
		return err == nil
	})
	if err != nil {
		// No answer: the network, or no access token (the token
		// endpoint's refusal is inside: *oauth2.RetrieveError).
		var retrieve *oauth2.RetrieveError
		if errors.As(err, &retrieve) {
			return Result{Outcome: Retry, Reason: tokenRefusal(retrieve)}
		}
		return Result{Outcome: Retry, Reason: "network: " + err.Error()}
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, fcmMaxAnswer))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // let the connection be reused
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		var sent struct {
			Name string `json:"name"`
		}
		json.Unmarshal(answer, &sent) // accepted whatever the body says
		return Result{Outcome: Accepted, Status: resp.StatusCode, ID: sent.Name}
	}
	r := Result{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	e := parseFCMError(answer)
	switch e.errorCode {
	case "UNREGISTERED", "SENDER_ID_MISMATCH":
		r.Outcome, r.Reason = Unregistered, e.errorCode
	case "QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL", "THIRD_PARTY_AUTH_ERROR":
		r.Outcome, r.Reason = Retry, e.errorCode
	default:
		r.Outcome = classifyStatus(resp.StatusCode)
		if r.Outcome == Unregistered {
			r.Outcome = Rejected // only UNREGISTERED says the token is gone
		}
		r.Reason = e.reason(resp.Status)
	}
	return r
}

// fcmError is what Parley reads of Google's JSON error: the canonical
// status, the message, and the FcmError detail's errorCode
// (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
type fcmError struct {
	status, message, errorCode string
}

func parseFCMError(body []byte) fcmError {
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
	json.Unmarshal(body, &e) // not JSON (a proxy's page): no code
	out := fcmError{status: e.Error.Status, message: e.Error.Message}
	for _, d := range e.Error.Details {
		if d.Type == "type.googleapis.com/google.firebase.fcm.v1.FcmError" {
			out.errorCode = d.ErrorCode
			break
		}
	}
	return out
}

// reason is a failure's short description: the errorCode (or Google
// status) and Google's message, at most 200 bytes; the status line when
// the body said neither.
func (e fcmError) reason(statusLine string) string {
	code := e.errorCode
	if code == "" {
		code = e.status
	}
	if code == "" {
		return statusLine
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

// tokenRefusal describes the token endpoint's refusal: its status and
// OAuth error ("invalid_grant: Invalid JWT Signature."), at most 200 bytes.
func tokenRefusal(e *oauth2.RetrieveError) string {
	s := "OAuth token refused"
	if e.Response != nil {
		s += ": " + e.Response.Status
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(e.Body, &body) == nil && body.Error != "" {
		s += " " + body.Error
		if body.Description != "" {
			s += ": " + body.Description
		}
	}
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return s
}
