package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBlocked(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		blocked bool
	}{
		{"169.254.169.254", true}, // cloud metadata
		{"10.0.0.5", true},
		{"172.16.3.4", true},
		{"172.32.0.1", false},
		{"192.168.1.1", true},
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		{"100.128.0.1", false},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"255.255.255.255", true},
		{"240.0.0.1", true},
		{"192.0.0.8", true},
		{"192.0.2.1", true},
		{"198.18.0.1", true},
		{"198.51.100.7", true},
		{"203.0.113.9", true},
		{"192.88.99.1", true},
		{"8.8.8.8", false},
		{"142.250.74.10", false},
		{"::1", true},
		{"::", true},
		{"fe80::1", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fec0::1", true},
		{"ff02::1", true},
		{"2001:db8::1", true},
		{"2001::1", true}, // Teredo
		{"100::1", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:10.0.0.5", true},
		{"::ffff:8.8.8.8", false},
		{"::127.0.0.1", true},             // IPv4-compatible
		{"::ffff:0:127.0.0.1", true},      // IPv4-translated
		{"64:ff9b::7f00:1", true},         // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", true},      // NAT64 of 169.254.169.254
		{"64:ff9b::808:808", false},       // NAT64 of 8.8.8.8
		{"64:ff9b:1::1", true},            // local-use NAT64
		{"2002:7f00:1::1", true},          // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", true},       // 6to4 of 169.254.169.254
		{"2002:808:808::1", false},        // 6to4 of 8.8.8.8
		{"2607:f8b0:4004:c07::5f", false}, // public
		{"fe80::1%eth0", true},
	} {
		a, err := netip.ParseAddr(tc.addr)
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		what, got := Blocked(a)
		if got != tc.blocked {
			t.Errorf("Blocked(%s) = %v (%s), want %v", tc.addr, got, what, tc.blocked)
		}
	}
}

func TestAllowList(t *testing.T) {
	p, err := ParseAllow(" 127.0.0.1, 10.1.0.0/16 ,push.corp.example:8443, localhost,[::1]:9000")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr    string
		allowed bool
	}{
		{"127.0.0.1", true}, {"127.0.0.2", false}, {"10.1.200.3", true}, {"10.2.0.1", false},
		{"::ffff:127.0.0.1", true}, {"8.8.8.8", true},
	} {
		if err := p.AddrAllowed(netip.MustParseAddr(tc.addr)); (err == nil) != tc.allowed {
			t.Errorf("AddrAllowed(%s) = %v, want allowed %v", tc.addr, err, tc.allowed)
		}
	}
	if !p.hostAllowed("push.corp.example", "8443") || p.hostAllowed("push.corp.example", "443") ||
		!p.hostAllowed("LOCALHOST.", "1") || !p.hostAllowed("::1", "9000") || p.hostAllowed("::1", "9001") {
		t.Error("host entries")
	}
	for _, bad := range []string{"http://x", "a_b", "host:0", "host:99999", "10.0.0.0/33"} {
		if _, err := ParseAllow(bad); err == nil {
			t.Errorf("ParseAllow(%q) took it", bad)
		}
	}
}

