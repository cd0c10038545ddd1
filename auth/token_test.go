package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/parleychat/parley"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var testClaims = Claims{UserID: "u1", DeviceID: "d1", SessionID: "s1", Role: "admin"}

func newTestKeys(tb testing.TB, opts KeyOptions) (*Keys, string) {
	tb.Helper()
	dir := tb.TempDir() + "/keys"
	k, err := LoadKeys(dir, opts, t0)
	if err != nil {
		tb.Fatal(err)
	}
	return k, dir
}

func issue(tb testing.TB, k *Keys, now time.Time) string {
	tb.Helper()
	token, _, err := k.Issue(testClaims, now)
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

// wantCode checks that err carries code and a message fit for a client.
func wantCode(tb testing.TB, err error, code parley.Code) {
	tb.Helper()
	if got := parley.ErrorCode(err); got != code {
		tb.Fatalf("error %v: code %q, want %q", err, got, code)
	}
	if msg := parley.ErrorMessage(err); msg != "invalid access token" && msg != "access token expired" {
		tb.Fatalf("client message %q", msg)
	}
}

// forge signs claims with method and key, under the header kid.
func forge(tb testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	tb.Helper()
	t := jwt.NewWithClaims(method, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// goodClaims are the claims Issue would make at now.
func goodClaims(now time.Time) *tokenClaims {
	return &tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: "u1", ID: "j",
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(DefaultAccessTTL)),
		},
		DeviceID: "d1", SessionID: "s1",
	}
}

func TestIssueVerify(t *testing.T) {
	k, _ := newTestKeys(t, KeyOptions{})
	now := t0.Add(1500 * time.Millisecond)
	token, expiresIn, err := k.Issue(testClaims, now)
	if err != nil {
		t.Fatal(err)
	}
	if expiresIn <= DefaultAccessTTL-time.Second || expiresIn > DefaultAccessTTL {
		t.Errorf("expiresIn %v, want about %v", expiresIn, DefaultAccessTTL)
	}
	got, err := k.Verify(token, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := testClaims
	want.IssuedAt = t0.Add(time.Second) // JWT keeps whole seconds
	want.ExpiresAt = want.IssuedAt.Add(DefaultAccessTTL)
	if !got.IssuedAt.Equal(want.IssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("times %v..%v, want %v..%v", got.IssuedAt, got.ExpiresAt, want.IssuedAt, want.ExpiresAt)
	}
	got.IssuedAt, got.ExpiresAt, want.IssuedAt, want.ExpiresAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if got != want {
		t.Errorf("Verify = %+v, want %+v", got, want)
	}

	// The header names the key; the payload has the documented claims.
	header, payload := decodeSegments(t, token)
	for _, s := range []string{`"alg":"EdDSA"`, `"kid":"` + k.signer().kid + `"`} {
		if !strings.Contains(header, s) {
			t.Errorf("header %s lacks %s", header, s)
		}
	}
	for _, s := range []string{`"iss":"parley"`, `"sub":"u1"`, `"did":"d1"`, `"sid":"s1"`, `"role":"admin"`, `"jti":`, `"iat":`, `"exp":`} {
		if !strings.Contains(payload, s) {
			t.Errorf("payload %s lacks %s", payload, s)
		}
	}
	if other := issue(t, k, now); other == token {
		t.Error("two tokens are equal: jti not random")
	}
}

func decodeSegments(tb testing.TB, token string) (header, payload string) {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("token %q has %d parts", token, len(parts))
	}
	h, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	p, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil {
		tb.Fatalf("token %q: %v %v", token, err1, err2)
	}
	return string(h), string(p)
}

func TestIssueRequiresIDs(t *testing.T) {
	k, _ := newTestKeys(t, KeyOptions{})
	for _, c := range []Claims{{}, {UserID: "u", DeviceID: "d"}, {UserID: "u", SessionID: "s"}, {DeviceID: "d", SessionID: "s"}} {
		if _, _, err := k.Issue(c, t0); err == nil {
			t.Errorf("Issue(%+v) succeeded", c)
		}
	}
}

func TestVerifyExpired(t *testing.T) {
	k, _ := newTestKeys(t, KeyOptions{AccessTTL: time.Minute})
	token := issue(t, k, t0)
	if _, err := k.Verify(token, t0.Add(time.Minute-time.Nanosecond)); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	for _, at := range []time.Duration{time.Minute, time.Minute + time.Second, 24 * time.Hour} {
		_, err := k.Verify(token, t0.Add(at))
		wantCode(t, err, parley.CodeTokenExpired)
	}
}

