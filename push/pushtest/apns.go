package pushtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// APNs is a fake Apple Push Notification service: the HTTP/2 provider API
// with token-based (ES256 JWT) authentication. Point an apns2 client's
// Host at URL and give it a transport trusting CertPEM.
//
// A request is checked as APNs checks it, and a failed check is answered
// with APNs's status and {"reason": ...}:
//   - HTTP/2 only (505 otherwise; APNs itself refuses the connection);
//   - POST (405 MethodNotAllowed) to /3/device/<token> (404 BadPath), the
//     token in hex (400 MissingDeviceToken, BadDeviceToken);
//   - authorization: bearer <JWT>, alg ES256, kid = KeyID, iss = TeamID,
//     iat within the last hour, signed with the key in KeyFile (403
//     MissingProviderToken, InvalidProviderToken, ExpiredProviderToken);
//   - apns-topic present (400 MissingTopic); apns-push-type, if present,
//     one of Apple's types (400 InvalidPushType); apns-priority, if
//     present, 1, 5 or 10 (400 BadPriority); apns-collapse-id at most 64
//     bytes (400 BadCollapseId); apns-expiration an integer (400
//     BadExpirationDate); apns-id, if present, a UUID (400 BadMessageId);
//   - a body (400 PayloadEmpty) of at most 4096 bytes, 5120 for voip (413
//     PayloadTooLarge), that is a JSON object with an "aps" object. Apple
//     documents no reason for a malformed payload; the fake answers 400
//     BadPayload so a test sees why.
//
// A request that passes is answered 200 with an apns-id header echoing the
// request's, or a new UUID. APNs also limits how often a provider token may
// change (429 TooManyProviderTokenUpdates); the fake does not.
type APNs struct {
	recorder[APNsRequest]

	keyFile string
	keyID   string
	teamID  string
	key     *ecdsa.PublicKey

	// verified is the last provider token whose signature and claims
	// checked out, and its iat: APNs expects a provider to reuse one
	// token for up to an hour, so the fake verifies each token's
	// signature once and checks only its age on every later request
	// (an ES256 verification per request would make the fake, not the
	// sender, what a benchmark measures).
	verifiedMu  sync.Mutex
	verified    string
	verifiedIat time.Time
}

// APNsRequest is one request the APNs fake received.
type APNsRequest struct {
	Time   time.Time
	Proto  string // "HTTP/2.0"
	Method string
	Path   string
	Token  string // device token, from the path

	// Headers holds every apns-* request header, by lowercase name.
	Headers map[string]string
	// Convenience copies of headers; Priority is 0 when absent.
	Topic      string
	PushType   string
	CollapseID string
	Priority   int

	Body    []byte
	Payload map[string]any // Body parsed; nil when it is not a JSON object

	Status int    // HTTP status answered
	Reason string // APNs reason answered; empty on success
	ApnsID string // apns-id answered
	Detail string // why the fake rejected it, or "scripted"; empty on success
	// Abandoned says the client went away during the SetDelay pause,
	// before the answer: the sender never learned the outcome.
	Abandoned bool
}

func (r APNsRequest) clone() APNsRequest {
	r.Headers = maps.Clone(r.Headers)
	r.Body = bytes.Clone(r.Body)
	r.Payload = cloneJSONObject(r.Payload)
	return r
}

func (r APNsRequest) summary() string {
	return describe(r.Time, r.Method+" "+r.Path, r.Status, r.Reason, r.Detail)
}

// NewAPNs starts a fake APNs with a new ES256 signing key, written as a
// .p8 file (PKCS #8 PEM, as Apple issues it) under tb.TempDir().
func NewAPNs(tb testing.TB) *APNs {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("apns fake: generate key: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatalf("apns fake: marshal key: %v", err)
	}
	a := &APNs{
		keyID:  randomAlnum(10),
		teamID: randomAlnum(10),
		key:    &priv.PublicKey,
	}
	a.keyFile = filepath.Join(tb.TempDir(), "AuthKey_"+a.keyID+".p8")
	if err := os.WriteFile(a.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatalf("apns fake: write key: %v", err)
	}
	a.log = newRequestLog[APNsRequest]()
	a.server = newServer(tb, "apns", http.HandlerFunc(a.serveHTTP))
	return a
}

// KeyFile returns the path of the .p8 signing key.
func (a *APNs) KeyFile() string { return a.keyFile }

// KeyID returns the 10-character key identifier (the JWT's kid).
func (a *APNs) KeyID() string { return a.keyID }

// TeamID returns the 10-character team identifier (the JWT's iss).
func (a *APNs) TeamID() string { return a.teamID }

// NewToken returns a new random device token: 32 bytes in hex, as iOS
// hands to an app.
func (a *APNs) NewToken() string { return randomHex(32) }

