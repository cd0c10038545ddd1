package wsgate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/metrics"
	"github.com/parleychat/parley/service"
)

// localEvents is what a Core may offer to spare the gateway decoding the
// events its own node published (service/loopback.go).
type localEvents interface {
	KeepPublished(on bool)
	TakePublished(data []byte) *service.Event
}

// Core is what the gateway needs from the core (package service); every
// decision about who may do what is made there.
type Core interface {
	Authenticate(ctx context.Context, accessToken string) (*parley.Principal, error)
	RedeemTicket(ctx context.Context, ticket string) (*parley.Principal, error)
	CheckSession(ctx context.Context, p *parley.Principal) error
	Send(ctx context.Context, p *parley.Principal, req service.SendRequest) (*parley.Message, bool, error)
	SendMany(ctx context.Context, p *parley.Principal, reqs []service.SendRequest, each func(int, service.SendResult)) []service.SendResult
	History(ctx context.Context, p *parley.Principal, conversationID string, q parley.HistoryQuery) ([]parley.Message, error)
	MarkRead(ctx context.Context, p *parley.Principal, conversationID string, seq int64) (parley.Watermark, error)
	MarkDelivered(ctx context.Context, p *parley.Principal, conversationID string, seq int64) (device, user parley.Watermark, err error)
	Typing(ctx context.Context, p *parley.Principal, conversationID, state string) error
	Sync(ctx context.Context, p *parley.Principal, position string, messages int) (*service.SyncResult, error)
	LastSeqs(ctx context.Context, p *parley.Principal) (map[string]int64, error)
	LiveMessages(ctx context.Context, conversationID string, after int64, limit int) ([]parley.Message, error)
	LiveKeys(ctx context.Context, conversationID string, from, to int64, deviceIDs []string) ([]parley.MessageKey, error)
	Presence(ctx context.Context, userID string, online bool, lastSeen time.Time) error
	Contacts(ctx context.Context, userID string) ([]string, error)
	ObserveEvent(e *service.Event)
	Now() time.Time
}

// Directory tracks which users have live sessions on any node of a
// cluster, so that presence is right when a user's devices, or a user and
// their contacts, are on different nodes. bus/natsbus implements it on a
// NATS key-value bucket. Without one (Config.Directory nil) the node's own
// sessions are the whole truth, as on a single node.
type Directory interface {
	// Join records that userID has a live session on this node and
	// reports whether no other node had one (the user just came online);
	// of nodes joining at once, exactly one says so.
	Join(ctx context.Context, userID string) (first bool, err error)
	// Leave removes this node's record of userID and reports whether no
	// other node has one (the user just went offline); of nodes leaving at
	// once, at least one says so.
	Leave(ctx context.Context, userID string) (last bool, err error)
	// Online returns those of userIDs with a live session on any node.
	Online(userIDs []string) []string
	// Keepalive refreshes this node's records of userIDs; records not
	// refreshed expire, so a node that died without leaving is forgotten.
	Keepalive(ctx context.Context, userIDs []string) error
	// Interval is how often Keepalive must run.
	Interval() time.Duration
}

var _ Core = (*service.Service)(nil)

// Close codes the server sends (besides nbio's own 1009 for an oversized
// frame and 1002 for a protocol error). docs/protocol.md lists them.
const (
	CloseGoingAway     = 1001 // server shutting down: reconnect (elsewhere)
	CloseProtocolError = 1002 // e.g. data sent before the handshake finished
	CloseInternalError = 1011 // the server could not set the session up: reconnect later
	CloseTokenExpired  = 4001 // the access token expired and was not renewed
	CloseRevoked       = 4003 // the session was logged out, removed or suspended
	// CloseReplaced closes the oldest connection of a device that opened
	// one more than MaxConnsPerDevice: the newest wins (a phone whose old
	// socket froze must get through). Do not reconnect automatically: two
	// clients sharing one device's token would replace each other forever.
	CloseReplaced = 4004
	// CloseTooManyConnections closes a new connection, after an error
	// frame limit_exceeded, that would pass MaxConnsPerUser (when
	// connections race past the handshake's check, which answers 409).
	CloseTooManyConnections = 4008
)

