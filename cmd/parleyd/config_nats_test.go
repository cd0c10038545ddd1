package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// TestNATSAuthConfig: the NATS credentials and TLS settings load from
// flags, the environment and the config file; the secrets come from the
// environment only; contradictions and settings without an external NATS
// are refused with a message naming the settings.
func TestNATSAuthConfig(t *testing.T) {
	env := map[string]string{"PARLEY_NATS_URL": "tls://n1:4222", "PARLEY_NATS_TOKEN": "s3cret", "PARLEY_NATS_TLS_CA": "/etc/parley/ca.pem"}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, _, err := loadConfig(fs, []string{"--nats-tls", "on"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.Token != "s3cret" || !c.NATS.TLS || c.NATS.TLSCA != "/etc/parley/ca.pem" {
		t.Fatalf("NATS = %+v", c.NATS)
	}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"two kinds":         {args: []string{"--nats-url", "nats://n", "--nats-creds", "a.creds", "--nats-nkey", "seed"}, want: "one kind of NATS credentials"},
		"token twice":       {args: []string{"--nats-url", "nats://n", "--nats-token-file", "t"}, env: map[string]string{"PARLEY_NATS_TOKEN": "x"}, want: "NATS token once"},
		"password no user":  {args: []string{"--nats-url", "nats://n"}, env: map[string]string{"PARLEY_NATS_PASSWORD": "x"}, want: "needs nats-user"},
		"half client cert":  {args: []string{"--nats-url", "nats://n", "--nats-tls-cert", "c.pem"}, want: "nats-tls-cert and nats-tls-key"},
		"embedded + creds":  {args: []string{"--nats-nkey", "seed"}, want: "give nats-url too"},
		"embedded + token":  {env: map[string]string{"PARLEY_NATS_TOKEN": "x"}, want: "give nats-url too"},
		"embedded + tls on": {args: []string{"--nats-tls", "on"}, want: "give nats-url too"},
		"bad tls value":     {args: []string{"--nats-tls", "maybe"}, want: "nats-tls"},
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
