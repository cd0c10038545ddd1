package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is every setting of parleyd. Each has a flag, an environment
// variable and a key in the optional JSON config file; precedence is flag,
// then environment, then file, then the default. docs/operations.md
// documents each one (a test checks that none is missing).
type Config struct {
	Listen          string         // address for HTTP and WebSocket; default 127.0.0.1:8080
	Data            string         // data directory; default ./parley-data
	Store           string         // "" = SQLite in Data; postgres://... = PostgreSQL
	StoreReplica    string         // optional PostgreSQL streaming replica for lagging-tolerant reads
	Roles           Roles          // what this node runs; default all
	HistoryCache    int            // conversations whose newest page is cached; 0 = off
	TrustedProxies  []netip.Prefix // load balancers whose X-Forwarded-For is believed
	TLSCert, TLSKey string         // PEM files; TLS is on when both are set
	AdminListen     string         // pprof listener; default off
	NATSURL         string         // external NATS servers, comma-separated; default "" = embedded
	NATSListen      string         // TCP address for the embedded NATS server; default "" = none
	LogLevel        string         // debug, info, warn, error; default info
	MaxBodyBytes    int            // largest message body, bytes; default 65536
	AccessTTL       time.Duration  // access token lifetime; default 15m
	RefreshTTL      time.Duration  // refresh token lifetime when unused; default 720h
	KeyRotation     time.Duration  // signing key rotation period; default 720h, 0 = manual only
	PurgeInterval   time.Duration  // how often expired messages are deleted; default 30s
	Retention       time.Duration  // messages older than this are purged; default 0 = keep forever
	ShutdownTimeout time.Duration  // bound on a graceful shutdown; default 15s
	Limits          bool           // per-IP/per-user rate limits; default on
	IPRate          float64        // requests per second per client IP; default 50
	IPBurst         int            // default 100
	UserRate        float64        // requests per second per user; default 20
	UserBurst       int            // default 40
	LoginRate       float64        // login attempts per second per handle; default 0.1667 (10/min)
	LoginBurst      int            // default 10
	AllowedOrigins  string         // browser origins allowed on /v1/ws, comma-separated; "" = own host, "*" = any
	PingInterval    time.Duration  // WebSocket server ping period; default 25s
	IdleTimeout     time.Duration  // WebSocket closed after this long without a frame; default 60s
	MaxFrameBytes   int            // largest WebSocket client frame; default 131072
	PresenceGrace   time.Duration  // online after the last session closed; default 5s
	MessageRequests bool           // strangers' DMs and group adds arrive as requests; default on
	StrangerAdds    int            // strangers one user may put into conversations per hour; default 50, 0 = no limit
	Push            PushConfig     // the notification service (push role)
}