// sendQueueFrames bounds the frames waiting for a slow client when nbio
// runs a connection in blocking mode (in-process TLS: see ADR 0001); on
// the poller MaxWriteBuffer bounds the bytes instead.
const sendQueueFrames = 64

// Config holds the gateway's settings. Zero values mean the defaults.
type Config struct {
	// MaxFrame is the largest client frame in bytes; larger ones close the
	// connection with 1009. Default 128 KiB.
	MaxFrame int
	// PingInterval is how often the server pings. Default 25 s.
	PingInterval time.Duration
	// IdleTimeout closes a connection that sent nothing (not even a pong)
	// for that long. Default 60 s; it must exceed PingInterval.
	IdleTimeout time.Duration
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may connect; "*" allows any. Empty: only the server's own host. A
	// request without an Origin header (apps, CLIs) is always accepted.
	AllowedOrigins []string
	// PresenceGrace is how long a user stays online after the last session
	// closed, so a reconnect does not flap. Default 5 s.
	PresenceGrace time.Duration
	// Directory, if set, makes presence cluster-wide (see Directory).
	Directory Directory
	// TokenGrace is how long after its access token expired a connection
	// may live without an auth frame. Default 0: it is closed (4001) at the
	// first heartbeat after expiry.
	TokenGrace time.Duration
	// MaxWriteBuffer is how many bytes may wait for a slow client before
	// the connection is dropped. Default 2 MiB.
	MaxWriteBuffer int
	// QueueDepth bounds the requests waiting per connection. Default 32.
	QueueDepth int
	// GapWait is how long a message that arrived ahead of its predecessor
	// is held before the gap is filled from the store. Default 50 ms.
	GapWait time.Duration
	// MaxConnsPerDevice caps the live connections of one device (one
	// access token's session) on this node; one more closes the oldest
	// (CloseReplaced). Default 10.
	MaxConnsPerDevice int
	// MaxConnsPerUser caps the live connections of one user, over all
	// devices, on this node; one more is refused (HTTP 409
	// limit_exceeded at the handshake, or an error frame and
	// CloseTooManyConnections if it raced past), unless its device is at
	// MaxConnsPerDevice (then it replaces that device's oldest). Default
	// 50.
	MaxConnsPerUser int
	// LimitsOff turns the per-connection rate limits off (load tests).
	LimitsOff bool
	// SendRate/SendBurst limit send frames per connection (default 20/s,
	// burst 40); TypingRate/TypingBurst typing frames (default 2/s, burst
	// 5); RequestRate/RequestBurst every other request (default 20/s,
	// burst 60).
	SendRate, TypingRate, RequestRate    float64
	SendBurst, TypingBurst, RequestBurst int
	// DeliveryLagBound is the delivery backlog (how long live events wait
	// in this node's bus queue before the hub handles them) above which
	// new sends are held, so that senders slow to the rate the node
	// delivers (backpressure.go). Default 100 ms; negative: never hold.
	DeliveryLagBound time.Duration
	// Pollers is the number of nbio poller goroutines. Default 2.
	Pollers int
	// Metrics records the gateway's collectors; nil records nothing.
	Metrics *metrics.WS
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defRate := func(r *float64, b *int, rate float64, burst int) {
		if *r <= 0 {
			*r = rate
		}
		defInt(b, burst)
	}
	defInt(&c.MaxFrame, DefaultMaxFrame)
	def(&c.PingInterval, 25*time.Second)
	def(&c.IdleTimeout, 60*time.Second)
	if c.IdleTimeout <= c.PingInterval {
		c.IdleTimeout = 2*c.PingInterval + time.Second
	}
	def(&c.PresenceGrace, 5*time.Second)
	defInt(&c.MaxWriteBuffer, 2<<20)
	defInt(&c.QueueDepth, 32)
	def(&c.GapWait, 50*time.Millisecond)
	if c.DeliveryLagBound == 0 {
		c.DeliveryLagBound = 100 * time.Millisecond
	}
	defRate(&c.SendRate, &c.SendBurst, 20, 40)
	defRate(&c.TypingRate, &c.TypingBurst, 2, 5)
	defRate(&c.RequestRate, &c.RequestBurst, 20, 60)
	defInt(&c.Pollers, 2)
	defInt(&c.MaxConnsPerDevice, 10)
	defInt(&c.MaxConnsPerUser, 50)
}

