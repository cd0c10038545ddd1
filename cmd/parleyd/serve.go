package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/blob/fsblob"
	"github.com/parleychat/parley/blob/s3blob"
	"github.com/parleychat/parley/bus/natsbus"
	"github.com/parleychat/parley/httpapi"
	"github.com/parleychat/parley/metrics"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/service"
	"github.com/parleychat/parley/store/postgres"
	"github.com/parleychat/parley/store/sqlite"
	"github.com/parleychat/parley/webui"
	"github.com/parleychat/parley/wsgate"
)

// node is one running parleyd: its parts and their lifetimes.
type node struct {
	cfg   *Config
	log   *slog.Logger
	store parley.Store
	keys  *auth.Keys
	svc   *service.Service
	// deviceTokens are the known-device tokens, under a key derived from
	// the master keys (the same on every node).
	deviceTokens *auth.DeviceTokens
	// masterKeys seal the bus events too (seal.Bus).
	masterKeys [][]byte
	// media keeps media objects (--media-store), encrypted under the
	// master keys; uploads (media/upload) write them.
	media parley.BlobStore
	// mediaLinks signs and verifies media download links.
	mediaLinks *seal.MediaLinks
}

// openNode opens the data directory, the keys and the store, and builds the
// core. The caller closes n.store.
func openNode(ctx context.Context, cfg *Config, getenv func(string) string, log *slog.Logger, m *metrics.Metrics) (*node, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	// The database holds password and token hashes: only we may read it,
	// whatever the umask or an existing directory's mode.
	if err := os.Chmod(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if cfg.Store != "" && getenv("PARLEY_MASTER_KEY") == "" && cfg.MasterKeyFile == "" {
		// A key file in each node's data directory would differ from node
		// to node: no node could read what another wrote.
		return nil, errors.New("a PostgreSQL store needs PARLEY_MASTER_KEY or --master-key-file, the same key on every node (see docs/operations.md)")
	}
	if cfg.MediaStore != "" && getenv("PARLEY_MASTER_KEY") == "" && cfg.MasterKeyFile == "" {
		return nil, errors.New("an S3 media store needs PARLEY_MASTER_KEY or --master-key-file, the same key on every node (see docs/operations.md)")
	}
	masterKeys, err := loadMasterKeys(cfg, getenv)
	if err != nil {
		return nil, err
	}
	sealer, err := seal.NewKeyring(masterKeys)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg, sealer, m, log)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	keys, err := openKeys(cfg, st, time.Now())
	if err != nil {
		st.Close()
		return nil, err
	}
	var vapid []byte
	if v := getenv("PARLEY_VAPID_PRIVATE_KEY"); v != "" {
		if vapid, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "=")); err != nil || len(vapid) != 32 {
			st.Close()
			return nil, errors.New("PARLEY_VAPID_PRIVATE_KEY: want the 32-byte P-256 private key in base64url")
		}
	}
	svc := service.New(st, keys, auth.NewArgon2id(auth.DefaultPasswordParams, runtime.GOMAXPROCS(0)), service.Config{
		MaxBodyBytes:      cfg.MaxBodyBytes,
		RefreshTTL:        cfg.RefreshTTL,
		PurgeInterval:     cfg.PurgeInterval,
		Retention:         cfg.Retention,
		HistoryCache:      historyCacheSize(cfg.HistoryCache),
		HistoryCacheBytes: int64(cfg.HistoryCacheMem),
		MaxDevicesPerUser: cfg.MaxDevices,
		MaxE2EEMembers:    cfg.MaxE2EEMembers,
		MaxGroupMembers:   cfg.MaxGroupMembers,
		MaxInlineMembers:  cfg.MaxInlineMembers,
		UserSendRate:      userSendRate(cfg),
		UserSendBurst:     cfg.UserSendBurst,
		// Push registrations: where Web Push endpoints may point, which
		// providers and apps are on, and the per-user cap.
		Outbound:             cfg.OutboundAllow,
		WebPushOff:           cfg.Push.VAPIDSubject == "",
		APNsTopics:           cfg.Push.APNsTopics,
		MaxPushRegistrations: cfg.Push.MaxRegistrations,
		// Abuse controls (issue 16): message requests, strangers per hour.
		MessageRequests: cfg.MessageRequests,
		StrangerAdds:    cfg.StrangerAdds,
		VAPIDPrivateKey: vapid,
		// A deleted message's media outlive it by the longest link.
		MediaLinkLifetime: cfg.MediaURLTTL + cfg.MediaURLBucket,
	}, log, m)
	deviceTokens, err := auth.NewDeviceTokens(masterKeys)
	if err != nil {
		st.Close()
		return nil, err
	}
	mediaLinks, err := seal.NewMediaLinks(masterKeys, seal.MediaLinkOptions{TTL: cfg.MediaURLTTL, Bucket: cfg.MediaURLBucket})
	if err != nil {
		st.Close()
		return nil, err
	}
	media, err := openMedia(ctx, cfg, masterKeys)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("media store: %w", err)
	}
	return &node{cfg: cfg, log: log, store: st, keys: keys, svc: svc, deviceTokens: deviceTokens, masterKeys: masterKeys, media: media,
		mediaLinks: mediaLinks}, nil
}

