package pushtest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FCMScope is the OAuth2 scope an access token needs for FCM HTTP v1.
const FCMScope = "https://www.googleapis.com/auth/firebase.messaging"

// cloudPlatformScope grants every Google Cloud API, FCM included.
const cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// FCM is a fake Firebase Cloud Messaging HTTP v1 API together with the
// Google OAuth2 token endpoint a service account gets its access tokens
// from. CredentialsFile is a service-account key whose token_uri points
// here; Endpoint is the messaging endpoint, https://fcm.googleapis.com/v1
// on Google's side.
//
// POST /token takes the JWT-bearer grant of a service account (RFC 7523):
// an RS256 assertion signed with the file's key, with iss = client_email,
// aud = token_uri, a scope, and iat/exp; it answers
// {"access_token", "token_type": "Bearer", "expires_in": 3600}, or 400 with
// Google's {"error": "invalid_grant", ...}.
//
// POST /v1/projects/<project>/messages:send needs a bearer token issued
// here and unexpired (401 UNAUTHENTICATED), granting FCMScope or
// cloud-platform (403 PERMISSION_DENIED), for ProjectID (403
// PERMISSION_DENIED); a body {"message": {...}} naming exactly one of
// token, topic and condition, with string data values (400
// INVALID_ARGUMENT). Field names are taken in both forms protobuf's JSON
// mapping allows, as Google's servers do: the FCM reference's
// (collapse_key, validate_only) and the lowerCamelCase Google's generated
// clients send (collapseKey, validateOnly). Errors are in Google's JSON
// error format, with an FcmError detail carrying the errorCode clients
// branch on. A message that passes is answered
// {"name": "projects/<p>/messages/<id>"}.
type FCM struct {
	recorder[FCMRequest]

	projectID       string
	clientEmail     string
	privateKeyID    string
	key             *rsa.PublicKey
	credentialsFile string
	credentials     []byte

	tokensMu      sync.Mutex
	tokens        map[string]issuedToken // access token -> grant
	tokenRequests int
}

// issuedToken is an access token the token endpoint gave out.
type issuedToken struct {
	expires time.Time
	scopes  []string
}

// FCMRequest is one messages:send request the FCM fake received.
type FCMRequest struct {
	Time    time.Time
	Proto   string // "HTTP/2.0"
	Project string // from the path
	Header  http.Header

	// Message is the whole "message" object as sent; nil when the body
	// did not parse.
	Message      map[string]any
	ValidateOnly bool

	// Convenience copies from Message.
	Token, Topic, Condition string
	CollapseKey             string            // android.collapse_key
	AndroidPriority         string            // android.priority
	Data                    map[string]string // data
	APNSHeaders             map[string]string // apns.headers
	APNSPayload             map[string]any    // apns.payload

	Status int    // HTTP status answered
	Reason string // errorCode answered (UNREGISTERED, ...), or the Google status when there is none; empty on success
	Name   string // message name answered on success
	Detail string // why the fake rejected it, or "scripted"; empty on success
}

func (r FCMRequest) clone() FCMRequest {
	r.Header = r.Header.Clone()
	r.Message = cloneJSONObject(r.Message)
	r.Data = maps.Clone(r.Data)
	r.APNSHeaders = maps.Clone(r.APNSHeaders)
	r.APNSPayload = cloneJSONObject(r.APNSPayload)
	return r
}

func (r FCMRequest) summary() string {
	target := r.Token
	if target == "" {
		target = r.Topic + r.Condition
	}
	return describe(r.Time, "send to "+target, r.Status, r.Reason, r.Detail)
}

// NewFCM starts a fake FCM with a new RSA service-account key, written as a
// Google service-account JSON file under tb.TempDir().
func NewFCM(tb testing.TB) *FCM {
	tb.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("fcm fake: generate key: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatalf("fcm fake: marshal key: %v", err)
	}
	f := &FCM{
		projectID:    "parley-test-" + randomHex(3),
		privateKeyID: randomHex(20),
		key:          &priv.PublicKey,
		tokens:       make(map[string]issuedToken),
	}
	f.clientEmail = "firebase-adminsdk-" + strings.ToLower(randomAlnum(5)) + "@" + f.projectID + ".iam.gserviceaccount.com"
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.serveToken)
	mux.HandleFunc("/v1/projects/{project}/messages:send", f.serveSend)
	f.log = newRequestLog[FCMRequest]()
	f.server = newServer(tb, "fcm", mux)

	f.credentials, err = json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  f.projectID,
		"private_key_id":              f.privateKeyID,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                f.clientEmail,
		"client_id":                   randomDigits(21),
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   f.TokenURL(),
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"universe_domain":             "googleapis.com",
	}, "", "  ")
	if err != nil {
		tb.Fatalf("fcm fake: marshal credentials: %v", err)
	}
	f.credentialsFile = filepath.Join(tb.TempDir(), f.projectID+"-service-account.json")
	if err := os.WriteFile(f.credentialsFile, f.credentials, 0o600); err != nil {
		tb.Fatalf("fcm fake: write credentials: %v", err)
	}
	return f
}