// Gateway serves /v1/ws: it authenticates, upgrades the connection onto
// nbio's pollers (docs/adr/0001), and runs the node's hub, which routes
// bus events to local sessions.
type Gateway struct {
	core   Core
	local  localEvents // core's, if it hands this node's events over undecoded
	bus    parley.Bus
	cfg    Config
	log    *slog.Logger
	engine *nbhttp.Engine
	hub    *hub
	// started anchors clock().
	started time.Time

	subs     []parley.Subscription
	stop     chan struct{}
	wg       sync.WaitGroup
	closing  atomic.Bool
	sessions atomic.Int64
	draining atomic.Int64 // sessions running a request
	framers  sync.Pool    // *framer (coalesce.go)
	press    pressure     // backpressure.go
	watches  []*lagWatch
	// upgrader is shared by every upgrade (a copy per connection cost 208
	// bytes, kept alive by the connection); its handlers find the session
	// with sessionOf.
	upgrader *websocket.Upgrader
}

// New starts a gateway: the nbio engine, the bus subscriptions and the
// heartbeat. Call Shutdown to stop it.
func New(core Core, bus parley.Bus, cfg Config, log *slog.Logger) (*Gateway, error) {
	cfg.setDefaults()
	g := &Gateway{core: core, bus: bus, cfg: cfg, log: log, stop: make(chan struct{}), started: time.Now()}
	g.hub = newHub(g)
	g.engine = nbhttp.NewEngine(nbhttp.Config{
		Name:                         "parley-ws",
		NPoller:                      cfg.Pollers,
		ReleaseWebsocketPayload:      true,
		MaxWriteBufferSize:           cfg.MaxWriteBuffer,
		MaxWebsocketFramePayloadSize: 4 * DefaultMaxFrame, // larger outbound frames are fragmented (replies are kept under ReplyBudget)
		KeepaliveTime:                cfg.IdleTimeout,
	})
	if err := g.engine.Start(); err != nil {
		return nil, err
	}
	g.upgrader = g.newUpgrader()
	if l, ok := core.(localEvents); ok {
		l.KeepPublished(true)
		g.local = l
	}
	batch, _ := bus.(parley.BatchSubscriber)
	for _, pattern := range []string{service.ConversationSubjects, service.UserSubjects} {
		var sub parley.Subscription
		var err error
		if batch != nil {
			w := &lagWatch{g: g}
			sub, err = batch.SubscribeBatch(pattern, g.hub.batchHandler(w)) // coalesce.go
			if q, ok := sub.(parley.QueueWaiter); ok && err == nil {
				w.sub.Store(q)
				g.watches = append(g.watches, w)
			}
		} else {
			sub, err = bus.Subscribe(pattern, g.hub.onEvent)
		}
		if err != nil {
			g.Shutdown(context.Background())
			return nil, err
		}
		g.subs = append(g.subs, sub)
	}
	g.wg.Add(3)
	go g.heartbeat()
	go g.recheck()
	go g.hub.presenceLoop()
	if cfg.Directory != nil {
		g.wg.Add(1)
		go g.hub.keepaliveLoop()
	}
	return g, nil
}

// Sessions is the number of live WebSocket sessions.
func (g *Gateway) Sessions() int64 { return g.sessions.Load() }

// LiveDevices returns the ids of the devices of userIDs that have a live
// session on this node (the notification service pushes them only if they
// do not report delivered in time).
func (g *Gateway) LiveDevices(userIDs []string) []string {
	h := g.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, id := range userIDs {
		if u := h.users[id]; u != nil {
			for _, s := range u.sessions {
				out = append(out, s.p.DeviceID)
			}
		}
	}
	return out
}

