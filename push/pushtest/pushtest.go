// Package pushtest runs local servers that speak the wire protocols of the
// three push providers Parley sends to, for tests of the notification
// service: APNs (HTTP/2, ES256 provider tokens), FCM HTTP v1 (with the
// Google OAuth2 token endpoint it needs) and Web Push (RFC 8030, VAPID as
// in RFC 8292, aes128gcm payload encryption as in RFC 8291).
//
// Each fake checks a request the way the real provider does and answers a
// broken one with the provider's own error; it records every request,
// rejected or not; and it can be told to answer a given device with a
// scripted series of errors ([Answer]) or to answer slowly (SetDelay).
// The real client libraries (sideshow/apns2, Google's generated FCM client
// google.golang.org/api/fcm/v1, SherClockHolmes/webpush-go) are tested
// against the fakes in this package, so what passes here passes the wire
// format those libraries send.
//
// Every server is an httptest TLS server with HTTP/2 enabled, closed when
// the test ends. All httptest servers in a process present one certificate,
// the standard library's built-in test certificate (for 127.0.0.1, ::1 and
// example.com); TestCertificateIsShared checks that. So one file written
// by WriteCA makes a child process trust all three fakes: for a Go child on
// Linux, SSL_CERT_FILE=<that file> replaces the system roots with it.
//
// Everything here is safe for concurrent use, except that the methods that
// can fail the test (Wait, WriteCA, NewSubscription) must be called from
// the test's goroutine, as t.Fatal requires.
package pushtest

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
)

// Answer is a scripted answer to one push request, given to Fail. What
// Reason means depends on the provider: the APNs reason ("Unregistered"),
// the FCM errorCode ("UNREGISTERED"), or the text body of a Web Push
// answer. A zero Status is the one Reason implies (APNs and FCM), and an
// empty Reason is the usual one for Status; a scripted answer with a 2xx
// Status and no Reason is an ordinary success.
type Answer struct {
	Status     int    // HTTP status code
	Reason     string // provider's error code, or Web Push body
	RetryAfter int    // seconds, sent as Retry-After; zero sends none
}

// failed reports whether a is an error answer rather than a success.
func (a Answer) failed() bool {
	return a.Status >= 300 || a.Reason != ""
}

// setRetryAfter sets the Retry-After header when the answer asks for one.
func (a Answer) setRetryAfter(h http.Header) {
	if a.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(a.RetryAfter))
	}
}

// randomHex returns n random bytes in lowercase hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// randomAlnum returns n random characters from A-Z and 0-9, the alphabet
// of Apple's key and team identifiers.
func randomAlnum(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// newUUID returns a random (version 4) UUID in the uppercase form APNs
// uses for apns-id.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return strings.ToUpper(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
}
