package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "parley.json")
	os.WriteFile(file, []byte(`{"listen":"127.0.0.1:1","data":"/from-file","max_body_bytes":1000,"limits":false,"access_token_ttl":"5m"}`), 0o600)
	env := map[string]string{"PARLEY_CONFIG": file, "PARLEY_DATA": "/from-env", "PARLEY_ACCESS_TOKEN_TTL": "7m"}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, _, err := loadConfig(fs, []string{"--access-token-ttl", "9m"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:1" || c.Data != "/from-env" || c.AccessTTL != 9*time.Minute || c.MaxBodyBytes != 1000 || c.Limits {
		t.Fatalf("config = %+v", c)
	}
	// Defaults.
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	c, _, err = loadConfig(fs, nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.Data != "./parley-data" || c.AccessTTL != 15*time.Minute || !c.Limits || c.MaxBodyBytes != 65536 {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"listne":"x"}`), 0o600)
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"unknown file key": {env: map[string]string{"PARLEY_CONFIG": bad}, want: "unknown settings listne"},
		"bad duration":     {args: []string{"--access-token-ttl", "soon"}, want: "access-token-ttl"},
		"bad env":          {env: map[string]string{"PARLEY_LIMITS": "maybe"}, want: "PARLEY_LIMITS"},
		"half tls":         {args: []string{"--tls-cert", "c.pem"}, want: "together"},
		"long commit wait": {args: []string{"--commit-wait", "1s"}, want: "0 to 50ms"},
		"negative wait":    {env: map[string]string{"PARLEY_COMMIT_WAIT": "-1ms"}, want: "PARLEY_COMMIT_WAIT"},
	} {
		t.Run(name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			_, _, err := loadConfig(fs, tc.args, func(k string) string { return tc.env[k] })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestEverySettingDocumented keeps docs/operations.md true: each setting's
// flag, env var and default appear there.
func TestEverySettingDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings() {
		for _, want := range []string{"`--" + s.key + "`", "`" + s.env + "`"} {
			if !strings.Contains(string(doc), want) {
				t.Errorf("docs/operations.md does not mention %s", want)
			}
		}
	}
}

// TestDeployConfigsLoad keeps the example cluster in deploy/ loadable: the
// config file refuses unknown keys, so a renamed setting breaks it. Each
// node reaches NATS with the nodes' nkey over mutual TLS, as
// deploy/nats/nats-server.conf requires (internal/clustertest
// TestDeployNATSConfigValid checks that file with nats-server -t).
func TestDeployConfigsLoad(t *testing.T) {
	files, _ := filepath.Glob("../../deploy/cluster/node*.json")
	if len(files) != 3 {
		t.Fatalf("found %d example node configs, want 3", len(files))
	}
	workers := 0
	for _, f := range files {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c, _, err := loadConfig(fs, []string{"--config", f}, func(string) string { return "" })
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if c.Store == "" || c.NATSURL == "" || !c.Roles.Gateway {
			t.Errorf("%s: store %q, nats %q, roles %v: want a cluster gateway", f, c.Store, c.NATSURL, c.Roles)
		}
		// The bus as deploy/nats/nats-server.conf expects its clients:
		// the nodes' nkey, over TLS with a client certificate.
		if n := c.NATS; n.NKeySeedFile == "" || !n.TLS || n.TLSCA == "" || n.TLSCert == "" || n.TLSKey == "" {
			t.Errorf("%s: NATS settings %+v: want nats_nkey, nats_tls, nats_tls_ca, nats_tls_cert and nats_tls_key", f, n)
		}
		if !strings.HasPrefix(c.NATSURL, "tls://") {
			t.Errorf("%s: nats_url %q: want tls:// URLs", f, c.NATSURL)
		}
		if c.Roles.Worker {
			workers++
		}
	}
	if workers == 0 {
		t.Error("no example node runs the worker role")
	}
}

// TestLicencesListed: every direct dependency in go.mod has a row in the
// README's licence table, so a new one cannot arrive without its licence
// being looked at.
func TestLicencesListed(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "## Licence")
	if !ok {
		t.Fatal("README has no Licence section")
	}
	for _, line := range strings.Split(string(mod), "\n") {
		fields := strings.Fields(strings.TrimSpace(line))
		if len(fields) != 2 || !strings.Contains(fields[0], ".") || strings.Contains(line, "// indirect") || fields[0] == "go" {
			continue
		}
		if !strings.Contains(table, "`"+fields[0]+"`") {
			t.Errorf("go.mod requires %s, which the README's licence table does not list", fields[0])
		}
	}
	if _, err := os.Stat("../../LICENSE"); err != nil {
		t.Error(err)
	}
}
