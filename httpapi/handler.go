// Package httpapi is Parley's REST transport: it decodes requests, calls the
// core (package service) with the caller's principal, and encodes answers.
// It decides nothing about permissions; it does own request ids, logging,
// body size limits, per-IP and per-user rate limits and the error-to-status
// table.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/metrics"
	"github.com/parleychat/parley/ratelimit"
	"github.com/parleychat/parley/service"
)

// Config holds the REST settings. Zero values mean the defaults given.
type Config struct {
	// MaxRequestBytes bounds a request body in bytes. Default: the core's
	// MaxBodyBytes plus 16 KiB for the JSON around it.
	MaxRequestBytes int64
	// LimitsOff turns off the per-IP and per-user rate limits (load tests).
	// The per-handle login limit stays on.
	LimitsOff bool
	// IPRate and IPBurst limit requests per client IP (per second, burst).
	// Default 50/s, burst 100.
	IPRate  float64
	IPBurst int
	// UserRate and UserBurst limit authenticated requests per user.
	// Default 20/s, burst 40.
	UserRate  float64
	UserBurst int
	// AuthRate and AuthBurst limit registrations and logins per client IP,
	// which cost an argon2id hash each. Default 1/s, burst 10.
	AuthRate  float64
	AuthBurst int
	// LoginRate and LoginBurst limit failed login attempts per handle and
	// client address, and per handle and known device (a device_token
	// from an earlier login: see Options.DeviceTokens). Default 10 per
	// minute (0.1667/s), burst 10.
	LoginRate  float64
	LoginBurst int
	// LoginHandleRate and LoginHandleBurst are the ceiling on failed login
	// attempts per handle from devices that are not known, whatever their
	// address: the bound on a guesser with many addresses. A known device
	// is not held by it, so it is no tool to lock the owner out. Default
	// 1 per second, burst 100.
	LoginHandleRate  float64
	LoginHandleBurst int
	// TrustedProxies are the load balancers in front (HAProxy): for a
	// request from one of them, the client is the rightmost address of
	// X-Forwarded-For that is not a trusted proxy itself. Without them,
	// and for any other peer, the client is the peer (the header is
	// ignored: anyone can write it).
	TrustedProxies []netip.Prefix
	// WriteTimeout is the server's write timeout (http.Server.WriteTimeout).
	// A streamed reply (GET /v1/conversations) pushes the connection's
	// write deadline this far ahead after each element it writes, so a
	// slow client that keeps reading gets all of it and only one that
	// stops reading for this long is cut off. 0: no deadline is moved.
	WriteTimeout time.Duration
}

func (c *Config) setDefaults(maxBody int) {
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = int64(maxBody) + 16<<10
	}
	def := func(r *float64, b *int, rate float64, burst int) {
		if *r <= 0 {
			*r = rate
		}
		if *b <= 0 {
			*b = burst
		}
	}
	def(&c.IPRate, &c.IPBurst, 50, 100)
	def(&c.UserRate, &c.UserBurst, 20, 40)
	def(&c.AuthRate, &c.AuthBurst, 1, 10)
	def(&c.LoginRate, &c.LoginBurst, 10.0/60, 10)
	def(&c.LoginHandleRate, &c.LoginHandleBurst, 1, 100)
}

// Handler serves the REST API, health endpoints, JWKS and metrics.
type Handler struct {
	svc     *service.Service
	cfg     Config
	log     *slog.Logger
	metrics *metrics.Metrics
	jwks    func() []byte
	ready   map[string]func(context.Context) error
	mux     *http.ServeMux

	deviceTokens DeviceTokens  // nil: no known-device tokens
	media        *MediaOptions // nil: no media routes
	web          http.Handler  // nil: no web client at /

	ipLimit, userLimit, authLimit *ratelimit.Keyed
	// loginLimit is keyed on handle and client address or known device;
	// handleLimit on the handle alone, for devices that are not known.
	loginLimit, handleLimit *ratelimit.Keyed
}

