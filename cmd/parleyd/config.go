package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/blob/s3blob"
	"github.com/parleychat/parley/outbound"
)

// Config is every setting of parleyd. Each has a flag, an environment
// variable and a key in the optional JSON config file; precedence is flag,
// then environment, then file, then the default. docs/operations.md
// documents each one (a test checks that none is missing).
type Config struct {
	Listen           string         // address for HTTP and WebSocket; default 127.0.0.1:8080
	Data             string         // data directory; default ./parley-data
	MasterKeyFile    string         // master key file outside the data directory; default "" = <data>/master.key
	Store            string         // "" = SQLite in Data; postgres://... = PostgreSQL
	StoreReplica     string         // optional PostgreSQL streaming replica for lagging-tolerant reads
	CommitWait       time.Duration  // embedded store: how long a small batch may wait for more writes; default 2ms, 0 = never
	MediaStore       string         // "" = files in <data>/media; s3://bucket[/prefix]?endpoint=... = S3
	MediaURLTTL      time.Duration  // media download links are valid at least this long; default 1h
	MediaURLBucket   time.Duration  // link expiries are rounded up to a multiple of this; default 1h
	MaxUploadBytes   int64          // largest upload; default 100 MiB
	UploadQuotaDaily int64          // bytes a user may upload per 24 h; default 1 GiB
	UploadQuotaStore int64          // bytes of media a user may hold; default 5 GiB
	UploadExpiry     time.Duration  // unfinished and unreferenced uploads are deleted after this; default 24h
	Roles            Roles          // what this node runs; default all
	HistoryCache     int            // conversations whose newest page is cached; 0 = off
	HistoryCacheMem  int            // bytes the history cache may hold; default 64 MiB
	TrustedProxies   []netip.Prefix // load balancers whose X-Forwarded-For is believed
	TLSCert, TLSKey  string         // PEM files; TLS is on when both are set
	AdminListen      string         // pprof and /metrics listener; default off
	MetricsToken     string         // bearer token /metrics requires on the main listener; default "" = none
	NATSURL          string         // external NATS servers, comma-separated; default "" = embedded
	NATSListen       string         // TCP address for the embedded NATS server; default "" = none
	NATS             NATSAuth       // credentials and TLS for the external NATS
	LogLevel         string         // debug, info, warn, error; default info
	MaxBodyBytes     int            // largest message body, bytes; default 65536
	AccessTTL        time.Duration  // access token lifetime; default 15m
	RefreshTTL       time.Duration  // refresh token lifetime when unused; default 720h
	KeyRotation      time.Duration  // signing key rotation period; default 720h, 0 = manual only
	PurgeInterval    time.Duration  // how often expired messages are deleted; default 30s
	Retention        time.Duration  // messages older than this are purged; default 0 = keep forever
	ShutdownTimeout  time.Duration  // bound on a graceful shutdown; default 15s
	HTTPReadTimeout  time.Duration  // whole request, body included; default 60s
	HTTPWriteTimeout time.Duration  // writing a response; default 30s
	HTTPIdleTimeout  time.Duration  // keep-alive connection between requests; default 120s
	Limits           bool           // per-IP/per-user rate limits; default on
	Web              bool           // serve the browser client (package webui) at /; default on
	IPRate           float64        // requests per second per client IP; default 50
	IPBurst          int            // default 100
	UserRate         float64        // requests per second per user; default 20
	UserBurst        int            // default 40
	LoginRate        float64        // failed logins per second per handle and address or known device; default 0.1667 (10/min)
	LoginBurst       int            // default 10
	HandleRate       float64        // failed logins per second per handle from unknown devices (the ceiling); default 1
	HandleBurst      int            // default 100
	UserSendRate     float64        // messages per second per user, all connections and REST; default 20
	UserSendBurst    int            // default 40
	MaxDevices       int            // devices (logged-in sessions) per user; default 20
	MaxE2EEMembers   int            // members of an end-to-end encrypted conversation; default 100
	MaxGroupMembers  int            // members of a group; default 10000, at most parley.MaxGroupMembersCap
	MaxInlineMembers int            // members a conversation object lists inline; default 100, raised to MaxE2EEMembers
	AllowedOrigins   string         // browser origins allowed on /v1/ws, comma-separated; "" = own host, "*" = any
	WSTicketTTL      time.Duration  // how long a WebSocket ticket lives unused; default 30s
	PingInterval     time.Duration  // WebSocket server ping period; default 25s
	IdleTimeout      time.Duration  // WebSocket closed after this long without a frame; default 60s
	MaxFrameBytes    int            // largest WebSocket client frame; default 131072
	MaxConnsDevice   int            // WebSocket connections per device on a node; default 10
	MaxConnsUser     int            // WebSocket connections per user on a node; default 50
	PresenceGrace    time.Duration  // online after the last session closed; default 5s
	DeliveryLagBound time.Duration  // delivery backlog above which sends are held; default 100ms, 0 = never
	MessageRequests  bool           // strangers' DMs and group adds arrive as requests; default on
	StrangerAdds     int            // strangers one user may put into conversations per hour; default 50, 0 = no limit
	Push             PushConfig     // the notification service (push role)

	// OutboundAllow names the exceptions for requests whose destination
	// users choose (Web Push endpoints); default none.
	OutboundAllow *outbound.Policy
}