// apnsPushTypes are the apns-push-type values Apple documents.
var apnsPushTypes = map[string]bool{
	"alert": true, "background": true, "location": true, "voip": true,
	"complication": true, "fileprovider": true, "mdm": true,
	"liveactivity": true, "pushtotalk": true, "widgets": true, "controls": true,
}

// apnsReasonStatus is the HTTP status APNs answers with each reason.
var apnsReasonStatus = map[string]int{
	"BadCollapseId": 400, "BadDeviceToken": 400, "BadExpirationDate": 400,
	"BadMessageId": 400, "BadPriority": 400, "BadTopic": 400,
	"DeviceTokenNotForTopic": 400, "DuplicateHeaders": 400, "IdleTimeout": 400,
	"InvalidPushType": 400, "MissingDeviceToken": 400, "MissingTopic": 400,
	"PayloadEmpty": 400, "TopicDisallowed": 400, "BadPayload": 400,
	"BadCertificate": 403, "BadCertificateEnvironment": 403,
	"ExpiredProviderToken": 403, "Forbidden": 403, "InvalidProviderToken": 403,
	"MissingProviderToken": 403, "BadPath": 404, "MethodNotAllowed": 405,
	"ExpiredToken": 410, "Unregistered": 410, "PayloadTooLarge": 413,
	"TooManyProviderTokenUpdates": 429, "TooManyRequests": 429,
	"InternalServerError": 500, "ServiceUnavailable": 503, "Shutdown": 503,
}

// apnsStatusReason is the reason a scripted Answer with only a Status gets.
var apnsStatusReason = map[int]string{
	400: "BadDeviceToken", 403: "Forbidden", 404: "BadPath",
	405: "MethodNotAllowed", 410: "Unregistered", 413: "PayloadTooLarge",
	429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable",
}

