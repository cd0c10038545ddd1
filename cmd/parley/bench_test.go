package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/spawn"
)

// TestBenchSmoke runs every scenario of parley bench for a few seconds on
// a spawned parleyd (found beside the binary) and checks what it checks:
// nothing lost, duplicated or reordered. It asserts no speed.
func TestBenchSmoke(t *testing.T) {
	for _, args := range [][]string{
		{"direct", "--conns", "10", "--duration", "1s"},
		{"direct", "--conns", "10", "--duration", "1s", "--rate", "200", "--history-rate", "100"},
		{"group", "--conns", "20", "--group-size", "5", "--senders", "2", "--duration", "1s"},
		{"offline", "--conns", "2", "--convs", "5", "--messages", "300", "--sync-limit", "20"},
		{"storm", "--conns", "60", "--per-token", "6"},
		{"connections", "--conns", "60", "--per-token", "6", "--duration", "1s"},
		{"connections", "--conns", "60", "--per-token", "6", "--duration", "1s", "--per-process", "25"}, // three worker processes
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command(parleyBin, append([]string{"bench"}, append(args, "--spawn", "--json")...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("parley bench %v: %v\n%s", args, err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			var keys map[string]any
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &keys); err != nil {
				t.Fatalf("last line is not a JSON object: %v\n%s", err, out)
			}
			for _, k := range []string{"scenario", "conns", "sent", "acked", "expected", "delivered", "lost", "duplicates",
				"reordered", "msgs_per_sec", "deliveries_per_sec", "ack_p50_ms", "ack_p99_ms", "e2e_p50_ms", "e2e_p99_ms",
				"e2e_p999_ms", "server_rss_bytes", "server_cpu_seconds"} {
				if _, ok := keys[k]; !ok {
					t.Fatalf("the JSON result has no %q: %s", k, lines[len(lines)-1])
				}
			}
			var r struct {
				Scenario              string
				Conns                 int
				Sent, Acked, Expected int64
				Delivered, Lost       int64
				Duplicates, Reordered int64
				ServerRSS             int64   `json:"server_rss_bytes"`
				FailedConnections     int64   `json:"failed_connections"`
				CatchUpRounds         float64 `json:"catchup_round_trips_max"`
				HistoryReads          int64   `json:"history_reads"`
				HistoryCacheHits      int64   `json:"history_cache_hits"`
				Duration              float64 `json:"duration_seconds"`
				DurationToLastAck     float64 `json:"duration_to_last_ack_seconds"`
				MsgsPerSec            float64 `json:"msgs_per_sec"`
				MsgsPerSecToLastAck   float64 `json:"msgs_per_sec_to_last_ack"`
				CPU                   float64 `json:"server_cpu_seconds"`
				CPUBeforeDrain        float64 `json:"server_cpu_seconds_before_push_drain"`
				CPUPerMsg             float64 `json:"server_cpu_us_per_msg"`
				CPUPerDelivery        float64 `json:"server_cpu_us_per_delivery"`
				CPUSource             string  `json:"server_cpu_source"`
				PushQueuePeak         *int64  `json:"push_queue_peak"`
				PushQueueLeft         *int64  `json:"push_queue_left"`
				E2EP99                float64 `json:"e2e_p99_ms"`
				E2EMax                float64 `json:"e2e_max_ms"`
				AfterAccept           *struct {
					P50, P99, Max float64
				} `json:"after_accept_ms"`
			}
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
				t.Fatalf("last line is not the JSON result: %v\n%s", err, out)
			}
			if slices.Contains(args, "--history-rate") && (r.HistoryReads == 0 || r.HistoryCacheHits == 0) {
				t.Fatalf("--history-rate: %d reads, %d cache hits; want some of each", r.HistoryReads, r.HistoryCacheHits)
			}
			if r.Scenario != args[0] || r.Lost != 0 || r.Duplicates != 0 || r.Reordered != 0 || r.FailedConnections != 0 || r.ServerRSS == 0 || r.Acked != r.Sent {
				t.Fatalf("result %+v\n%s", r, out)
			}
			switch args[0] {
			case "direct", "group", "offline":
				if r.Sent == 0 || r.Expected == 0 || r.Delivered != r.Expected {
					t.Fatalf("no traffic checked: %+v\n%s", r, out)
				}
			}
			if args[0] == "direct" || args[0] == "group" {
				// Rates run to the last delivery, the acked rate to the
				// last ack; the server's CPU (from /proc: --spawn) counts
				// until its push queue drained, per message and per
				// delivery.
				if r.DurationToLastAck <= 0 || r.Duration < r.DurationToLastAck || r.MsgsPerSec <= 0 || r.MsgsPerSecToLastAck < r.MsgsPerSec {
					t.Fatalf("durations and rates: %+v", r)
				}
				if r.CPUSource != "proc" || r.CPU <= 0 || r.CPUBeforeDrain <= 0 || r.CPUBeforeDrain > r.CPU {
					t.Fatalf("server CPU: %+v", r)
				}
				if want := r.CPU * 1e6 / float64(r.Acked); math.Abs(r.CPUPerMsg-want) > 1e-6*want {
					t.Fatalf("server_cpu_us_per_msg %v, want %v", r.CPUPerMsg, want)
				}
				if want := r.CPU * 1e6 / float64(r.Delivered); math.Abs(r.CPUPerDelivery-want) > 1e-6*want {
					t.Fatalf("server_cpu_us_per_delivery %v, want %v", r.CPUPerDelivery, want)
				}
				if r.PushQueuePeak == nil || r.PushQueueLeft == nil || *r.PushQueueLeft != 0 {
					t.Fatalf("the push queue was not watched until it drained: %s", lines[len(lines)-1])
				}
				// After acceptance counts from the server's created_at,
				// which comes after the client's send: never more than
				// end to end (one clock), but for created_at's
				// millisecond precision (it is truncated, so up to 1 ms
				// early).
				if a := r.AfterAccept; a == nil || a.P50 <= 0 || a.P99 < a.P50 || a.Max < a.P99 || a.Max > r.E2EMax+1 {
					t.Fatalf("after_accept_ms %+v against e2e max %v: %s", a, r.E2EMax, lines[len(lines)-1])
				}
			}
			if args[0] == "offline" && r.CatchUpRounds < 2 {
				t.Fatalf("300 messages in 5 conversations with a sync limit of 20 need backfill round trips: %+v", r)
			}
		})
	}
}

