package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/bench"
	"github.com/parleychat/parley/internal/spawn"
)

const benchUsage = `usage: parley bench SCENARIO [flags]

Scenarios:
  connections  N idle authenticated connections: connect rate, server RSS per connection
  direct       users in 1:1 pairs, each sending, at --rate or as fast as acks allow
  group        groups of --group-size with --senders senders each
  offline      devices away while --messages pile up in --convs conversations each; catch-up time and bytes
  storm        every connection drops and reconnects at once: time until all are resynced

Every scenario checks lost, duplicate and reordered messages. Load goes to
loopback only (--server must be 127.0.0.0/8 or localhost).

In direct and group, msgs/s and deliveries/s run to the last delivery (or
the last ack, if later); the acked rate to the last ack is given beside
them. The server's CPU (from /proc with --spawn, else process_cpu_seconds_total
from --metrics) counts from the start of sending until the server's push
queue has drained (--push-drain), and is given per acked message and per
delivery.

  parley bench compare --baseline DIR --candidate DIR [--rounds N] SCENARIO [flags]

runs SCENARIO with --spawn on two parleyd builds in turn (parley bench
compare -h).

With --reconnect (direct, group), a connection closed by the server or the
network dials again (backoff 100 ms doubling to 2 s, jittered), syncs from
its last position, backfills with history, and resends its unacknowledged
sends with the same client_msg_id; sends refused with rate_limited or
unavailable are retried. Then lost counts acked messages a recipient never
got, duplicates messages stored twice (one client_msg_id under two seqs),
reordered live messages that came after a higher seq on the same socket;
a message received again is dropped as a client would (redelivered).

Flags:
`

// benchFlags are the flags of `parley bench SCENARIO`.
type benchFlags struct {
	o           bench.Options
	spawn, json bool
	// seedAccounts (with spawn): the run's users are made by `parleyd
	// admin bench-accounts` in the spawned server's data directory.
	seedAccounts bool
	parleyd      string
	cpuProfile   string
}

// newBenchFlags defines the flags of `parley bench SCENARIO` on a new
// flag set writing its errors to stderr.
func newBenchFlags(stderr io.Writer) (*flag.FlagSet, *benchFlags) {
	fs := flag.NewFlagSet("parley bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &benchFlags{}
	o := &f.o
	fs.StringVar(&o.Server, "server", "", "parleyd to load (default "+defaultServer+" unless --spawn)")
	fs.Func("ws-servers", "comma-separated parleyd base URLs that the WebSocket connections dial, round-robin (the nodes of a cluster); setup, REST and metrics stay on --server", func(v string) error {
		o.WSServers = nil
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				o.WSServers = append(o.WSServers, strings.TrimRight(u, "/"))
			}
		}
		return nil
	})
	fs.BoolVar(&f.spawn, "spawn", false, "start a parleyd (beside this binary, or on the PATH) on a temporary data directory with PARLEY_LIMITS=off; its CPU is read from /proc")
	fs.StringVar(&f.parleyd, "parleyd", "", "the parleyd binary for --spawn")
	fs.StringVar(&o.Admin, "admin", "", "parleyd's admin listener, to force a GC before memory readings (set by --spawn)")
	fs.StringVar(&o.Metrics, "metrics", "", "URL of the server's Prometheus metrics, for its CPU (process_cpu_seconds_total), memory and push queue (default SERVER/metrics; the admin listener's /metrics needs no token)")
	fs.DurationVar(&o.PushDrain, "push-drain", 2*time.Minute, "direct, group: after the last delivery, wait at most this long for the server's push queue to drain, its CPU still counted; 0 = do not wait")
	fs.IntVar(&o.Conns, "conns", 0, "connections (default per scenario: connections 1000, direct 200, group 100, offline 10, storm 1000)")
	fs.IntVar(&o.PerToken, "per-token", 0, "connections per device token (default 10 for connections and storm, else 1)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "sending time (direct, group); holding time (connections)")
	fs.Float64Var(&o.Rate, "rate", 0, "messages per second in all, spread evenly over the senders; 0 = as fast as acks allow")
	fs.Float64Var(&o.HistoryRate, "history-rate", 0, "direct, group: newest-page history reads per second in all while sending (a user opening a conversation); 0 = none")
	fs.IntVar(&o.Window, "window", 8, "sends in flight per sender when --rate is 0")
	fs.IntVar(&o.GroupSize, "group-size", 10, "members per group (group)")
	fs.IntVar(&o.Senders, "senders", 1, "senders per group (group)")
	fs.IntVar(&o.Convs, "convs", 50, "conversations per device (offline)")
	fs.IntVar(&o.Messages, "messages", 1000, "messages per device while away (offline)")
	fs.IntVar(&o.SyncLimit, "sync-limit", 50, "messages per conversation a sync asks for (offline, storm)")
	fs.IntVar(&o.BodyBytes, "body-bytes", 64, "message body size")
	fs.IntVar(&o.SourceAddrs, "source-addrs", 4, "dial from 127.0.0.1 .. 127.0.0.K")
	fs.IntVar(&o.DialConc, "dial-concurrency", 128, "connections being opened at once")
	fs.IntVar(&o.SetupConc, "setup-concurrency", 8, "registrations and logins (or refreshes, with --accounts) at once")
	fs.DurationVar(&o.Settle, "settle", 500*time.Millisecond, "direct, group: pause between the last connection ready and the first send, for the server's work on new connections (presence) to finish; large groups need seconds")
	fs.StringVar(&o.Accounts, "accounts", "", "use the accounts in this file (made by parleyd admin bench-accounts against --server's store) instead of registering users: their refresh tokens are exchanged for sessions and the rotated ones written back")
	fs.BoolVar(&f.seedAccounts, "seed-accounts", false, "with --spawn: make the run's users with parleyd admin bench-accounts in the spawned server's data directory before it starts (no argon2 per user)")
	fs.IntVar(&o.PerProcess, "per-process", 15000, "connections: the most one process holds; more run in worker processes (a process may open 20,000 files here)")
	fs.BoolVar(&o.Reconnect, "reconnect", false, "direct, group: survive closed connections: reconnect, resync, resend (off: a closed connection fails the run)")
	fs.DurationVar(&o.Drain, "drain", 10*time.Second, "with --reconnect: after the sending time, how long to wait for every ack and every delivery")
	fs.BoolVar(&f.json, "json", false, "print the result as one JSON object on the last line")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	return fs, f
}