// ServeHTTP upgrades GET /v1/ws.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.closing.Load() {
		writeHTTPError(w, parley.Errorf(parley.CodeUnavailable, "the server is shutting down"), http.StatusServiceUnavailable)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		writeHTTPError(w, parley.Errorf(parley.CodeInvalidRequest, "this endpoint speaks WebSocket only (Upgrade: websocket)"), http.StatusBadRequest)
		return
	}
	if !g.originAllowed(r) {
		writeHTTPError(w, parley.Errorf(parley.CodeForbidden, "origin %s may not open a WebSocket here", r.Header.Get("Origin")), http.StatusForbidden)
		return
	}
	p, err := g.authenticate(r)
	if err != nil {
		status := http.StatusUnauthorized
		switch parley.ErrorCode(err) {
		case parley.CodeSuspended:
			status = http.StatusForbidden
		case parley.CodeInternal, parley.CodeUnavailable:
			status = http.StatusServiceUnavailable
		}
		writeHTTPError(w, err, status)
		return
	}
	if g.hub.admit(p) {
		// Cheap early refusal; finish decides for good (connections of a
		// user may race here).
		g.cfg.Metrics.Closed("too_many_connections")
		writeHTTPError(w, tooManyConnections(g.cfg.MaxConnsPerUser), http.StatusConflict)
		return
	}
	s := newSession(g, p)
	hw := &hijackWatch{ResponseWriter: w}
	conn, err := g.upgrader.UpgradeAndTransferConnToPoller(hw, r, nil)
	if err != nil {
		g.log.DebugContext(r.Context(), "websocket upgrade failed", "err", err)
		return
	}
	conn.SetSession(s) // sessionOf waits for this
	s.setConn(conn)
	if hw.pipelined {
		// RFC 6455: a client must not send before the 101; what it sent
		// is lost with net/http's buffer, so the stream is unusable.
		g.cfg.Metrics.Closed("protocol")
		_ = conn.WriteClose(CloseProtocolError, "data sent before the handshake completed")
		_ = conn.Close()
		return
	}
	g.sessions.Add(1)
	g.hub.begin(s)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	seqs, err := g.core.LastSeqs(ctx, p)
	cancel()
	if err != nil {
		g.log.Error("websocket attach: read conversations", "user_id", p.UserID, "err", err)
		g.hub.finish(s, nil)
		s.closeWith(CloseInternalError, "temporarily unavailable; reconnect")
		return
	}
	if seqs == nil {
		seqs = map[string]int64{}
	}
	g.hub.finish(s, seqs)
}

// newUpgrader makes the upgrader every connection shares. nbio keeps a
// pointer to it in each connection, so nothing in it may be per connection:
// the handlers find the session with sessionOf.
func (g *Gateway) newUpgrader() *websocket.Upgrader {
	u := websocket.NewUpgrader()
	u.Engine = g.engine
	// No read deadline from nbio (a timer per connection, ~190 bytes):
	// the heartbeat closes idle connections from s.lastRead instead.
	u.KeepaliveTime = 0
	u.MessageLengthLimit = g.cfg.MaxFrame
	u.CheckOrigin = func(*http.Request) bool { return true } // checked in ServeHTTP
	u.BlockingModSendQueueMaxSize = sendQueueFrames
	u.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
		if s := g.sessionOf(c, sessionWaitFrame); s != nil {
			s.onMessage(c, mt, data)
			return
		}
		g.cfg.Metrics.Closed("internal")
		_ = c.WriteClose(CloseInternalError, "temporarily unavailable; reconnect")
		_ = c.Close()
	})
	u.OnClose(func(c *websocket.Conn, _ error) {
		if s := g.sessionOf(c, 0); s != nil {
			s.onClose()
			return
		}
		// Closed between the 101 and SetSession: wait off nbio's
		// goroutine. A connection whose upgrade failed never gets one.
		go func() {
			if s := g.sessionOf(c, sessionWaitClose); s != nil {
				s.onClose()
			}
		}()
	})
	u.SetPingHandler(func(c *websocket.Conn, data string) {
		if s := g.sessionOf(c, sessionWaitFrame); s != nil {
			s.touch()
		}
		if err := c.WriteMessage(websocket.PongMessage, []byte(data)); err != nil {
			_ = c.Close()
		}
	})
	u.SetPongHandler(func(c *websocket.Conn, _ string) {
		if s := g.sessionOf(c, sessionWaitFrame); s != nil {
			s.touch()
		}
	})
	return u
}