// userSendRate is the per-user send rate the core applies: none with
// --limits off (load tests).
func userSendRate(cfg *Config) float64 {
	if !cfg.Limits {
		return 0
	}
	return cfg.UserSendRate
}

// historyCacheSize maps the setting (0 = off) to service.Config's (0 =
// the default, negative = off).
func historyCacheSize(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// nonZero maps 0 (no timeout) to the longest duration, for min.
func nonZero(d time.Duration) time.Duration {
	if d <= 0 {
		return math.MaxInt64
	}
	return d
}

// openKeys loads the token signing keys from the store, importing those of
// the data directory's keys/ (where they were kept before) when the store
// holds none yet.
func openKeys(cfg *Config, st parley.Store, now time.Time) (*auth.Keys, error) {
	seed, err := auth.ReadKeyDir(filepath.Join(cfg.Data, "keys"))
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	keys, err := auth.NewKeys(&storeKeys{st: st, seed: seed}, auth.KeyOptions{AccessTTL: cfg.AccessTTL, RotateEvery: cfg.KeyRotation}, now)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return keys, nil
}

// openStore opens the store cfg names: PostgreSQL, or SQLite in the data
// directory.
func openStore(ctx context.Context, cfg *Config, sealer parley.Sealer, m *metrics.Metrics, log *slog.Logger) (parley.Store, error) {
	if cfg.Store != "" {
		return postgres.Open(ctx, cfg.Store, postgres.Options{Sealer: sealer, ReplicaDSN: cfg.StoreReplica, Observe: m.ObserveStore, Logger: log})
	}
	return sqlite.Open(ctx, filepath.Join(cfg.Data, "parley.db"), sqlite.Options{Sealer: sealer, Observe: m.ObserveStore, Logger: log, CommitWait: cfg.CommitWait})
}

// openMedia opens the media store of cfg.MediaStore: an S3 bucket, or by
// default files under the data directory's media/.
func openMedia(ctx context.Context, cfg *Config, masterKeys [][]byte) (parley.BlobStore, error) {
	if cfg.MediaStore != "" {
		return s3blob.Open(ctx, cfg.MediaStore, masterKeys)
	}
	return fsblob.Open(filepath.Join(cfg.Data, "media"), masterKeys)
}

// openBus connects to the external NATS servers of cfg.NATSURL (with the
// credentials and TLS of cfg.NATS) or, when there are none, starts an
// embedded NATS server (JetStream stored in the data directory; with
// --nats-listen its TCP port admits only this process, by a secret made at
// start) and connects to it in-process. stop closes the connection and
// stops the embedded server.
func openBus(cfg *Config, log *slog.Logger, onGap func()) (bus *natsbus.Bus, stop func(), err error) {
	opts := natsbus.Options{Logger: log, OnGap: onGap}
	if cfg.NATSURL != "" {
		if cfg.NATSListen != "" {
			return nil, nil, errors.New("nats-listen applies to the embedded NATS server; it cannot be combined with nats-url")
		}
		a := cfg.NATS
		opts.CredsFile, opts.NKeySeedFile, opts.Token, opts.User, opts.Password = a.CredsFile, a.NKeySeedFile, a.Token, a.User, a.Password
		opts.TLS = natsbus.TLSOptions{CAFile: a.TLSCA, CertFile: a.TLSCert, KeyFile: a.TLSKey, Required: a.TLS}
		if a.TokenFile != "" {
			token, err := os.ReadFile(a.TokenFile)
			if err != nil {
				return nil, nil, fmt.Errorf("nats-token-file: %w", err)
			}
			if opts.Token = strings.TrimSpace(string(token)); opts.Token == "" {
				return nil, nil, fmt.Errorf("nats-token-file %s is empty", a.TokenFile)
			}
		}
		bus, err := natsbus.Connect(cfg.NATSURL, opts)
		if err != nil {
			return nil, nil, err
		}
		_, notTLS := bus.Conn().TLSConnectionState()
		log.Info("event bus: external NATS", "servers", bus.Conn().ConnectedUrlRedacted(), "tls", notTLS == nil, "credentials", natsCredentialKind(a))
		return bus, func() { bus.Close() }, nil
	}
	embedded, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: filepath.Join(cfg.Data, "nats"), Listen: cfg.NATSListen})
	if err != nil {
		return nil, nil, err
	}
	bus, err = natsbus.ConnectEmbedded(embedded, opts)
	if err != nil {
		embedded.Shutdown()
		return nil, nil, err
	}
	log.Info("event bus: embedded NATS", "tcp", embedded.ClientURL(), "credentials", "secret made at start (only this process)")
	return bus, func() { bus.Close(); embedded.Shutdown() }, nil
}

