// Command wsidle measures what an idle, authenticated WebSocket connection
// costs a running parleyd in resident memory (docs/benchmarks.md, "Memory
// per idle WebSocket connection").
//
// It registers users, logs each in once (one device token per user), or
// with --accounts takes load-test accounts made by `parleyd admin
// bench-accounts` (a refresh each instead of two argon2id hashes), then
// creates direct conversations between them so the hub's per-conversation
// index is populated, and reads the server's memory after a forced GC. Then
// it opens N connections to /v1/ws, several per device token (the gateway
// allows several sockets per device, like browser tabs), spread over the
// source addresses 127.0.0.1, 127.0.0.2, ..., waits for every "ready"
// frame, lets the server settle and reads the memory again. The cost per
// connection is the difference divided by N.
//
// Each memory reading follows a forced GC (GET /debug/pprof/heap?gc=1 on
// the admin listener); a phase waits until RSS stops moving and reports
// the median of a few readings. It reads process_resident_memory_bytes
// and the Go runtime's figures from /metrics, and VmRSS from
// /proc/PID/status when --pid is given (the server must then run on this
// machine). --profile-dir keeps the heap profiles (and smaps) of both
// phases for go tool pprof -diff_base. --warmup opens and closes every
// connection once before the first reading, which takes one-time costs
// (the store's page caches filling, heap the Go runtime keeps) out of the
// difference.
//
// Clients stay idle but answer the server's pings, so the server's
// keepalive never closes them; a connection the server closes anyway
// makes the run fail. Usage:
//
//	go run ./internal/tools/wsidle --server http://127.0.0.1:8080 \
//	    --admin http://127.0.0.1:6060 --pid $(pgrep -nx parleyd)
//
// With accounts made beforehand in the server's (stopped) data directory,
// the setup costs no argon2id on the server (nor its garbage in the
// "before" reading):
//
//	parleyd admin bench-accounts --data DIR --count 500 DIR/accounts.json
//	parleyd --data DIR ... &
//	go run ./internal/tools/wsidle --accounts DIR/accounts.json ...
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/parleychat/parley/internal/benchaccounts"
)

// password is every generated user's password.
const password = "wsidle correct horse battery"

type options struct {
	server, admin   string
	pid             int
	users           int
	convsPerUser    int
	conns           int
	sourceAddrs     int
	dialConcurrency int
	setupWorkers    int
	readyTimeout    time.Duration
	settle          time.Duration
	samples         int
	sampleInterval  time.Duration
	prefix          string
	jsonPath        string
	profileDir      string
	hold            time.Duration
	warmup          bool
	steadyTimeout   time.Duration
	accounts        string
}

func main() {
	var o options
	flag.StringVar(&o.server, "server", "http://127.0.0.1:8080", "parleyd's API base URL (REST, /v1/ws and /metrics)")
	flag.StringVar(&o.admin, "admin", "http://127.0.0.1:6060", "parleyd's admin listener (--admin-listen), used to force a GC before each reading")
	flag.IntVar(&o.pid, "pid", 0, "parleyd's process id, to read VmRSS from /proc/PID/status as well (0: /metrics only)")
	flag.IntVar(&o.users, "users", 500, "users to register and log in (one device token each); argon2id makes each cost ~0.1 s of server CPU")
	flag.IntVar(&o.convsPerUser, "convs", 20, "direct conversations per user (even; each user starts half of them)")
	flag.IntVar(&o.conns, "conns", 10000, "WebSocket connections to open, spread round-robin over the users' tokens")
	flag.IntVar(&o.sourceAddrs, "source-addrs", 4, "dial from 127.0.0.1 .. 127.0.0.K, round-robin")
	flag.IntVar(&o.dialConcurrency, "dial-concurrency", 64, "connections being dialled or waiting for ready at once")
	flag.IntVar(&o.setupWorkers, "setup-workers", 4, "concurrent registrations and logins (conversations use 4x as many)")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 30*time.Second, "how long one connection may take to get its ready frame")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "wait after the last ready frame (and after setup) before reading memory; keep it above the server's ping interval (25 s) so the idle CPU and allocation rates include one heartbeat")
	flag.DurationVar(&o.steadyTimeout, "steady-timeout", time.Minute, "before the readings of a phase, wait at most this long for RSS to change by at most 1% (or 512 KiB) between two forced GCs")
	flag.IntVar(&o.samples, "samples", 5, "memory readings per phase (each after a forced GC); the median is used")
	flag.DurationVar(&o.sampleInterval, "sample-interval", 2*time.Second, "wait between a forced GC and its reading")
	flag.StringVar(&o.prefix, "prefix", "", "handle prefix of the generated users (default: random, so a server can be reused)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the result as JSON to this file ('-' for stdout)")
	flag.StringVar(&o.profileDir, "profile-dir", "", "save the server's heap profiles before and after connecting here (heap-before.pb.gz, heap-after.pb.gz), and with --pid its /proc/PID/smaps (smaps-before.txt, smaps-after.txt)")
	flag.BoolVar(&o.warmup, "warmup", false, "open and close all connections once before the first reading, so one-time costs (SQLite page caches, Go heap growth) fall outside the difference")
	flag.StringVar(&o.accounts, "accounts", "", "take the users from this file of load-test accounts (parleyd admin bench-accounts against the server's store) instead of registering them: one refresh each, no argon2id (the rotated refresh tokens are written back)")
	flag.DurationVar(&o.hold, "hold", 0, "keep the connections open this long after measuring (for manual profiling)")
	flag.Parse()
	if err := run(&o); err != nil {
		fmt.Fprintln(os.Stderr, "wsidle:", err)
		os.Exit(1)
	}
}

