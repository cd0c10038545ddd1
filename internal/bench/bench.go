// Package bench is `parley bench`: a load generator built on the SDK's
// protocol code (client.Conn, client.OutFrame, client.InFrame) that
// checks correctness while it measures. Every scenario counts sent,
// acked, expected and actual deliveries, lost, duplicated and reordered
// messages; latencies go into HDR histograms; the server's CPU and RSS
// come from its /metrics.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// Options are the scenario and its sizes.
type Options struct {
	Scenario    string        // connections, direct, group, offline, storm
	Server      string        // parleyd's base URL
	Admin       string        // parleyd's admin listener (forced GC before memory readings), optional
	Conns       int           // connections (devices)
	PerToken    int           // connections per device token (several sockets per device, like tabs)
	Duration    time.Duration // sending time (direct, group)
	Rate        float64       // messages per second in all; 0: as fast as acks allow
	HistoryRate float64       // direct, group: newest-page history reads per second in all, while sending; 0: none
	Window      int           // sends in flight per sender connection when Rate is 0
	GroupSize   int           // group: members per group
	Senders     int           // group: senders per group
	Convs       int           // offline: conversations per device
	Messages    int           // offline: messages per device while it is away
	SyncLimit   int           // offline, storm: messages per conversation a sync asks for
	BodyBytes   int           // message body size
	SourceAddrs int           // dial from 127.0.0.1 .. 127.0.0.K
	SetupConc   int           // concurrent registrations and logins
	DialConc    int           // concurrent dials
	Prefix      string        // handle prefix (default: random)
	// PerProcess is the most connections one process holds (connections
	// scenario); past it WorkerCommand starts worker processes.
	PerProcess    int
	WorkerCommand func() *exec.Cmd
	Progress      func(string) // a progress line, about every second (nil: none)
	// Reconnect (direct, group) makes a connection that the server or the
	// network closes dial again, resync and resend instead of failing the
	// run; the checks then mean what reconnect.go says. Off by default.
	Reconnect bool
	// Drain (with Reconnect) is how long, after the sending time, the run
	// waits for every send to be acked and every acked message to be
	// delivered. Default 10 s.
	Drain time.Duration
}

