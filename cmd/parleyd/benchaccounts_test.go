package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleychat/parley/internal/benchaccounts"
)

// TestAdminBenchAccounts: the command writes the accounts it created to a
// new file of mode 0600, refuses to overwrite one, and refuses a count out
// of range before touching the store.
func TestAdminBenchAccounts(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	file := filepath.Join(t.TempDir(), "accounts.json")
	getenv := func(string) string { return "" }
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"admin", "bench-accounts", "--data", data, "--count", "12", "--prefix", "load", file}, getenv, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("accounts file: %v, %v; want mode 0600", st, err)
	}
	f, err := benchaccounts.Read(file)
	if err != nil {
		t.Fatal(err)
	}
	if f.Prefix != "load" || len(f.Accounts) != 12 || f.Accounts[11].Handle != "load_11" {
		t.Fatalf("file: prefix %q, %d accounts", f.Prefix, len(f.Accounts))
	}
	if !strings.Contains(out.String(), "created 12 accounts load_0 .. load_11") {
		t.Fatalf("output: %s", out.String())
	}
	before, _ := os.ReadFile(file)
	for _, args := range [][]string{
		{"--count", "3", file},                        // the file exists
		{"--count", "0", file + "2"},                  // out of range
		{"--count", "100001", file + "2"},             // out of range
		{"--count", "3", "--prefix", "X", file + "2"}, // not a handle prefix
		{"--count", "3"},                              // no file
	} {
		err := run(ctx, append([]string{"admin", "bench-accounts", "--data", data}, args...), getenv, &out, &errOut)
		if err == nil {
			t.Fatalf("%v: accepted", args)
		}
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
		t.Fatal("a refused run changed the accounts file")
	}
	if _, err := os.Stat(file + "2"); !os.IsNotExist(err) {
		t.Fatalf("a refused run left a file: %v", err)
	}
	// The default prefix is random: two runs do not collide.
	for _, name := range []string{"a.json", "b.json"} {
		if err := run(ctx, []string{"admin", "bench-accounts", "--data", data, "--count", "2", filepath.Join(filepath.Dir(file), name)}, getenv, &out, &errOut); err != nil {
			t.Fatalf("%v\n%s", err, errOut.String())
		}
	}
}