// How long a handler waits for ServeHTTP to hand a connection its session
// (see sessionOf): a frame holds nbio's goroutine for the connection, so
// briefly; a close waits on a goroutine of its own.
const (
	sessionWaitFrame = time.Second
	sessionWaitClose = 10 * time.Second
)

// sessionOf returns the session of c, which ServeHTTP sets right after the
// upgrade returns. nbio reads from the socket as soon as it has it, so a
// client that sends at once (or closes) may be heard first: then this
// waits for the session, up to wait, and returns nil if none came.
func (g *Gateway) sessionOf(c *websocket.Conn, wait time.Duration) *session {
	// The session is set once, from nil; until then a read may see nil
	// (or a half-written interface, whose pointer is then nil).
	if s, ok := c.Session().(*session); ok && s != nil {
		return s
	}
	deadline := time.Now().Add(wait)
	for d := 20 * time.Microsecond; ; d = min(2*d, 5*time.Millisecond) {
		if s, ok := c.SessionWithLock().(*session); ok && s != nil {
			return s
		}
		if !time.Now().Before(deadline) {
			return nil
		}
		time.Sleep(d)
	}
}

// originAllowed applies the cross-site WebSocket hijacking policy.
func (g *Gateway) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" {
		return false
	}
	if len(g.cfg.AllowedOrigins) == 0 {
		return strings.EqualFold(o.Host, r.Host)
	}
	for _, a := range g.cfg.AllowedOrigins {
		if a == "*" || strings.EqualFold(strings.TrimRight(a, "/"), o.Scheme+"://"+o.Host) {
			return true
		}
	}
	return false
}

// authenticate finds who opens the socket, from the first of: an
// Authorization: Bearer header (apps, CLIs), a ticket= query parameter
// (browsers: a single-use ticket from POST /v1/ws/ticket, used up here), an
// access_token= query parameter (deprecated: the token lands in the logs
// of every proxy that logs URLs). A request with none may not connect.
func (g *Gateway) authenticate(r *http.Request) (*parley.Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		t, ok := strings.CutPrefix(h, "Bearer ")
		if t = strings.TrimSpace(t); !ok || t == "" {
			return nil, parley.Errorf(parley.CodeUnauthorized, "the Authorization header must be Bearer <access token>")
		}
		return g.core.Authenticate(r.Context(), t)
	}
	q := r.URL.Query()
	if t := q.Get("ticket"); t != "" {
		return g.core.RedeemTicket(r.Context(), t)
	}
	if t := q.Get("access_token"); t != "" {
		return g.core.Authenticate(r.Context(), t)
	}
	return nil, parley.Errorf(parley.CodeUnauthorized, "an access token or ticket is required (Authorization: Bearer, or ticket= from POST /v1/ws/ticket)")
}

func writeHTTPError(w http.ResponseWriter, err error, status int) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]ErrorBody{"error": {Code: parley.ErrorCode(err), Message: parley.ErrorMessage(err)}})
}

// hijackWatch notes whether the client pipelined bytes after its
// handshake; nbio takes the raw connection and those bytes would be lost.
type hijackWatch struct {
	http.ResponseWriter
	pipelined bool
}

func (h *hijackWatch) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("wsgate: connection cannot be hijacked")
	}
	c, rw, err := hj.Hijack()
	if err == nil && rw != nil && rw.Reader.Buffered() > 0 {
		h.pipelined = true
	}
	return c, rw, err
}