// CredentialsFile returns the path of the service-account JSON file.
func (f *FCM) CredentialsFile() string { return f.credentialsFile }

// CredentialsJSON returns the service-account JSON, as in CredentialsFile.
func (f *FCM) CredentialsJSON() []byte { return bytes.Clone(f.credentials) }

// ProjectID returns the Firebase project the fake serves.
func (f *FCM) ProjectID() string { return f.projectID }

// ClientEmail returns the service account's address.
func (f *FCM) ClientEmail() string { return f.clientEmail }

// TokenURL returns the token endpoint, <URL>/token, the file's token_uri.
func (f *FCM) TokenURL() string { return f.URL() + "/token" }

// Endpoint returns <URL>/v1, the messaging endpoint (Google's is
// https://fcm.googleapis.com/v1): sends go to
// <Endpoint>/projects/<id>/messages:send.
func (f *FCM) Endpoint() string { return f.URL() + "/v1" }

// NewToken returns a new random registration token shaped like the ones
// the Firebase SDK on a device hands out.
func (f *FCM) NewToken() string {
	b := make([]byte, 117)
	rand.Read(b)
	return randomAlnum(11) + ":APA91b" + base64.RawURLEncoding.EncodeToString(b)
}

// TokenRequests returns how many requests the token endpoint has had,
// granted or not. A client that caches its access token asks once an hour.
func (f *FCM) TokenRequests() int {
	f.tokensMu.Lock()
	defer f.tokensMu.Unlock()
	return f.tokenRequests
}

// serveToken is Google's OAuth2 token endpoint for the JWT-bearer grant.
func (f *FCM) serveToken(w http.ResponseWriter, r *http.Request) {
	f.tokensMu.Lock()
	f.tokenRequests++
	f.tokensMu.Unlock()

	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, "invalid_request", err.Error())
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		writeOAuthError(w, "unsupported_grant_type", "Invalid grant_type: "+gt)
		return
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), claims, func(t *jwt.Token) (any, error) {
		if kid, ok := t.Header["kid"].(string); ok && kid != f.privateKeyID {
			return nil, fmt.Errorf("kid %q, want %q", kid, f.privateKeyID)
		}
		return f.key, nil
	},
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(f.clientEmail),
		jwt.WithAudience(f.TokenURL()),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(time.Minute),
	)
	if err != nil {
		writeOAuthError(w, "invalid_grant", "Invalid JWT: "+err.Error())
		return
	}
	if exp, _ := claims.GetExpirationTime(); exp != nil {
		if iat, _ := claims.GetIssuedAt(); iat == nil || exp.Sub(iat.Time) > time.Hour+time.Minute {
			writeOAuthError(w, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
			return
		}
	}
	scope, _ := claims["scope"].(string)
	if strings.TrimSpace(scope) == "" {
		writeOAuthError(w, "invalid_scope", "Empty or missing scope not allowed.")
		return
	}
	token := "ya29.fake-" + randomHex(24)
	f.tokensMu.Lock()
	f.tokens[token] = issuedToken{expires: time.Now().Add(time.Hour), scopes: strings.Fields(scope)}
	f.tokensMu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": token,
		"token_type":   "Bearer",
		"expires_in":   3600,
	})
}

