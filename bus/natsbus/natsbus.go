// Package natsbus is the NATS engine of the parley.Bus port. By default
// parleyd runs an embedded NATS server (JetStream on, storage in the data
// directory, no TCP port unless asked) and connects to it in-process; with
// --nats-url it connects to external servers instead. Later issues add
// JetStream work queues and key-value buckets on the same connection.
package natsbus

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley"
)

// Bus is a parley.Bus over one NATS connection. Safe for concurrent use.
type Bus struct {
	nc  *nats.Conn
	log *slog.Logger

	mu   sync.Mutex
	subs map[*subscription]struct{}
}

var _ parley.Bus = (*Bus)(nil)

// Options configure a connection. Zero values mean the defaults given.
type Options struct {
	// Name identifies the connection in the server's monitoring.
	// Default "parleyd".
	Name string
	// Logger receives connection events (disconnects, slow consumers).
	// Default: discard.
	Logger *slog.Logger
	// OnGap, if set, is called when events may have been missed: when the
	// connection drops, when it is back, and when the client dropped
	// events of a slow subscription. Caches fed by events clear there.
	OnGap func()

	// Credentials for external servers (Connect); at most one kind may be
	// set. CredsFile is a .creds file (user JWT and nkey seed, as
	// `nsc generate creds` writes it); NKeySeedFile a file holding an
	// nkey seed (SU...); Token a shared token; User and Password a user
	// name and password. None: the connection is anonymous (Connect logs
	// a warning).
	CredsFile    string
	NKeySeedFile string
	Token        string
	User         string
	Password     string
	// TLS for external servers.
	TLS TLSOptions
}

// TLSOptions configure TLS to external NATS servers. Zero value: TLS only
// if the server asks for it (or a URL is tls://), verified against the
// system's roots.
type TLSOptions struct {
	// CAFile is a PEM file of the roots that server certificates must
	// chain to; empty = the system's roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key (PEM) for
	// servers that verify clients (mutual TLS); both or neither.
	CertFile, KeyFile string
	// Required refuses servers that do not speak TLS. Setting CAFile or
	// CertFile requires it too.
	Required bool
}

// HasCredentials reports whether o names credentials of some kind.
func (o *Options) HasCredentials() bool {
	return o.CredsFile != "" || o.NKeySeedFile != "" || o.Token != "" || o.User != ""
}

