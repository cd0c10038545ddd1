package main

import (
	"flag"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestPushSecuritySettings: the push abuse settings load, their defaults
// hold, and bad values are refused at startup.
func TestPushSecuritySettings(t *testing.T) {
	env := map[string]string{}
	load := func(args ...string) (*Config, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c, _, err := loadConfig(fs, args, func(k string) string { return env[k] })
		return c, err
	}
	c, err := load()
	if err != nil {
		t.Fatal(err)
	}
	p := c.Push
	if p.MaxRegistrations != 20 || p.Concurrency != 64 || p.HostConcurrency != 4 || p.UserConcurrency != 4 ||
		p.UnknownTimeout != 3*time.Second || p.EndpointBackoff != 30*time.Second || p.EndpointDropAfter != 10 ||
		p.EndpointDropSpan != 24*time.Hour || p.VAPIDSubject != "" || len(p.APNsTopics) != 0 {
		t.Fatalf("defaults: %+v", p)
	}
	if c.OutboundAllow.AddrAllowed(netip.MustParseAddr("127.0.0.1")) == nil {
		t.Fatal("loopback allowed by default")
	}
	c, err = load("--outbound-allow", "127.0.0.1, push.corp.example:8443", "--apns-topics", "com.a.app, com.a.app.beta",
		"--vapid-subject", "https://example.com/contact")
	if err != nil {
		t.Fatal(err)
	}
	if c.OutboundAllow.AddrAllowed(netip.MustParseAddr("127.0.0.1")) != nil || len(c.Push.APNsTopics) != 2 || c.Push.APNsTopics[1] != "com.a.app.beta" {
		t.Fatalf("lists: %v %v", c.OutboundAllow, c.Push.APNsTopics)
	}
	for _, args := range [][]string{
		{"--outbound-allow", "http://x/"},
		{"--outbound-allow", "10.0.0.0/33"},
		{"--vapid-subject", "push@example.com"},
		{"--vapid-subject", "mailto:"},
		{"--vapid-subject", "http://example.com"},
		{"--push-user-concurrency", "0"},
		{"--push-max-registrations", "-1"},
	} {
		if _, err := load(args...); err == nil {
			t.Errorf("%v was taken", args)
		}
	}
	// The old switch is refused with a pointer to the new one.
	env["PARLEY_PUSH_ALLOW_HTTP"] = "1"
	if _, err := load(); err == nil || !strings.Contains(err.Error(), "--outbound-allow") {
		t.Fatalf("PARLEY_PUSH_ALLOW_HTTP: %v", err)
	}
}
