package pushtest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// record is what a fake keeps of one request.
type record[R any] interface {
	// clone returns a deep copy, so a caller may keep or change it.
	clone() R
	// summary is one line for failure messages: status and why.
	summary() string
}

// recorder is what every fake has: its server and its log of requests of
// type R, with the accessors tests use.
type recorder[R record[R]] struct {
	*server
	log *requestLog[R]
}

// Requests returns a copy of every request recorded since the start or
// the last Reset, in the order they arrived, rejected ones included.
func (f *recorder[R]) Requests() []R { return f.log.all() }

// Wait returns the recorded requests once there are at least n, or fails
// the test when that takes longer than timeout, listing what did arrive.
// Call it from the test's goroutine.
func (f *recorder[R]) Wait(tb testing.TB, n int, timeout time.Duration) []R {
	tb.Helper()
	return f.log.wait(tb, f.name, n, timeout)
}

// Reset forgets the recorded requests, the scripted answers not yet used
// and the delay; keys, credentials and subscriptions stay valid.
func (f *recorder[R]) Reset() {
	f.log.reset()
	f.resetScript()
}

// requestLog is a fake's log of requests. Its methods are safe for
// concurrent use.
type requestLog[R record[R]] struct {
	mu      sync.Mutex
	records []R
	grew    chan struct{} // closed and replaced whenever records grows
}

func newRequestLog[R record[R]]() *requestLog[R] {
	return &requestLog[R]{grew: make(chan struct{})}
}

// add records r, wakes wait, and returns r's index for update.
func (l *requestLog[R]) add(r R) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	close(l.grew)
	l.grew = make(chan struct{})
	return len(l.records) - 1
}

// update changes the record at index i (if reset has not dropped it).
func (l *requestLog[R]) update(i int, change func(r *R)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < len(l.records) {
		change(&l.records[i])
	}
}

// all returns deep copies of the records.
func (l *requestLog[R]) all() []R {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.copyLocked()
}

// copyLocked returns deep copies of the records. l.mu must be held.
func (l *requestLog[R]) copyLocked() []R {
	out := make([]R, len(l.records))
	for i, r := range l.records {
		out[i] = r.clone()
	}
	return out
}

// reset forgets the records.
func (l *requestLog[R]) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = nil
}

// wait returns the records once there are at least n, or fails the test.
func (l *requestLog[R]) wait(tb testing.TB, name string, n int, timeout time.Duration) []R {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		if len(l.records) >= n {
			out := l.copyLocked()
			l.mu.Unlock()
			return out
		}
		grew := l.grew
		l.mu.Unlock()
		select {
		case <-grew:
		case <-deadline.C:
			l.mu.Lock()
			lines := make([]string, len(l.records))
			for i, r := range l.records {
				lines[i] = "\n\t" + r.summary()
			}
			l.mu.Unlock()
			tb.Fatalf("%s fake: %d requests after %v, want at least %d:%s", name, len(lines), timeout, n, strings.Join(lines, ""))
			return nil
		}
	}
}

// server is the part the three fakes share: the TLS server with HTTP/2,
// the scripted answers and the delay. Its exported methods are promoted to
// APNs, FCM and WebPush.
type server struct {
	name string // "apns", "fcm" or "webpush", for failure messages
	tb   testing.TB
	http *httptest.Server
	done chan struct{} // closed when the test ends; cuts delays short

	mu      sync.Mutex
	answers map[string][]Answer // scripted answers by device, not yet used
	delay   time.Duration
	conns   int // connections accepted
}

// newServer starts handler on an httptest TLS server with HTTP/2 and
// closes it when tb's test ends.
func newServer(tb testing.TB, name string, handler http.Handler) *server {
	tb.Helper()
	s := &server{
		name:    name,
		tb:      tb,
		done:    make(chan struct{}),
		answers: make(map[string][]Answer),
	}
	s.http = httptest.NewUnstartedServer(handler)
	s.http.EnableHTTP2 = true
	s.http.Config.ErrorLog = log.New(testLogWriter{tb}, name+" fake: ", 0)
	s.http.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	s.http.StartTLS()
	tb.Cleanup(func() {
		close(s.done)
		s.http.Close()
	})
	return s
}