var (
	apnsPathPattern = regexp.MustCompile(`^/3/device/([^/]*)$`)
	hexPattern      = regexp.MustCompile(`^[0-9a-fA-F]+$`)
	uuidPattern     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// apnsRejection is a failed check: the reason answered and why.
type apnsRejection struct {
	reason string
	detail string
}

func (a *APNs) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rec := APNsRequest{
		Time:       time.Now(),
		Proto:      r.Proto,
		Method:     r.Method,
		Path:       r.URL.Path,
		Headers:    make(map[string]string),
		Topic:      r.Header.Get("apns-topic"),
		PushType:   r.Header.Get("apns-push-type"),
		CollapseID: r.Header.Get("apns-collapse-id"),
	}
	for name, values := range r.Header {
		if lower := strings.ToLower(name); strings.HasPrefix(lower, "apns-") && len(values) > 0 {
			rec.Headers[lower] = values[0]
		}
	}
	rec.Priority, _ = strconv.Atoi(r.Header.Get("apns-priority"))
	if m := apnsPathPattern.FindStringSubmatch(r.URL.Path); m != nil {
		rec.Token = m[1]
	}
	rec.Body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err := json.Unmarshal(rec.Body, &rec.Payload); err != nil {
		rec.Payload = nil
	}
	rec.ApnsID = r.Header.Get("apns-id")
	if !uuidPattern.MatchString(rec.ApnsID) {
		rec.ApnsID = newUUID()
	}

	answer := Answer{Status: http.StatusOK}
	if r.ProtoMajor != 2 {
		answer = Answer{Status: http.StatusHTTPVersionNotSupported}
		rec.Detail = "APNs speaks HTTP/2 only, got " + r.Proto
	} else if rej := a.check(r, &rec); rej != nil {
		answer = Answer{Reason: rej.reason}
		rec.Detail = rej.detail
	} else if scripted, ok := a.nextAnswer(rec.Token); ok && scripted.failed() {
		answer = scripted
		rec.Detail = "scripted"
	}
	if answer.Status == 0 {
		answer.Status = apnsReasonStatus[answer.Reason]
	}
	if answer.Status == 0 {
		answer.Status = http.StatusBadRequest
	}
	if answer.Reason == "" && answer.Status >= 300 && answer.Status != http.StatusHTTPVersionNotSupported {
		answer.Reason = apnsStatusReason[answer.Status]
	}
	rec.Status = answer.Status
	rec.Reason = answer.Reason
	i := a.log.add(rec)
	if !a.pause(r) {
		a.log.update(i, func(r *APNsRequest) { r.Abandoned = true })
	}

	w.Header().Set("apns-id", rec.ApnsID)
	answer.setRetryAfter(w.Header())
	if answer.Reason == "" {
		w.WriteHeader(answer.Status)
		return
	}
	body := map[string]any{"reason": answer.Reason}
	if answer.Status == http.StatusGone {
		body["timestamp"] = time.Now().UnixMilli()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(answer.Status)
	json.NewEncoder(w).Encode(body)
}

// check applies APNs's checks to a request, in the order APNs reports them.
func (a *APNs) check(r *http.Request, rec *APNsRequest) *apnsRejection {
	if r.Method != http.MethodPost {
		return &apnsRejection{"MethodNotAllowed", "method " + r.Method}
	}
	if !apnsPathPattern.MatchString(r.URL.Path) {
		return &apnsRejection{"BadPath", "path " + r.URL.Path}
	}
	if rec.Token == "" {
		return &apnsRejection{"MissingDeviceToken", "no token in the path"}
	}
	if !hexPattern.MatchString(rec.Token) || len(rec.Token)%2 != 0 || len(rec.Token) < 64 || len(rec.Token) > 200 {
		return &apnsRejection{"BadDeviceToken", fmt.Sprintf("token %q is not 32 to 100 bytes in hex", rec.Token)}
	}
	if rej := a.checkProviderToken(r.Header.Get("authorization")); rej != nil {
		return rej
	}
	if rec.Topic == "" {
		return &apnsRejection{"MissingTopic", "no apns-topic"}
	}
	if rec.PushType != "" && !apnsPushTypes[rec.PushType] {
		return &apnsRejection{"InvalidPushType", "apns-push-type " + rec.PushType}
	}
	if p := r.Header.Get("apns-priority"); p != "" && p != "1" && p != "5" && p != "10" {
		return &apnsRejection{"BadPriority", "apns-priority " + p}
	}
	if len(rec.CollapseID) > 64 {
		return &apnsRejection{"BadCollapseId", fmt.Sprintf("apns-collapse-id of %d bytes", len(rec.CollapseID))}
	}
	if e := r.Header.Get("apns-expiration"); e != "" {
		if _, err := strconv.ParseInt(e, 10, 64); err != nil {
			return &apnsRejection{"BadExpirationDate", "apns-expiration " + e}
		}
	}
	if id := r.Header.Get("apns-id"); id != "" && !uuidPattern.MatchString(id) {
		return &apnsRejection{"BadMessageId", "apns-id " + id}
	}
	limit := 4096
	if rec.PushType == "voip" {
		limit = 5120
	}
	switch {
	case len(rec.Body) == 0:
		return &apnsRejection{"PayloadEmpty", "empty body"}
	case len(rec.Body) > limit:
		return &apnsRejection{"PayloadTooLarge", fmt.Sprintf("body of %d bytes, limit %d", len(rec.Body), limit)}
	case rec.Payload == nil:
		return &apnsRejection{"BadPayload", "body is not a JSON object"}
	}
	if _, ok := rec.Payload["aps"].(map[string]any); !ok {
		return &apnsRejection{"BadPayload", `payload has no "aps" dictionary`}
	}
	return nil
}

// checkProviderToken verifies the authorization header's provider token.
func (a *APNs) checkProviderToken(authorization string) *apnsRejection {
	if authorization == "" {
		return &apnsRejection{"MissingProviderToken", "no authorization header"}
	}
	scheme, bearer, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || bearer == "" {
		return &apnsRejection{"InvalidProviderToken", "authorization is not bearer <JWT>"}
	}
	a.verifiedMu.Lock()
	known, knownIat := a.verified == bearer, a.verifiedIat
	a.verifiedMu.Unlock()
	if known {
		return checkIssuedAt(knownIat)
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(bearer, claims, func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid != a.keyID {
			return nil, fmt.Errorf("kid %q, want %q", kid, a.keyID)
		}
		return a.key, nil
	}, jwt.WithValidMethods([]string{"ES256"}))
	if err != nil {
		return &apnsRejection{"InvalidProviderToken", err.Error()}
	}
	if iss, _ := claims["iss"].(string); iss != a.teamID {
		return &apnsRejection{"InvalidProviderToken", fmt.Sprintf("iss %q, want team %q", iss, a.teamID)}
	}
	iat, err := claims.GetIssuedAt()
	if err != nil || iat == nil {
		return &apnsRejection{"InvalidProviderToken", "no iat"}
	}
	if rej := checkIssuedAt(iat.Time); rej != nil {
		return rej
	}
	a.verifiedMu.Lock()
	a.verified, a.verifiedIat = bearer, iat.Time
	a.verifiedMu.Unlock()
	return nil
}

// checkIssuedAt refuses a provider token issued more than an hour ago or
// more than a minute ahead.
func checkIssuedAt(iat time.Time) *apnsRejection {
	if age := time.Since(iat); age > time.Hour {
		return &apnsRejection{"ExpiredProviderToken", fmt.Sprintf("issued %v ago", age.Round(time.Second))}
	} else if age < -time.Minute {
		return &apnsRejection{"InvalidProviderToken", fmt.Sprintf("issued %v in the future", (-age).Round(time.Second))}
	}
	return nil
}
