package parley

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"time"
)

// PushProvider names the service that wakes a device.
type PushProvider string

// Push providers.
const (
	PushFCM     PushProvider = "fcm"     // Firebase Cloud Messaging (Android, also iOS through FCM)
	PushAPNs    PushProvider = "apns"    // Apple Push Notification service
	PushWebPush PushProvider = "webpush" // the browser's Push API (RFC 8030, VAPID)
)

// PushRegistration is where one device receives push notifications: a
// provider token (FCM, APNs) or a browser's PushSubscription (Web Push).
// A device has at most one; it goes with the device (logout, removal).
type PushRegistration struct {
	Provider PushProvider `json:"provider"`
	// Token is the FCM registration token or the APNs device token.
	Token string `json:"token,omitempty"`
	// Topic (APNs) is the app's bundle id, the apns-topic header.
	Topic string `json:"topic,omitempty"`
	// Environment (APNs) is sandbox or production: which APNs server.
	Environment string `json:"environment,omitempty"`
	// Subscription (Web Push) is the browser's PushSubscription as JSON.
	Subscription *WebPushSubscription `json:"subscription,omitempty"`
	UpdatedAt    time.Time            `json:"updated_at"`
}

// WebPushSubscription is a browser's PushSubscription (its toJSON form).
type WebPushSubscription struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// Limits of a registration's fields.
const (
	maxPushToken    = 4096
	maxPushTopic    = 256
	maxPushEndpoint = 2048
	// minAPNsToken is the shortest APNs device token in hex (32 bytes
	// today; Apple says tokens may grow, so longer ones are taken).
	minAPNsToken = 64
)

// PushRules are the server's rules for push registrations beyond their
// form (docs/push.md, "Registrations").
type PushRules struct {
	// WebPushOff refuses Web Push registrations (the server has no VAPID
	// subject: it sends no Web Push).
	WebPushOff bool
	// CheckEndpoint checks a Web Push endpoint's URL: where the server
	// may send (scheme, host form, blocked addresses, the operator's
	// exceptions). Its error, if any, completes "the endpoint ...". Nil
	// takes any https URL: callers that face users must set it.
	CheckEndpoint func(u *url.URL) error
	// APNsTopics are the APNs topics (bundle ids) the server sends for;
	// a registration naming another is refused. Empty refuses every APNs
	// registration.
	APNsTopics []string
}