func TestCheckURL(t *testing.T) {
	p, _ := ParseAllow("")
	refused := []string{
		"https://169.254.169.254/latest/meta-data/",
		"https://10.0.0.5:5432/",
		"https://[::1]/push",
		"https://[::ffff:127.0.0.1]/push",
		"https://[::ffff:a9fe:a9fe]/",
		"https://[64:ff9b::7f00:1]/",
		"https://[fe80::1%25eth0]/",
		"https://metadata.google.internal/computeMetadata/v1/",
		"https://0x7f000001/",
		"https://2130706433/",
		"https://127.1/",
		"https://0177.0.0.1/",
		"https://127.000.000.001/",
		"https://0x7f.0x0.0x0.0x1/",
		"https://localhost/",
		"https://localhost./",
		"https://LOCALHOST:8443/",
		"https://app.localhost/",
		"https://printer.local/",
		"https://db.internal/",
		"https://100.64.0.1/",
		"https://[fe80::1]/",
		"https://0.0.0.0/",
		"https://[::]/",
		"https://255.255.255.255/",
		"https://224.0.0.1/",
		"http://push.example.com/",
		"ftp://push.example.com/",
		"https://user:pw@push.example.com/",
		"https://push.example.com:0/",
		"https://push.example.com:70000/",
		"https:push.example.com",
		"//push.example.com/",
		"https://under_score.example.com/",
		"https://[127.0.0.1]/",
		"https://intranet/",
		"https://host.home.arpa/",
	}
	for _, raw := range refused {
		u, err := url.Parse(raw)
		if err != nil {
			continue // refused earlier, as it should be
		}
		if err := p.CheckURL(u); err == nil {
			t.Errorf("CheckURL(%s) took it", raw)
		} else {
			t.Logf("%s: %v", raw, err)
		}
	}
	for _, raw := range []string{
		"https://fcm.googleapis.com/fcm/send/abc",
		"https://updates.push.services.mozilla.com/wpush/v2/abc",
		"https://web.push.apple.com/QGq",
		"https://wns2-by3p.notify.windows.com/w/?token=x",
		"https://8.8.8.8/",
		"https://[2607:f8b0:4004:c07::5f]:8443/x",
		"https://push.example.com./x",
	} {
		if err := p.CheckURL(mustURL(t, raw)); err != nil {
			t.Errorf("CheckURL(%s): %v", raw, err)
		}
	}
	// The allow list: http and blocked addresses only for hosts on it.
	a, _ := ParseAllow("127.0.0.1,localhost:8080")
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:9999/x":  true,
		"https://127.0.0.1/x":      true,
		"http://localhost:8080/x":  true,
		"https://localhost:8080/x": true,
		"http://localhost:8081/x":  false,
		"https://127.0.0.2/x":      false,
		"http://push.example.com/": false,
	} {
		if err := a.CheckURL(mustURL(t, raw)); (err == nil) != ok {
			t.Errorf("with an allow list, CheckURL(%s) = %v, want ok %v", raw, err, ok)
		}
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// FuzzCheckURL: no URL makes CheckURL panic, and one it takes never has a
// literal host address in a blocked range, nor a numeric host form.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://push.example.com/x", "https://[::ffff:127.0.0.1]/", "https://0x7f000001/",
		"https://127.1/", "https://localhost/", "https://8.8.8.8:443/", "http://127.0.0.1:80/"} {
		f.Add(s)
	}
	p, _ := ParseAllow("")
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		if p.CheckURL(u) != nil {
			return
		}
		if u.Scheme != "https" {
			t.Fatalf("took scheme %q", u.Scheme)
		}
		host := u.Hostname()
		if a, err := netip.ParseAddr(host); err == nil {
			if what, blocked := Blocked(a); blocked {
				t.Fatalf("took %s (%s)", raw, what)
			}
			return
		}
		labels := strings.Split(strings.TrimSuffix(strings.ToLower(host), "."), ".")
		if len(labels) < 2 || numericLabel(labels[len(labels)-1]) || labels[len(labels)-1] == "localhost" {
			t.Fatalf("took host %q", host)
		}
	})
}

// fixedLookup resolves every name to addrs.
func fixedLookup(addrs ...string) func(context.Context, string) ([]netip.Addr, error) {
	return func(context.Context, string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
}

// countingServer is a plain-http server on 127.0.0.1 that counts what
// reaches it.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func post(t *testing.T, c *http.Client, raw string) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "POST", raw, strings.NewReader("x"))
	return c.Do(req)
}