// Result is what one run measured; --json writes it.
type Result struct {
	Started        time.Time      `json:"started"`
	Server         string         `json:"server"`
	Users          int            `json:"users"`
	Conversations  int            `json:"conversations"`
	ConvsPerUser   int            `json:"conversations_per_user"`
	Warmup         bool           `json:"warmup"`
	Accounts       bool           `json:"accounts,omitempty"` // users from --accounts, not registered
	Conns          int            `json:"connections"`
	ConnsPerToken  float64        `json:"connections_per_token"`
	SourceAddrs    int            `json:"source_addresses"`
	SetupSeconds   float64        `json:"setup_seconds"`
	ConnectSeconds float64        `json:"connect_seconds"`
	Ready          int64          `json:"ready"`
	Failed         int64          `json:"failed"`
	Failures       map[string]int `json:"failures,omitempty"`
	Before         Sample         `json:"before"`
	After          Sample         `json:"after"`
	RSSPerConn     float64        `json:"rss_bytes_per_connection"`
	VmRSSPerConn   float64        `json:"vmrss_bytes_per_connection,omitempty"`
	GoInusePerConn float64        `json:"go_heap_and_stack_inuse_bytes_per_connection"`
	// GoLivePerConn is the growth of the live heap objects (heap_alloc
	// right after a forced GC); GoInusePerConn minus it is what the
	// partly filled spans and the stacks add.
	GoLivePerConn       float64        `json:"go_heap_live_bytes_per_connection"`
	ClosedByServer      int64          `json:"closed_by_server"`
	CloseReasons        map[string]int `json:"close_reasons,omitempty"`
	FramesAfterReady    int64          `json:"frames_after_ready"`
	PingsAnswered       int64          `json:"pings_answered"`
	EarliestTokenExpiry time.Time      `json:"earliest_token_expiry"`
	// IdleCPU and IdleAllocRate are the server's CPU use (in cores) and
	// allocation rate (bytes/s) while the connections sit idle, from the
	// last ready frame to the end of --settle (before the readings, which
	// cost some themselves): pings, keepalive timers, session checks.
	IdleCPU       float64 `json:"idle_cpu_cores"`
	IdleAllocRate float64 `json:"idle_alloc_bytes_per_second"`
}

// Sample is one phase's memory reading: the median of each figure over
// the readings taken.
type Sample struct {
	RSS          float64   `json:"rss_bytes"`           // process_resident_memory_bytes
	VmRSS        float64   `json:"vmrss_bytes"`         // /proc/PID/status, 0 without --pid
	HeapInuse    float64   `json:"heap_inuse_bytes"`    // go_memstats_heap_inuse_bytes
	HeapAlloc    float64   `json:"heap_alloc_bytes"`    // go_memstats_heap_alloc_bytes: live objects, right after the forced GC
	StackInuse   float64   `json:"stack_inuse_bytes"`   // go_memstats_stack_inuse_bytes
	HeapReleased float64   `json:"heap_released_bytes"` // go_memstats_heap_released_bytes
	HeapIdle     float64   `json:"heap_idle_bytes"`     // go_memstats_heap_idle_bytes
	Sys          float64   `json:"sys_bytes"`           // go_memstats_sys_bytes
	Goroutines   float64   `json:"goroutines"`          // go_goroutines
	OpenFDs      float64   `json:"open_fds"`            // process_open_fds
	CPUSeconds   float64   `json:"cpu_seconds"`         // process_cpu_seconds_total, at the last reading
	AllocTotal   float64   `json:"alloc_bytes_total"`   // go_memstats_alloc_bytes_total, at the last reading
	RSSReadings  []float64 `json:"rss_readings"`
}