func (o *Options) defaults() {
	if o.Conns <= 0 {
		o.Conns = map[string]int{"connections": 1000, "storm": 1000, "offline": 10, "group": 100}[o.Scenario]
		if o.Conns == 0 {
			o.Conns = 200
		}
	}
	if o.PerToken <= 0 {
		o.PerToken = 1
		if o.Scenario == "connections" || o.Scenario == "storm" {
			o.PerToken = 10
		}
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 8
	}
	if o.GroupSize <= 1 {
		o.GroupSize = 10
	}
	if o.Senders <= 0 || o.Senders > o.GroupSize {
		o.Senders = 1
	}
	if o.Convs <= 0 {
		o.Convs = 50
	}
	if o.Messages <= 0 {
		o.Messages = 1000
	}
	if o.SyncLimit <= 0 {
		o.SyncLimit = 50
	}
	if o.BodyBytes < 32 {
		o.BodyBytes = 32
	}
	if o.SourceAddrs <= 0 {
		o.SourceAddrs = 4
	}
	if o.SetupConc <= 0 {
		o.SetupConc = 8
	}
	if o.DialConc <= 0 {
		o.DialConc = 128
	}
	if o.PerProcess <= 0 {
		o.PerProcess = 15000
	}
	if o.Prefix == "" {
		o.Prefix = "b" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	if o.Drain <= 0 {
		o.Drain = 10 * time.Second
	}
}

// Result is what a run measured. The JSON keys up to server_cpu_seconds
// are the stable interface (`parley bench --json`).
type Result struct {
	Scenario          string           `json:"scenario"`
	Conns             int              `json:"conns"`
	Sent              int64            `json:"sent"`
	Acked             int64            `json:"acked"`
	Expected          int64            `json:"expected"`
	Delivered         int64            `json:"delivered"`
	Lost              int64            `json:"lost"`
	Duplicates        int64            `json:"duplicates"`
	Reordered         int64            `json:"reordered"`
	MsgsPerSec        float64          `json:"msgs_per_sec"`
	DeliveriesPerSec  float64          `json:"deliveries_per_sec"`
	AckP50Ms          float64          `json:"ack_p50_ms"`
	AckP99Ms          float64          `json:"ack_p99_ms"`
	E2EP50Ms          float64          `json:"e2e_p50_ms"`
	E2EP99Ms          float64          `json:"e2e_p99_ms"`
	E2EP999Ms         float64          `json:"e2e_p999_ms"`
	ServerRSSBytes    int64            `json:"server_rss_bytes"`
	ServerCPUSeconds  float64          `json:"server_cpu_seconds"`
	AckP90Ms          float64          `json:"ack_p90_ms"`
	AckP999Ms         float64          `json:"ack_p999_ms"`
	AckMaxMs          float64          `json:"ack_max_ms"`
	E2EP90Ms          float64          `json:"e2e_p90_ms"`
	E2EMaxMs          float64          `json:"e2e_max_ms"`
	DurationSeconds   float64          `json:"duration_seconds"`
	SetupSeconds      float64          `json:"setup_seconds"`
	ConnectSeconds    float64          `json:"connect_seconds"`
	ConnectsPerSec    float64          `json:"connects_per_sec"`
	ServerRSSBefore   int64            `json:"server_rss_before_bytes,omitempty"`
	RSSPerConnBytes   float64          `json:"rss_per_conn_bytes,omitempty"`
	CatchUpP50Ms      float64          `json:"catchup_p50_ms,omitempty"`
	CatchUpP99Ms      float64          `json:"catchup_p99_ms,omitempty"`
	CatchUpMaxMs      float64          `json:"catchup_max_ms,omitempty"`
	CatchUpRounds     float64          `json:"catchup_round_trips_max,omitempty"`
	CatchUpBytes      int64            `json:"catchup_bytes_per_device,omitempty"`
	ResyncSeconds     float64          `json:"resync_seconds,omitempty"`
	ResyncDialMaxMs   float64          `json:"resync_dial_max_ms,omitempty"` // storm: the slowest handshake to ready
	ResyncSyncMaxMs   float64          `json:"resync_sync_max_ms,omitempty"` // storm: the slowest sync after ready
	FailedConnections int64            `json:"failed_connections"`
	ServerCloses      int64            `json:"server_closes"`
	Errors            map[string]int64 `json:"errors"`
	// Reconnects is how many times a connection closed by the server or
	// the network reached ready again (Reconnect; 0 without).
	Reconnects int64 `json:"reconnects"`
	// History reads (--history-rate): how many, their round trip, and the
	// server's history cache hits and misses in the measured phase (one
	// node's, through a load balancer).
	HistoryReads       int64      `json:"history_reads,omitempty"`
	HistoryMs          *Quantiles `json:"history_ms,omitempty"`
	HistoryCacheHits   int64      `json:"history_cache_hits,omitempty"`
	HistoryCacheMisses int64      `json:"history_cache_misses,omitempty"`
	// ReconnectMs is the time from a close to the next ready, in ms (set
	// with Reconnect only).
	ReconnectMs *Quantiles `json:"reconnect_ms,omitempty"`
	// Resent is how many sends were written again after a reconnect or a
	// retryable refusal, with their client_msg_id unchanged (Reconnect).
	Resent int64 `json:"resent,omitempty"`
	// Redelivered is how many messages arrived at a connection that
	// already held their (conversation, seq) and were dropped as a client
	// drops them (Reconnect; without it such a message is a duplicate).
	Redelivered int64 `json:"redelivered,omitempty"`
	// FinalSyncDeliveries is how many deliveries only the drain's final
	// sync brought (Reconnect; see settleExact).
	FinalSyncDeliveries int64 `json:"final_sync_deliveries,omitempty"`
}

// Quantiles summarize durations, in milliseconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// OK reports whether the run saw no loss, duplicate or reordering and
// every send was acknowledged.
func (r *Result) OK() bool {
	return r.Lost == 0 && r.Duplicates == 0 && r.Reordered == 0 && r.Acked == r.Sent && r.FailedConnections == 0
}

// Run runs one scenario.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Reconnect && o.Scenario != "direct" && o.Scenario != "group" {
		return nil, fmt.Errorf("reconnecting applies to the direct and group scenarios, not %q", o.Scenario)
	}
	o.defaults()
	b := &bench{o: o, res: &Result{Scenario: o.Scenario, Conns: o.Conns, Errors: map[string]int64{}}, http: &http.Client{Timeout: 60 * time.Second}}
	var cancelRun context.CancelFunc
	b.runCtx, cancelRun = context.WithCancel(ctx)
	defer cancelRun()
	for i := range b.shards {
		b.shards[i].ack = newHist()
		b.shards[i].e2e = newHist()
	}
	if err := raiseFileLimit(uint64(min(o.Conns, o.PerProcess)) + 256); err != nil {
		return nil, err
	}
	var err error
	switch o.Scenario {
	case "connections":
		err = b.connections(ctx)
	case "direct":
		err = b.messaging(ctx, 2, 2)
	case "group":
		err = b.messaging(ctx, o.GroupSize, o.Senders)
	case "offline":
		err = b.offline(ctx)
	case "storm":
		err = b.storm(ctx)
	default:
		return nil, fmt.Errorf("unknown scenario %q (connections, direct, group, offline, storm)", o.Scenario)
	}
	b.stopped.Store(true)
	cancelRun()
	b.closeAll()
	b.bg.Wait()
	b.finish()
	return b.res, err
}

