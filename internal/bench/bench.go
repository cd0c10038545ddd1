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
	"math/rand/v2"
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
	Scenario string // connections, direct, group, offline, storm
	Server   string // parleyd's base URL
	// WSServers, if set, are the base URLs that WebSocket connections
	// dial, round-robin by connection (the nodes of a cluster); setup,
	// REST and metrics stay on Server.
	WSServers []string
	Admin     string // parleyd's admin listener (forced GC before memory readings), optional
	// Metrics is the URL of the server's Prometheus metrics (default
	// Server + "/metrics"; the admin listener serves them without a token).
	Metrics string
	// ServerPID, when the bench started the server itself (--spawn), is
	// its process id: its CPU time is then read from /proc/PID/stat
	// rather than from the metrics.
	ServerPID int
	// PushDrain (direct, group) is how long, after the last delivery, the
	// run waits for the server's push queue to drain, the server's CPU
	// still counted; 0 does not wait. A server whose metrics have no
	// parley_push_queue_depth is not waited for.
	PushDrain   time.Duration
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
	// Settle (direct, group) is the pause between the last connection
	// being ready and the first send, for the server's work on the
	// connections (presence) to finish. Default 500 ms.
	Settle time.Duration
	// Accounts, when set, is a file of accounts with logged-in devices
	// (`parleyd admin bench-accounts`): the run uses its first accounts
	// instead of registering and logging in new users (see accountUsers).
	Accounts string
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
	if o.Settle <= 0 {
		o.Settle = 500 * time.Millisecond
	}
	if o.Metrics == "" {
		o.Metrics = o.Server + "/metrics"
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

	// In direct and group, duration_seconds runs from the start of
	// sending to the later of the last ack and the last delivery, and
	// msgs_per_sec and deliveries_per_sec divide by it: a message counts
	// once it has reached its recipients. Only the ack-based send rate
	// below divides by the time to the last ack, which overstates what
	// was delivered when deliveries fall behind the acks.
	// RateOffered is --rate (messages per second in all), when set: sent
	// is then about RateOffered x the sending time whatever the server
	// does (open loop).
	RateOffered              float64 `json:"rate_offered,omitempty"`
	DurationToLastAckSeconds float64 `json:"duration_to_last_ack_seconds,omitempty"`
	MsgsPerSecToLastAck      float64 `json:"msgs_per_sec_to_last_ack,omitempty"`
	// DeliveryLagSeconds is how long after the last ack the last
	// delivery came (0 if it came first).
	DeliveryLagSeconds float64 `json:"delivery_lag_seconds,omitempty"`
	// AfterAcceptMs is, per live delivery, the time from the message's
	// created_at (the server's clock when it took the send: after any
	// back-pressure hold, before the commit) to its arrival: how far
	// deliveries trail what the server has taken. e2e counts from the client's send,
	// so it also holds the time a send waited to be accepted, which a
	// client's window of sends in flight sets (window / rate). Meaningful
	// when the bench and the server share a clock (one machine).
	// created_at has millisecond precision (truncated), so each figure
	// may be up to 1 ms high.
	AfterAcceptMs *Quantiles `json:"after_accept_ms,omitempty"`

	// Server CPU per unit of work (direct, group): server_cpu_seconds,
	// which counts until the server's push queue has drained (PushDrain),
	// divided by the acked messages and by the deliveries. Absent when the
	// server's CPU is unknown.
	ServerCPUUsPerMsg      float64 `json:"server_cpu_us_per_msg,omitempty"`
	ServerCPUUsPerDelivery float64 `json:"server_cpu_us_per_delivery,omitempty"`
	// ServerCPUSecondsBeforePushDrain is the server's CPU from the start
	// of sending to the last delivery, before waiting for the push queue
	// (what server_cpu_seconds was before the wait existed).
	ServerCPUSecondsBeforePushDrain float64 `json:"server_cpu_seconds_before_push_drain,omitempty"`
	// ServerCPUSource says where the CPU time came from: "proc"
	// (/proc/PID/stat of the process --spawn started) or "metrics"
	// (process_cpu_seconds_total).
	ServerCPUSource string `json:"server_cpu_source,omitempty"`
	// PushQueuePeak is the push backlog at its highest: jobs in the
	// server's push queue (parley_push_queue_depth) plus committed
	// messages whose job is not yet on it, sampled every second from the
	// start of sending and every 250 ms while waiting for the drain.
	// PushDrainSeconds is how long after the last delivery the queue took
	// to drain, PushQueueLeft what was still waiting when the run stopped
	// waiting (0: drained). All three are absent when the server exports
	// no push queue depth.
	PushQueuePeak    *int64   `json:"push_queue_peak,omitempty"`
	PushDrainSeconds *float64 `json:"push_drain_seconds,omitempty"`
	PushQueueLeft    *int64   `json:"push_queue_left,omitempty"`
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
	b := &bench{o: o, res: &Result{Scenario: o.Scenario, Conns: o.Conns, Errors: map[string]int64{}}, http: &http.Client{Timeout: 60 * time.Second},
		runTag: strconv.FormatUint(rand.Uint64()%(36*36*36*36*36*36), 36) + "."}
	var cancelRun context.CancelFunc
	b.runCtx, cancelRun = context.WithCancel(ctx)
	defer cancelRun()
	b.newHists()
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
	// runTag starts every client_msg_id of this run: a user reused from
	// an earlier run (Options.Accounts) must not send an id that run
	// used, or the server takes it for a retry (idempotent send).
	runTag string

	conns []*conn

	shards [16]struct {
		mu                 sync.Mutex
		ack, e2e, accepted *hdrhistogram.Histogram
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
	// perUnit: the run sent messages in its measured phase (direct,
	// group), so the server's CPU is given per message and per delivery.
	perUnit bool
}

// noteReconnect records a reconnect that took d from the close to ready.
func (b *bench) noteReconnect(d time.Duration) {
	b.reconnects.Add(1)
	b.reconnMu.Lock()
	b.reconnTimes = append(b.reconnTimes, d)
	b.reconnMu.Unlock()
}

// newHists gives every shard its empty latency histograms.
func (b *bench) newHists() {
	for i := range b.shards {
		b.shards[i].ack, b.shards[i].e2e, b.shards[i].accepted = newHist(), newHist(), newHist()
	}
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
	ack, e2e, accepted := newHist(), newHist(), newHist()
	for i := range b.shards {
		ack.Merge(b.shards[i].ack)
		e2e.Merge(b.shards[i].e2e)
		accepted.Merge(b.shards[i].accepted)
	}
	ms := func(h *hdrhistogram.Histogram, q float64) float64 {
		if h.TotalCount() == 0 {
			return 0
		}
		return float64(h.ValueAtQuantile(q)) / 1000
	}
	r.AckP50Ms, r.AckP90Ms, r.AckP99Ms, r.AckP999Ms = ms(ack, 50), ms(ack, 90), ms(ack, 99), ms(ack, 99.9)
	r.E2EP50Ms, r.E2EP90Ms, r.E2EP99Ms, r.E2EP999Ms = ms(e2e, 50), ms(e2e, 90), ms(e2e, 99), ms(e2e, 99.9)
	if accepted.TotalCount() > 0 {
		r.AfterAcceptMs = &Quantiles{P50: ms(accepted, 50), P99: ms(accepted, 99), Max: float64(accepted.Max()) / 1000}
	}
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
	if r.DurationToLastAckSeconds > 0 {
		r.MsgsPerSecToLastAck = float64(r.Acked) / r.DurationToLastAckSeconds
	}
	if b.perUnit && r.ServerCPUSeconds > 0 {
		if r.Acked > 0 {
			r.ServerCPUUsPerMsg = r.ServerCPUSeconds * 1e6 / float64(r.Acked)
		}
		if r.Delivered > 0 {
			r.ServerCPUUsPerDelivery = r.ServerCPUSeconds * 1e6 / float64(r.Delivered)
		}
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
// ~0.1 s of server CPU), or takes them from Options.Accounts.
func (b *bench) setupUsers(ctx context.Context, n int) ([]device, error) {
	if b.o.Accounts != "" {
		return b.accountUsers(ctx, n)
	}
	devs := make([]device, n)
	var done atomic.Int64
	err := forEach(ctx, n, b.o.SetupConc, func(ctx context.Context, i int) error {
		handle := fmt.Sprintf("%s_%d", b.o.Prefix, i)
		c := client.New(client.Config{Server: b.o.Server, HTTPClient: b.http})
		if err := retryBusy(ctx, func() error {
			_, err := c.Register(ctx, handle, "bench password 0123456789", handle)
			return err
		}); err != nil {
			return fmt.Errorf("register %s: %w", handle, err)
		}
		if err := retryBusy(ctx, func() error { return c.Login(ctx, handle, "bench password 0123456789", "bench") }); err != nil {
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

// retryBusy runs fn again, up to 5 tries in all with 5 s between them,
// while it fails with CodeUnavailable: a server with too many password
// hashes queued refuses a registration or login that would wait too
// long, having changed nothing (service.WithPasswordWait), which on a
// loaded machine is not the run's failure.
func retryBusy(ctx context.Context, fn func() error) error {
	for try := 1; ; try++ {
		err := fn()
		if err == nil || parley.ErrorCode(err) != parley.CodeUnavailable || try == 5 {
			return err
		}
		select {
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
			return err
		}
	}
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
	// The push queue: pushKnown says the server exports its depth
	// (parley_push_queue_depth; NaN when the server could not read it).
	// stored, enqueued and dropped (at enqueueing, or needing no job:
	// parley_push_jobs_avoided_total) are the counters that tell
	// committed messages whose job is still in the server's enqueue
	// buffer (pushBacklog).
	pushKnown                 bool
	pushDepth                 float64
	stored, enqueued, dropped float64
}

func (b *bench) serverStats(ctx context.Context, gc bool) (serverStats, error) {
	if gc && b.o.Admin != "" {
		if _, err := b.get(ctx, b.o.Admin+"/debug/pprof/heap?gc=1"); err != nil {
			return serverStats{}, err
		}
		time.Sleep(2 * time.Second)
	}
	data, err := b.get(ctx, b.o.Metrics)
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
		case "parley_push_queue_depth":
			s.pushKnown, s.pushDepth = true, v
		case "parley_messages_stored_total":
			s.stored = v
		case `parley_push_jobs_enqueued_total{kind="message"}`:
			s.enqueued = v
		case `parley_push_dropped_total{reason="enqueue_overflow"}`, `parley_push_dropped_total{reason="enqueue_failed"}`,
			"parley_push_jobs_avoided_total":
			s.dropped += v
		}
	}
	if s.rss == 0 {
		return s, errors.New("the server's metrics have no process_resident_memory_bytes")
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

// measureServer wraps a measured phase: the server's CPU seconds and its
// RSS at the end. With drainPush (direct, group) and Options.PushDrain,
// the measurement goes on after the phase until the server's push queue
// has drained, so that the CPU counts the work the run deferred; the
// queue's backlog is sampled from the start of the phase for its peak.
//
// With ServerPID the CPU comes from /proc; otherwise from the metrics. A
// server whose metrics cannot be read (behind a load balancer that
// refuses them, or a --metrics-token the bench was not given in
// PARLEY_METRICS_TOKEN) is still measured from the outside: the figures
// it cannot give stay 0 (or absent).
func (b *bench) measureServer(ctx context.Context, drainPush bool, phase func() error) error {
	before, merr := b.serverStats(ctx, false)
	if merr != nil {
		b.o.Progress(fmt.Sprintf("server metrics unavailable (%v): no server memory or push figures", merr))
	}
	cpu0, cpuOK := b.serverCPU(before, merr)
	var backlog *pushBacklog
	if merr == nil && before.pushKnown {
		backlog = b.watchPush(ctx, before)
	}
	err := phase()
	var cpu1 float64
	cpu1OK := false
	if backlog != nil {
		cpu1, cpu1OK = b.serverCPU(b.serverStats(ctx, false))
		backlog.stopSampling()
		if drainPush && b.o.PushDrain > 0 && err == nil {
			b.waitPushDrain(ctx, backlog)
		}
		b.res.PushQueuePeak = &backlog.peak
	}
	after, serr := b.serverStats(ctx, false)
	cpu2, cpu2OK := b.serverCPU(after, serr)
	if serr == nil {
		// A server that restarted meanwhile (--reconnect), or another node
		// behind a load balancer, counts from another start: then the
		// counters' differences are unknown.
		if merr == nil && after.start == before.start {
			b.res.HistoryCacheHits = int64(after.cacheHits - before.cacheHits)
			b.res.HistoryCacheMisses = int64(after.cacheMisses - before.cacheMisses)
		}
		b.res.ServerRSSBytes = int64(after.rss)
	}
	if cpuOK && cpu2OK && (b.o.ServerPID > 0 || after.start == before.start) {
		b.res.ServerCPUSeconds = cpu2 - cpu0
		b.res.ServerCPUSource = "metrics"
		if b.o.ServerPID > 0 {
			b.res.ServerCPUSource = "proc"
		}
		if cpu1OK && backlog != nil {
			b.res.ServerCPUSecondsBeforePushDrain = cpu1 - cpu0
		}
	}
	return err
}

// serverCPU is the server's CPU seconds so far: from /proc/PID/stat with
// ServerPID, else from s, the metrics (valid when serr is nil).
func (b *bench) serverCPU(s serverStats, serr error) (float64, bool) {
	if b.o.ServerPID > 0 {
		v, err := procCPUSeconds(b.o.ServerPID)
		return v, err == nil
	}
	return s.cpu, serr == nil
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
// wsServer is the base URL connection i dials.
func (b *bench) wsServer(i int) string {
	if n := len(b.o.WSServers); n > 0 {
		return b.o.WSServers[i%n]
	}
	return b.o.Server
}

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