func run(o *options) error {
	if o.users < 2 || o.conns < 1 || o.samples < 1 || o.sourceAddrs < 1 || o.sourceAddrs > 254 {
		return errors.New("need --users >= 2, --conns >= 1, --samples >= 1, 1 <= --source-addrs <= 254")
	}
	if o.convsPerUser%2 != 0 || o.convsPerUser >= o.users {
		return fmt.Errorf("--convs must be even and below --users (%d)", o.users)
	}
	if err := raiseFileLimit(uint64(o.conns) + 256); err != nil {
		return err
	}
	if o.prefix == "" {
		o.prefix = fmt.Sprintf("wi%06x", rand.IntN(1<<24))
	}
	o.server = strings.TrimRight(o.server, "/")
	o.admin = strings.TrimRight(o.admin, "/")
	ctx := context.Background()
	res := &Result{Started: time.Now().UTC(), Server: o.server, Users: o.users, ConvsPerUser: o.convsPerUser,
		Warmup: o.warmup, Accounts: o.accounts != "", Conns: o.conns, ConnsPerToken: float64(o.conns) / float64(o.users), SourceAddrs: o.sourceAddrs}
	m := &meter{o: o, http: &http.Client{Timeout: 2 * time.Minute}}
	initial, err := m.read(ctx)
	if err != nil {
		return fmt.Errorf("server or admin listener not reachable: %w", err)
	}

	start := time.Now()
	api := &apiClient{base: o.server, http: &http.Client{Timeout: 2 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4 * o.setupWorkers}}}
	devices, convs, err := setup(ctx, api, o)
	if err != nil {
		return err
	}
	res.Conversations = convs
	res.SetupSeconds = time.Since(start).Seconds()
	logf("setup: %d users, %d direct conversations (%d per user), one device token each, in %.0fs",
		o.users, convs, o.convsPerUser, res.SetupSeconds)
	api.http.CloseIdleConnections()

	if o.warmup {
		if err := warmup(ctx, o, m, devices, initial.OpenFDs); err != nil {
			return err
		}
	}
	time.Sleep(o.settle)
	logf("reading memory before connecting (%d readings)", o.samples)
	if res.Before, err = m.phase(ctx, "before"); err != nil {
		return err
	}

	cs := newClientSet(o, devices)
	start = time.Now()
	cs.connectAll()
	res.ConnectSeconds = time.Since(start).Seconds()
	res.Ready, res.Failed = cs.ready.Load(), cs.failed.Load()
	res.Failures = cs.snapshot(cs.failures)
	res.EarliestTokenExpiry = cs.earliestExpiry()
	logf("connect: %d/%d ready in %.1fs, %d failed", res.Ready, o.conns, res.ConnectSeconds, res.Failed)
	for reason, n := range res.Failures {
		logf("  failed x%d: %s", n, reason)
	}
	if res.Ready == 0 {
		cs.closeAll()
		return errors.New("no connection became ready")
	}
	if need := time.Now().Add(o.settle + time.Duration(o.samples)*(o.sampleInterval+time.Second) + o.hold); res.EarliestTokenExpiry.Before(need) {
		logf("warning: an access token expires at %s, before the measurement ends; start parleyd with a longer --access-token-ttl",
			res.EarliestTokenExpiry.Format(time.RFC3339))
	}

	connected, err := m.read(ctx)
	if err != nil {
		cs.closeAll()
		return err
	}
	connectedAt := time.Now()
	time.Sleep(o.settle)
	settled, err := m.read(ctx)
	if err != nil {
		cs.closeAll()
		return err
	}
	idle := time.Since(connectedAt).Seconds()
	res.IdleCPU = (settled.CPUSeconds - connected.CPUSeconds) / idle
	res.IdleAllocRate = (settled.AllocTotal - connected.AllocTotal) / idle
	logf("reading memory with %d connections open (%d readings)", res.Ready, o.samples)
	if res.After, err = m.phase(ctx, "after"); err != nil {
		cs.closeAll()
		return err
	}
	if o.hold > 0 {
		logf("holding the connections for %v", o.hold)
		time.Sleep(o.hold)
	}
	res.ClosedByServer = cs.closed.Load()
	res.CloseReasons = cs.snapshot(cs.closeReasons)
	res.FramesAfterReady, res.PingsAnswered = cs.frames.Load(), cs.pings.Load()
	cs.closeAll()

	n := float64(res.Ready)
	res.RSSPerConn = (res.After.RSS - res.Before.RSS) / n
	if o.pid != 0 {
		res.VmRSSPerConn = (res.After.VmRSS - res.Before.VmRSS) / n
	}
	res.GoInusePerConn = (res.After.HeapInuse + res.After.StackInuse - res.Before.HeapInuse - res.Before.StackInuse) / n
	res.GoLivePerConn = (res.After.HeapAlloc - res.Before.HeapAlloc) / n
	printSummary(os.Stdout, res)
	if o.jsonPath != "" {
		data, _ := json.MarshalIndent(res, "", "  ")
		data = append(data, '\n')
		if o.jsonPath == "-" {
			_, err = os.Stdout.Write(data)
		} else {
			err = os.WriteFile(o.jsonPath, data, 0o644)
		}
		if err != nil {
			return err
		}
	}
	if res.ClosedByServer > 0 {
		return fmt.Errorf("%d connections were closed by the server during the measurement; the figure is not valid", res.ClosedByServer)
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// warmup opens and closes every connection once and waits until the
// server holds no more sockets than it did at the start.
func warmup(ctx context.Context, o *options, m *meter, devices []device, initialFDs float64) error {
	cs := newClientSet(o, devices)
	cs.connectAll()
	logf("warmup: %d ready, %d failed; closing them", cs.ready.Load(), cs.failed.Load())
	cs.closeAll()
	for deadline := time.Now().Add(time.Minute); ; {
		s, err := m.read(ctx)
		if err != nil {
			return err
		}
		if s.OpenFDs <= initialFDs+16 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warmup: the server still holds %.0f files a minute after the clients closed (%.0f at the start)", s.OpenFDs, initialFDs)
		}
		time.Sleep(time.Second)
	}
}