// DeviceTokens issues and checks known-device tokens (package auth): a
// device that logged in gets one, and its next logins are limited apart
// from other attempts at the same handle. Safe for concurrent use.
type DeviceTokens interface {
	// Issue returns a token for handle (normalized).
	Issue(handle string, now time.Time) string
	// Verify returns the id of a token issued for handle and still
	// valid; ok is false otherwise.
	Verify(token, handle string, now time.Time) (id string, ok bool)
}

// Options are the parts a Handler serves besides the API.
type Options struct {
	// JWKS returns the current JSON Web Key Set.
	JWKS func() []byte
	// Metrics serves /metrics; nil leaves the route out.
	Metrics http.Handler
	// ReadyChecks are checked by /readyz besides the store, by name (the
	// event bus, ...).
	ReadyChecks map[string]func(context.Context) error
	// WebSocket serves GET /v1/ws (package wsgate); nil leaves it out.
	WebSocket http.Handler
	// DeviceTokens, if set, issues known-device tokens at login and
	// checks them at the next (see DeviceTokens).
	DeviceTokens DeviceTokens
	// MetricsToken, if set, is required as a bearer token on /metrics.
	MetricsToken string
	// Media, if set, serves media downloads (see MediaOptions).
	Media *MediaOptions
	// Uploads, if set, serves tus uploads at /v1/uploads and below
	// (package media/upload) to authenticated callers (PATCHes are not
	// held to the per-user rate limit); nil leaves the routes out.
	Uploads func(w http.ResponseWriter, r *http.Request, p *parley.Principal)
	// OpsOnly serves only the health, readiness, JWKS and metrics routes:
	// for a node that does not run the gateway role, whose port is for
	// monitoring, not clients.
	OpsOnly bool
	// Web, if set, serves GET and HEAD of every path no other route
	// takes, outside /v1/ (package webui: the browser client). Without it,
	// and always under /v1/, an unknown path is a JSON 404.
	Web http.Handler
}

// New returns a Handler. log must not be nil; m may be nil.
func New(svc *service.Service, cfg Config, opts Options, log *slog.Logger, m *metrics.Metrics) *Handler {
	cfg.setDefaults(svc.Config().MaxBodyBytes)
	h := &Handler{svc: svc, cfg: cfg, log: log, metrics: m, jwks: opts.JWKS, ready: opts.ReadyChecks, mux: http.NewServeMux()}
	h.deviceTokens = opts.DeviceTokens
	if opts.Media != nil && opts.Media.Links != nil && opts.Media.Blobs != nil {
		h.media = opts.Media
	}
	h.loginLimit = ratelimit.New(cfg.LoginRate, cfg.LoginBurst)
	h.handleLimit = ratelimit.New(cfg.LoginHandleRate, cfg.LoginHandleBurst)
	if !cfg.LimitsOff {
		h.ipLimit = ratelimit.New(cfg.IPRate, cfg.IPBurst)
		h.userLimit = ratelimit.New(cfg.UserRate, cfg.UserBurst)
		h.authLimit = ratelimit.New(cfg.AuthRate, cfg.AuthBurst)
	}
	metricsHandler := opts.Metrics
	if metricsHandler != nil && opts.MetricsToken != "" {
		metricsHandler = h.tokenOnly(opts.MetricsToken, metricsHandler)
	}
	if !opts.OpsOnly {
		h.web = opts.Web
	}
	h.routes(metricsHandler, !opts.OpsOnly)
	if opts.WebSocket != nil {
		h.mux.Handle("GET /v1/ws", opts.WebSocket)
	}
	if opts.Uploads != nil && !opts.OpsOnly {
		// An upload's PATCHes are not held to the per-user request rate:
		// a fast link sends many chunks a second, and their bytes are
		// bounded by the size limit and the quotas instead. Creations
		// and the rest are.
		limited := func(r *http.Request) bool { return r.Method != http.MethodPatch }
		h.mux.Handle("/v1/uploads", h.authedLimit(opts.Uploads, limited))
		h.mux.Handle("/v1/uploads/", h.authedLimit(opts.Uploads, limited))
	}
	return h
}