// authOptions turns the credentials and TLS settings into nats.go options.
func (o *Options) authOptions() ([]nats.Option, error) {
	kinds := 0
	for _, set := range []bool{o.CredsFile != "", o.NKeySeedFile != "", o.Token != "", o.User != ""} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		return nil, errors.New("natsbus: give one kind of NATS credentials (creds file, nkey seed, token, or user and password), not several")
	}
	if o.Password != "" && o.User == "" {
		return nil, errors.New("natsbus: a NATS password needs a user")
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		return nil, errors.New("natsbus: the NATS client certificate and key must be given together")
	}
	var out []nats.Option
	if o.TLS.Required || o.TLS.CAFile != "" || o.TLS.CertFile != "" {
		out = append(out, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	if o.TLS.CAFile != "" {
		out = append(out, nats.RootCAs(o.TLS.CAFile))
	}
	if o.TLS.CertFile != "" {
		out = append(out, nats.ClientCert(o.TLS.CertFile, o.TLS.KeyFile))
	}
	switch {
	case o.CredsFile != "":
		if _, err := os.Stat(o.CredsFile); err != nil {
			return nil, fmt.Errorf("natsbus: creds file: %w", err)
		}
		out = append(out, nats.UserCredentials(o.CredsFile))
	case o.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("natsbus: nkey seed file: %w", err)
		}
		out = append(out, opt)
	case o.Token != "":
		out = append(out, nats.Token(o.Token))
	case o.User != "":
		out = append(out, nats.UserInfo(o.User, o.Password))
	}
	return out, nil
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = "parleyd"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Connect connects to external NATS servers. urls is a comma-separated list
// (nats://host:port,... or tls://...); the client reconnects forever, to
// any of them, and buffers publishes while it does. Credentials and TLS
// come from opts; without credentials (in opts or in the URLs) it
// connects anonymously and logs a warning: whoever reaches those servers
// can then read and publish on the bus.
func Connect(urls string, opts Options) (*Bus, error) {
	opts.setDefaults()
	extra, err := opts.authOptions()
	if err != nil {
		return nil, err
	}
	if !opts.HasCredentials() && !strings.Contains(urls, "@") {
		opts.Logger.Warn("nats: connecting WITHOUT credentials: anyone who reaches these NATS servers can read the push queue and presence (ids), inject push jobs, flood the bus and delete streams (live events stay sealed); give --nats-creds, --nats-nkey, PARLEY_NATS_TOKEN or --nats-user (docs/operations.md, Cluster mode)", "servers", redact(urls))
	}
	return connect(urls, opts, extra...)
}

// ConnectEmbedded connects in-process to an embedded server, with the
// server's own secret. Credentials and TLS in opts are ignored.
func ConnectEmbedded(e *Embedded, opts Options) (*Bus, error) {
	opts.setDefaults()
	return connect("", opts, nats.InProcessServer(e.srv), nats.Token(e.token))
}

func gap(opts Options) {
	if opts.OnGap != nil {
		opts.OnGap()
	}
}

func connect(urls string, opts Options, extra ...nats.Option) (*Bus, error) {
	b := &Bus{log: opts.Logger, subs: make(map[*subscription]struct{})}
	options := append([]nats.Option{
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats disconnected", "err", err)
			}
			gap(opts)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			gap(opts)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			b.log.Error("nats error", "err", err, "subject", subject)
			if errors.Is(err, nats.ErrSlowConsumer) {
				gap(opts)
			}
		}),
	}, extra...)
	if urls == "" {
		urls = nats.DefaultURL
	}
	nc, err := nats.Connect(urls, options...)
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return nil, fmt.Errorf("natsbus: connect %s: the server refused our credentials (or their absence): check --nats-creds, --nats-nkey, the token or --nats-user: %w", redact(urls), err)
	}
	if err != nil {
		return nil, fmt.Errorf("natsbus: connect %s: %w", redact(urls), err)
	}
	b.nc = nc
	return b, nil
}

// redact drops credentials from a URL list for error messages.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// Ready reports whether the connection is up; a reconnecting bus is not
// ready (events published meanwhile are buffered, not delivered).
func (b *Bus) Ready(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return &parley.Error{Code: parley.CodeUnavailable, Message: "the event bus is not connected"}
	}
	return nil
}

// Conn returns the underlying connection, for the JetStream users of this
// package.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Publish implements parley.Bus. The event is buffered by the client (also
// while reconnecting) and flushed in the background.
func (b *Bus) Publish(ctx context.Context, subject string, data []byte) error {
	if err := b.nc.Publish(subject, data); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrReconnectBufExceeded) {
			return fmt.Errorf("natsbus: publish %s: %w", subject, &parley.Error{Code: parley.CodeUnavailable, Message: "the event bus is unavailable"})
		}
		return fmt.Errorf("natsbus: publish %s: %w", subject, err)
	}
	return nil
}

// Subscribe implements parley.Bus. It returns once the server has
// registered the interest, so events published after it returns are
// delivered.
func (b *Bus) Subscribe(pattern string, handle func(subject string, data []byte)) (parley.Subscription, error) {
	return b.subscribe(pattern, nil, func(m *nats.Msg) { handle(m.Subject, m.Data) })
}

// SubscribeBatch implements parley.BatchSubscriber: more is whether the
// client holds further messages of the subscription, not yet handed to
// handle (its pending count includes the message being handled until the
// handler returns).
//
// The subscription implements parley.QueueWaiter: how long the event
// being handled waited in the client's queue (see queueWait).
func (b *Bus) SubscribeBatch(pattern string, handle func(subject string, data []byte, more bool)) (parley.Subscription, error) {
	w := newQueueWait()
	return b.subscribe(pattern, w, func(m *nats.Msg) {
		n, _, err := m.Sub.Pending()
		if d, derr := m.Sub.Delivered(); err == nil && derr == nil && d > 0 && n > 0 {
			w.observe(uint64(d), uint64(d)+uint64(n)-1)
		}
		handle(m.Subject, m.Data, err == nil && n > 1)
	})
}

