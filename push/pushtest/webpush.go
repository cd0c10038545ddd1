package pushtest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// WebPush is a fake push service for the Web Push protocol (RFC 8030), as
// a browser vendor runs one. NewSubscription plays the browser: it makes
// the keys a PushSubscription carries and keeps the private half, so the
// fake can decrypt what it receives.
//
// A POST to a subscription's endpoint is checked as RFC 8030, 8291 and
// 8292 require, a failed check answered with the status they name and a
// text body:
//   - the endpoint exists (404);
//   - Authorization: vapid t=<JWT>, k=<key> (401 when missing or not in
//     that form): k is the key set by SetVAPIDPublicKey, if one is set (403,
//     as for a subscription made with another applicationServerKey); the
//     JWT is ES256 and verifies with k, aud is the endpoint's origin, exp is
//     in the future and at most 24 hours ahead, and sub is a mailto: address
//     or an https: URL (401). Like Apple's push service, the fake parses the
//     mailto: address, so "mailto:mailto:x@y" (what webpush-go makes of a
//     Subscriber that already starts with mailto:) is refused;
//   - a TTL header, a non-negative integer (400); Urgency, if present,
//     very-low, low, normal or high (400); Topic, if present, at most 32
//     characters of the base64url alphabet (400);
//   - Content-Encoding: aes128gcm (415), a body of at most 4096 bytes (413)
//     that decrypts, per RFC 8291 and 8188, as one record with the
//     subscription's keys (400).
//
// A message that passes is answered 201 Created with a Location and the TTL
// the service keeps it for.
type WebPush struct {
	recorder[WebPushRequest]

	subsMu    sync.Mutex
	subs      map[string]*subscriber // by endpoint id
	vapidKey  string                 // expected k, base64url without padding; "" takes any
	maxAhead  time.Duration          // how far ahead a VAPID exp may be
	maxRecord int                    // largest body accepted
}

// subscriber is the browser's half of a subscription.
type subscriber struct {
	key  *ecdh.PrivateKey
	auth []byte
}

// Subscription is what a browser's PushSubscription.toJSON() gives an
// application: the endpoint and the two public keys, base64url without
// padding. ID is the last path segment of Endpoint.
type Subscription struct {
	ID       string           `json:"-"`
	Endpoint string           `json:"endpoint"`
	Keys     SubscriptionKeys `json:"keys"`
}

// SubscriptionKeys are a subscription's public keys: p256dh, the browser's
// P-256 ECDH public key (65 bytes, uncompressed), and auth, the 16-byte
// authentication secret.
type SubscriptionKeys struct {
	P256dh string `json:"p256dh"`
	Auth   string `json:"auth"`
}

// WebPushRequest is one request the Web Push fake received.
type WebPushRequest struct {
	Time     time.Time
	Proto    string // "HTTP/2.0"
	Method   string
	Endpoint string
	ID       string // endpoint id
	Header   http.Header

	TTL     int // seconds; -1 when the header is missing or invalid
	Topic   string
	Urgency string

	VAPIDKey   string // k of the Authorization header
	Subscriber string // sub of the VAPID JWT
	Payload    []byte // the decrypted message; nil when it did not decrypt

	Status int    // HTTP status answered
	Reason string // text body answered on failure
	Detail string // why the fake rejected it, or "scripted"; empty on success
}

func (r WebPushRequest) clone() WebPushRequest {
	r.Header = r.Header.Clone()
	r.Payload = bytes.Clone(r.Payload)
	return r
}

func (r WebPushRequest) summary() string {
	return describe(r.Time, r.Method+" "+r.Endpoint, r.Status, strings.TrimSpace(r.Reason), r.Detail)
}

// NewWebPush starts a fake Web Push service with no subscriptions, taking
// any VAPID key until SetVAPIDPublicKey is called.
func NewWebPush(tb testing.TB) *WebPush {
	tb.Helper()
	p := &WebPush{
		subs:      make(map[string]*subscriber),
		maxAhead:  24 * time.Hour,
		maxRecord: 4096,
	}
	p.log = newRequestLog[WebPushRequest]()
	p.server = newServer(tb, "webpush", http.HandlerFunc(p.serveHTTP))
	return p
}

// SetVAPIDPublicKey sets the application server key subscriptions are
// restricted to: the uncompressed P-256 public key in base64url (padding
// optional), as given to pushManager.subscribe. Empty takes any key.
func (p *WebPush) SetVAPIDPublicKey(key string) {
	p.subsMu.Lock()
	defer p.subsMu.Unlock()
	p.vapidKey = strings.TrimRight(key, "=")
}