// NATSAuth is how parleyd proves itself to an external NATS and checks
// it: at most one kind of credentials, and TLS. The secrets themselves
// (token, password) come from the environment or a file, never a flag.
type NATSAuth struct {
	CredsFile    string // .creds file (user JWT + nkey seed)
	NKeySeedFile string // nkey seed file (SU...)
	TokenFile    string // file holding the token
	Token        string // PARLEY_NATS_TOKEN (environment only)
	User         string // user name; its password is PARLEY_NATS_PASSWORD (environment only)
	Password     string
	TLS          bool   // refuse a server without TLS; default off (on when TLSCA or TLSCert is set)
	TLSCA        string // PEM roots for the servers' certificates; default the system's
	TLSCert      string // client certificate (mutual TLS), with TLSKey
	TLSKey       string
}

// any reports whether some NATS credential or TLS setting is given.
func (a *NATSAuth) any() bool {
	return a.CredsFile != "" || a.NKeySeedFile != "" || a.TokenFile != "" || a.Token != "" || a.User != "" || a.Password != "" ||
		a.TLS || a.TLSCA != "" || a.TLSCert != "" || a.TLSKey != ""
}

// check refuses settings that contradict each other.
func (a *NATSAuth) check() error {
	kinds := 0
	for _, set := range []bool{a.CredsFile != "", a.NKeySeedFile != "", a.TokenFile != "" || a.Token != "", a.User != ""} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		return fmt.Errorf("give one kind of NATS credentials: nats-creds, nats-nkey, a token (PARLEY_NATS_TOKEN or nats-token-file) or nats-user, not several")
	}
	if a.TokenFile != "" && a.Token != "" {
		return fmt.Errorf("give the NATS token once: PARLEY_NATS_TOKEN or nats-token-file")
	}
	if a.Password != "" && a.User == "" {
		return fmt.Errorf("PARLEY_NATS_PASSWORD needs nats-user")
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return fmt.Errorf("nats-tls-cert and nats-tls-key must be given together")
	}
	return nil
}

// PushConfig is the notification service's settings (docs/push.md).
type PushConfig struct {
	CollapseWindow time.Duration // a burst's first notification waits this long; default 1s
	DeliveredGrace time.Duration // a live device has this long to report delivered; default 4s
	TTL            time.Duration // jobs older than this are dropped; default 168h
	Attempts       int           // sends per notification before the dead-letter stream; default 8
	RetryBase      time.Duration // first retry backoff; default 1s
	Preview        bool          // message text in notifications; default off
	Concurrency    int           // jobs handled at once per push node; default 64
	ViewOff        bool          // every message gets a push job (no in-memory view of registrations)
	ViewReload     time.Duration // how often a gateway reads the registrations again; default 5m
	Replicas       int           // JetStream replicas of the queue; default 1
	Namespace      string        // keeps this cluster's queue apart on a shared NATS; default main
	CAFile         string        // extra root CAs for provider endpoints (tests, private CAs)
	APNsKeyFile    string        // .p8 key; APNs is off without it
	APNsKeyID      string
	APNsTeamID     string
	APNsURL        string   // replaces the APNs hosts (tests)
	APNsTopics     []string // the apps (bundle ids) APNs registrations may name; default none
	FCMCredentials string   // service account JSON; FCM is off without it
	FCMProject     string   // default: the service account's project
	FCMURL         string   // replaces the FCM endpoint (tests)
	VAPIDSubject   string   // the VAPID contact (mailto: or https:); empty = Web Push off

	// Abuse limits (docs/push.md, "Limits").
	MaxRegistrations  int           // devices of one user with a push registration; default 20
	HostConcurrency   int           // sends at once to one Web Push host not a known push service; default 4
	UserConcurrency   int           // sends at once to one user's devices; default 4
	UnknownTimeout    time.Duration // send timeout for Web Push hosts not known push services; default 3s
	EndpointBackoff   time.Duration // first backoff of a failing Web Push registration; default 30s
	EndpointDropAfter int           // consecutive failures that drop a registration...; default 10
	EndpointDropSpan  time.Duration // ...when they span at least this; default 24h
}

// setting binds one Config field to its flag, env var and file key.
type setting struct {
	key   string // flag name and config-file key (with - replaced by _)
	env   string
	def   string
	usage string
	set   func(c *Config, v string) error
}