// testLogWriter sends the HTTP server's log (TLS handshake failures, say)
// to the test log instead of stderr.
type testLogWriter struct{ tb testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// Connections returns how many connections the server has accepted since
// it started (Reset does not clear it): a client that reuses its
// connection, or multiplexes requests on one with HTTP/2, opens few.
func (s *server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// URL returns the server's base URL, https://127.0.0.1:<port>.
func (s *server) URL() string { return s.http.URL }

// resetScript forgets the scripted answers not yet used and the delay.
func (s *server) resetScript() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers = make(map[string][]Answer)
	s.delay = 0
}

// Fail scripts the answers to the next requests for device (an APNs device
// token; an FCM registration token, topic name as sent, without /topics/,
// or condition; a Web Push endpoint or its ID): each request for it takes
// the next answer, in order, and once they are used up it is answered as
// usual. A request the fake rejects on
// its own (a bad signature, a malformed payload) is answered with that
// error and takes no scripted answer. Calls add to what is already
// scripted.
func (s *server) Fail(device string, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[device] = append(s.answers[device], answers...)
}

// nextAnswer takes the next scripted answer for device, if any.
func (s *server) nextAnswer(device string) (Answer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	queue := s.answers[device]
	if len(queue) == 0 {
		return Answer{}, false
	}
	if len(queue) == 1 {
		delete(s.answers, device)
	} else {
		s.answers[device] = queue[1:]
	}
	return queue[0], true
}

// SetDelay makes the server hold every push answer (rejections included)
// for d before writing it; zero, the default, answers at once. A request
// is recorded when it arrives, before the delay, so a test that kills the
// sender mid-burst sees what reached the provider. A delayed answer is cut
// short when the client goes away or the test ends. FCM's token endpoint
// is not delayed.
func (s *server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// pause waits out the delay set by SetDelay. It reports false if the
// client went away (or the test ended) meanwhile: the sender never
// learned the answer.
func (s *server) pause(r *http.Request) bool {
	s.mu.Lock()
	d := s.delay
	s.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.done:
	}
	return false
}

// CertPEM returns the server's certificate in PEM. It is the standard
// library's httptest certificate, the same for every httptest server in
// the process, and it is its own CA.
func (s *server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.http.Certificate().Raw})
}

// WriteCA writes CertPEM to dir/pushtest-ca.pem and returns the path, for
// a child process to trust (SSL_CERT_FILE for a Go program on Linux).
// Since all fakes share the certificate, one file serves them all. It
// fails the test when the file cannot be written.
func (s *server) WriteCA(dir string) string {
	s.tb.Helper()
	path := filepath.Join(dir, "pushtest-ca.pem")
	if err := os.WriteFile(path, s.CertPEM(), 0o644); err != nil {
		s.tb.Fatalf("%s fake: write CA: %v", s.name, err)
	}
	return path
}

// CertPool returns a new pool holding only the server's certificate.
func (s *server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.http.Certificate())
	return pool
}

// TLSConfig returns a new client TLS configuration trusting the server
// (and only it), for transports built elsewhere, such as an
// x/net/http2.Transport.
func (s *server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CertPool()}
}

// Transport returns a new transport trusting the server, with HTTP/2
// enabled. Its idle connections are closed when the test ends.
func (s *server) Transport() *http.Transport {
	tr := &http.Transport{
		TLSClientConfig:   s.TLSConfig(),
		ForceAttemptHTTP2: true,
	}
	s.tb.Cleanup(tr.CloseIdleConnections)
	return tr
}

// Client returns a new HTTP client on a new Transport.
func (s *server) Client() *http.Client {
	return &http.Client{Transport: s.Transport()}
}

// describe formats the one-line summary the records share.
func describe(when time.Time, what string, status int, reason, detail string) string {
	out := fmt.Sprintf("%s %s -> %d", when.Format("15:04:05.000"), what, status)
	if reason != "" {
		out += " " + reason
	}
	if detail != "" {
		out += " (" + detail + ")"
	}
	return out
}

// cloneJSONObject deep-copies a decoded JSON object.
func cloneJSONObject(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneJSONValue(v)
	}
	return out
}

func cloneJSONValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return cloneJSONObject(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneJSONValue(e)
		}
		return out
	default:
		return v
	}
}
