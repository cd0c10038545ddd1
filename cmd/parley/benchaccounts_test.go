package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleychat/parley/internal/benchaccounts"
	"github.com/parleychat/parley/internal/spawn"
)

// TestBenchAccounts: a bench run takes its users from a file made by
// parleyd admin bench-accounts, refreshes their sessions and writes the
// rotated tokens back, so that a second run with the same file works
// (presenting the first run's used tokens would revoke the devices).
func TestBenchAccounts(t *testing.T) {
	data := t.TempDir()
	file := filepath.Join(t.TempDir(), "accounts.json")
	p, err := spawn.Start(parleydBin, data, []string{"PARLEY_LIMITS=off"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(5e9)
	// Made while the server runs, as an operator would.
	if out, err := exec.Command(parleydBin, "admin", "bench-accounts", "--data", data, "--count", "10", "--prefix", "acc", file).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	tokens := func() []string {
		f, err := benchaccounts.Read(file)
		if err != nil {
			t.Fatal(err)
		}
		var ts []string
		for _, a := range f.Accounts {
			ts = append(ts, a.RefreshToken)
		}
		return ts
	}
	first := tokens()
	for run := range 2 {
		out, err := exec.Command(parleyBin, "bench", "group", "--server", p.Base, "--accounts", file,
			"--conns", "8", "--group-size", "4", "--duration", "1s", "--json").CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var r struct {
			Conns, Sent, Delivered, Lost int64
			Expected                     int64
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil || r.Conns != 8 || r.Sent == 0 || r.Delivered != r.Expected || r.Lost != 0 {
			t.Fatalf("run %d: %+v, %v\n%s", run, r, err, out)
		}
		now := tokens()
		for i := range now {
			if (i < 8) == (now[i] == first[i]) {
				t.Fatalf("run %d: account %d's token changed %v; want the 8 used ones rotated and the rest kept", run, i, now[i] != first[i])
			}
		}
		first = now
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("after the runs: %v, %v; want mode 0600", st, err)
	}
	// More users than the file holds: a clear error, and nothing spent.
	out, err := exec.Command(parleyBin, "bench", "group", "--server", p.Base, "--accounts", file, "--conns", "20", "--group-size", "4", "--duration", "1s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "has 10 accounts and this run needs 20") {
		t.Fatalf("20 users from a file of 10: %v\n%s", err, out)
	}
	// Another store's file: refused by the server, named in the error.
	other := filepath.Join(t.TempDir(), "other.json")
	if out, err := exec.Command(parleydBin, "admin", "bench-accounts", "--data", t.TempDir(), "--count", "2", other).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err = exec.Command(parleyBin, "bench", "direct", "--server", p.Base, "--accounts", other, "--conns", "2", "--duration", "1s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "made for this server's store") {
		t.Fatalf("accounts of another store: %v\n%s", err, out)
	}
}

// TestBenchSeedAccounts: --spawn --seed-accounts makes the users in the
// spawned server's store; the flags that cannot go together are refused.
func TestBenchSeedAccounts(t *testing.T) {
	out, err := exec.Command(parleyBin, "bench", "group", "--spawn", "--seed-accounts", "--conns", "10", "--group-size", "5", "--duration", "1s", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "created 10 accounts") {
		t.Fatalf("no accounts seeded:\n%s", out)
	}
	for _, args := range [][]string{
		{"direct", "--seed-accounts", "--server", "http://127.0.0.1:1"},
		{"direct", "--spawn", "--accounts", "x.json"},
	} {
		if out, err := exec.Command(parleyBin, append([]string{"bench"}, args...)...).CombinedOutput(); err == nil {
			t.Fatalf("%v accepted:\n%s", args, out)
		}
	}
	if out, err := exec.Command(parleyBin, "bench", "compare", "--baseline", parleydBin, "--candidate", parleydBin, "direct", "--accounts", "x.json").CombinedOutput(); err == nil || !strings.Contains(string(out), "--seed-accounts") {
		t.Fatalf("compare with --accounts: %v\n%s", err, out)
	}
}