func settings() []setting {
	str := func(f func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *f(c) = v; return nil }
	}
	dur := func(f func(*Config) *time.Duration) func(*Config, string) error {
		return func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("want a non-negative duration like 15m or 720h, got %q", v)
			}
			*f(c) = d
			return nil
		}
	}
	integer := func(f func(*Config) *int) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("want a non-negative integer, got %q", v)
			}
			*f(c) = n
			return nil
		}
	}
	bytes64 := func(f func(*Config) *int64) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return fmt.Errorf("want a positive number of bytes, got %q", v)
			}
			*f(c) = n
			return nil
		}
	}
	positive := func(f func(*Config) *int) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("want a positive integer, got %q", v)
			}
			*f(c) = n
			return nil
		}
	}
	float := func(f func(*Config) *float64) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("want a non-negative number, got %q", v)
			}
			*f(c) = n
			return nil
		}
	}
	return []setting{
		{"listen", "PARLEY_LISTEN", "127.0.0.1:8080", "address to serve HTTP and WebSocket on", str(func(c *Config) *string { return &c.Listen })},
		{"data", "PARLEY_DATA", "./parley-data", "data directory (database, keys)", str(func(c *Config) *string { return &c.Data })},
		{"master-key-file", "PARLEY_MASTER_KEY_FILE", "", "file holding the master key(s) for encryption at rest, kept outside the data directory (another volume, a mounted secret) so that a copy of the data alone reads nothing; created 0600 when missing (embedded store only); empty = master.key in the data directory", str(func(c *Config) *string { return &c.MasterKeyFile })},
		{"store", "PARLEY_STORE", "", "the store: empty = embedded SQLite in the data directory; postgres://user@host:port/db = PostgreSQL, shared by every node of a cluster (needs PARLEY_MASTER_KEY)", func(c *Config, v string) error {
			if v != "" && !isPostgresDSN(v) {
				return fmt.Errorf("want empty or a postgres:// URL, got %q", v)
			}
			c.Store = v
			return nil
		}},
		{"commit-wait", "PARLEY_COMMIT_WAIT", "2ms", "embedded store: when the writer finds a lone write while writes arrive steadily, how long it may hold that batch open for more before it commits (fewer commits and fsyncs at a light load, about this much added latency; an idle or busy server never waits); 0 = never wait", func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > 50*time.Millisecond {
				return fmt.Errorf("want a duration from 0 to 50ms, like 2ms, got %q", v)
			}
			c.CommitWait = d
			return nil
		}},
		{"media-store", "PARLEY_MEDIA_STORE", "", "where media objects live, encrypted under the master key: empty = files in the data directory (media/); s3://bucket[/prefix]?endpoint=URL&region=R&path_style=true = an S3-compatible bucket shared by every node (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; needs PARLEY_MASTER_KEY or --master-key-file)", func(c *Config, v string) error {
			if v != "" {
				if _, err := s3blob.ParseURL(v); err != nil {
					return err
				}
			}
			c.MediaStore = v
			return nil
		}},
		{"media-url-ttl", "PARLEY_MEDIA_URL_TTL", "1h", "how long a media download link (/m/...) is valid at least; a removed member or a deleted message's media stays reachable through links already handed out for at most this plus --media-url-bucket", func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < time.Second {
				return fmt.Errorf("want a duration of 1s or more, got %q", v)
			}
			c.MediaURLTTL = d
			return nil
		}},
		{"media-url-bucket", "PARLEY_MEDIA_URL_BUCKET", "1h", "media link expiries are rounded up to a multiple of this, so every member gets the same URL within it and a CDN caches each media once per bucket", func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < time.Second {
				return fmt.Errorf("want a duration of 1s or more, got %q", v)
			}
			c.MediaURLBucket = d
			return nil
		}},
		{"max-upload-bytes", "PARLEY_MAX_UPLOAD_BYTES", "104857600", "largest media upload in bytes (tus Upload-Length)", bytes64(func(c *Config) *int64 { return &c.MaxUploadBytes })},
		{"upload-quota-daily", "PARLEY_UPLOAD_QUOTA_DAILY", "1073741824", "bytes of uploads a user may start in any 24 hours", bytes64(func(c *Config) *int64 { return &c.UploadQuotaDaily })},
		{"upload-quota-stored", "PARLEY_UPLOAD_QUOTA_STORED", "5368709120", "bytes of media a user may hold (finished uploads, and unfinished ones at their declared length)", bytes64(func(c *Config) *int64 { return &c.UploadQuotaStore })},
		{"upload-expiry", "PARLEY_UPLOAD_EXPIRY", "24h", "an unfinished upload, or a finished one no message references, is deleted this long after it was created", dur(func(c *Config) *time.Duration { return &c.UploadExpiry })},
		{"store-replica", "PARLEY_STORE_REPLICA", "", "optional PostgreSQL streaming replica (postgres://...) for older history pages and sync when it has caught up; see docs/operations.md", func(c *Config, v string) error {
			if v != "" && !isPostgresDSN(v) {
				return fmt.Errorf("want empty or a postgres:// URL, got %q", v)
			}
			c.StoreReplica = v
			return nil
		}},
		{"roles", "PARLEY_ROLES", "all", "what this node runs, comma-separated: gateway (REST API and WebSocket edge), worker (background jobs: expiry and retention purges), push (the notification service); all = every role", func(c *Config, v string) error {
			r, err := parseRoles(v)
			if err != nil {
				return err
			}
			c.Roles = r
			return nil
		}},
		{"history-cache", "PARLEY_HISTORY_CACHE", "10000", "how many conversations' newest history page each node keeps in memory, kept coherent through the bus; 0 = no cache", integer(func(c *Config) *int { return &c.HistoryCache })},
		{"history-cache-bytes", "PARLEY_HISTORY_CACHE_BYTES", "67108864", "memory the history cache may hold, in bytes (bodies plus about 512 bytes a message); past it entries are evicted", integer(func(c *Config) *int { return &c.HistoryCacheMem })},
		{"trusted-proxies", "PARLEY_TRUSTED_PROXIES", "", "load balancers in front (IPs or CIDRs, comma-separated) whose X-Forwarded-For names the client for the per-IP limits; empty = the peer is the client", func(c *Config, v string) error {
			c.TrustedProxies = nil
			for _, item := range splitList(v) {
				p, err := netip.ParsePrefix(item)
				if err != nil {
					a, aerr := netip.ParseAddr(item)
					if aerr != nil {
						return fmt.Errorf("want IP addresses or CIDR prefixes, got %q", item)
					}
					p = netip.PrefixFrom(a, a.BitLen())
				}
				c.TrustedProxies = append(c.TrustedProxies, p.Masked())
			}
			return nil
		}},
		{"tls-cert", "PARLEY_TLS_CERT", "", "TLS certificate PEM file; TLS is on when cert and key are set", str(func(c *Config) *string { return &c.TLSCert })},
		{"tls-key", "PARLEY_TLS_KEY", "", "TLS private key PEM file", str(func(c *Config) *string { return &c.TLSKey })},
		{"admin-listen", "PARLEY_ADMIN_LISTEN", "", "address for pprof and /metrics without a token (keep it private); empty = off", str(func(c *Config) *string { return &c.AdminListen })},
		{"metrics-token", "PARLEY_METRICS_TOKEN", "", "bearer token that /metrics on the main listener requires (set it in the environment, not on the command line); empty = /metrics there is open", str(func(c *Config) *string { return &c.MetricsToken })},
		{"nats-url", "PARLEY_NATS_URL", "", "external NATS servers (nats://host:port, comma-separated); empty = run an embedded NATS server", str(func(c *Config) *string { return &c.NATSURL })},
		{"nats-listen", "PARLEY_NATS_LISTEN", "", "host:port where the embedded NATS server also accepts TCP clients; empty = in-process only", str(func(c *Config) *string { return &c.NATSListen })},
		{"nats-creds", "PARLEY_NATS_CREDS", "", "credentials file (.creds: user JWT and nkey seed, from nsc) for the external NATS", str(func(c *Config) *string { return &c.NATS.CredsFile })},
		{"nats-nkey", "PARLEY_NATS_NKEY", "", "nkey seed file (SU...) for the external NATS", str(func(c *Config) *string { return &c.NATS.NKeySeedFile })},
		{"nats-token-file", "PARLEY_NATS_TOKEN_FILE", "", "file holding the token for the external NATS (or give the token itself in PARLEY_NATS_TOKEN)", str(func(c *Config) *string { return &c.NATS.TokenFile })},
		{"nats-user", "PARLEY_NATS_USER", "", "user name for the external NATS; its password in PARLEY_NATS_PASSWORD", str(func(c *Config) *string { return &c.NATS.User })},
		{"nats-tls", "PARLEY_NATS_TLS", "off", "on: refuse an external NATS server that does not speak TLS (on by itself when nats-tls-ca or nats-tls-cert is set, or a URL is tls://)", func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "on", "true", "1":
				c.NATS.TLS = true
			case "off", "false", "0":
				c.NATS.TLS = false
			default:
				return fmt.Errorf("want on or off, got %q", v)
			}
			return nil
		}},
		{"nats-tls-ca", "PARLEY_NATS_TLS_CA", "", "PEM file of the CAs the external NATS servers' certificates must chain to; empty = the system's", str(func(c *Config) *string { return &c.NATS.TLSCA })},
		{"nats-tls-cert", "PARLEY_NATS_TLS_CERT", "", "client certificate (PEM) for NATS servers that verify clients (mutual TLS), with nats-tls-key", str(func(c *Config) *string { return &c.NATS.TLSCert })},
		{"nats-tls-key", "PARLEY_NATS_TLS_KEY", "", "the client certificate's private key (PEM)", str(func(c *Config) *string { return &c.NATS.TLSKey })},
		{"log-level", "PARLEY_LOG_LEVEL", "info", "log level: debug, info, warn, error", str(func(c *Config) *string { return &c.LogLevel })},
		{"max-body-bytes", "PARLEY_MAX_BODY_BYTES", "65536", "largest message body in bytes", integer(func(c *Config) *int { return &c.MaxBodyBytes })},
		{"access-token-ttl", "PARLEY_ACCESS_TOKEN_TTL", "15m", "access token lifetime", dur(func(c *Config) *time.Duration { return &c.AccessTTL })},
		{"refresh-token-ttl", "PARLEY_REFRESH_TOKEN_TTL", "720h", "refresh token lifetime when unused", dur(func(c *Config) *time.Duration { return &c.RefreshTTL })},
		{"key-rotation", "PARLEY_KEY_ROTATION", "720h", "signing key rotation period; 0 = only by `parleyd keys rotate`", dur(func(c *Config) *time.Duration { return &c.KeyRotation })},
		{"purge-interval", "PARLEY_PURGE_INTERVAL", "30s", "how often expired messages are deleted", dur(func(c *Config) *time.Duration { return &c.PurgeInterval })},
		{"retention", "PARLEY_RETENTION", "0", "server-wide history retention: messages older than this are purged in the background (e.g. 8760h); 0 = keep forever", dur(func(c *Config) *time.Duration { return &c.Retention })},
		{"shutdown-timeout", "PARLEY_SHUTDOWN_TIMEOUT", "15s", "bound on a graceful shutdown", dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
		{"http-read-timeout", "PARLEY_HTTP_READ_TIMEOUT", "60s", "bound on reading one HTTP request, body included; 0 = none", dur(func(c *Config) *time.Duration { return &c.HTTPReadTimeout })},
		{"http-write-timeout", "PARLEY_HTTP_WRITE_TIMEOUT", "30s", "bound on handling one HTTP request and writing its response (a client that stops reading is cut off); WebSockets are not affected; 0 = none", dur(func(c *Config) *time.Duration { return &c.HTTPWriteTimeout })},
		{"http-idle-timeout", "PARLEY_HTTP_IDLE_TIMEOUT", "120s", "a keep-alive HTTP connection waiting for its next request is closed after this; 0 = the read timeout", dur(func(c *Config) *time.Duration { return &c.HTTPIdleTimeout })},
		{"limits", "PARLEY_LIMITS", "on", "per-IP and per-user rate limits: on or off (off is for load tests; the login limit stays)", func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "on", "true", "1":
				c.Limits = true
			case "off", "false", "0":
				c.Limits = false
			default:
				return fmt.Errorf("want on or off, got %q", v)
			}
			return nil
		}},
		{"web", "PARLEY_WEB", "on", "serve the browser client at / (the API stays under /v1): on or off", func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "on", "true", "1":
				c.Web = true
			case "off", "false", "0":
				c.Web = false
			default:
				return fmt.Errorf("want on or off, got %q", v)
			}
			return nil
		}},
		{"ip-rate", "PARLEY_IP_RATE", "50", "requests per second per client IP", float(func(c *Config) *float64 { return &c.IPRate })},
		{"ip-burst", "PARLEY_IP_BURST", "100", "burst of requests per client IP", integer(func(c *Config) *int { return &c.IPBurst })},
		{"user-rate", "PARLEY_USER_RATE", "20", "requests per second per user", float(func(c *Config) *float64 { return &c.UserRate })},
		{"user-burst", "PARLEY_USER_BURST", "40", "burst of requests per user", integer(func(c *Config) *int { return &c.UserBurst })},
		{"login-rate", "PARLEY_LOGIN_RATE", "0.1667", "failed login attempts per second per handle and client address, and per handle and known device", float(func(c *Config) *float64 { return &c.LoginRate })},
		{"login-burst", "PARLEY_LOGIN_BURST", "10", "burst of failed login attempts per handle and client address or known device", integer(func(c *Config) *int { return &c.LoginBurst })},
		{"login-handle-rate", "PARLEY_LOGIN_HANDLE_RATE", "1", "ceiling on failed login attempts per second per handle from devices that are not known, whatever their address", float(func(c *Config) *float64 { return &c.HandleRate })},
		{"login-handle-burst", "PARLEY_LOGIN_HANDLE_BURST", "100", "burst of the per-handle ceiling for unknown devices", integer(func(c *Config) *int { return &c.HandleBurst })},
		{"user-send-rate", "PARLEY_USER_SEND_RATE", "20", "messages per second one user may send, over all their WebSocket connections and REST together (per node); 0 = no per-user limit", float(func(c *Config) *float64 { return &c.UserSendRate })},
		{"user-send-burst", "PARLEY_USER_SEND_BURST", "40", "burst of messages per user", integer(func(c *Config) *int { return &c.UserSendBurst })},
		{"max-devices-per-user", "PARLEY_MAX_DEVICES_PER_USER", "20", "devices (logged-in sessions) one user may have; a login past it is refused with limit_exceeded until a device is logged out; 0 = no cap", integer(func(c *Config) *int { return &c.MaxDevices })},
		{"max-group-members", "PARLEY_MAX_GROUP_MEMBERS", "10000", "members a group may have: creating one with more is invalid_request, adding past it conflict (at most 100000)", positive(func(c *Config) *int { return &c.MaxGroupMembers })},
		{"max-inline-members", "PARLEY_MAX_INLINE_MEMBERS", "100", "members a conversation object lists inline (REST, sync, conversation frames); above it the object is paged: member_count, the caller's me and a receipts summary, members through GET /v1/conversations/{id}/members. Raised to max-e2ee-members if below it; the same on every node", positive(func(c *Config) *int { return &c.MaxInlineMembers })},
		{"max-e2ee-members", "PARLEY_MAX_E2EE_MEMBERS", "100", "members an end-to-end encrypted conversation may have; creating or adding past it is limit_exceeded (each message carries a key per device of every member)", integer(func(c *Config) *int { return &c.MaxE2EEMembers })},
		{"allowed-origins", "PARLEY_ALLOWED_ORIGINS", "", "browser origins (https://app.example.com) allowed to open /v1/ws, comma-separated; empty = the server's own host, * = any; requests without Origin (apps, CLIs) are always allowed", str(func(c *Config) *string { return &c.AllowedOrigins })},
		{"ws-ticket-ttl", "PARLEY_WS_TICKET_TTL", "30s", "how long a WebSocket ticket (POST /v1/ws/ticket) may wait for its one use", dur(func(c *Config) *time.Duration { return &c.WSTicketTTL })},
		{"ping-interval", "PARLEY_PING_INTERVAL", "25s", "how often the server pings each WebSocket", dur(func(c *Config) *time.Duration { return &c.PingInterval })},
		{"idle-timeout", "PARLEY_IDLE_TIMEOUT", "60s", "a WebSocket that sends nothing (not even a pong) for this long is closed; must exceed ping-interval", dur(func(c *Config) *time.Duration { return &c.IdleTimeout })},
		{"max-frame-bytes", "PARLEY_MAX_FRAME_BYTES", "131072", "largest WebSocket frame a client may send; larger closes the connection with 1009", integer(func(c *Config) *int { return &c.MaxFrameBytes })},
		{"max-connections-per-device", "PARLEY_MAX_CONNECTIONS_PER_DEVICE", "10", "WebSocket connections one device may hold on a node; one more closes its oldest (4004)", integer(func(c *Config) *int { return &c.MaxConnsDevice })},
		{"max-connections-per-user", "PARLEY_MAX_CONNECTIONS_PER_USER", "50", "WebSocket connections one user may hold on a node over all devices; one more is refused with limit_exceeded (409)", integer(func(c *Config) *int { return &c.MaxConnsUser })},
		{"delivery-lag-bound", "PARLEY_DELIVERY_LAG_BOUND", "100ms", "how long live events may wait in a node's bus queue before the node holds new WebSocket sends (their acks come later) until delivery catches up; 0 = never hold", dur(func(c *Config) *time.Duration { return &c.DeliveryLagBound })},
		{"presence-grace", "PARLEY_PRESENCE_GRACE", "5s", "how long a user stays online after the last connection closed (avoids flapping on reconnects)", dur(func(c *Config) *time.Duration { return &c.PresenceGrace })},
		{"outbound-allow", "PARLEY_OUTBOUND_ALLOW", "", "exceptions for requests whose destination users choose (Web Push endpoints), comma-separated: CIDR prefixes or addresses (10.1.0.0/16, 127.0.0.1) let connections to blocked ranges through; host names with an optional port (push.corp.example:8443) let that host through whatever it resolves to; both allow plain http for those hosts. Empty = public https hosts only", func(c *Config, v string) error {
			p, err := outbound.ParseAllow(v)
			if err != nil {
				return err
			}
			c.OutboundAllow = p
			return nil
		}},
		{"message-requests", "PARLEY_MESSAGE_REQUESTS", "on", "on: a DM or group add from a user one shares no accepted conversation with arrives as a message request (no presence, typing or receipts flow until accepted); off: as an ordinary membership", func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "on", "true", "1":
				c.MessageRequests = true
			case "off", "false", "0":
				c.MessageRequests = false
			default:
				return fmt.Errorf("want on or off, got %q", v)
			}
			return nil
		}},
		{"stranger-adds", "PARLEY_STRANGER_ADDS", "50", "how many strangers (users one shares no accepted conversation with) one user may put into conversations (direct or group) per hour, per node; above it rate_limited; 0 = no limit", integer(func(c *Config) *int { return &c.StrangerAdds })},
		{"push-collapse", "PARLEY_PUSH_COLLAPSE", "1s", "how long a device's first notification of a burst waits for more messages of the conversation (one notification with the count)", dur(func(c *Config) *time.Duration { return &c.Push.CollapseWindow })},
		{"push-delivered-grace", "PARLEY_PUSH_DELIVERED_GRACE", "4s", "a device with a live session is pushed only if it has not reported delivered within this", dur(func(c *Config) *time.Duration { return &c.Push.DeliveredGrace })},
		{"push-ttl", "PARLEY_PUSH_TTL", "168h", "push jobs older than this (since the message's commit) are dropped", dur(func(c *Config) *time.Duration { return &c.Push.TTL })},
		{"push-attempts", "PARLEY_PUSH_ATTEMPTS", "8", "sends per notification (429, 5xx, network errors retry) before it goes to the dead-letter stream", integer(func(c *Config) *int { return &c.Push.Attempts })},
		{"push-retry-base", "PARLEY_PUSH_RETRY_BASE", "1s", "first retry backoff; it doubles per attempt (with jitter, up to 5m, at least the provider's Retry-After)", dur(func(c *Config) *time.Duration { return &c.Push.RetryBase })},
		{"push-preview", "PARLEY_PUSH_PREVIEW", "off", "on: notifications carry the start of a text message; off: no content (the app fetches it)", func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "on", "true", "1":
				c.Push.Preview = true
			case "off", "false", "0":
				c.Push.Preview = false
			default:
				return fmt.Errorf("want on or off, got %q", v)
			}
			return nil
		}},
		{"push-view", "PARLEY_PUSH_VIEW", "on", "on: a gateway keeps in memory which users have a push registration, and a message no other member of whose conversation has one gets no push job (docs/push.md); off: every message gets a job", func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "on", "true", "1":
				c.Push.ViewOff = false
			case "off", "false", "0":
				c.Push.ViewOff = true
			default:
				return fmt.Errorf("want on or off, got %q", v)
			}
			return nil
		}},
		{"push-view-reload", "PARLEY_PUSH_VIEW_RELOAD", "5m", "how often a gateway reads every push registration again (a new one reaches every node at once through the bus; a removed one at the next reload)", dur(func(c *Config) *time.Duration { return &c.Push.ViewReload })},
		{"push-max-registrations", "PARLEY_PUSH_MAX_REGISTRATIONS", "20", "devices of one user that may hold a push registration; one more is refused with limit_exceeded", positive(func(c *Config) *int { return &c.Push.MaxRegistrations })},
		{"push-concurrency", "PARLEY_PUSH_CONCURRENCY", "64", "push jobs each push node handles at once", positive(func(c *Config) *int { return &c.Push.Concurrency })},
		{"push-host-concurrency", "PARLEY_PUSH_HOST_CONCURRENCY", "4", "sends at once, per push node, to one Web Push host that is not a known push service; a job past it goes back on the queue for about a second", positive(func(c *Config) *int { return &c.Push.HostConcurrency })},
		{"push-user-concurrency", "PARLEY_PUSH_USER_CONCURRENCY", "4", "sends at once, per push node, to the devices of one user; a job past it goes back on the queue for about a second", positive(func(c *Config) *int { return &c.Push.UserConcurrency })},
		{"push-unknown-host-timeout", "PARLEY_PUSH_UNKNOWN_HOST_TIMEOUT", "3s", "send timeout for a Web Push host that is not a known push service (known ones, APNs and FCM get 10s)", dur(func(c *Config) *time.Duration { return &c.Push.UnknownTimeout })},
		{"push-endpoint-backoff", "PARLEY_PUSH_ENDPOINT_BACKOFF", "30s", "a Web Push registration whose sends fail twice in a row gets no sends for this long, doubling per further failure (up to 1h); a success resets it", dur(func(c *Config) *time.Duration { return &c.Push.EndpointBackoff })},
		{"push-endpoint-drop-after", "PARLEY_PUSH_ENDPOINT_DROP_AFTER", "10", "a Web Push registration is removed after this many consecutive failed sends spanning push-endpoint-drop-span", positive(func(c *Config) *int { return &c.Push.EndpointDropAfter })},
		{"push-endpoint-drop-span", "PARLEY_PUSH_ENDPOINT_DROP_SPAN", "24h", "the least time from the first to the last of those failures before a registration is removed", dur(func(c *Config) *time.Duration { return &c.Push.EndpointDropSpan })},
		{"push-replicas", "PARLEY_PUSH_REPLICAS", "1", "JetStream replicas of the push queue and its state (3 on a NATS cluster that must survive losing a server)", integer(func(c *Config) *int { return &c.Push.Replicas })},
		{"push-namespace", "PARLEY_PUSH_NAMESPACE", "main", "the push queue's name on NATS (stream PARLEY_PUSH_<namespace>): clusters sharing one NATS need different ones; every node of a cluster the same", str(func(c *Config) *string { return &c.Push.Namespace })},
		{"push-ca-file", "PARLEY_PUSH_CA_FILE", "", "PEM file of extra root CAs trusted for provider endpoints (private or test servers)", str(func(c *Config) *string { return &c.Push.CAFile })},
		{"apns-key-file", "PARLEY_APNS_KEY_FILE", "", "APNs token-auth key (.p8 from the Apple developer account); empty = no APNs", str(func(c *Config) *string { return &c.Push.APNsKeyFile })},
		{"apns-key-id", "PARLEY_APNS_KEY_ID", "", "the APNs key's id", str(func(c *Config) *string { return &c.Push.APNsKeyID })},
		{"apns-team-id", "PARLEY_APNS_TEAM_ID", "", "the Apple developer team id", str(func(c *Config) *string { return &c.Push.APNsTeamID })},
		{"apns-url", "PARLEY_APNS_URL", "", "replaces both APNs hosts (api.push.apple.com, api.sandbox.push.apple.com): for tests", str(func(c *Config) *string { return &c.Push.APNsURL })},
		{"apns-topics", "PARLEY_APNS_TOPICS", "", "the apps (bundle ids, comma-separated) APNs registrations may name as topic; a registration naming another is refused; empty = APNs registrations are refused", func(c *Config, v string) error {
			c.Push.APNsTopics = splitList(v)
			return nil
		}},
		{"fcm-credentials", "PARLEY_FCM_CREDENTIALS", "", "FCM service account key (JSON file); empty = no FCM", str(func(c *Config) *string { return &c.Push.FCMCredentials })},
		{"fcm-project", "PARLEY_FCM_PROJECT", "", "Firebase project id; empty = the service account's", str(func(c *Config) *string { return &c.Push.FCMProject })},
		{"fcm-url", "PARLEY_FCM_URL", "", "replaces the FCM endpoint (https://fcm.googleapis.com/v1): for tests", str(func(c *Config) *string { return &c.Push.FCMURL })},
		{"vapid-subject", "PARLEY_VAPID_SUBJECT", "", "the VAPID contact Web Push services may use (mailto:ops@example.com or an https URL); Web Push is on only when it is set: empty = no Web Push (registrations refused)", func(c *Config, v string) error {
			if v != "" && !validVAPIDSubject(v) {
				return fmt.Errorf("want mailto:<address> or an https:// URL, got %q", v)
			}
			c.Push.VAPIDSubject = v
			return nil
		}},
	}
}