// natsCredentialKind names, for the log, which credentials a are.
func natsCredentialKind(a NATSAuth) string {
	switch {
	case a.CredsFile != "":
		return "creds file"
	case a.NKeySeedFile != "":
		return "nkey"
	case a.Token != "" || a.TokenFile != "":
		return "token"
	case a.User != "":
		return "user and password"
	}
	return "none"
}

// loadMasterKeys takes the master keys from PARLEY_MASTER_KEY, from
// cfg.MasterKeyFile, or, when neither is given, from (or into) the key file
// in the data directory. A key file given outside the data directory is
// created only for the embedded store (cluster nodes must share one key,
// made once by the operator), and is refused while a master.key is still
// in the data directory: that copy would defeat keeping them apart.
func loadMasterKeys(cfg *Config, getenv func(string) string) ([][]byte, error) {
	if v := getenv("PARLEY_MASTER_KEY"); v != "" {
		if cfg.MasterKeyFile != "" {
			return nil, errors.New("PARLEY_MASTER_KEY and --master-key-file are both set: give one")
		}
		keys, err := seal.ParseMasterKeys(v)
		if err != nil {
			return nil, fmt.Errorf("PARLEY_MASTER_KEY: %w", err)
		}
		return keys, nil
	}
	inData := filepath.Join(cfg.Data, "master.key")
	if cfg.MasterKeyFile == "" {
		keys, err := seal.LoadOrCreateKeyFile(inData)
		if err != nil {
			return nil, fmt.Errorf("master key file: %w", err)
		}
		return keys, nil
	}
	if _, err := os.Stat(inData); err == nil {
		return nil, fmt.Errorf("%s is still in the data directory: move it to %s (--master-key-file) or delete it if that file already holds the same keys; a copy next to the data defeats keeping the key apart", inData, cfg.MasterKeyFile)
	}
	if _, err := os.Stat(cfg.MasterKeyFile); errors.Is(err, fs.ErrNotExist) && cfg.Store != "" {
		return nil, fmt.Errorf("master key file %s does not exist: a cluster's nodes share one key, so create it once (docs/operations.md) and give every node the same file", cfg.MasterKeyFile)
	}
	keys, err := seal.LoadOrCreateKeyFile(cfg.MasterKeyFile)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	return keys, nil
}