func (h *Handler) routes(metricsHandler http.Handler, api bool) {
	m := h.mux
	m.HandleFunc("GET /healthz", h.healthz)
	m.HandleFunc("GET /readyz", h.readyz)
	m.HandleFunc("GET /.well-known/jwks.json", h.jwksDoc)
	if metricsHandler != nil {
		m.Handle("GET /metrics", metricsHandler)
	}
	// Every path no other route takes: the web client's files for GET
	// and HEAD outside /v1 (a "GET /" pattern would conflict with routes
	// registered for every method, such as /v1/uploads), else a JSON 404.
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if h.web != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
			r.URL.Path != "/v1" && !strings.HasPrefix(r.URL.Path, "/v1/") {
			h.web.ServeHTTP(w, r)
			return
		}
		h.writeError(w, r, parley.Errorf(parley.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
	if !api {
		return
	}

	m.HandleFunc("POST /v1/accounts", h.register)
	m.HandleFunc("POST /v1/sessions", h.login)
	m.HandleFunc("POST /v1/sessions/refresh", h.refresh)
	m.Handle("POST /v1/ws/ticket", h.authed(h.wsTicket))
	m.Handle("DELETE /v1/sessions/current", h.authed(h.logout))
	m.Handle("DELETE /v1/sessions", h.authed(h.logoutAll))

	m.Handle("GET /v1/me", h.authed(h.me))
	m.Handle("GET /v1/users", h.authed(h.findUser))
	m.Handle("GET /v1/users/{id}", h.authed(h.user))
	m.Handle("GET /v1/devices", h.authed(h.devices))
	m.Handle("DELETE /v1/devices/{id}", h.authed(h.removeDevice))
	m.Handle("PUT /v1/devices/current/push", h.authed(h.setPush))
	m.Handle("DELETE /v1/devices/current/push", h.authed(h.deletePush))
	m.HandleFunc("GET /v1/push/vapid", h.vapid)
	m.Handle("PUT /v1/me/dnd", h.authed(h.setDND))

	m.Handle("POST /v1/conversations", h.authed(h.createConversation))
	m.Handle("GET /v1/conversations", h.authed(h.conversations))
	m.Handle("GET /v1/conversations/{id}", h.authed(h.conversation))
	m.Handle("DELETE /v1/conversations/{id}", h.authed(h.deleteConversation))
	m.Handle("GET /v1/conversations/{id}/members", h.authed(h.members))
	m.Handle("POST /v1/conversations/{id}/members", h.authed(h.addMember))
	m.Handle("DELETE /v1/conversations/{id}/members/{user_id}", h.authed(h.removeMember))
	m.Handle("PATCH /v1/conversations/{id}/members/{user_id}", h.authed(h.setMemberRole))
	m.Handle("POST /v1/conversations/{id}/messages", h.authed(h.send))
	m.Handle("GET /v1/conversations/{id}/messages", h.authed(h.history))
	m.Handle("GET /v1/conversations/{id}/messages/{seq}", h.authed(h.message))
	m.Handle("PATCH /v1/conversations/{id}/messages/{seq}", h.authed(h.editMessage))
	m.Handle("DELETE /v1/conversations/{id}/messages/{seq}", h.authed(h.deleteMessage))
	m.Handle("POST /v1/conversations/{id}/read", h.authed(h.markRead))
	m.Handle("PUT /v1/conversations/{id}/mute", h.authed(h.setMute))

	m.Handle("POST /v1/admin/users/{id}/suspend", h.authed(h.suspend))
	m.Handle("POST /v1/admin/users/{id}/reinstate", h.authed(h.reinstate))
	m.Handle("GET /v1/admin/push/trace", h.authed(h.pushTrace))
	h.privacyRoutes(m)
	h.mediaRoutes(m)
	h.e2eeRoutes(m)
}

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := h.svc.Ready(ctx); err != nil {
		h.log.WarnContext(r.Context(), "not ready", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: errorDetail{Code: parley.CodeUnavailable, Message: "store unreachable"}})
		return
	}
	for name, check := range h.ready {
		if err := check(ctx); err != nil {
			h.log.WarnContext(r.Context(), "not ready", "check", name, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: errorDetail{Code: parley.CodeUnavailable, Message: name + " unreachable"}})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (h *Handler) jwksDoc(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(h.jwks())
}
