// Package push is Parley's notification service: the push role. It
// consumes a durable JetStream work queue of jobs that the core enqueues
// after commit (a new message, a read), decides per device whether a
// notification is due (docs/push.md, "Rules"), and sends it through APNs,
// FCM or Web Push with retries, a dead-letter stream and a trace per
// message.
package push

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley"
)

// Notification kinds.
const (
	KindMessage = "message" // new messages: an alert with the count and badge
	KindRead    = "read"    // read elsewhere: a silent update (clear, badge)
)

// Notification is what one device is sent.
type Notification struct {
	Kind           string
	ConversationID string
	// Seq is, for a message notification, the newest seq it covers; for a
	// read update, the user's read_seq.
	Seq int64
	// Count is the user's unread messages in the conversation; Badge the
	// user's unread total over every conversation.
	Count int64
	Badge int64
	// SenderID and SenderName name who sent the message that started the
	// notification (message kind only).
	SenderID   string
	SenderName string
	// MessageType is the type of that message (text, image, video,
	// file; message kind only, empty from jobs queued before it was
	// carried). Attachments are never described beyond it: no URL, no
	// filename.
	MessageType string
	// Preview is the start of the message text, only where the server
	// allows previews (--push-preview); empty otherwise.
	Preview string
	// TraceID is the id of the message whose job sent this (the trace the
	// admin endpoint shows).
	TraceID string
	// Expires is when the provider should stop trying to deliver it.
	Expires time.Time
	// Request says the conversation is a message request the user has
	// not accepted: the alert says "Message request", with no preview.
	Request bool
}

// Data returns the notification's fields as the string map every provider
// carries (FCM data values must be strings).
func (n *Notification) Data() map[string]string {
	d := map[string]string{
		"type":            n.Kind,
		"conversation_id": n.ConversationID,
		"seq":             strconv.FormatInt(n.Seq, 10),
		"count":           strconv.FormatInt(n.Count, 10),
		"badge":           strconv.FormatInt(n.Badge, 10),
	}
	if n.Kind == KindMessage {
		d["sender_id"] = n.SenderID
		d["sender_name"] = n.SenderName
		d["trace_id"] = n.TraceID
		if n.MessageType != "" {
			d["message_type"] = n.MessageType
		}
	}
	if n.Preview != "" {
		d["preview"] = n.Preview
	}
	if n.Request {
		d["request"] = "true"
	}
	return d
}

// alertText is the generic text of a message notification: no content.
func (n *Notification) alertText() string {
	if n.Request {
		return "Message request"
	}
	if n.Count <= 1 {
		return "New message"
	}
	return strconv.FormatInt(n.Count, 10) + " new messages"
}

// collapseID is the key that makes a provider keep only the newest
// notification of a conversation: the conversation id (APNs allows 64
// bytes, FCM's collapse_key any string).
func (n *Notification) collapseID() string { return n.ConversationID }

// Outcome is what a provider made of one send.
type Outcome int

// Outcomes.
const (
	// Accepted: the provider took the notification.
	Accepted Outcome = iota
	// Unregistered: the token or subscription is invalid or gone; the
	// registration must be removed.
	Unregistered
	// Retry: a temporary failure (429, 5xx, network, credentials): try
	// again after a backoff (at least RetryAfter).
	Retry
	// Rejected: the provider refused this notification for good (a
	// malformed request): retrying would not help.
	Rejected
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Unregistered:
		return "unregistered"
	case Retry:
		return "retry"
	default:
		return "rejected"
	}
}

// Result is a provider's answer to one send.
type Result struct {
	Outcome Outcome
	// Status is the HTTP status (0 if no answer came).
	Status int
	// Reason is the provider's reason (APNs reason, FCM error code, or a
	// short description), empty when accepted.
	Reason string
	// RetryAfter is the provider's Retry-After, if it sent one.
	RetryAfter time.Duration
	// ID is the provider's id of an accepted notification.
	ID string
}

// Provider sends notifications through one push service.
type Provider interface {
	// Name is the provider as registrations name it (parley.PushFCM, ...).
	Name() parley.PushProvider
	// Send sends n to the device registered as reg.
	Send(ctx context.Context, reg *parley.PushRegistration, n *Notification) Result
}

// TLSConfig returns the TLS settings for connections to providers: the
// system's roots plus those in caFile (PEM), if given, for a private or
// test provider endpoint.
func TLSConfig(caFile string) (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("push: CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("push: CA file holds no PEM certificate")
		}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// sendTimeout bounds one request to a provider.
const sendTimeout = 10 * time.Second

// retryAfterKey carries a *time.Duration in a request's context, where
// captureRetryAfter stores the response's Retry-After (the APNs client
// library does not expose response headers).
type retryAfterKey struct{}

// captureRetryAfter is an http.RoundTripper that records Retry-After.
// It keeps CloseIdleConnections, which apns2 calls on its transport.
type captureRetryAfter struct{ base *http.Transport }

func (c captureRetryAfter) CloseIdleConnections() { c.base.CloseIdleConnections() }

func (c captureRetryAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil {
		if p, ok := r.Context().Value(retryAfterKey{}).(*time.Duration); ok {
			*p = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	}
	return resp, err
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
// Zero if absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// classifyStatus turns an HTTP status of a provider into an outcome, for
// the statuses every provider shares.
func classifyStatus(status int) Outcome {
	switch {
	case status >= 200 && status < 300:
		return Accepted
	case status == http.StatusNotFound || status == http.StatusGone:
		return Unregistered
	case status == http.StatusTooManyRequests || status >= 500,
		status == http.StatusUnauthorized || status == http.StatusForbidden:
		// 401/403: the server's credentials; an operator can fix them.
		return Retry
	default:
		return Rejected
	}
}