func (b *Bus) subscribe(pattern string, w *queueWait, handle nats.MsgHandler) (parley.Subscription, error) {
	s := &subscription{bus: b, wait: w}
	sub, err := b.nc.Subscribe(pattern, handle)
	if err != nil {
		return nil, fmt.Errorf("natsbus: subscribe %s: %w", pattern, err)
	}
	// Live events must not be dropped for a burst: allow a deep queue
	// (the default is 65,536 messages or 64 MiB).
	if err := sub.SetPendingLimits(1<<20, 256<<20); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("natsbus: subscribe %s: %w", pattern, err)
	}
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("natsbus: subscribe %s: %w", pattern, err)
	}
	s.sub = sub
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s, nil
}

// Close drains nothing: live events are news, and the store has the truth.
// It ends every subscription and closes the connection.
func (b *Bus) Close() error {
	b.mu.Lock()
	subs := b.subs
	b.subs = map[*subscription]struct{}{}
	b.mu.Unlock()
	for s := range subs {
		s.sub.Unsubscribe()
	}
	b.nc.Close()
	return nil
}

type subscription struct {
	bus  *Bus
	sub  *nats.Subscription
	wait *queueWait // SubscribeBatch's; nil for Subscribe's
	once sync.Once
}

var _ parley.QueueWaiter = (*subscription)(nil)

// QueueWait implements parley.QueueWaiter; 0 for a subscription made by
// Subscribe (which does not measure).
func (s *subscription) QueueWait() time.Duration {
	if s.wait == nil {
		return 0
	}
	return time.Duration(s.wait.last.Load())
}

func (s *subscription) Close() error {
	var err error
	s.once.Do(func() {
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		s.bus.mu.Unlock()
		err = s.sub.Unsubscribe()
		if errors.Is(err, nats.ErrConnectionClosed) {
			err = nil
		}
	})
	return err
}

// Embedded is a NATS server running inside parleyd, with JetStream storing
// in a directory of its own. It accepts only clients that present its
// token, a random secret made at start and kept in memory: the
// connections ConnectEmbedded makes. With Listen, TCP clients are refused
// (no other process knows the token).
type Embedded struct {
	srv   *server.Server
	token string
}

// EmbeddedOptions configure the embedded server.
type EmbeddedOptions struct {
	// StoreDir is where JetStream keeps its streams. Required.
	StoreDir string
	// Listen, if set (host:port), also opens a TCP port there; it admits
	// only clients holding the server's secret, i.e. none outside this
	// process. Default: no TCP port at all.
	Listen string
}

// StartEmbedded starts an embedded NATS server and waits until it is ready.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("natsbus: embedded server needs a store directory")
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	token := base64.RawURLEncoding.EncodeToString(secret)
	so := &server.Options{
		ServerName:             "parleyd-embedded",
		Authorization:          token,
		JetStream:              true,
		StoreDir:               opts.StoreDir,
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
		DontListen:             opts.Listen == "",
	}
	if opts.Listen != "" {
		host, port, err := splitHostPort(opts.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsbus: embedded listen address: %w", err)
		}
		if port == 0 {
			port = server.RANDOM_PORT // nats-server reads 0 as its default 4222
		}
		so.Host, so.Port = host, port
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsbus: embedded server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("natsbus: embedded server did not become ready within 10s")
	}
	return &Embedded{srv: srv, token: token}, nil
}

// ClientURL is the TCP address clients can use, or "" without Listen.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown stops the server and waits for it to finish.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

func splitHostPort(hp string) (string, int, error) {
	i := strings.LastIndex(hp, ":")
	if i < 0 {
		return "", 0, fmt.Errorf("want host:port, got %q", hp)
	}
	var port int
	if _, err := fmt.Sscanf(hp[i+1:], "%d", &port); err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	return hp[:i], port, nil
}