// raiseFileLimit makes sure this process may hold need open files: every
// connection is one.
func raiseFileLimit(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max < need {
		return fmt.Errorf("%d connections need %d open files; the hard limit is %d (ulimit -Hn)", need-256, need, lim.Max)
	}
	lim.Cur = lim.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// device is one logged-in user's device token.
type device struct {
	userID, deviceID, token string
}

// apiClient makes the REST calls of the setup.
type apiClient struct {
	base string
	http *http.Client
}

// call sends body as JSON and decodes the answer into out; a status not in
// want is an error.
func (a *apiClient) call(ctx context.Context, method, path, token string, body, out any, want ...int) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if !slices.Contains(want, resp.StatusCode) {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(answer))
	}
	if out != nil {
		return json.Unmarshal(answer, out)
	}
	return nil
}

// setup registers and logs in o.users users (or takes them from
// o.accounts) and gives each o.convsPerUser direct conversations: user i
// starts one with each of users i+1 .. i+convs/2 (mod users), so every
// user ends up in convs of them.
func setup(ctx context.Context, api *apiClient, o *options) ([]device, int, error) {
	var devices []device
	var err error
	if o.accounts != "" {
		devices, err = accountDevices(ctx, api, o)
	} else {
		devices, err = registerDevices(ctx, api, o)
	}
	if err != nil {
		return nil, 0, err
	}
	half := o.convsPerUser / 2
	total := o.users * half
	err = forEach(ctx, total, 4*o.setupWorkers, func(ctx context.Context, k int) error {
		from, to := k/half, (k/half+1+k%half)%o.users
		return api.call(ctx, "POST", "/v1/conversations", devices[from].token,
			map[string]any{"kind": "direct", "members": []string{devices[to].userID}}, nil, http.StatusCreated, http.StatusOK)
	})
	return devices, total, err
}

