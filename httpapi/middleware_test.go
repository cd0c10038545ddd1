package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1":            "127.0.0.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::99":     "2001:db8:1:2::/64",
		"::ffff:10.0.0.1":      "::ffff:10.0.0.1",
		"garbage":              "garbage",
	} {
		if got := limitKey(in); got != want {
			t.Errorf("limitKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientIP(t *testing.T) {
	h := &Handler{cfg: Config{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.10/32"), netip.MustParsePrefix("10.1.0.0/16"),
	}}}
	for _, c := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"203.0.113.5:4000", nil, "203.0.113.5"},
		// An untrusted peer's header is ignored: anyone can write one.
		{"203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"10.0.0.10:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		// The client wrote the leftmost entry; the proxy appended the peer
		// it saw.
		{"10.0.0.10:4000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		// Two trusted hops, in one header or several.
		{"10.0.0.10:4000", []string{"198.51.100.1, 10.1.2.3"}, "198.51.100.1"},
		{"10.0.0.10:4000", []string{"198.51.100.1", "10.1.2.3"}, "198.51.100.1"},
		{"[::ffff:10.0.0.10]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		// A proxy that sent no header, or a malformed chain: the peer.
		{"10.0.0.10:4000", nil, "10.0.0.10"},
		{"10.0.0.10:4000", []string{"198.51.100.1, not-an-ip"}, "10.0.0.10"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := h.clientIP(r); got != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: client %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
	// Without trusted proxies the header never counts.
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.10:4000"
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	if got := (&Handler{}).clientIP(r); got != "10.0.0.10" {
		t.Errorf("no trusted proxies: %s", got)
	}
}