type bench struct {
	o    Options
	res  *Result
	http *http.Client

	conns []*conn

	shards [16]struct {
		mu       sync.Mutex
		ack, e2e *hdrhistogram.Histogram
	}

	sent, acked, delivered  atomic.Int64
	dups, reordered, closes atomic.Int64
	failed                  atomic.Int64
	stopped                 atomic.Bool // the bench is closing its connections
	sendSeconds             float64     // offline: how long the pile-up took to send
	errMu                   sync.Mutex

	// runCtx ends when the scenario is over: the reconnecting
	// connections' goroutines (counted in bg) return then.
	runCtx                          context.Context
	bg                              sync.WaitGroup
	reconnects, resent, redelivered atomic.Int64
	reconnMu                        sync.Mutex
	reconnTimes                     []time.Duration // close to ready, one per reconnect
	// exact: Lost and Delivered come from deliveryCheck (Reconnect), not
	// from expected - delivered.
	exact     bool
	exactLost int64
}

// noteReconnect records a reconnect that took d from the close to ready.
func (b *bench) noteReconnect(d time.Duration) {
	b.reconnects.Add(1)
	b.reconnMu.Lock()
	b.reconnTimes = append(b.reconnTimes, d)
	b.reconnMu.Unlock()
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 120_000_000, 3) } // µs, up to 2 min

func (b *bench) countError(code string) {
	b.errMu.Lock()
	b.res.Errors[code]++
	b.errMu.Unlock()
}