// loadConfig builds the Config from defaults, the config file (--config or
// PARLEY_CONFIG), the environment and the flags in args, in rising
// precedence. It returns the remaining arguments.
func loadConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (*Config, []string, error) {
	all := settings()
	flagVals := map[string]string{}
	for _, s := range all {
		fs.Func(s.key, fmt.Sprintf("%s (env %s, default %q)", s.usage, s.env, s.def), func(v string) error {
			flagVals[s.key] = v
			return nil
		})
	}
	configPath := fs.String("config", getenv("PARLEY_CONFIG"), "optional JSON config file (env PARLEY_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	var c Config
	apply := func(s setting, v, from string) error {
		if err := s.set(&c, v); err != nil {
			return fmt.Errorf("%s from %s: %w", s.key, from, err)
		}
		return nil
	}
	for _, s := range all {
		if err := apply(s, s.def, "default"); err != nil {
			return nil, nil, err
		}
	}
	if *configPath != "" {
		file, err := readConfigFile(*configPath, all)
		if err != nil {
			return nil, nil, err
		}
		for _, s := range all {
			if v, ok := file[fileKey(s.key)]; ok {
				if err := apply(s, v, *configPath); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	for _, s := range all {
		if v := getenv(s.env); v != "" {
			if err := apply(s, v, s.env); err != nil {
				return nil, nil, err
			}
		}
	}
	for _, s := range all {
		if v, ok := flagVals[s.key]; ok {
			if err := apply(s, v, "--"+s.key); err != nil {
				return nil, nil, err
			}
		}
	}
	if getenv("PARLEY_PUSH_ALLOW_HTTP") != "" {
		return nil, nil, fmt.Errorf("PARLEY_PUSH_ALLOW_HTTP is gone: name the hosts Web Push endpoints may reach over http with --outbound-allow (PARLEY_OUTBOUND_ALLOW), e.g. 127.0.0.1")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, nil, fmt.Errorf("tls-cert and tls-key must be given together")
	}
	if c.MasterKeyFile != "" {
		abs, err := filepath.Abs(c.MasterKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("master-key-file: %w", err)
		}
		data, err := filepath.Abs(c.Data)
		if err != nil {
			return nil, nil, fmt.Errorf("data: %w", err)
		}
		if rel, err := filepath.Rel(data, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return nil, nil, fmt.Errorf("master-key-file %s is inside the data directory %s: keep it elsewhere, or leave the setting empty", c.MasterKeyFile, c.Data)
		}
		c.MasterKeyFile = abs
	}
	// Secrets for NATS: environment only (a flag would show in ps).
	c.NATS.Token, c.NATS.Password = getenv("PARLEY_NATS_TOKEN"), getenv("PARLEY_NATS_PASSWORD")
	if err := c.NATS.check(); err != nil {
		return nil, nil, err
	}
	if c.NATS.any() && c.NATSURL == "" {
		return nil, nil, fmt.Errorf("the nats-creds, nats-nkey, nats-token-file, nats-user and nats-tls settings (and PARLEY_NATS_TOKEN, PARLEY_NATS_PASSWORD) are for an external NATS: give nats-url too (the embedded server makes its own secret)")
	}
	if c.StoreReplica != "" && c.Store == "" {
		return nil, nil, fmt.Errorf("store-replica needs a PostgreSQL store")
	}
	if c.MaxBodyBytes < 1 {
		return nil, nil, fmt.Errorf("max-body-bytes must be at least 1")
	}
	if c.MaxGroupMembers > parley.MaxGroupMembersCap {
		return nil, nil, fmt.Errorf("max-group-members must be at most %d", parley.MaxGroupMembersCap)
	}
	if c.AccessTTL < time.Second {
		return nil, nil, fmt.Errorf("access-token-ttl must be at least 1s")
	}
	return &c, fs.Args(), nil
}

// validVAPIDSubject reports a VAPID contact push services accept: a
// mailto: URL with an address, or an https URL with a host.
func validVAPIDSubject(v string) bool {
	if addr, ok := strings.CutPrefix(v, "mailto:"); ok {
		_, err := mail.ParseAddress(addr)
		return err == nil && !strings.ContainsAny(addr, "<> ")
	}
	u, err := url.Parse(v)
	return err == nil && u.Scheme == "https" && u.Host != ""
}

// Roles says which parts of parleyd a node runs. Roles meet only through
// the store and the bus, so a fleet can run them on different nodes.
type Roles struct {
	Gateway bool // the REST API and the WebSocket edge
	Worker  bool // background jobs: expiry and retention purges
	Push    bool // the notification service: consumes the push queue
}

func (r Roles) String() string {
	var names []string
	if r.Gateway {
		names = append(names, "gateway")
	}
	if r.Worker {
		names = append(names, "worker")
	}
	if r.Push {
		names = append(names, "push")
	}
	return strings.Join(names, ",")
}

// parseRoles reads a comma-separated list of roles; "all" is every role.
func parseRoles(v string) (Roles, error) {
	var r Roles
	for _, name := range strings.Split(v, ",") {
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "all":
			r.Gateway, r.Worker, r.Push = true, true, true
		case "gateway":
			r.Gateway = true
		case "worker":
			r.Worker = true
		case "push":
			r.Push = true
		case "":
		default:
			return Roles{}, fmt.Errorf("unknown role %q (want gateway, worker, push or all)", strings.TrimSpace(name))
		}
	}
	if r == (Roles{}) {
		return Roles{}, fmt.Errorf("no role given (want gateway, worker, push or all)")
	}
	return r, nil
}

// isPostgresDSN reports whether v names a PostgreSQL database by URL.
func isPostgresDSN(v string) bool {
	return strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://")
}

func fileKey(flagName string) string { return strings.ReplaceAll(flagName, "-", "_") }

// readConfigFile reads a flat JSON object of settings. Values may be JSON
// strings, numbers or booleans; unknown keys are an error, so a typo does
// not pass silently.
func readConfigFile(path string, all []setting) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	known := map[string]bool{}
	for _, s := range all {
		known[fileKey(s.key)] = true
	}
	out := map[string]string{}
	var unknown []string
	for k, v := range raw {
		if !known[k] {
			unknown = append(unknown, k)
			continue
		}
		switch v := v.(type) {
		case string:
			out[k] = v
		case float64:
			out[k] = strconv.FormatFloat(v, 'f', -1, 64)
		case bool:
			out[k] = map[bool]string{true: "on", false: "off"}[v]
		default:
			return nil, fmt.Errorf("config file %s: %s must be a string, number or boolean", path, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("config file %s: unknown settings %s", path, strings.Join(unknown, ", "))
	}
	return out, nil
}