// benchCommand is `parley bench`.
func benchCommand(ctx context.Context, args []string, e env) error {
	if len(args) > 0 && args[0] == "compare" {
		return benchCompareCommand(ctx, args[1:], e)
	}
	fs, f := newBenchFlags(e.stderr)
	o := &f.o
	fs.Usage = func() {
		fmt.Fprint(e.stderr, benchUsage)
		fs.PrintDefaults()
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs.Usage()
		return flag.ErrHelp
	}
	o.Scenario = args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return parley.Errorf(parley.CodeInvalidRequest, "unexpected argument %q", fs.Arg(0))
	}
	if o.Reconnect && o.Scenario != "direct" && o.Scenario != "group" {
		return parley.Errorf(parley.CodeInvalidRequest, "--reconnect applies to the direct and group scenarios, not %s", o.Scenario)
	}
	if f.seedAccounts && !f.spawn {
		return parley.Errorf(parley.CodeInvalidRequest, "--seed-accounts needs --spawn (for a server you run, make the file with parleyd admin bench-accounts and pass --accounts FILE)")
	}
	if f.spawn && o.Accounts != "" {
		return parley.Errorf(parley.CodeInvalidRequest, "--accounts names accounts in a running server's store; a spawned server starts empty: use --seed-accounts")
	}
	if f.spawn {
		if o.Server != "" {
			return parley.Errorf(parley.CodeInvalidRequest, "--spawn and --server exclude each other")
		}
		seed := 0
		if f.seedAccounts {
			seed = bench.UsersNeeded(*o)
		}
		p, dir, admin, err := spawnParleyd(f.parleyd, seed, e.stderr)
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		defer p.Stop(10 * time.Second)
		if seed > 0 {
			o.Accounts = filepath.Join(dir, seededAccountsFile)
		}
		o.Server = p.Base
		o.Admin = "http://" + admin
		if runtime.GOOS == "linux" {
			o.ServerPID = p.Pid() // its CPU from /proc/PID/stat
		}
		fmt.Fprintf(e.stderr, "parley bench: spawned parleyd on %s (admin listener %s, pid %d, data %s)\n", p.Base, admin, p.Pid(), dir)
	}
	if o.Server == "" {
		o.Server = defaultServer
	}
	if err := loopbackOnly(o.Server); err != nil {
		return err
	}
	for _, u := range append([]string{o.Admin, o.Metrics}, o.WSServers...) {
		if u == "" {
			continue
		}
		if err := loopbackOnly(u); err != nil {
			return err
		}
	}
	o.WorkerCommand = func() *exec.Cmd {
		self, err := os.Executable()
		if err != nil {
			self = os.Args[0]
		}
		cmd := exec.Command(self, "bench-worker")
		cmd.Stderr = e.stderr
		return cmd
	}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	tty := isTerminal(e.stderr)
	o.Progress = func(s string) {
		if tty {
			fmt.Fprintf(e.stderr, "\r\033[K%s", s)
		}
	}
	res, err := bench.Run(ctx, *o)
	if tty {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	if res != nil {
		printResult(e.stdout, res)
		if f.json {
			data, _ := json.Marshal(res)
			fmt.Fprintln(e.stdout, string(data))
		}
	}
	if err != nil {
		return err
	}
	if !res.OK() {
		return parley.Errorf(parley.CodeInternal, "correctness check failed: lost %d, duplicates %d, reordered %d, sent %d, acked %d, failed connections %d",
			res.Lost, res.Duplicates, res.Reordered, res.Sent, res.Acked, res.FailedConnections)
	}
	return nil
}

