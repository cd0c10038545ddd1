package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestBenchSmoke runs every scenario of parley bench for a few seconds on
// a spawned parleyd (found beside the binary) and checks what it checks:
// nothing lost, duplicated or reordered. It asserts no speed.
func TestBenchSmoke(t *testing.T) {
	for _, args := range [][]string{
		{"direct", "--conns", "10", "--duration", "1s"},
		{"direct", "--conns", "10", "--duration", "1s", "--rate", "200"},
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
			}
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
				t.Fatalf("last line is not the JSON result: %v\n%s", err, out)
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
}