// TestDialRefusesBlocked: a literal blocked address, and names that
// resolve to one (metadata.google.internal to 169.254.169.254; a name that
// rebinds to 127.0.0.1 after it was checked), are refused at connect time:
// the local server sees nothing.
func TestDialRefusesBlocked(t *testing.T) {
	srv, hits := countingServer(t, nil)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	c := NewClient(ClientConfig{Lookup: fixedLookup("127.0.0.1")})
	for _, raw := range []string{
		srv.URL + "/literal",
		"http://[::ffff:127.0.0.1]:" + port + "/mapped",
		"http://rebind.example.com:" + port + "/rebound",
	} {
		_, err := post(t, c, raw)
		if be, ok := IsBlocked(err); !ok {
			t.Fatalf("%s: %v, want a BlockedError", raw, err)
		} else {
			t.Logf("%s: %v", raw, be)
		}
	}
	meta := NewClient(ClientConfig{Lookup: fixedLookup("169.254.169.254")})
	if _, err := post(t, meta, "http://metadata.google.internal/computeMetadata/v1/"); !isBlocked(err) {
		t.Fatalf("metadata.google.internal: %v", err)
	}
	// Every address a name resolves to is checked: a public one first,
	// then the blocked one (unreachable here, so the dial moves on).
	mixed := NewClient(ClientConfig{Lookup: fixedLookup("192.0.2.1", "127.0.0.1")})
	if _, err := post(t, mixed, "http://mixed.example.com:"+port+"/"); !isBlocked(err) {
		t.Fatalf("mixed: %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the local server got %d requests", n)
	}
	// On the allow list, the same requests go through.
	p, _ := ParseAllow("127.0.0.1")
	ok := NewClient(ClientConfig{Policy: p, Lookup: fixedLookup("127.0.0.1")})
	for _, raw := range []string{srv.URL + "/literal", "http://rebind.example.com:" + port + "/rebound"} {
		resp, err := post(t, ok, raw)
		if err != nil {
			t.Fatalf("%s with 127.0.0.1 allowed: %v", raw, err)
		}
		resp.Body.Close()
	}
	hp, _ := ParseAllow("allowed.example.com")
	byHost := NewClient(ClientConfig{Policy: hp, Lookup: fixedLookup("127.0.0.1")})
	if _, err := post(t, byHost, "http://other.example.com:"+port+"/"); !isBlocked(err) {
		t.Fatalf("a host not on the list: %v", err)
	}
	if hits.Load() != 2 {
		t.Fatalf("hits %d, want 2", hits.Load())
	}
}

func isBlocked(err error) bool { _, ok := IsBlocked(err); return ok }

// TestNoRedirectNoProxyCappedBody: a 302 to a local plain-http service is
// the answer, not followed (the service sees nothing, no GET is made); the
// environment's proxy is not used; a body is cut at the cap.
func TestNoRedirectNoProxyCappedBody(t *testing.T) {
	target, targetHits := countingServer(t, nil)
	var methods []string
	redirector, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		methods = append(methods, r.Method)
		if r.URL.Path == "/big" {
			io.WriteString(w, strings.Repeat("b", 10000))
			return
		}
		http.Redirect(w, r, target.URL+"/secret", http.StatusFound)
	})
	proxy, proxyHits := countingServer(t, nil)
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	p, _ := ParseAllow("127.0.0.1")
	c := NewClient(ClientConfig{Policy: p, MaxResponseBytes: 100})
	// Go never proxies loopback, so the proxy counter below cannot see
	// one: the transport itself must have no proxy function.
	if tr, ok := c.Transport.(cappedTransport); !ok || tr.base.Proxy != nil {
		t.Fatalf("transport %T uses a proxy", c.Transport)
	}
	resp, err := post(t, c, redirector.URL+"/push")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want the 302 itself", resp.StatusCode)
	}
	resp, err = post(t, c, redirector.URL+"/big")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(body) != 100 {
		t.Fatalf("read %d bytes, want the cap of 100", len(body))
	}
	if targetHits.Load() != 0 || proxyHits.Load() != 0 || fmt.Sprint(methods) != "[POST POST]" {
		t.Fatalf("target %d, proxy %d, redirector saw %v", targetHits.Load(), proxyHits.Load(), methods)
	}
}

func TestBlockedErrorUnwraps(t *testing.T) {
	d := &dialer{}
	err := d.control("tcp4", "10.0.0.5:5432", nil)
	var be *BlockedError
	if !errors.As(err, &be) || be.What != "private (RFC 1918)" {
		t.Fatalf("control: %v", err)
	}
	if err := d.control("tcp4", "8.8.8.8:443", nil); err != nil {
		t.Fatalf("public: %v", err)
	}
}