// serve runs the server until ctx ends, then shuts down within
// cfg.ShutdownTimeout: stop accepting, finish in-flight requests, close the
// store (which drains queued writes).
func serve(ctx context.Context, cfg *Config, getenv func(string) string, logOut io.Writer) error {
	log := newLogger(logOut, cfg.LogLevel)
	routeLibraryLogs(log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	m := metrics.New(reg)
	// The browser client is read before anything opens: a binary built
	// without it fails at once.
	var web http.Handler
	if cfg.Web && cfg.Roles.Gateway {
		ui, err := webui.New()
		if err != nil {
			return fmt.Errorf("web client: %w", err)
		}
		web = ui
	}

	n, err := openNode(ctx, cfg, getenv, log, m)
	if err != nil {
		return err
	}
	// A gap in the bus (events may have been missed) clears what events
	// keep coherent: the history and relations caches, and the push view.
	var pushView atomic.Pointer[push.View]
	bus, stopBus, err := openBus(cfg, log, func() {
		n.svc.ClearHistoryCache()
		if v := pushView.Load(); v != nil {
			v.Gap()
		}
	})
	if err != nil {
		n.store.Close()
		return err
	}
	defer stopBus()
	// Every live event is sealed under the master key: whoever reaches
	// NATS without it reads no event and makes no node accept one.
	sealedBus, err := seal.NewBus(bus, n.masterKeys, seal.BusOptions{Logger: log})
	if err != nil {
		n.store.Close()
		return err
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_bus_events_rejected_total",
		Help: "Bus events dropped because they did not open under this node's master keys (forged, altered, replayed, or sealed under another key)."},
		func() float64 { return float64(sealedBus.Rejected()) }))
	n.svc.UseBus(sealedBus)
	if pg, ok := n.store.(*postgres.Store); ok && cfg.StoreReplica != "" {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_store_replica_reads_total",
			Help: "Reads the store's replica served (older history pages, syncs)."},
			func() float64 { served, _ := pg.ReplicaReads(); return float64(served) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_store_replica_skipped_total",
				Help: "Reads that could have used the replica but went to the primary (it lagged or failed)."},
				func() float64 { _, lagged := pg.ReplicaReads(); return float64(lagged) }))
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_history_cache_hits_total",
			Help: "Newest-page history reads answered from the in-memory cache."},
			func() float64 { h, _ := n.svc.HistoryCacheStats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_history_cache_misses_total",
			Help: "History reads the cache could not answer (read from the store)."},
			func() float64 { _, m := n.svc.HistoryCacheStats(); return float64(m) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_relations_cache_hits_total",
			Help: "Block relations of a user in a conversation (checked on every send, receipt and typing event) answered from memory."},
			func() float64 { h, _ := n.svc.RelationsCacheStats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_relations_cache_misses_total",
			Help: "Block relations the cache could not answer (read from the store)."},
			func() float64 { _, m := n.svc.RelationsCacheStats(); return float64(m) }))
	// Every node enqueues push jobs (a gateway commits messages); the
	// push role consumes them.
	pushQueue, err := push.OpenQueue(ctx, bus.Conn(), push.QueueConfig{TTL: cfg.Push.TTL, Replicas: cfg.Push.Replicas, Namespace: cfg.Push.Namespace}, push.NewMetrics(reg), log)
	if err != nil {
		n.store.Close()
		return err
	}
	defer pushQueue.Close()
	pushQueue.UseBus(sealedBus)
	// A gateway hears every conversation event, which keeps the view's
	// members right: only there may the view spare messages their job.
	var view *push.View
	if cfg.Roles.Gateway && !cfg.Push.ViewOff {
		view = push.NewView(pushQueue, n.store, sealedBus, push.ViewConfig{Namespace: cfg.Push.Namespace, Reload: cfg.Push.ViewReload}, log)
		pushQueue.UseView(view)
		pushView.Store(view)
	}
	n.svc.UsePush(pushQueue)
	registerPushGauges(reg, pushQueue)
	// WebSocket tickets live in the bus's key-value store, so that one
	// issued by any node opens a socket on any node, once.
	tickets, err := natsbus.NewTickets(ctx, bus, natsbus.TicketOptions{TTL: cfg.WSTicketTTL})
	if err != nil {
		n.store.Close()
		return err
	}
	n.svc.UseTickets(tickets)
	// With an external NATS other nodes may hold sessions too: presence
	// goes through the cluster's directory, which also tells the push
	// role where a user's sessions are.
	var presence *natsbus.Presence
	if cfg.NATSURL != "" && (cfg.Roles.Gateway || cfg.Roles.Push) {
		presence, err = natsbus.NewPresence(ctx, bus, natsbus.PresenceOptions{Node: parley.NewID()})
		if err != nil {
			n.store.Close()
			return err
		}
		defer presence.Close()
	}
	// The gateway role serves clients: the REST API and the WebSocket
	// edge. Without it the port serves health, readiness and metrics only.
	var gw *wsgate.Gateway
	var ws http.Handler
	if cfg.Roles.Gateway {
		var dir wsgate.Directory
		if presence != nil {
			dir = presence
		}
		wsMetrics := metrics.NewWS(reg, func() float64 { return float64(gw.Sessions()) })
		gw, err = wsgate.New(n.svc, sealedBus, wsgate.Config{
			MaxFrame:          cfg.MaxFrameBytes,
			MaxConnsPerDevice: cfg.MaxConnsDevice,
			MaxConnsPerUser:   cfg.MaxConnsUser,
			PingInterval:      cfg.PingInterval,
			IdleTimeout:       cfg.IdleTimeout,
			AllowedOrigins:    splitList(cfg.AllowedOrigins),
			PresenceGrace:     cfg.PresenceGrace,
			DeliveryLagBound:  lagBound(cfg.DeliveryLagBound),
			Directory:         dir,
			LimitsOff:         !cfg.Limits,
			Metrics:           wsMetrics,
		}, log)
		if err != nil {
			n.store.Close()
			return fmt.Errorf("websocket gateway: %w", err)
		}
		ws = gw
		if presence != nil {
			sub, err := presence.ServeLive(gw.LiveDevices)
			if err != nil {
				gw.Shutdown(context.Background())
				n.store.Close()
				return err
			}
			defer sub.Unsubscribe()
		}
	}
	var pushWorker *push.Worker
	if cfg.Roles.Push {
		var live push.Liveness = localLiveness{gw}
		if presence != nil {
			live = presence
		}
		pushWorker, err = newPushWorker(ctx, cfg, n.svc, n.store, pushQueue, live, log)
		if err != nil {
			if gw != nil {
				gw.Shutdown(context.Background())
			}
			n.store.Close()
			return err
		}
	}
	uploads, closeUploads, err := openUploads(ctx, n)
	if err != nil {
		if gw != nil {
			gw.Shutdown(context.Background())
		}
		n.store.Close()
		return fmt.Errorf("uploads: %w", err)
	}
	defer closeUploads()
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if cfg.MetricsToken == "" && !loopbackOnly(cfg.Listen) {
		log.Warn("/metrics on the main listener needs no token: set PARLEY_METRICS_TOKEN, or scrape the admin listener, where the listener is reachable by others")
	}
	api := httpapi.New(n.svc, httpapi.Config{
		LimitsOff: !cfg.Limits,
		IPRate:    cfg.IPRate, IPBurst: cfg.IPBurst,
		UserRate: cfg.UserRate, UserBurst: cfg.UserBurst,
		LoginRate: cfg.LoginRate, LoginBurst: cfg.LoginBurst,
		LoginHandleRate: cfg.HandleRate, LoginHandleBurst: cfg.HandleBurst,
		TrustedProxies: cfg.TrustedProxies,
		WriteTimeout:   cfg.HTTPWriteTimeout,
	}, httpapi.Options{JWKS: n.keys.JWKS, Metrics: metricsHandler, MetricsToken: cfg.MetricsToken, DeviceTokens: n.deviceTokens,
		ReadyChecks: map[string]func(context.Context) error{"event bus": bus.Ready}, WebSocket: ws, OpsOnly: !cfg.Roles.Gateway, Web: web,
		Media: &httpapi.MediaOptions{Links: n.mediaLinks, Blobs: n.media}, Uploads: uploads.Serve}, log, m)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		if gw != nil {
			gw.Shutdown(context.Background())
		}
		n.store.Close()
		return err
	}
	// The timeouts bound what one client can hold: a slow reader is cut
	// off by WriteTimeout instead of pinning a response in memory. A
	// WebSocket is not affected: net/http clears a connection's
	// deadlines when it is hijacked, and nbio then owns it
	// (TestWebSocketOutlivesHTTPTimeouts).
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: min(10*time.Second, nonZero(cfg.HTTPReadTimeout)),
		ReadTimeout:       cfg.HTTPReadTimeout,
		WriteTimeout:      cfg.HTTPWriteTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	log.Info("parleyd listening", "addr", ln.Addr().String(), "scheme", scheme, "data", cfg.Data, "limits", cfg.Limits, "roles", cfg.Roles.String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		if cfg.TLSCert != "" {
			err = srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	if cfg.Roles.Worker {
		// Background jobs: expiry and retention purges.
		g.Go(func() error { return n.svc.Run(gctx) })
		// Expired uploads and unreferenced media, with their blobs.
		g.Go(func() error { return uploads.Run(gctx) })
	}
	if pushWorker != nil {
		g.Go(func() error { return pushWorker.Run(gctx) })
	}
	if view != nil {
		g.Go(func() error { return view.Run(gctx) })
	}
	g.Go(func() error { return maintainKeys(gctx, n.keys, log) })
	if cfg.AdminListen != "" {
		admin := &http.Server{Addr: cfg.AdminListen, Handler: adminMux(metricsHandler), ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			log.Info("admin listener (pprof, metrics)", "addr", cfg.AdminListen)
			if err := admin.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			return admin.Close()
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		if err != nil {
			log.Warn("shutdown did not finish in time; closing connections", "err", err)
			srv.Close()
		}
		// REST has drained (in-flight sends answered); now every socket
		// gets 1001 and clients reconnect elsewhere.
		if gw != nil {
			gw.Shutdown(sctx)
		}
		return nil
	})
	err = g.Wait()
	// Closing commits the queued writes; it too is bounded.
	closed := make(chan error, 1)
	go func() { closed <- n.store.Close() }()
	select {
	case cerr := <-closed:
		if cerr != nil {
			log.Error("closing store", "err", cerr)
			if err == nil {
				err = cerr
			}
		}
	case <-time.After(cfg.ShutdownTimeout):
		log.Error("store did not close within the shutdown timeout")
		if err == nil {
			err = errors.New("store did not close within the shutdown timeout")
		}
	}
	log.Info("stopped")
	return err
}

// maintainKeys rotates the signing key when due, picks up a rotation done
// by `parleyd keys rotate`, and drops retired keys once their tokens are
// expired, every minute until ctx ends.
func maintainKeys(ctx context.Context, keys *auth.Keys, log *slog.Logger) error {
	t := time.NewTicker(auth.MaintainInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if err := keys.Maintain(now); err != nil {
				log.Error("signing key maintenance", "err", err)
			}
		}
	}
}

// adminMux serves pprof and, without a token (the admin listener is
// private), the metrics.
func adminMux(metricsHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// loopbackOnly reports whether addr (host:port) listens on a loopback
// address only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitList splits a comma-separated setting, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// lagBound maps the delivery-lag-bound setting to wsgate's: 0 (never
// hold) is negative there, where 0 means the default.
func lagBound(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