// loopbackOnly refuses to load anything but this machine.
func loopbackOnly(base string) error {
	host := base
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	host = strings.SplitN(host, "/", 2)[0]
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return parley.Errorf(parley.CodeInvalidRequest, "parley bench loads loopback addresses only, not %s", host)
}

// seededAccountsFile is the accounts file --seed-accounts makes in the
// spawned server's data directory.
const seededAccountsFile = "bench-accounts.json"

// spawnParleyd starts parleyd on a temporary data directory, with an
// admin listener on a free port. With seed > 0 it first runs `parleyd
// admin bench-accounts --count seed` on that directory, which writes
// seededAccountsFile there.
func spawnParleyd(bin string, seed int, stderr io.Writer) (p *spawn.Process, dir, admin string, err error) {
	if bin == "" {
		if self, err := os.Executable(); err == nil {
			if c := filepath.Join(filepath.Dir(self), "parleyd"); fileExists(c) {
				bin = c
			}
		}
	}
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("parleyd"); err != nil {
			return nil, "", "", errors.New("--spawn: no parleyd beside this binary or on the PATH (go build -o DIR ./cmd/parleyd ./cmd/parley, or --parleyd PATH)")
		}
	}
	if dir, err = os.MkdirTemp("", "parley-bench-"); err != nil {
		return nil, "", "", err
	}
	if admin, err = freePort(); err != nil {
		return nil, "", "", err
	}
	if seed > 0 {
		cmd := exec.Command(bin, "admin", "bench-accounts", "--data", dir, "--count", strconv.Itoa(seed), filepath.Join(dir, seededAccountsFile))
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			os.RemoveAll(dir)
			return nil, "", "", fmt.Errorf("--seed-accounts: parleyd admin bench-accounts: %w", err)
		}
	}
	p, err = spawn.Start(bin, dir, []string{"PARLEY_LIMITS=off"}, "--admin-listen", admin)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", "", err
	}
	return p, dir, admin, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printResult(w io.Writer, r *bench.Result) {
	fmt.Fprintf(w, "scenario %s, %d connections (connected in %.1fs, %.0f/s; setup %.1fs)\n", r.Scenario, r.Conns, r.ConnectSeconds, r.ConnectsPerSec, r.SetupSeconds)
	if r.Sent > 0 && r.DurationToLastAckSeconds > 0 { // direct, group
		fmt.Fprintf(w, "messages: sent %d, acked %d, deliveries expected %d, delivered %d\n", r.Sent, r.Acked, r.Expected, r.Delivered)
		if r.RateOffered > 0 {
			fmt.Fprintf(w, "fixed rate: %.0f msgs/s offered (--rate), open loop\n", r.RateOffered)
		}
		fmt.Fprintf(w, "to the last delivery (%.2fs, %.2fs after the last ack): %.0f msgs/s, %.0f deliveries/s; to the last ack (%.2fs): %.0f msgs/s acked\n",
			r.DurationSeconds, r.DeliveryLagSeconds, r.MsgsPerSec, r.DeliveriesPerSec, r.DurationToLastAckSeconds, r.MsgsPerSecToLastAck)
	} else if r.Sent > 0 {
		fmt.Fprintf(w, "messages: sent %d, acked %d in %.1fs: %.0f msgs/s; deliveries expected %d, delivered %d: %.0f/s\n",
			r.Sent, r.Acked, r.DurationSeconds, r.MsgsPerSec, r.Expected, r.Delivered, r.DeliveriesPerSec)
	}
	if r.Sent > 0 {
		fmt.Fprintf(w, "ack latency ms: p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f\n", r.AckP50Ms, r.AckP90Ms, r.AckP99Ms, r.AckP999Ms, r.AckMaxMs)
		if r.E2EMaxMs > 0 {
			fmt.Fprintf(w, "end-to-end ms: p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f\n", r.E2EP50Ms, r.E2EP90Ms, r.E2EP99Ms, r.E2EP999Ms, r.E2EMaxMs)
		}
		if a := r.AfterAcceptMs; a != nil {
			fmt.Fprintf(w, "after acceptance (server's created_at to arrival) ms: p50 %.2f p99 %.2f max %.2f\n", a.P50, a.P99, a.Max)
		}
	}
	switch r.Scenario {
	case "offline":
		fmt.Fprintf(w, "catch-up per device (connect, sync, backfill) ms: p50 %.1f p99 %.1f max %.1f; round trips %.0f; bytes per device %d\n", r.CatchUpP50Ms, r.CatchUpP99Ms, r.CatchUpMaxMs, r.CatchUpRounds, r.CatchUpBytes)
	case "storm":
		fmt.Fprintf(w, "storm: all %d resynced in %.2fs; per connection since the drop ms: p50 %.1f p99 %.1f max %.1f; slowest handshake %.0f ms, slowest sync %.0f ms\n",
			r.Conns, r.ResyncSeconds, r.CatchUpP50Ms, r.CatchUpP99Ms, r.CatchUpMaxMs, r.ResyncDialMaxMs, r.ResyncSyncMaxMs)
	case "connections":
		fmt.Fprintf(w, "server RSS per connection: %.2f KiB (before %.1f MiB, after %.1f MiB)\n", r.RSSPerConnBytes/1024, float64(r.ServerRSSBefore)/(1<<20), float64(r.ServerRSSBytes)/(1<<20))
	}
	if q := r.HistoryMs; q != nil {
		fmt.Fprintf(w, "history reads %d, round trip ms: p50 %.2f p99 %.2f max %.2f; server's history cache: %d hits, %d misses\n",
			r.HistoryReads, q.P50, q.P99, q.Max, r.HistoryCacheHits, r.HistoryCacheMisses)
	}
	if q := r.ReconnectMs; q != nil {
		fmt.Fprintf(w, "reconnects %d, close to ready ms: p50 %.1f p99 %.1f max %.1f; sends resent %d; redelivered (dropped as already held) %d\n",
			r.Reconnects, q.P50, q.P99, q.Max, r.Resent, r.Redelivered)
		if r.FinalSyncDeliveries > 0 {
			fmt.Fprintf(w, "deliveries that only the final sync brought (live delivery missed them): %d\n", r.FinalSyncDeliveries)
		}
	}
	fmt.Fprintf(w, "server: %.2f CPU seconds", r.ServerCPUSeconds)
	if r.ServerCPUSource != "" {
		fmt.Fprintf(w, " (%s)", r.ServerCPUSource)
	}
	if r.ServerCPUUsPerMsg > 0 {
		fmt.Fprintf(w, ", %.1f µs per message, %.1f µs per delivery", r.ServerCPUUsPerMsg, r.ServerCPUUsPerDelivery)
	}
	fmt.Fprintf(w, ", RSS %.1f MiB\n", float64(r.ServerRSSBytes)/(1<<20))
	if r.PushQueuePeak != nil {
		fmt.Fprintf(w, "server's push queue: peak %d jobs", *r.PushQueuePeak)
		switch {
		case r.PushQueueLeft != nil && *r.PushQueueLeft == 0 && r.PushDrainSeconds != nil:
			fmt.Fprintf(w, ", drained %.1fs after the last delivery; CPU to the last delivery %.2f s, to the drain %.2f s\n",
				*r.PushDrainSeconds, r.ServerCPUSecondsBeforePushDrain, r.ServerCPUSeconds)
		case r.PushQueueLeft != nil && r.PushDrainSeconds != nil:
			fmt.Fprintf(w, ", NOT drained: %d jobs left after waiting %.1fs (--push-drain); CPU counted to then\n", *r.PushQueueLeft, *r.PushDrainSeconds)
		case r.PushDrainSeconds != nil:
			fmt.Fprintf(w, ", depth unreadable after waiting %.1fs; CPU counted to then\n", *r.PushDrainSeconds)
		default:
			fmt.Fprintf(w, " (not waited for: --push-drain 0)\n")
		}
	}
	var codes []string
	for c, n := range r.Errors {
		codes = append(codes, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(codes)
	fmt.Fprintf(w, "check: lost %d, duplicates %d, reordered %d, failed connections %d, closed by the server %d; errors: %s\n",
		r.Lost, r.Duplicates, r.Reordered, r.FailedConnections, r.ServerCloses, strings.Join(append(codes, "")[:max(len(codes), 1)], ", "))
}