// TestBenchLoopbackOnly: load goes to this machine only.
func TestBenchLoopbackOnly(t *testing.T) {
	for _, server := range []string{"http://10.1.2.3:8080", "https://chat.example.com"} {
		out, err := exec.Command(parleyBin, "bench", "direct", "--server", server, "--conns", "2").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "loopback addresses only") {
			t.Fatalf("bench against %s: %v\n%s", server, err, out)
		}
	}
	// Every node given to --ws-servers is held to the same rule.
	out, err := exec.Command(parleyBin, "bench", "direct", "--server", "http://127.0.0.1:1", "--ws-servers", "http://127.0.0.1:2,http://10.1.2.3:8080", "--conns", "2").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loopback addresses only") {
		t.Fatalf("bench with a --ws-servers node off loopback: %v\n%s", err, out)
	}
}

// TestBenchReconnectAcrossRestart: `parley bench --reconnect` while its
// parleyd is killed (SIGKILL, acks in flight lost) and restarted on the
// same port and data directory, so that every connection drops at once.
// The connections reconnect, resync, resend what was unacknowledged, and
// the bench still proves that every message was acked once, stored once
// and delivered to every recipient, none out of order.
func TestBenchReconnectAcrossRestart(t *testing.T) {
	for _, args := range [][]string{
		{"direct", "--conns", "10", "--duration", "5s", "--rate", "200"},
		{"direct", "--conns", "10", "--duration", "5s"}, // as fast as acks allow: sends in flight at the kill
		{"group", "--conns", "12", "--group-size", "4", "--senders", "2", "--duration", "5s", "--rate", "150"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			srv, err := spawn.Start(parleydBin, t.TempDir(), []string{"PARLEY_LIMITS=off"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Stop(10 * time.Second) })
			var out bytes.Buffer
			cmd := exec.Command(parleyBin, append([]string{"bench"}, append(args, "--server", srv.Base, "--reconnect", "--json")...)...)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			// Kill once messages flow, stay down a moment (redials fail),
			// then start again on the same port and data.
			stored := waitStored(t, srv.Base, 100, exited)
			srv.Kill()
			time.Sleep(400 * time.Millisecond)
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			var err2 error
			select {
			case err2 = <-exited:
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
				t.Fatalf("parley bench did not finish:\n%s", out.String())
			}
			if err2 != nil {
				t.Fatalf("parley bench %v: %v\n%s", args, err2, out.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			var r struct {
				Sent, Acked, Expected int64
				Delivered, Lost       int64
				Duplicates, Reordered int64
				Reconnects            int64
				Resent, Redelivered   int64
				ServerCloses          int64 `json:"server_closes"`
				ReconnectMs           *struct {
					P50, P99, Max float64
				} `json:"reconnect_ms"`
			}
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
				t.Fatalf("last line is not the JSON result: %v\n%s", err, out.String())
			}
			conns := int64(10)
			if args[0] == "group" {
				conns = 12
			}
			switch {
			case r.Lost != 0 || r.Duplicates != 0 || r.Reordered != 0:
				t.Fatalf("lost %d, duplicates %d, reordered %d\n%s", r.Lost, r.Duplicates, r.Reordered, out.String())
			case r.Acked != r.Sent || r.Delivered != r.Expected || r.Expected == 0:
				t.Fatalf("sent %d acked %d; expected %d delivered %d\n%s", r.Sent, r.Acked, r.Expected, r.Delivered, out.String())
			case r.Reconnects < conns || r.ServerCloses < conns || r.ReconnectMs == nil || r.ReconnectMs.Max <= 0:
				t.Fatalf("every connection must have dropped and reconnected: %+v\n%s", r, out.String())
			case r.Acked <= stored:
				t.Fatalf("nothing acked after the restart (%d acked, %d stored before the kill)\n%s", r.Acked, stored, out.String())
			}
			if !strings.Contains(out.String(), "reconnects ") {
				t.Fatalf("the text output has no reconnect line:\n%s", out.String())
			}
			t.Logf("sent %d, reconnects %d (close to ready ms p50 %.0f max %.0f), resent %d, redelivered %d",
				r.Sent, r.Reconnects, r.ReconnectMs.P50, r.ReconnectMs.Max, r.Resent, r.Redelivered)
		})
	}
}