// heartbeat pings every session each PingInterval and closes those whose
// token expired without renewal. It never waits on the store.
//
// Each step (an eighth of the idle timeout, at most the ping interval) it
// closes connections idle for longer than IdleTimeout and those whose
// token expired; every PingInterval it also pings.
func (g *Gateway) heartbeat() {
	defer g.wg.Done()
	step := min(g.cfg.PingInterval, max(g.cfg.IdleTimeout/8, clockTick))
	t := time.NewTicker(step)
	defer t.Stop()
	idle := uint32(g.cfg.IdleTimeout / clockTick)
	nextPing := time.Now().Add(g.cfg.PingInterval)
	var sessions []*session // reused each tick
	for {
		var tick time.Time
		select {
		case <-g.stop:
			return
		case tick = <-t.C:
		}
		ping := !tick.Before(nextPing.Add(-step / 2))
		if ping {
			nextPing = tick.Add(g.cfg.PingInterval)
		}
		now, clock := g.core.Now(), g.clock()
		sessions = g.hub.allSessions(sessions)
		for _, s := range sessions {
			switch {
			case int32(clock-s.lastRead.Load()) > int32(idle): // a frame read meanwhile is negative
				// Nothing, not even a pong, for IdleTimeout: the peer is
				// gone or stuck. No close frame (it would not be read).
				g.cfg.Metrics.Closed("idle")
				if c := s.c(); c != nil {
					_ = c.Close()
				}
			case now.After(s.expiresAt().Add(g.cfg.TokenGrace)):
				g.cfg.Metrics.Closed("token_expired")
				s.closeWith(CloseTokenExpired, "access token expired; reconnect with a new one")
			case ping:
				if c := s.c(); c != nil {
					_ = c.WriteMessage(websocket.PingMessage, nil)
				}
			}
		}
	}
}

// clockTick is the resolution of the gateway's idle clock.
const clockTick = 100 * time.Millisecond

// clock is the gateway's coarse monotonic clock, in clockTicks since it
// started; it wraps after 13 years, and differences stay right across
// the wrap.
func (g *Gateway) clock() uint32 { return uint32(time.Since(g.started) / clockTick) }

// recheck verifies, each PingInterval, that every session still exists in
// the store (a lost "revoked" event must not keep a socket open). It runs
// apart from the pings, so a slow store cannot starve the heartbeat.
func (g *Gateway) recheck() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.PingInterval)
	defer t.Stop()
	var sessions []*session // reused each pass
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		sessions = g.hub.allSessions(sessions)
		for _, s := range sessions {
			select {
			case <-g.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := g.core.CheckSession(ctx, &s.p)
			cancel()
			if parley.ErrorCode(err) == parley.CodeUnauthorized {
				g.cfg.Metrics.Closed("revoked")
				s.closeWith(CloseRevoked, "session ended")
			}
		}
	}
}

// Shutdown refuses new connections, sends close 1001 to every session so
// clients reconnect (elsewhere), and stops the engine. Call it after the
// REST server has drained, so in-flight sends have been answered.
func (g *Gateway) Shutdown(ctx context.Context) {
	if !g.closing.CompareAndSwap(false, true) {
		return
	}
	for _, sub := range g.subs {
		_ = sub.Close()
	}
	if g.local != nil {
		g.local.KeepPublished(false) // nobody takes them now
	}
	for _, w := range g.watches {
		w.stop() // release held sends: no event may come to do it
	}
	g.hub.endBursts()
	close(g.stop)
	// Requests already running (a send waiting for its commit) finish and
	// are answered; queued ones are dropped (clients resend unacked sends).
	for g.draining.Load() > 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	for _, s := range g.hub.allSessions(nil) {
		g.cfg.Metrics.Closed("shutdown")
		s.closeWith(CloseGoingAway, "server shutting down")
	}
	// Let the close frames leave before the pollers stop.
	done := make(chan struct{})
	go func() {
		for g.sessions.Load() > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
	g.hub.stopPresence()
	g.wg.Wait()
	_ = g.engine.Shutdown(ctx)
}
