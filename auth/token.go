package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/parleychat/parley"
)

// Claims are what an access token says about its bearer.
type Claims struct {
	UserID    string // JWT "sub"
	DeviceID  string // JWT "did"
	SessionID string // JWT "sid": the refresh-token family of the device's login
	Role      string // JWT "role": the user's system role when the token was issued
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// issuer is the JWT "iss" of every access token.
const issuer = "parley"

// maxTokenLen bounds the input Verify parses; real tokens are ~400 bytes.
const maxTokenLen = 4096

// tokenClaims is the JWT form of Claims.
type tokenClaims struct {
	jwt.RegisteredClaims
	DeviceID  string `json:"did"`
	SessionID string `json:"sid"`
	Role      string `json:"role,omitempty"`

	now time.Time // the time Verify checks against; not encoded
}

var errTokenClaims = errors.New("missing or bad claims")

// Validate implements jwt.ClaimsValidator; the parser calls it after the
// signature checked out, next to its own checks of exp and iss.
func (c *tokenClaims) Validate() error {
	if c.Subject == "" || c.DeviceID == "" || c.SessionID == "" || c.IssuedAt == nil {
		return errTokenClaims
	}
	if c.IssuedAt.After(c.now.Add(verifyLeeway)) {
		return fmt.Errorf("%w: issued in the future", errTokenClaims)
	}
	return nil
}

// Issue signs an access token for c with the active key. IssuedAt and
// ExpiresAt of c are ignored: the token is issued at now and expires
// AccessTTL later (both in whole seconds, as JWT has them). expiresIn is
// the token's lifetime from now. UserID, DeviceID and SessionID must be set.
// Safe for concurrent use.
func (k *Keys) Issue(c Claims, now time.Time) (token string, expiresIn time.Duration, err error) {
	if c.UserID == "" || c.DeviceID == "" || c.SessionID == "" {
		return "", 0, errors.New("auth: issue token: user, device and session ids are required")
	}
	key := k.signer()
	now = now.Truncate(time.Second) // JWT times are whole seconds
	jti := make([]byte, 16)
	rand.Read(jti)
	exp := jwt.NewNumericDate(now.Add(k.opts.AccessTTL))
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, &tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   c.UserID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: exp,
			ID:        base64.RawURLEncoding.EncodeToString(jti),
		},
		DeviceID:  c.DeviceID,
		SessionID: c.SessionID,
		Role:      c.Role,
	})
	t.Header["kid"] = key.kid
	token, err = t.SignedString(key.private)
	if err != nil {
		return "", 0, fmt.Errorf("auth: sign token: %w", err)
	}
	return token, exp.Sub(now), nil
}

// Verify checks an access token and returns its claims. It accepts only
// EdDSA tokens signed by a key it holds (active, or retired and not yet
// dropped), issued by "parley", not expired at now, and not issued more than
// a few seconds after now. Errors are *parley.Error: CodeTokenExpired when an
// otherwise good token has expired (the client should refresh), and
// CodeUnauthorized for anything else; their messages are safe to show, and
// the error text adds the reason for the log. Safe for concurrent use.
func (k *Keys) Verify(token string, now time.Time) (Claims, error) {
	if len(token) > maxTokenLen {
		return Claims{}, fmt.Errorf("auth: token too long: %w", errInvalidToken())
	}
	claims := &tokenClaims{now: now}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithStrictDecoding(),
	)
	_, err := parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		public, ok := k.verificationKey(kid)
		if !ok && k.reloadForUnknownKey(now) {
			// Another node may have rotated a moment ago and signed with
			// its new key before this node's next Maintain.
			public, ok = k.verificationKey(kid)
		}
		if !ok {
			return nil, errors.New("unknown kid")
		}
		return public, nil
	})
	switch {
	case err == nil:
	case onlyExpired(err):
		return Claims{}, fmt.Errorf("auth: %v: %w", err, parley.Errorf(parley.CodeTokenExpired, "access token expired"))
	default:
		return Claims{}, fmt.Errorf("auth: %v: %w", err, errInvalidToken())
	}
	return Claims{
		UserID:    claims.Subject,
		DeviceID:  claims.DeviceID,
		SessionID: claims.SessionID,
		Role:      claims.Role,
		IssuedAt:  claims.IssuedAt.Time,
		ExpiresAt: claims.ExpiresAt.Time,
	}, nil
}

func errInvalidToken() *parley.Error {
	return parley.Errorf(parley.CodeUnauthorized, "invalid access token")
}

// onlyExpired reports whether expiry is the only thing wrong with a token.
// The parser checks claims only after the signature, so an expired token
// is one we signed.
func onlyExpired(err error) bool {
	return errors.Is(err, jwt.ErrTokenExpired) &&
		!errors.Is(err, jwt.ErrTokenInvalidIssuer) &&
		!errors.Is(err, jwt.ErrTokenNotValidYet) &&
		!errors.Is(err, jwt.ErrTokenRequiredClaimMissing) &&
		!errors.Is(err, errTokenClaims)
}