// waitStored polls the server's parley_messages_stored_total until it
// reaches n and returns it; it fails the test if the bench exits first or
// a minute passes.
func waitStored(t *testing.T, base string, n int64, exited <-chan error) int64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("parley bench exited before the restart: %v", err)
		default:
		}
		if resp, err := http.Get(base + "/metrics"); err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for line := range strings.SplitSeq(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "parley_messages_stored_total "); ok {
					if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && int64(f) >= n {
						return int64(f)
					}
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the server did not store %d messages within a minute", n)
	return 0
}

// TestBenchExternalMetrics: against a server the bench did not start,
// its CPU and push queue come from the metrics URL given (here the admin
// listener's /metrics, which needs no token), and the run still waits for
// the push queue to drain.
func TestBenchExternalMetrics(t *testing.T) {
	t.Parallel()
	admin, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := spawn.Start(parleydBin, t.TempDir(), []string{"PARLEY_LIMITS=off"}, "--admin-listen", admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(10 * time.Second) })
	out, err := exec.Command(parleyBin, "bench", "direct", "--server", srv.Base, "--metrics", "http://"+admin+"/metrics",
		"--conns", "10", "--duration", "1s", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("parley bench: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var r struct {
		Acked         int64
		CPU           float64 `json:"server_cpu_seconds"`
		CPUPerMsg     float64 `json:"server_cpu_us_per_msg"`
		CPUSource     string  `json:"server_cpu_source"`
		PushQueuePeak *int64  `json:"push_queue_peak"`
		PushQueueLeft *int64  `json:"push_queue_left"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("last line is not the JSON result: %v\n%s", err, out)
	}
	if r.CPUSource != "metrics" || r.CPU <= 0 || r.CPUPerMsg <= 0 || r.PushQueuePeak == nil || r.PushQueueLeft == nil || *r.PushQueueLeft != 0 {
		t.Fatalf("result %+v\n%s", r, out)
	}
	if !strings.Contains(string(out), "server's push queue: peak") || !strings.Contains(string(out), "µs per message") {
		t.Fatalf("the text output lacks the push queue or the CPU per message:\n%s", out)
	}
	// A metrics URL off this machine is refused like a server would be.
	out, err = exec.Command(parleyBin, "bench", "direct", "--server", srv.Base, "--metrics", "http://10.1.2.3:6060/metrics").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loopback addresses only") {
		t.Fatalf("--metrics off loopback: %v\n%s", err, out)
	}
}

// TestBenchCompare runs `parley bench compare` for one round on the same
// build, named once as a directory and once as the binary: a baseline
// run, then a candidate run, their figures, the medians and ratios, and
// the JSON. Flags compare sets itself, unknown flags and a missing build
// are refused before anything runs.
func TestBenchCompare(t *testing.T) {
	t.Parallel()
	dir := filepath.Dir(parleydBin) // holds parleyd
	out, err := exec.Command(parleyBin, "bench", "compare", "--baseline", dir, "--candidate", parleydBin, "--rounds", "1", "--pause", "100ms", "--json",
		"direct", "--conns", "10", "--duration", "1s").CombinedOutput()
	if err != nil {
		t.Fatalf("parley bench compare: %v\n%s", err, out)
	}
	text := string(out)
	b, c, m := strings.Index(text, "round 1 baseline "), strings.Index(text, "round 1 candidate "), strings.Index(text, "medians over 1 baseline and 1 candidate runs")
	if b < 0 || c < b || m < c || !strings.Contains(text, "server CPU µs per message") || !strings.Contains(text, "candidate/baseline") {
		t.Fatalf("output:\n%s", text)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	var cmp struct {
		Scenario string
		Args     []string
		Rounds   int
		OK       bool
		Baseline struct {
			Parleyd string
			OKRuns  int                `json:"ok_runs"`
			Median  map[string]float64 `json:"median"`
		}
		Candidate struct {
			Parleyd string
			OKRuns  int `json:"ok_runs"`
		}
		Ratio map[string]float64
		Runs  []struct {
			Round  int
			Side   string
			Result *struct {
				Lost      int64
				Delivered int64
				CPUPerMsg float64 `json:"server_cpu_us_per_msg"`
			}
		}
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &cmp); err != nil {
		t.Fatalf("last line is not the JSON comparison: %v\n%s", err, text)
	}
	if !cmp.OK || cmp.Scenario != "direct" || cmp.Rounds != 1 || len(cmp.Runs) != 2 || cmp.Runs[0].Side != "baseline" || cmp.Runs[1].Side != "candidate" ||
		cmp.Baseline.OKRuns != 1 || cmp.Candidate.OKRuns != 1 || cmp.Baseline.Parleyd != parleydBin || cmp.Candidate.Parleyd != parleydBin ||
		strings.Join(cmp.Args, " ") != "--conns 10 --duration 1s" {
		t.Fatalf("comparison: %+v\n%s", cmp, text)
	}
	for _, k := range []string{"msgs_per_sec", "deliveries_per_sec", "server_cpu_us_per_msg", "server_cpu_us_per_delivery", "e2e_p50_ms", "e2e_p99_ms"} {
		if _, ok := cmp.Ratio[k]; !ok || cmp.Baseline.Median[k] <= 0 {
			t.Fatalf("no median or ratio of %s: %+v", k, cmp)
		}
	}
	for _, r := range cmp.Runs {
		if r.Result == nil || r.Result.Lost != 0 || r.Result.Delivered == 0 || r.Result.CPUPerMsg <= 0 {
			t.Fatalf("run %+v", r)
		}
	}
	if got := cmp.Ratio["server_cpu_us_per_msg"]; got != cmp.Runs[1].Result.CPUPerMsg/cmp.Runs[0].Result.CPUPerMsg {
		t.Fatalf("ratio %v from one run each of %v and %v", got, cmp.Runs[1].Result.CPUPerMsg, cmp.Runs[0].Result.CPUPerMsg)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--baseline", dir, "--candidate", dir, "direct", "--spawn"}, "sets --spawn itself"},
		{[]string{"--baseline", dir, "--candidate", dir, "direct", "--json"}, "sets --json itself"},
		{[]string{"--baseline", dir, "--candidate", dir, "direct", "--no-such-flag"}, "no-such-flag"},
		{[]string{"--baseline", dir, "--candidate", t.TempDir(), "direct"}, "no parleyd in the directory"},
		{[]string{"--baseline", dir, "direct"}, "--candidate is required"},
		{[]string{"--baseline", dir, "--candidate", dir, "storm"}, "direct or group"},
	} {
		out, err := exec.Command(parleyBin, append([]string{"bench", "compare"}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) || strings.Contains(string(out), "round 1") {
			t.Errorf("parley bench compare %v: %v, want %q before any run\n%s", c.args, err, c.want, out)
		}
	}
}