func (b *bench) finish() {
	r := b.res
	r.Sent, r.Acked, r.Delivered = b.sent.Load(), b.acked.Load(), b.delivered.Load()
	r.Duplicates, r.Reordered = b.dups.Load(), b.reordered.Load()
	r.ServerCloses, r.FailedConnections = b.closes.Load(), b.failed.Load()
	if b.exact {
		r.Lost = b.exactLost
		r.Delivered = r.Expected - r.Lost // deliveries of acked messages
	} else if r.Expected > r.Delivered {
		r.Lost = r.Expected - r.Delivered
	}
	r.Reconnects, r.Resent, r.Redelivered = b.reconnects.Load(), b.resent.Load(), b.redelivered.Load()
	if b.o.Reconnect {
		b.reconnMu.Lock()
		times := slices.Clone(b.reconnTimes)
		b.reconnMu.Unlock()
		r.ReconnectMs = &Quantiles{}
		if len(times) > 0 {
			slices.Sort(times)
			at := func(q float64) float64 {
				return float64(times[min(len(times)-1, int(q*float64(len(times))))].Microseconds()) / 1000
			}
			r.ReconnectMs.P50, r.ReconnectMs.P99, r.ReconnectMs.Max = at(0.5), at(0.99), float64(times[len(times)-1].Microseconds())/1000
		}
	}
	ack, e2e := newHist(), newHist()
	for i := range b.shards {
		ack.Merge(b.shards[i].ack)
		e2e.Merge(b.shards[i].e2e)
	}
	ms := func(h *hdrhistogram.Histogram, q float64) float64 {
		if h.TotalCount() == 0 {
			return 0
		}
		return float64(h.ValueAtQuantile(q)) / 1000
	}
	r.AckP50Ms, r.AckP90Ms, r.AckP99Ms, r.AckP999Ms = ms(ack, 50), ms(ack, 90), ms(ack, 99), ms(ack, 99.9)
	r.E2EP50Ms, r.E2EP90Ms, r.E2EP99Ms, r.E2EP999Ms = ms(e2e, 50), ms(e2e, 90), ms(e2e, 99), ms(e2e, 99.9)
	if ack.TotalCount() > 0 {
		r.AckMaxMs = float64(ack.Max()) / 1000
	}
	if e2e.TotalCount() > 0 {
		r.E2EMaxMs = float64(e2e.Max()) / 1000
	}
	if r.DurationSeconds > 0 {
		r.MsgsPerSec = float64(r.Acked) / r.DurationSeconds
		r.DeliveriesPerSec = float64(r.Delivered) / r.DurationSeconds
	}
	if b.sendSeconds > 0 { // offline: sent while the devices were away
		r.MsgsPerSec = float64(r.Acked) / b.sendSeconds
	}
}

// ---- setup over REST ----

// device is a logged-in user's device token.
type device struct {
	userID, deviceID, token string
	handle                  string
}

// setupUsers registers and logs in n users (argon2 makes each cost
// ~0.1 s of server CPU).
func (b *bench) setupUsers(ctx context.Context, n int) ([]device, error) {
	devs := make([]device, n)
	var done atomic.Int64
	err := forEach(ctx, n, b.o.SetupConc, func(ctx context.Context, i int) error {
		handle := fmt.Sprintf("%s_%d", b.o.Prefix, i)
		c := client.New(client.Config{Server: b.o.Server, HTTPClient: b.http})
		if _, err := c.Register(ctx, handle, "bench password 0123456789", handle); err != nil {
			return fmt.Errorf("register %s: %w", handle, err)
		}
		if err := c.Login(ctx, handle, "bench password 0123456789", "bench"); err != nil {
			return fmt.Errorf("login %s: %w", handle, err)
		}
		t := c.Tokens()
		devs[i] = device{userID: t.UserID, deviceID: t.DeviceID, token: t.AccessToken, handle: handle}
		if k := done.Add(1); k%100 == 0 {
			b.o.Progress(fmt.Sprintf("setup: %d/%d users", k, n))
		}
		return nil
	})
	return devs, err
}

// rest is a REST client for a device.
func (b *bench) rest(d device) *client.Client {
	return client.New(client.Config{Server: b.o.Server, HTTPClient: b.http,
		Tokens: &client.Tokens{UserID: d.userID, DeviceID: d.deviceID, AccessToken: d.token}})
}

func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := atomic.Int64{}
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// ---- server metrics ----

type serverStats struct {
	rss   float64
	cpu   float64
	start float64 // process_start_time_seconds: tells a restarted process
	// The history cache's counters (parley_history_cache_*_total).
	cacheHits, cacheMisses float64
}

func (b *bench) serverStats(ctx context.Context, gc bool) (serverStats, error) {
	if gc && b.o.Admin != "" {
		if _, err := b.get(ctx, b.o.Admin+"/debug/pprof/heap?gc=1"); err != nil {
			return serverStats{}, err
		}
		time.Sleep(2 * time.Second)
	}
	data, err := b.get(ctx, b.o.Server+"/metrics")
	if err != nil {
		return serverStats{}, err
	}
	var s serverStats
	for line := range strings.SplitSeq(string(data), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			s.rss = v
		case "process_cpu_seconds_total":
			s.cpu = v
		case "process_start_time_seconds":
			s.start = v
		case "parley_history_cache_hits_total":
			s.cacheHits = v
		case "parley_history_cache_misses_total":
			s.cacheMisses = v
		}
	}
	if s.rss == 0 {
		return s, errors.New("the server's /metrics has no process_resident_memory_bytes")
	}
	return s, nil
}