// writeOAuthError answers 400 in the token endpoint's error format.
func writeOAuthError(w http.ResponseWriter, code, description string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

// fcmRejection is a failed check: the status, Google status, errorCode
// (empty for errors that carry no FcmError detail) and why.
type fcmRejection struct {
	status    int
	errorCode string
	message   string
	detail    string
}

// fcmErrorStatus is the HTTP status FCM answers with each errorCode.
var fcmErrorStatus = map[string]int{
	"INVALID_ARGUMENT": 400, "THIRD_PARTY_AUTH_ERROR": 401,
	"SENDER_ID_MISMATCH": 403, "UNREGISTERED": 404, "QUOTA_EXCEEDED": 429,
	"UNSPECIFIED_ERROR": 500, "INTERNAL": 500, "UNAVAILABLE": 503,
}

// fcmStatusError is the errorCode a scripted Answer with only a Status gets.
var fcmStatusError = map[int]string{
	400: "INVALID_ARGUMENT", 401: "THIRD_PARTY_AUTH_ERROR", 403: "SENDER_ID_MISMATCH",
	404: "UNREGISTERED", 429: "QUOTA_EXCEEDED", 500: "INTERNAL", 503: "UNAVAILABLE",
}

// googleStatus is the canonical status name (google.rpc.Code) Google's
// APIs pair with an HTTP status.
var googleStatus = map[int]string{
	400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
	404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED",
	499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
	503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}

// fcmMessages are the messages FCM sends with its errors.
var fcmMessages = map[string]string{
	"INVALID_ARGUMENT":       "Request contains an invalid argument.",
	"THIRD_PARTY_AUTH_ERROR": "Auth error from APNS or Web Push Service",
	"SENDER_ID_MISMATCH":     "SenderId mismatch",
	"UNREGISTERED":           "Requested entity was not found.",
	"QUOTA_EXCEEDED":         "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
	"INTERNAL":               "Internal error encountered.",
	"UNAVAILABLE":            "The service is currently unavailable.",
}

// serveSend is projects.messages.send.
func (f *FCM) serveSend(w http.ResponseWriter, r *http.Request) {
	rec := FCMRequest{
		Time:    time.Now(),
		Proto:   r.Proto,
		Project: r.PathValue("project"),
		Header:  r.Header.Clone(),
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rej := f.checkSend(r, body, &rec)
	var answer Answer
	if rej == nil {
		target := rec.Token + rec.Topic + rec.Condition // exactly one is set
		if scripted, ok := f.nextAnswer(target); ok && scripted.failed() {
			answer = scripted
			rec.Detail = "scripted"
		}
	} else {
		rec.Detail = rej.detail
	}
	if answer.failed() {
		rej = &fcmRejection{status: answer.Status, errorCode: answer.Reason}
		if rej.status == 0 {
			rej.status = fcmErrorStatus[rej.errorCode]
		}
		if rej.status == 0 {
			rej.status = http.StatusInternalServerError
		}
		if rej.errorCode == "" {
			rej.errorCode = fcmStatusError[rej.status]
		}
	}
	if rej != nil {
		rec.Status = rej.status
		rec.Reason = rej.errorCode
		if rec.Reason == "" {
			rec.Reason = statusName(rej.status)
		}
	} else {
		rec.Status = http.StatusOK
		rec.Name = fmt.Sprintf("projects/%s/messages/0:%d%%%s", f.projectID, time.Now().UnixMicro(), randomHex(8))
		if rec.ValidateOnly {
			rec.Name = "projects/" + f.projectID + "/messages/fake_message_id"
		}
	}
	f.log.add(rec)
	f.pause(r)

	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if rej == nil {
		json.NewEncoder(w).Encode(map[string]string{"name": rec.Name})
		return
	}
	answer.setRetryAfter(w.Header())
	if rej.status == http.StatusUnauthorized && rej.errorCode == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
	}
	writeGoogleError(w, rej)
}

// statusName is the Google status for an HTTP status.
func statusName(status int) string {
	if name, ok := googleStatus[status]; ok {
		return name
	}
	return "UNKNOWN"
}

// writeGoogleError answers in the JSON error format of Google's APIs.
func writeGoogleError(w http.ResponseWriter, rej *fcmRejection) {
	message := rej.message
	if message == "" {
		message = fcmMessages[rej.errorCode]
	}
	if message == "" {
		message = http.StatusText(rej.status)
	}
	e := map[string]any{
		"code":    rej.status,
		"message": message,
		"status":  statusName(rej.status),
	}
	if rej.errorCode != "" {
		e["details"] = []map[string]string{{
			"@type":     "type.googleapis.com/google.firebase.fcm.v1.FcmError",
			"errorCode": rej.errorCode,
		}}
	}
	w.WriteHeader(rej.status)
	json.NewEncoder(w).Encode(map[string]any{"error": e})
}

// checkSend applies FCM's checks to a send request and fills rec from the
// body as far as it parses.
func (f *FCM) checkSend(r *http.Request, body []byte, rec *FCMRequest) *fcmRejection {
	if r.Method != http.MethodPost {
		return &fcmRejection{status: http.StatusMethodNotAllowed, message: "Method " + r.Method + " not allowed", detail: "method " + r.Method}
	}
	if rej := f.checkBearer(r.Header.Get("Authorization")); rej != nil {
		return rej
	}
	if rec.Project != f.projectID {
		return &fcmRejection{
			status:  http.StatusForbidden,
			message: "Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/" + rec.Project + "' (or it may not exist).",
			detail:  fmt.Sprintf("project %q, want %q", rec.Project, f.projectID),
		}
	}
	invalid := func(detail string) *fcmRejection {
		return &fcmRejection{status: http.StatusBadRequest, errorCode: "INVALID_ARGUMENT", detail: detail}
	}
	var req struct {
		ValidateOnly      bool           `json:"validate_only"`
		ValidateOnlyCamel bool           `json:"validateOnly"`
		Message           map[string]any `json:"message"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return invalid("body: " + err.Error())
	}
	rec.ValidateOnly = req.ValidateOnly || req.ValidateOnlyCamel
	rec.Message = req.Message
	if rec.Message == nil {
		return invalid(`no "message"`)
	}
	m := rec.Message
	rec.Token, _ = m["token"].(string)
	rec.Topic, _ = m["topic"].(string)
	rec.Condition, _ = m["condition"].(string)
	targets := 0
	for _, t := range []string{rec.Token, rec.Topic, rec.Condition} {
		if t != "" {
			targets++
		}
	}
	if targets != 1 {
		return invalid(fmt.Sprintf("%d of token, topic and condition set, want exactly one", targets))
	}
	var err error
	if rec.Data, err = stringMap(m["data"]); err != nil {
		return invalid("data: " + err.Error())
	}
	if android, ok := m["android"].(map[string]any); ok {
		rec.CollapseKey, _ = field(android, "collapse_key", "collapseKey").(string)
		rec.AndroidPriority, _ = android["priority"].(string)
		if p := strings.ToLower(rec.AndroidPriority); p != "" && p != "normal" && p != "high" {
			return invalid("android.priority " + rec.AndroidPriority)
		}
		if _, err := stringMap(android["data"]); err != nil {
			return invalid("android.data: " + err.Error())
		}
	} else if m["android"] != nil {
		return invalid("android is not an object")
	}
	if apns, ok := m["apns"].(map[string]any); ok {
		if rec.APNSHeaders, err = stringMap(apns["headers"]); err != nil {
			return invalid("apns.headers: " + err.Error())
		}
		if p, ok := apns["payload"]; ok {
			if rec.APNSPayload, ok = p.(map[string]any); !ok {
				return invalid("apns.payload is not an object")
			}
		}
	} else if m["apns"] != nil {
		return invalid("apns is not an object")
	}
	return nil
}

// checkBearer verifies an Authorization header against the issued tokens.
func (f *FCM) checkBearer(authorization string) *fcmRejection {
	unauthenticated := func(detail string) *fcmRejection {
		return &fcmRejection{
			status:  http.StatusUnauthorized,
			message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
			detail:  detail,
		}
	}
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return unauthenticated("no bearer token")
	}
	f.tokensMu.Lock()
	grant, ok := f.tokens[token]
	f.tokensMu.Unlock()
	switch {
	case !ok:
		return unauthenticated("token not issued here")
	case time.Now().After(grant.expires):
		return unauthenticated("token expired")
	case !slices.Contains(grant.scopes, FCMScope) && !slices.Contains(grant.scopes, cloudPlatformScope):
		return &fcmRejection{
			status:  http.StatusForbidden,
			message: "Request had insufficient authentication scopes.",
			detail:  fmt.Sprintf("token scopes %q", grant.scopes),
		}
	}
	return nil
}

// field returns obj[name], or obj[camel] when name is absent: protobuf's
// JSON mapping takes a field by its proto name or its lowerCamelCase one.
func field(obj map[string]any, name, camel string) any {
	if v, ok := obj[name]; ok {
		return v
	}
	return obj[camel]
}

// stringMap converts a decoded JSON object whose values must be strings;
// nil stays nil.
func stringMap(v any) (map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not an object")
	}
	out := make(map[string]string, len(obj))
	for k, e := range obj {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("value of %q is not a string", k)
		}
		out[k] = s
	}
	return out, nil
}

// randomDigits returns n random decimal digits.
func randomDigits(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}