// NewSubscription makes a subscription as a browser does: a new endpoint,
// a new P-256 key pair and a new auth secret.
func (p *WebPush) NewSubscription() Subscription {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		p.tb.Fatalf("webpush fake: generate key: %v", err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	id := randomHex(16)
	p.subsMu.Lock()
	p.subs[id] = &subscriber{key: key, auth: auth}
	p.subsMu.Unlock()
	return Subscription{
		ID:       id,
		Endpoint: p.URL() + "/push/" + id,
		Keys: SubscriptionKeys{
			P256dh: base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
			Auth:   base64.RawURLEncoding.EncodeToString(auth),
		},
	}
}

// Fail scripts the answers to the next messages for a subscription, given
// by its endpoint or its ID, as the shared Fail does for the other fakes.
// Reason is the text body, the usual text for Status when empty; a Reason
// without a Status is answered 500.
func (p *WebPush) Fail(endpoint string, answers ...Answer) {
	p.server.Fail(p.endpointID(endpoint), answers...)
}

// endpointID returns the id of an endpoint URL, or endpoint itself when it
// is already an id.
func (p *WebPush) endpointID(endpoint string) string {
	if id, ok := strings.CutPrefix(endpoint, p.URL()+"/push/"); ok {
		return id
	}
	return endpoint
}

var webPushTopicPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// webPushRejection is a failed check: the status and why.
type webPushRejection struct {
	status int
	detail string
}

func (p *WebPush) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rec := WebPushRequest{
		Time:     time.Now(),
		Proto:    r.Proto,
		Method:   r.Method,
		Endpoint: p.URL() + r.URL.Path,
		Header:   r.Header.Clone(),
		TTL:      -1,
		Topic:    r.Header.Get("Topic"),
		Urgency:  r.Header.Get("Urgency"),
	}
	rec.ID, _ = strings.CutPrefix(r.URL.Path, "/push/")
	if ttl, err := strconv.Atoi(r.Header.Get("TTL")); err == nil && ttl >= 0 {
		rec.TTL = ttl
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))

	var answer Answer
	if rej := p.check(r, body, &rec); rej != nil {
		answer = Answer{Status: rej.status}
		rec.Detail = rej.detail
	} else if scripted, ok := p.nextAnswer(rec.ID); ok && scripted.failed() {
		answer = scripted
		rec.Detail = "scripted"
		if answer.Status == 0 {
			answer.Status = http.StatusInternalServerError
		}
	}
	if answer.Status != 0 && answer.Reason == "" {
		answer.Reason = webPushText(answer.Status)
	}
	rec.Status = answer.Status
	if rec.Status == 0 {
		rec.Status = http.StatusCreated
	}
	rec.Reason = answer.Reason
	p.log.add(rec)
	p.pause(r)

	answer.setRetryAfter(w.Header())
	if rec.Status != http.StatusCreated {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(rec.Status)
		io.WriteString(w, answer.Reason)
		return
	}
	w.Header().Set("Location", p.URL()+"/message/"+randomHex(16))
	w.Header().Set("TTL", strconv.Itoa(rec.TTL))
	w.WriteHeader(http.StatusCreated)
}

// webPushText is the body the fake answers a status with.
func webPushText(status int) string {
	switch status {
	case http.StatusGone:
		return "push subscription has unsubscribed or expired.\n"
	case http.StatusNotFound:
		return "push subscription not found.\n"
	default:
		return http.StatusText(status) + "\n"
	}
}

