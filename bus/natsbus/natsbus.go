// Package natsbus is the NATS engine of the parley.Bus port. By default
// parleyd runs an embedded NATS server (JetStream on, storage in the data
// directory, no TCP port unless asked) and connects to it in-process; with
// --nats-url it connects to external servers instead. Later issues add
// JetStream work queues and key-value buckets on the same connection.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// (nats://host:port,...); the client reconnects forever, to any of them,
// and buffers publishes while it does.
func Connect(urls string, opts Options) (*Bus, error) {
	opts.setDefaults()
	return connect(urls, opts)
}

// ConnectEmbedded connects in-process to an embedded server.
func ConnectEmbedded(e *Embedded, opts Options) (*Bus, error) {
	opts.setDefaults()
	return connect("", opts, nats.InProcessServer(e.srv))
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
	s := &subscription{bus: b}
	sub, err := b.nc.Subscribe(pattern, func(m *nats.Msg) { handle(m.Subject, m.Data) })
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
	once sync.Once
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
// in a directory of its own.
type Embedded struct {
	srv *server.Server
}

// EmbeddedOptions configure the embedded server.
type EmbeddedOptions struct {
	// StoreDir is where JetStream keeps its streams. Required.
	StoreDir string
	// Listen, if set (host:port), also serves NATS clients over TCP there,
	// for tools and other processes. Default: no TCP port at all.
	Listen string
}

// StartEmbedded starts an embedded NATS server and waits until it is ready.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("natsbus: embedded server needs a store directory")
	}
	so := &server.Options{
		ServerName:             "parleyd-embedded",
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
	return &Embedded{srv: srv}, nil
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