func (b *bench) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	if token := os.Getenv("PARLEY_METRICS_TOKEN"); token != "" && strings.HasSuffix(url, "/metrics") {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// steadyStats reads the server's RSS once it is steady: each reading
// follows a forced GC (with Admin set) and a 2 s pause; it waits (at most
// a minute) until two readings differ by at most 1%, then returns the
// median of three. The Go runtime gives freed memory back to the OS
// gradually, so a single reading after a busy phase (the setup's argon2
// hashes) is too high.
func (b *bench) steadyStats(ctx context.Context) (serverStats, error) {
	prev, err := b.serverStats(ctx, true)
	if err != nil {
		return prev, err
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		cur, err := b.serverStats(ctx, true)
		if err != nil {
			return cur, err
		}
		steady := cur.rss <= prev.rss*1.01 && cur.rss >= prev.rss*0.99
		prev = cur
		if steady {
			break
		}
	}
	readings := []serverStats{prev}
	for range 2 {
		s, err := b.serverStats(ctx, true)
		if err != nil {
			return s, err
		}
		readings = append(readings, s)
	}
	sort.Slice(readings, func(i, j int) bool { return readings[i].rss < readings[j].rss })
	return readings[1], nil
}

// measureServer wraps a measured phase: CPU seconds and the RSS at the end.
// A server whose /metrics cannot be read (behind a load balancer that
// refuses it, or a --metrics-token the bench was not given in
// PARLEY_METRICS_TOKEN) is still measured from the outside: the server's
// figures stay 0.
func (b *bench) measureServer(ctx context.Context, phase func() error) error {
	before, err := b.serverStats(ctx, false)
	if err != nil {
		b.o.Progress(fmt.Sprintf("server metrics unavailable (%v): no server CPU or memory figures", err))
		return phase()
	}
	err = phase()
	after, serr := b.serverStats(ctx, false)
	if serr == nil {
		// A server that restarted meanwhile (--reconnect), or another node
		// behind a load balancer, counts its CPU from another start: then
		// the figure is unknown and stays 0.
		if after.start == before.start {
			b.res.ServerCPUSeconds = after.cpu - before.cpu
			b.res.HistoryCacheHits = int64(after.cacheHits - before.cacheHits)
			b.res.HistoryCacheMisses = int64(after.cacheMisses - before.cacheMisses)
		}
		b.res.ServerRSSBytes = int64(after.rss)
	}
	return err
}

func raiseFileLimit(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max < need {
		return fmt.Errorf("%d connections need %d open files; the hard limit is %d (ulimit -Hn): use fewer connections per process", need-256, need, lim.Max)
	}
	lim.Cur = lim.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// dialer spreads connections over source addresses 127.0.0.1..K.
//
// On Linux the socket gets IP_BIND_ADDRESS_NO_PORT, so that binding the
// source address leaves the port to connect(2). Without it bind(2) picks
// the port by scanning every socket bound to that address: after a storm
// left 15,000 sockets in TIME_WAIT, the load generator spent 9 CPU
// seconds in bind and one storm run in three took twice as long.
func (b *bench) dialer(i int) *net.Dialer {
	ip := net.IPv4(127, 0, 0, byte(1+i%b.o.SourceAddrs))
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 30 * time.Second}
	if runtime.GOOS == "linux" {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			return errors.Join(err, serr)
		}
	}
	return d
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (since 4.2).
const ipBindAddressNoPort = 24

// body makes a message body carrying its send time (for end-to-end
// latency, client and server on one machine).
func (b *bench) body(now time.Time) string {
	s := "t" + strconv.FormatInt(now.UnixNano(), 10) + ":"
	if n := b.o.BodyBytes - len(s); n > 0 {
		s += strings.Repeat("x", n)
	}
	return s
}

func sentAt(body string) (time.Time, bool) {
	ts, _, ok := strings.Cut(strings.TrimPrefix(body, "t"), ":")
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	return time.Unix(0, n), err == nil
}

// errCode names an error for Result.Errors.
func errCode(err error) string {
	if code := parley.ErrorCode(err); code != parley.CodeInternal {
		return string(code)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "network"
}