// ValidatePush checks r as a client sent it: the fields its provider needs
// and no others, within their limits, and rules. Errors are
// CodeInvalidRequest.
func ValidatePush(r *PushRegistration, rules PushRules) error {
	switch r.Provider {
	case PushFCM, PushAPNs:
		if r.Token == "" || len(r.Token) > maxPushToken {
			return Errorf(CodeInvalidRequest, "a %s registration needs a token of 1 to %d bytes", r.Provider, maxPushToken)
		}
		if r.Subscription != nil {
			return Errorf(CodeInvalidRequest, "subscription is for webpush only")
		}
		if r.Provider == PushFCM {
			if r.Topic != "" || r.Environment != "" {
				return Errorf(CodeInvalidRequest, "topic and environment are for apns only")
			}
			return nil
		}
		if len(r.Token) < minAPNsToken || len(r.Token)%2 != 0 || !isHex(r.Token) {
			return Errorf(CodeInvalidRequest, "an apns token must be the device token in hex: an even number of hex digits, at least %d", minAPNsToken)
		}
		if r.Topic == "" || len(r.Topic) > maxPushTopic {
			return Errorf(CodeInvalidRequest, "an apns registration needs a topic (the app's bundle id) of 1 to %d bytes", maxPushTopic)
		}
		if !slices.Contains(rules.APNsTopics, r.Topic) {
			if len(rules.APNsTopics) == 0 {
				return Errorf(CodeInvalidRequest, "this server sends no APNs notifications (it has no APNs topics configured)")
			}
			return Errorf(CodeInvalidRequest, "topic must be one of the apps this server sends for: %s", strings.Join(rules.APNsTopics, ", "))
		}
		if r.Environment != "sandbox" && r.Environment != "production" {
			return Errorf(CodeInvalidRequest, "environment must be sandbox or production")
		}
		return nil
	case PushWebPush:
		if r.Token != "" || r.Topic != "" || r.Environment != "" {
			return Errorf(CodeInvalidRequest, "a webpush registration has only a subscription")
		}
		if rules.WebPushOff {
			return Errorf(CodeInvalidRequest, "this server sends no Web Push notifications (it has no VAPID subject configured)")
		}
		s := r.Subscription
		if s == nil {
			return Errorf(CodeInvalidRequest, "a webpush registration needs the browser's subscription")
		}
		if len(s.Endpoint) > maxPushEndpoint {
			return Errorf(CodeInvalidRequest, "the endpoint is longer than %d bytes", maxPushEndpoint)
		}
		u, err := url.Parse(s.Endpoint)
		if err != nil || u.Host == "" || !u.IsAbs() {
			return Errorf(CodeInvalidRequest, "the endpoint must be an https URL")
		}
		if rules.CheckEndpoint != nil {
			if err := rules.CheckEndpoint(u); err != nil {
				return Errorf(CodeInvalidRequest, "the endpoint %v", err)
			}
		} else if u.Scheme != "https" || u.User != nil {
			return Errorf(CodeInvalidRequest, "the endpoint must be an https URL")
		}
		// p256dh: an uncompressed P-256 point; auth: 16 random bytes.
		if k, err := decodeBase64URL(s.Keys.P256dh); err != nil || len(k) != 65 || k[0] != 4 {
			return Errorf(CodeInvalidRequest, "keys.p256dh must be an uncompressed P-256 public key in base64url")
		}
		if k, err := decodeBase64URL(s.Keys.Auth); err != nil || len(k) != 16 {
			return Errorf(CodeInvalidRequest, "keys.auth must be 16 bytes in base64url")
		}
		return nil
	default:
		return Errorf(CodeInvalidRequest, "provider must be fcm, apns or webpush")
	}
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// decodeBase64URL accepts base64url with or without padding, as browsers
// produce either.
func decodeBase64URL(s string) ([]byte, error) {
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.DecodeString(s)
}

// PushTarget is what the notification service decides on for one device
// of a conversation's member: where it is registered and how far it and
// its user have got. Store.PushTargets and Store.PushTarget return it.
type PushTarget struct {
	UserID       string
	DeviceID     string
	Registration *PushRegistration
	// ReadSeq is the user's read_seq in the conversation; DeliveredSeq
	// the device's own delivered_seq there (0 if it has none).
	ReadSeq      int64
	DeliveredSeq int64
	// LastSeq is the conversation's last_seq.
	LastSeq int64
	// MutedUntil is when the user's mute of the conversation ends and
	// DNDUntil when the user's do-not-disturb ends; zero if none.
	MutedUntil time.Time
	DNDUntil   time.Time
	// Request says the user has not accepted the conversation: a
	// message request (its notification says so, without a preview).
	Request bool
	// Unread is the user's unread count in the conversation and Badge
	// the sum of the user's unread counts over every conversation, as
	// Store.Unread counts them, if Counted. Only Store.PushFanOut counts
	// them, for the first PushFanOutCounted users of each answer.
	Unread, Badge int64
	Counted       bool
}

// PushFanOutRequest asks Store.PushFanOut for the push targets of one
// conversation but one user's (the sender's), as PushTargets lists them.
type PushFanOutRequest struct {
	ConversationID string
	ExceptUserID   string
}

// PushFanOut answers one PushFanOutRequest.
type PushFanOut struct {
	// Found is false if there is no such conversation (Targets is
	// empty then).
	Found bool
	// Targets as PushTargets lists them, each with Unread and Badge.
	Targets []PushTarget
}

// MaxPushFanOut bounds the requests of one Store.PushFanOut call.
const MaxPushFanOut = 256

// PushFanOutCounted is how many users of each Store.PushFanOut answer
// get their unread counts read with it (the first, in the targets'
// order): a fan-out sends to a few devices itself and gives a large
// group's others device jobs, which count at their own send.
const PushFanOutCounted = 8

// MaxMuteUntil bounds a mute or do-not-disturb: "forever" is this far.
const MaxMuteUntil = 100 * 365 * 24 * time.Hour

// PushTrace is what happened to one message's notifications, from commit to
// the devices' next fetch: the answer to "why didn't my phone ring".
type PushTrace struct {
	MessageID      string           `json:"message_id"`
	ConversationID string           `json:"conversation_id"`
	Seq            int64            `json:"seq"`
	Events         []PushTraceEvent `json:"events"`
}

// PushTraceEvent is one step. Stages: committed, enqueued, fanned_out,
// queued (a device without a live session, pushed after the collapse
// window), skipped (Detail says why), waiting (a live device's delivered
// check),
// sent, retrying, unregistered, rejected, dead_lettered, dropped,
// fetched (the device's next sync or history call after a send).
type PushTraceEvent struct {
	At       time.Time `json:"at"`
	Stage    string    `json:"stage"`
	DeviceID string    `json:"device_id,omitempty"`
	Provider string    `json:"provider,omitempty"`
	Status   int       `json:"status,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}