func TestVerifyRejects(t *testing.T) {
	k, _ := newTestKeys(t, KeyOptions{})
	active := k.signer()
	good := issue(t, k, t0)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)

	expired := goodClaims(t0.Add(-time.Hour))
	wrongIssuer := goodClaims(t0)
	wrongIssuer.Issuer = "evil"
	future := goodClaims(t0.Add(10 * time.Second))
	noSession := goodClaims(t0)
	noSession.SessionID = ""
	noSubject := goodClaims(t0)
	noSubject.Subject = ""
	noExp := goodClaims(t0)
	noExp.ExpiresAt = nil
	noIat := goodClaims(t0)
	noIat.IssuedAt = nil

	parts := strings.Split(good, ".")
	otherPayload := strings.Split(forge(t, jwt.SigningMethodEdDSA, otherKey, active.kid, func() *tokenClaims {
		c := goodClaims(t0)
		c.Subject = "u2"
		return c
	}()), ".")[1]

	cases := map[string]string{
		"empty":                 "",
		"garbage":               "not a token",
		"two parts":             parts[0] + "." + parts[1],
		"four parts":            good + ".x",
		"bearer prefix":         "Bearer " + good,
		"no signature":          parts[0] + "." + parts[1] + ".",
		"truncated signature":   good[:len(good)-2],
		"swapped payload":       parts[0] + "." + otherPayload + "." + parts[2],
		"padded signature":      good + "==",
		"other key, same kid":   forge(t, jwt.SigningMethodEdDSA, otherKey, active.kid, goodClaims(t0)),
		"expired, other key":    forge(t, jwt.SigningMethodEdDSA, otherKey, active.kid, expired),
		"unknown kid":           forge(t, jwt.SigningMethodEdDSA, otherKey, keyID(otherKey.Public().(ed25519.PublicKey)), goodClaims(t0)),
		"no kid":                forge(t, jwt.SigningMethodEdDSA, active.private, "", goodClaims(t0)),
		"alg none":              forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, active.kid, goodClaims(t0)),
		"HS256 with public key": forge(t, jwt.SigningMethodHS256, []byte(active.public), active.kid, goodClaims(t0)),
		"HS256 with JWK x":      forge(t, jwt.SigningMethodHS256, []byte(base64.RawURLEncoding.EncodeToString(active.public)), active.kid, goodClaims(t0)),
		"HS512 with public key": forge(t, jwt.SigningMethodHS512, []byte(active.public), active.kid, goodClaims(t0)),
		"wrong issuer":          forge(t, jwt.SigningMethodEdDSA, active.private, active.kid, wrongIssuer),
		"issued in the future":  forge(t, jwt.SigningMethodEdDSA, active.private, active.kid, future),
		"no session":            forge(t, jwt.SigningMethodEdDSA, active.private, active.kid, noSession),
		"no subject":            forge(t, jwt.SigningMethodEdDSA, active.private, active.kid, noSubject),
		"no exp":                forge(t, jwt.SigningMethodEdDSA, active.private, active.kid, noExp),
		"no iat":                forge(t, jwt.SigningMethodEdDSA, active.private, active.kid, noIat),
		"too long":              good + strings.Repeat("A", maxTokenLen),
		"wrong issuer and expired": forge(t, jwt.SigningMethodEdDSA, active.private, active.kid, func() *tokenClaims {
			c := goodClaims(t0.Add(-time.Hour))
			c.Issuer = "evil"
			return c
		}()),
	}
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := k.Verify(token, t0.Add(time.Second))
			wantCode(t, err, parley.CodeUnauthorized)
		})
	}

	// Within the leeway a token issued slightly "later" is fine (clock skew
	// between nodes).
	if _, err := k.Verify(forge(t, jwt.SigningMethodEdDSA, active.private, active.kid, goodClaims(t0.Add(4*time.Second))), t0); err != nil {
		t.Errorf("iat 4 s ahead: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	// The fuzzing engine runs this in several processes that must agree on
	// the valid seed, so the key and the seed token are fixed.
	private := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	public := private.Public().(ed25519.PublicKey)
	dir := f.TempDir()
	data, err := encodeKey(&signingKey{kid: keyID(public), private: private, public: public, createdAt: t0})
	if err != nil {
		f.Fatal(err)
	}
	if err := writeKeyFile(dir, keyID(public), data); err != nil {
		f.Fatal(err)
	}
	k, err := LoadKeys(dir, KeyOptions{}, t0)
	if err != nil {
		f.Fatal(err)
	}
	active := k.signer()
	good := forge(f, jwt.SigningMethodEdDSA, active.private, active.kid, goodClaims(t0))
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add(forge(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, active.kid, goodClaims(t0)))
	f.Add(forge(f, jwt.SigningMethodHS256, []byte(active.public), active.kid, goodClaims(t0)))
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := k.Verify(token, t0.Add(time.Second))
		if err == nil {
			if token != good {
				t.Fatalf("forged token %q verified: %+v", token, claims)
			}
			return
		}
		if code := parley.ErrorCode(err); code != parley.CodeUnauthorized && code != parley.CodeTokenExpired {
			t.Fatalf("code %q", code)
		}
	})
}

func BenchmarkIssue(b *testing.B) {
	k, _ := newTestKeys(b, KeyOptions{})
	for b.Loop() {
		if _, _, err := k.Issue(testClaims, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k, _ := newTestKeys(b, KeyOptions{})
	token := issue(b, k, t0)
	for b.Loop() {
		if _, err := k.Verify(token, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	k, _ := newTestKeys(b, KeyOptions{})
	token := issue(b, k, t0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.Verify(token, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
