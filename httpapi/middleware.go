package httpapi

import (
	"bufio"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley"
)

// ServeHTTP runs every request through request ids, panic recovery,
// logging, metrics and the per-IP limit, then the routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-ID")
	if !validRequestID(id) {
		id = newRequestID()
	}
	r = r.WithContext(parley.WithRequestID(r.Context(), id))
	sw := &statusWriter{ResponseWriter: w}
	sw.Header().Set("X-Request-ID", id)
	// No response is to be sniffed into something else (a JSON error
	// rendered as HTML, say) by a browser.
	sw.Header().Set("X-Content-Type-Options", "nosniff")
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.log.ErrorContext(r.Context(), "panic", "panic", p, "route", r.Pattern)
			if sw.status == 0 {
				h.writeError(sw, r, parley.Errorf(parley.CodeInternal, "internal error"))
			}
		}
		d := time.Since(start)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		}
		h.metrics.ObserveHTTP(route, r.Method, sw.status, d)
		if route != "GET /metrics" && route != "GET /healthz" && route != "GET /readyz" {
			h.log.InfoContext(r.Context(), "request", "method", r.Method, "route", route,
				"status", sw.status, "duration_ms", float64(d.Microseconds())/1000, "remote", h.clientIP(r))
		}
	}()
	if unlimited(r.URL.Path) {
		// Probes and scrapers neither spend nor are refused tokens.
	} else if ok, retry := h.ipLimit.Allow(limitKey(h.clientIP(r)), start); !ok {
		h.rateLimited(sw, r, "ip", retry)
		return
	}
	h.mux.ServeHTTP(sw, r)
}

// authed wraps a handler that needs a caller: it authenticates the bearer
// token through the core and applies the per-user limit.
func (h *Handler) authed(next func(http.ResponseWriter, *http.Request, *parley.Principal)) http.Handler {
	return h.authedLimit(next, func(*http.Request) bool { return true })
}

// authedLimit is authed with the per-user limit applied only to requests
// for which limited says so.
func (h *Handler) authedLimit(next func(http.ResponseWriter, *http.Request, *parley.Principal), limited func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
			h.writeError(w, r, parley.Errorf(parley.CodeUnauthorized, "missing bearer token"))
			return
		}
		p, err := h.svc.Authenticate(r.Context(), token)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley", error="invalid_token"`)
			h.writeError(w, r, err)
			return
		}
		if !limited(r) {
			next(w, r, p)
			return
		}
		if ok, retry := h.userLimit.Allow(p.UserID, time.Now()); !ok {
			h.rateLimited(w, r, "user", retry)
			return
		}
		next(w, r, p)
	})
}

// tokenOnly serves next only to requests bearing token (compared in
// constant time); others get 401.
func (h *Handler) tokenOnly(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley-metrics"`)
			h.writeError(w, r, parley.Errorf(parley.CodeUnauthorized, "this endpoint needs the metrics token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (h *Handler) rateLimited(w http.ResponseWriter, r *http.Request, limit string, retry time.Duration) {
	h.metrics.RateLimited(limit)
	secs := int((retry + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	h.writeError(w, r, parley.Errorf(parley.CodeRateLimited, "too many requests; retry after %d s", secs))
}

// clientIP is the address of the client: the connection's peer or, when
// the peer is a trusted proxy, the rightmost address of X-Forwarded-For
// that is not a trusted proxy (the one the first trusted proxy saw;
// addresses to its left were written by the client and prove nothing).
func (h *Handler) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(h.cfg.TrustedProxies) == 0 || !h.trusted(host) {
		return host
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			hop := strings.TrimSpace(parts[j])
			if _, err := netip.ParseAddr(hop); err != nil {
				return host // a malformed chain: trust nothing in it
			}
			if !h.trusted(hop) {
				return hop
			}
		}
	}
	return host
}

// trusted reports whether ip is one of the trusted proxies.
func (h *Handler) trusted(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range h.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// limitKey is the per-IP limit's key for ip: the address itself for IPv4,
// its /64 for IPv6, where one client easily holds a whole /64.
func limitKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() || a.Is4In6() {
		return ip
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// unlimited reports whether a path is exempt from the per-IP limit: probes
// and scrapers must not be refused because clients share their address.
func unlimited(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/metrics"
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Hijack hands the connection to the WebSocket gateway (nbio asserts
// http.Hijacker itself, so Unwrap is not enough); the upgrade counts as 101.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("httpapi: the connection cannot be hijacked")
	}
	c, rw, err := hj.Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the connection (the WebSocket
// upgrade needs to hijack it).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