// registerDevices registers o.users users and logs each in once (two
// argon2id hashes each on the server).
func registerDevices(ctx context.Context, api *apiClient, o *options) ([]device, error) {
	devices := make([]device, o.users)
	err := forEach(ctx, o.users, o.setupWorkers, func(ctx context.Context, i int) error {
		handle := fmt.Sprintf("%su%05d", o.prefix, i)
		if err := api.call(ctx, "POST", "/v1/accounts", "", map[string]any{"handle": handle, "password": password}, nil, http.StatusCreated, http.StatusConflict); err != nil {
			return err
		}
		var s struct {
			UserID      string `json:"user_id"`
			DeviceID    string `json:"device_id"`
			AccessToken string `json:"access_token"`
		}
		if err := api.call(ctx, "POST", "/v1/sessions", "", map[string]any{"handle": handle, "password": password,
			"device": map[string]any{"platform": "cli", "name": "wsidle"}}, &s, http.StatusOK); err != nil {
			return err
		}
		devices[i] = device{userID: s.UserID, deviceID: s.DeviceID, token: s.AccessToken}
		if (i+1)%100 == 0 {
			logf("setup: %d/%d users", i+1, o.users)
		}
		return nil
	})
	return devices, err
}

// accountDevices takes the first o.users accounts of o.accounts (made by
// parleyd admin bench-accounts against the server's store) and exchanges
// each refresh token for an access token. Refresh tokens rotate on use, so
// the new ones are written back (whatever else failed) before the run goes
// on; the file is locked meanwhile, so that two tools sharing it take
// turns instead of presenting each other's spent tokens (which revokes the
// device).
func accountDevices(ctx context.Context, api *apiClient, o *options) ([]device, error) {
	unlock, err := benchaccounts.Lock(o.accounts)
	if err != nil {
		return nil, err
	}
	defer unlock()
	f, err := benchaccounts.Read(o.accounts)
	if err != nil {
		return nil, err
	}
	if len(f.Accounts) < o.users {
		return nil, fmt.Errorf("%s has %d accounts and --users is %d: make more with parleyd admin bench-accounts --count %d",
			o.accounts, len(f.Accounts), o.users, o.users)
	}
	devices := make([]device, o.users)
	var rotated atomic.Int64
	err = forEach(ctx, o.users, o.setupWorkers, func(ctx context.Context, i int) error {
		a := &f.Accounts[i]
		var s struct {
			UserID       string `json:"user_id"`
			DeviceID     string `json:"device_id"`
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		}
		if err := api.call(ctx, "POST", "/v1/sessions/refresh", "", map[string]any{"refresh_token": a.RefreshToken}, &s, http.StatusOK); err != nil {
			return fmt.Errorf("refreshing %s from %s (made for this server's store?): %w", a.Handle, o.accounts, err)
		}
		a.RefreshToken = s.RefreshToken // each goroutine writes its own element
		rotated.Add(1)
		if s.UserID != a.UserID || s.DeviceID != a.DeviceID {
			return fmt.Errorf("refreshing %s: the server answered for user %s device %s, the file says %s %s", a.Handle, s.UserID, s.DeviceID, a.UserID, a.DeviceID)
		}
		devices[i] = device{userID: s.UserID, deviceID: s.DeviceID, token: s.AccessToken}
		return nil
	})
	if rotated.Load() > 0 {
		if werr := benchaccounts.Replace(o.accounts, f); werr != nil {
			return nil, errors.Join(err, fmt.Errorf("writing the rotated refresh tokens back to %s: %w", o.accounts, werr))
		}
	}
	return devices, err
}

// forEach runs fn(0..n-1) on workers goroutines and returns the first
// error; the others stop at the next item.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// clientSet opens and holds the WebSocket connections: one goroutine
// each, blocked in Read while idle.
type clientSet struct {
	o       *options
	url     string
	devices []device
	headers []ws.HandshakeHeader // per device: its Authorization header

	ready, failed, closed, frames, pings atomic.Int64

	mu           sync.Mutex
	failures     map[string]int // why a connection never became ready
	closeReasons map[string]int // why the server closed a ready one
	conns        []net.Conn
	expiry       time.Time // earliest token_expires_at seen in a ready frame
	stopping     bool
}

func newClientSet(o *options, devices []device) *clientSet {
	cs := &clientSet{o: o, url: "ws" + strings.TrimPrefix(o.server, "http") + "/v1/ws", devices: devices,
		failures: map[string]int{}, closeReasons: map[string]int{}}
	for _, d := range devices {
		cs.headers = append(cs.headers, ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + d.token}}))
	}
	return cs
}

// connectAll opens o.conns connections, connection i with device i mod
// users from source address i mod source-addrs, and returns when each is
// ready or failed.
func (cs *clientSet) connectAll() {
	sem := make(chan struct{}, cs.o.dialConcurrency)
	var pending sync.WaitGroup
	pending.Add(cs.o.conns)
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	done := make(chan struct{})
	go func() {
		pending.Wait()
		close(done)
	}()
	go func() {
		for i := range cs.o.conns {
			sem <- struct{}{}
			go cs.open(i, func() { <-sem; pending.Done() })
		}
	}()
	for {
		select {
		case <-done:
			return
		case <-progress.C:
			logf("connect: %d ready, %d failed", cs.ready.Load(), cs.failed.Load())
		}
	}
}