// check applies the push service's checks and decrypts the payload into rec.
func (p *WebPush) check(r *http.Request, body []byte, rec *WebPushRequest) *webPushRejection {
	if r.Method != http.MethodPost {
		return &webPushRejection{http.StatusMethodNotAllowed, "method " + r.Method}
	}
	p.subsMu.Lock()
	sub := p.subs[rec.ID]
	wantKey := p.vapidKey
	p.subsMu.Unlock()
	if !strings.HasPrefix(r.URL.Path, "/push/") || sub == nil {
		return &webPushRejection{http.StatusNotFound, "no subscription at " + r.URL.Path}
	}
	if rej := p.checkVAPID(r.Header.Get("Authorization"), wantKey, rec); rej != nil {
		return rej
	}
	if rec.TTL < 0 {
		return &webPushRejection{http.StatusBadRequest, fmt.Sprintf("TTL %q is not a non-negative integer", r.Header.Get("TTL"))}
	}
	switch rec.Urgency {
	case "", "very-low", "low", "normal", "high":
	default:
		return &webPushRejection{http.StatusBadRequest, "Urgency " + rec.Urgency}
	}
	if _, present := r.Header["Topic"]; present && !webPushTopicPattern.MatchString(rec.Topic) {
		return &webPushRejection{http.StatusBadRequest, fmt.Sprintf("Topic %q is not 1 to 32 base64url characters", rec.Topic)}
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "aes128gcm" {
		return &webPushRejection{http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q, want aes128gcm", ce)}
	}
	if len(body) > p.maxRecord {
		return &webPushRejection{http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes, limit %d", len(body), p.maxRecord)}
	}
	plain, err := decryptWebPush(body, sub.key, sub.auth)
	if err != nil {
		return &webPushRejection{http.StatusBadRequest, "decrypt: " + err.Error()}
	}
	rec.Payload = plain
	return nil
}

// checkVAPID verifies a VAPID Authorization header (RFC 8292).
func (p *WebPush) checkVAPID(authorization, wantKey string, rec *WebPushRequest) *webPushRejection {
	unauthorized := func(format string, args ...any) *webPushRejection {
		return &webPushRejection{http.StatusUnauthorized, fmt.Sprintf(format, args...)}
	}
	scheme, params, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "vapid") {
		return unauthorized("Authorization is not vapid t=..., k=...")
	}
	var token string
	for param := range strings.SplitSeq(params, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(param), "=")
		switch name {
		case "t":
			token = value
		case "k":
			rec.VAPIDKey = value
		}
	}
	if token == "" || rec.VAPIDKey == "" {
		return unauthorized("Authorization lacks t or k")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(rec.VAPIDKey, "="))
	if err != nil {
		return unauthorized("k is not base64url: %v", err)
	}
	if wantKey != "" && strings.TrimRight(rec.VAPIDKey, "=") != wantKey {
		return &webPushRejection{http.StatusForbidden, "k is not the subscription's application server key"}
	}
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return unauthorized("k: %v", err)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithAudience(p.URL()),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		return unauthorized("JWT: %v", err)
	}
	rec.Subscriber, _ = claims["sub"].(string)
	if exp, _ := claims.GetExpirationTime(); exp != nil && time.Until(exp.Time) > p.maxAhead {
		return unauthorized("JWT exp is %v ahead, more than 24h", time.Until(exp.Time).Round(time.Second))
	}
	if err := checkVAPIDSubject(rec.Subscriber); err != nil {
		return unauthorized("JWT sub: %v", err)
	}
	return nil
}

// checkVAPIDSubject accepts a mailto: address or an https: URL.
func checkVAPIDSubject(sub string) error {
	if addr, ok := strings.CutPrefix(sub, "mailto:"); ok {
		if _, err := mail.ParseAddress(addr); err != nil {
			return fmt.Errorf("%q is not a mailto: address: %v", sub, err)
		}
		return nil
	}
	if strings.HasPrefix(sub, "https://") && len(sub) > len("https://") {
		return nil
	}
	return fmt.Errorf("%q is neither a mailto: address nor an https: URL", sub)
}

// decryptWebPush decrypts a Web Push message: one aes128gcm record (RFC
// 8188) whose key comes from the sender's ECDH key in the record header,
// the subscriber's key pair and auth secret (RFC 8291).
func decryptWebPush(body []byte, subscriberKey *ecdh.PrivateKey, authSecret []byte) ([]byte, error) {
	const headerLen = 16 + 4 + 1
	if len(body) < headerLen {
		return nil, errors.New("shorter than the aes128gcm header")
	}
	salt := body[:16]
	recordSize := binary.BigEndian.Uint32(body[16:20])
	idLen := int(body[20])
	if idLen != 65 {
		return nil, fmt.Errorf("keyid of %d bytes, want the sender's 65-byte public key", idLen)
	}
	if len(body) < headerLen+idLen {
		return nil, errors.New("shorter than its keyid")
	}
	senderKey, err := ecdh.P256().NewPublicKey(body[headerLen : headerLen+idLen])
	if err != nil {
		return nil, fmt.Errorf("keyid: %v", err)
	}
	ciphertext := body[headerLen+idLen:]
	if recordSize < 18 {
		return nil, fmt.Errorf("record size %d below 18", recordSize)
	}
	if uint64(len(ciphertext)) > uint64(recordSize) {
		return nil, fmt.Errorf("%d bytes of ciphertext exceed the record size %d: Web Push allows one record", len(ciphertext), recordSize)
	}
	if len(ciphertext) < 16+1 {
		return nil, errors.New("record shorter than its tag and delimiter")
	}
	shared, err := subscriberKey.ECDH(senderKey)
	if err != nil {
		return nil, fmt.Errorf("ecdh: %v", err)
	}
	info := "WebPush: info\x00" + string(subscriberKey.PublicKey().Bytes()) + string(senderKey.Bytes())
	ikm, err := hkdf.Key(sha256.New, shared, authSecret, info, 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("open: %v", err)
	}
	end := len(plain) - 1
	for end >= 0 && plain[end] == 0 {
		end--
	}
	switch {
	case end < 0:
		return nil, errors.New("no padding delimiter")
	case plain[end] == 1:
		return nil, errors.New("delimiter 0x01 marks a record that is not the last: Web Push allows one record")
	case plain[end] != 2:
		return nil, fmt.Errorf("padding delimiter 0x%02x, want 0x02", plain[end])
	}
	return plain[:end], nil
}