// PushConfig is the notification service's settings (docs/push.md).
type PushConfig struct {
	CollapseWindow time.Duration // a burst's first notification waits this long; default 1s
	DeliveredGrace time.Duration // a live device has this long to report delivered; default 4s
	TTL            time.Duration // jobs older than this are dropped; default 168h
	Attempts       int           // sends per notification before the dead-letter stream; default 8
	RetryBase      time.Duration // first retry backoff; default 1s
	Preview        bool          // message text in notifications; default off
	Replicas       int           // JetStream replicas of the queue; default 1
	Namespace      string        // keeps this cluster's queue apart on a shared NATS; default main
	CAFile         string        // extra root CAs for provider endpoints (tests, private CAs)
	APNsKeyFile    string        // .p8 key; APNs is off without it
	APNsKeyID      string
	APNsTeamID     string
	APNsURL        string // replaces the APNs hosts (tests)
	FCMCredentials string // service account JSON; FCM is off without it
	FCMProject     string // default: the service account's project
	FCMURL         string // replaces the FCM endpoint (tests)
	VAPIDSubject   string // the VAPID contact (mailto: or https:)
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
		{"store", "PARLEY_STORE", "", "the store: empty = embedded SQLite in the data directory; postgres://user@host:port/db = PostgreSQL, shared by every node of a cluster (needs PARLEY_MASTER_KEY)", func(c *Config, v string) error {
			if v != "" && !isPostgresDSN(v) {
				return fmt.Errorf("want empty or a postgres:// URL, got %q", v)
			}
			c.Store = v
			return nil
		}},
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
		{"admin-listen", "PARLEY_ADMIN_LISTEN", "", "address for pprof (keep it private); empty = off", str(func(c *Config) *string { return &c.AdminListen })},
		{"nats-url", "PARLEY_NATS_URL", "", "external NATS servers (nats://host:port, comma-separated); empty = run an embedded NATS server", str(func(c *Config) *string { return &c.NATSURL })},
		{"nats-listen", "PARLEY_NATS_LISTEN", "", "host:port where the embedded NATS server also accepts TCP clients; empty = in-process only", str(func(c *Config) *string { return &c.NATSListen })},
		{"log-level", "PARLEY_LOG_LEVEL", "info", "log level: debug, info, warn, error", str(func(c *Config) *string { return &c.LogLevel })},
		{"max-body-bytes", "PARLEY_MAX_BODY_BYTES", "65536", "largest message body in bytes", integer(func(c *Config) *int { return &c.MaxBodyBytes })},
		{"access-token-ttl", "PARLEY_ACCESS_TOKEN_TTL", "15m", "access token lifetime", dur(func(c *Config) *time.Duration { return &c.AccessTTL })},
		{"refresh-token-ttl", "PARLEY_REFRESH_TOKEN_TTL", "720h", "refresh token lifetime when unused", dur(func(c *Config) *time.Duration { return &c.RefreshTTL })},
		{"key-rotation", "PARLEY_KEY_ROTATION", "720h", "signing key rotation period; 0 = only by `parleyd keys rotate`", dur(func(c *Config) *time.Duration { return &c.KeyRotation })},
		{"purge-interval", "PARLEY_PURGE_INTERVAL", "30s", "how often expired messages are deleted", dur(func(c *Config) *time.Duration { return &c.PurgeInterval })},
		{"retention", "PARLEY_RETENTION", "0", "server-wide history retention: messages older than this are purged in the background (e.g. 8760h); 0 = keep forever", dur(func(c *Config) *time.Duration { return &c.Retention })},
		{"shutdown-timeout", "PARLEY_SHUTDOWN_TIMEOUT", "15s", "bound on a graceful shutdown", dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
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
		{"ip-rate", "PARLEY_IP_RATE", "50", "requests per second per client IP", float(func(c *Config) *float64 { return &c.IPRate })},
		{"ip-burst", "PARLEY_IP_BURST", "100", "burst of requests per client IP", integer(func(c *Config) *int { return &c.IPBurst })},
		{"user-rate", "PARLEY_USER_RATE", "20", "requests per second per user", float(func(c *Config) *float64 { return &c.UserRate })},
		{"user-burst", "PARLEY_USER_BURST", "40", "burst of requests per user", integer(func(c *Config) *int { return &c.UserBurst })},
		{"login-rate", "PARLEY_LOGIN_RATE", "0.1667", "login attempts per second per handle", float(func(c *Config) *float64 { return &c.LoginRate })},
		{"login-burst", "PARLEY_LOGIN_BURST", "10", "burst of login attempts per handle", integer(func(c *Config) *int { return &c.LoginBurst })},
		{"allowed-origins", "PARLEY_ALLOWED_ORIGINS", "", "browser origins (https://app.example.com) allowed to open /v1/ws, comma-separated; empty = the server's own host, * = any; requests without Origin (apps, CLIs) are always allowed", str(func(c *Config) *string { return &c.AllowedOrigins })},
		{"ping-interval", "PARLEY_PING_INTERVAL", "25s", "how often the server pings each WebSocket", dur(func(c *Config) *time.Duration { return &c.PingInterval })},
		{"idle-timeout", "PARLEY_IDLE_TIMEOUT", "60s", "a WebSocket that sends nothing (not even a pong) for this long is closed; must exceed ping-interval", dur(func(c *Config) *time.Duration { return &c.IdleTimeout })},
		{"max-frame-bytes", "PARLEY_MAX_FRAME_BYTES", "131072", "largest WebSocket frame a client may send; larger closes the connection with 1009", integer(func(c *Config) *int { return &c.MaxFrameBytes })},
		{"presence-grace", "PARLEY_PRESENCE_GRACE", "5s", "how long a user stays online after the last connection closed (avoids flapping on reconnects)", dur(func(c *Config) *time.Duration { return &c.PresenceGrace })},
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
		{"push-replicas", "PARLEY_PUSH_REPLICAS", "1", "JetStream replicas of the push queue and its state (3 on a NATS cluster that must survive losing a server)", integer(func(c *Config) *int { return &c.Push.Replicas })},
		{"push-namespace", "PARLEY_PUSH_NAMESPACE", "main", "the push queue's name on NATS (stream PARLEY_PUSH_<namespace>): clusters sharing one NATS need different ones; every node of a cluster the same", str(func(c *Config) *string { return &c.Push.Namespace })},
		{"push-ca-file", "PARLEY_PUSH_CA_FILE", "", "PEM file of extra root CAs trusted for provider endpoints (private or test servers)", str(func(c *Config) *string { return &c.Push.CAFile })},
		{"apns-key-file", "PARLEY_APNS_KEY_FILE", "", "APNs token-auth key (.p8 from the Apple developer account); empty = no APNs", str(func(c *Config) *string { return &c.Push.APNsKeyFile })},
		{"apns-key-id", "PARLEY_APNS_KEY_ID", "", "the APNs key's id", str(func(c *Config) *string { return &c.Push.APNsKeyID })},
		{"apns-team-id", "PARLEY_APNS_TEAM_ID", "", "the Apple developer team id", str(func(c *Config) *string { return &c.Push.APNsTeamID })},
		{"apns-url", "PARLEY_APNS_URL", "", "replaces both APNs hosts (api.push.apple.com, api.sandbox.push.apple.com): for tests", str(func(c *Config) *string { return &c.Push.APNsURL })},
		{"fcm-credentials", "PARLEY_FCM_CREDENTIALS", "", "FCM service account key (JSON file); empty = no FCM", str(func(c *Config) *string { return &c.Push.FCMCredentials })},
		{"fcm-project", "PARLEY_FCM_PROJECT", "", "Firebase project id; empty = the service account's", str(func(c *Config) *string { return &c.Push.FCMProject })},
		{"fcm-url", "PARLEY_FCM_URL", "", "replaces the FCM endpoint (https://fcm.googleapis.com/v1): for tests", str(func(c *Config) *string { return &c.Push.FCMURL })},
		{"vapid-subject", "PARLEY_VAPID_SUBJECT", "", "the VAPID contact push services may use (mailto:ops@example.com or an https URL); empty = mailto:push@<host name>", str(func(c *Config) *string { return &c.Push.VAPIDSubject })},
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
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, nil, fmt.Errorf("tls-cert and tls-key must be given together")
	}
	if c.StoreReplica != "" && c.Store == "" {
		return nil, nil, fmt.Errorf("store-replica needs a PostgreSQL store")
	}
	if c.MaxBodyBytes < 1 {
		return nil, nil, fmt.Errorf("max-body-bytes must be at least 1")
	}
	if c.AccessTTL < time.Second {
		return nil, nil, fmt.Errorf("access-token-ttl must be at least 1s")
	}
	return &c, fs.Args(), nil
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