// open dials connection i and then reads from it until it ends. settled
// is called once, when the connection got its ready frame or failed.
func (cs *clientSet) open(i int, settled func()) {
	dev := i % len(cs.devices)
	source := net.IPv4(127, 0, 0, byte(1+i%cs.o.sourceAddrs))
	var status string
	d := ws.Dialer{
		Timeout:        cs.o.readyTimeout,
		ReadBufferSize: 1024, // the handshake answer only
		Header:         cs.headers[dev],
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: source}}
			return nd.DialContext(ctx, network, addr)
		},
		OnStatusError: func(code int, reason []byte, r io.Reader) {
			body, _ := io.ReadAll(io.LimitReader(r, 512))
			status = fmt.Sprintf("HTTP %d %s: %s", code, reason, bytes.TrimSpace(body))
		},
	}
	conn, br, _, err := d.Dial(context.Background(), cs.url)
	if err != nil {
		if status != "" {
			err = errors.New(status)
		}
		cs.fail(err)
		settled()
		return
	}
	if !cs.track(conn) {
		conn.Close()
		cs.fail(errors.New("closed while connecting"))
		settled()
		return
	}
	var src io.Reader = conn
	if br != nil { // frames that arrived with the handshake answer
		src = io.MultiReader(br, conn)
	}
	_ = conn.SetReadDeadline(time.Now().Add(cs.o.readyTimeout))
	cs.read(conn, src, settled)
}

// read runs one connection: the first data frame must be "ready"; after
// it, frames are counted and discarded, pings answered.
func (cs *clientSet) read(conn net.Conn, src io.Reader, settled func()) {
	control := wsutil.ControlFrameHandler(conn, ws.StateClientSide)
	rd := wsutil.Reader{Source: src, State: ws.StateClientSide, OnIntermediate: control}
	ready := false
	end := func(err error) {
		conn.Close()
		if !ready {
			cs.fail(err)
			settled()
			return
		}
		cs.mu.Lock()
		stopping := cs.stopping
		cs.mu.Unlock()
		if !stopping {
			cs.closed.Add(1)
			cs.count(cs.closeReasons, err)
		}
	}
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			end(err)
			return
		}
		if hdr.OpCode.IsControl() {
			if hdr.OpCode == ws.OpPing {
				cs.pings.Add(1)
			}
			if err := control(hdr, &rd); err != nil {
				end(err)
				return
			}
			continue
		}
		if ready {
			cs.frames.Add(1)
			if err := rd.Discard(); err != nil {
				end(err)
				return
			}
			continue
		}
		data, err := io.ReadAll(io.LimitReader(&rd, 1<<20))
		if err != nil {
			end(err)
			return
		}
		var f struct {
			Type         string    `json:"type"`
			TokenExpires time.Time `json:"token_expires_at"`
		}
		if json.Unmarshal(data, &f) != nil || f.Type != "ready" {
			end(fmt.Errorf("first frame is not ready: %.200s", data))
			return
		}
		ready = true
		_ = conn.SetReadDeadline(time.Time{})
		cs.ready.Add(1)
		cs.mu.Lock()
		if cs.expiry.IsZero() || f.TokenExpires.Before(cs.expiry) {
			cs.expiry = f.TokenExpires
		}
		cs.mu.Unlock()
		settled()
	}
}

func (cs *clientSet) track(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.stopping {
		return false
	}
	cs.conns = append(cs.conns, c)
	return true
}

func (cs *clientSet) fail(err error) {
	cs.failed.Add(1)
	cs.count(cs.failures, err)
}

// count adds err, without the addresses that differ per connection, to m.
func (cs *clientSet) count(m map[string]int, err error) {
	reason := "<nil>"
	if err != nil {
		reason = err.Error()
		var ce wsutil.ClosedError
		if errors.As(err, &ce) {
			reason = fmt.Sprintf("close %d %s", ce.Code, ce.Reason)
		}
		var oe *net.OpError
		if errors.As(err, &oe) {
			reason = oe.Op + ": " + oe.Err.Error()
		}
	}
	cs.mu.Lock()
	m[reason]++
	cs.mu.Unlock()
}

func (cs *clientSet) snapshot(m map[string]int) map[string]int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (cs *clientSet) earliestExpiry() time.Time {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.expiry
}

// closeAll closes every connection (TCP close, no close frame).
func (cs *clientSet) closeAll() {
	cs.mu.Lock()
	cs.stopping = true
	conns := cs.conns
	cs.conns = nil
	cs.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// meter reads the server's memory.
type meter struct {
	o    *options
	http *http.Client
}

// phase waits until RSS is steady, then takes o.samples readings, each
// o.sampleInterval after a forced GC, and returns the median of each
// figure. With --profile-dir, the heap profile of the last forced GC is
// saved as heap-NAME.pb.gz, and with --pid the process's smaps at the last
// reading as smaps-NAME.txt.
//
// Steady: the Go runtime returns freed heap pages to the OS gradually, so
// right after setup (argon2id allocates 19 MiB per hash) RSS keeps
// falling for a while; a baseline read then would hide the connections'
// cost in pages they reuse.
func (m *meter) phase(ctx context.Context, name string) (Sample, error) {
	prev := -1.0
	for deadline := time.Now().Add(m.o.steadyTimeout); ; {
		if _, err := m.get(ctx, m.o.admin+"/debug/pprof/heap?gc=1"); err != nil {
			return Sample{}, fmt.Errorf("forced GC: %w", err)
		}
		time.Sleep(m.o.sampleInterval)
		s, err := m.read(ctx)
		if err != nil {
			return Sample{}, err
		}
		if prev >= 0 && math.Abs(s.RSS-prev) <= max(0.01*prev, 512<<10) {
			break
		}
		if time.Now().After(deadline) {
			logf("  %s: RSS still moving after %v (%.1f -> %.1f MiB); reading anyway", name, m.o.steadyTimeout, prev/(1<<20), s.RSS/(1<<20))
			break
		}
		prev = s.RSS
	}
	var all []Sample
	for i := range m.o.samples {
		profile, err := m.get(ctx, m.o.admin+"/debug/pprof/heap?gc=1")
		if err != nil {
			return Sample{}, fmt.Errorf("forced GC: %w", err)
		}
		if i == m.o.samples-1 && m.o.profileDir != "" {
			if err := os.MkdirAll(m.o.profileDir, 0o755); err != nil {
				return Sample{}, err
			}
			if err := os.WriteFile(filepath.Join(m.o.profileDir, "heap-"+name+".pb.gz"), profile, 0o644); err != nil {
				return Sample{}, err
			}
		}
		time.Sleep(m.o.sampleInterval)
		s, err := m.read(ctx)
		if err != nil {
			return Sample{}, err
		}
		if i == m.o.samples-1 && m.o.profileDir != "" && m.o.pid != 0 {
			// Which mappings the resident pages are in: the Go heap arena,
			// other anonymous memory (e.g. SQLite's allocator), files.
			smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", m.o.pid))
			if err != nil {
				return Sample{}, err
			}
			if err := os.WriteFile(filepath.Join(m.o.profileDir, "smaps-"+name+".txt"), smaps, 0o644); err != nil {
				return Sample{}, err
			}
		}
		logf("  %s %d/%d: RSS %.1f MiB, heap in use %.1f MiB, goroutines %.0f", name, i+1, m.o.samples, s.RSS/(1<<20), s.HeapInuse/(1<<20), s.Goroutines)
		all = append(all, s)
	}
	med := func(f func(*Sample) float64) float64 {
		v := make([]float64, len(all))
		for i := range all {
			v[i] = f(&all[i])
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	out := Sample{
		RSS:          med(func(s *Sample) float64 { return s.RSS }),
		VmRSS:        med(func(s *Sample) float64 { return s.VmRSS }),
		HeapInuse:    med(func(s *Sample) float64 { return s.HeapInuse }),
		HeapAlloc:    med(func(s *Sample) float64 { return s.HeapAlloc }),
		StackInuse:   med(func(s *Sample) float64 { return s.StackInuse }),
		HeapReleased: med(func(s *Sample) float64 { return s.HeapReleased }),
		HeapIdle:     med(func(s *Sample) float64 { return s.HeapIdle }),
		Sys:          med(func(s *Sample) float64 { return s.Sys }),
		Goroutines:   med(func(s *Sample) float64 { return s.Goroutines }),
		OpenFDs:      med(func(s *Sample) float64 { return s.OpenFDs }),
		CPUSeconds:   all[len(all)-1].CPUSeconds,
		AllocTotal:   all[len(all)-1].AllocTotal,
	}
	for _, s := range all {
		out.RSSReadings = append(out.RSSReadings, s.RSS)
	}
	return out, nil
}

// read takes one reading from /metrics (and /proc with --pid).
func (m *meter) read(ctx context.Context) (Sample, error) {
	body, err := m.get(ctx, m.o.server+"/metrics")
	if err != nil {
		return Sample{}, err
	}
	metrics := map[string]*float64{}
	var s Sample
	for name, p := range map[string]*float64{
		"process_resident_memory_bytes":   &s.RSS,
		"go_memstats_heap_inuse_bytes":    &s.HeapInuse,
		"go_memstats_heap_alloc_bytes":    &s.HeapAlloc,
		"go_memstats_stack_inuse_bytes":   &s.StackInuse,
		"go_memstats_heap_released_bytes": &s.HeapReleased,
		"go_memstats_heap_idle_bytes":     &s.HeapIdle,
		"go_memstats_sys_bytes":           &s.Sys,
		"go_goroutines":                   &s.Goroutines,
		"process_open_fds":                &s.OpenFDs,
		"process_cpu_seconds_total":       &s.CPUSeconds,
		"go_memstats_alloc_bytes_total":   &s.AllocTotal,
	} {
		metrics[name] = p
	}
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if p := metrics[name]; ok && p != nil {
			if *p, err = strconv.ParseFloat(strings.TrimSpace(value), 64); err != nil {
				return Sample{}, fmt.Errorf("metric %s: %w", name, err)
			}
			found++
		}
	}
	if found != len(metrics) {
		return Sample{}, fmt.Errorf("/metrics lacks some of the Go and process metrics (found %d of %d)", found, len(metrics))
	}
	if m.o.pid != 0 {
		if s.VmRSS, err = vmRSS(m.o.pid); err != nil {
			return Sample{}, err
		}
	}
	return s, nil
}

func (m *meter) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, err
}

// vmRSS reads a process's resident set size in bytes from /proc.
func vmRSS(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func printSummary(w io.Writer, r *Result) {
	const mib = 1 << 20
	if r.Warmup {
		fmt.Fprintf(w, "warmup:     all connections were opened and closed once before the first reading\n")
	}
	fmt.Fprintf(w, "setup:      %d users (one device token each), %d direct conversations (%d per user), %.0fs\n",
		r.Users, r.Conversations, r.ConvsPerUser, r.SetupSeconds)
	fmt.Fprintf(w, "connect:    %d/%d ready in %.1fs (%.1f per token, from %d source addresses), %d failed\n",
		r.Ready, r.Conns, r.ConnectSeconds, r.ConnsPerToken, r.SourceAddrs, r.Failed)
	row := func(name string, s Sample) {
		fmt.Fprintf(w, "%-11s RSS %7.1f MiB", name+":", s.RSS/mib)
		if s.VmRSS != 0 {
			fmt.Fprintf(w, "  VmRSS %7.1f MiB", s.VmRSS/mib)
		}
		fmt.Fprintf(w, "  heap in use %6.1f MiB (live %6.1f)  stacks %5.1f MiB  heap released %6.1f MiB  goroutines %5.0f  open fds %5.0f\n",
			s.HeapInuse/mib, s.HeapAlloc/mib, s.StackInuse/mib, s.HeapReleased/mib, s.Goroutines, s.OpenFDs)
	}
	row("before", r.Before)
	row("after", r.After)
	fmt.Fprintf(w, "per conn:   RSS %.2f KiB", r.RSSPerConn/1024)
	if r.VmRSSPerConn != 0 {
		fmt.Fprintf(w, "  VmRSS %.2f KiB", r.VmRSSPerConn/1024)
	}
	fmt.Fprintf(w, "  Go heap+stack in use %.2f KiB (live heap %.2f KiB)  goroutines %+d  open fds %+d\n",
		r.GoInusePerConn/1024, r.GoLivePerConn/1024, int(math.Round(r.After.Goroutines-r.Before.Goroutines)), int(math.Round(r.After.OpenFDs-r.Before.OpenFDs)))
	fmt.Fprintf(w, "idle:       %d frames after ready, %d pings answered, %d closed by the server; server CPU %.2f cores, allocating %.2f MiB/s\n",
		r.FramesAfterReady, r.PingsAnswered, r.ClosedByServer, r.IdleCPU, r.IdleAllocRate/mib)
	for reason, n := range r.CloseReasons {
		fmt.Fprintf(w, "  closed x%d: %s\n", n, reason)
	}
}
