package main

import (
	"flag"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/parleychat/parley/internal/e2e"
)

// webGet fetches url with an Accept header and returns the response (body
// read and closed).
func webGet(t *testing.T, url, accept string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(body)
}

// TestWebClientServed: the real binary serves the embedded browser client
// at / with its security and caching headers, deep links fall back to the
// page only for navigations, the API's own 404s stay JSON, and --web off
// leaves / a 404.
func TestWebClientServed(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), nil)
	base := p.Base

	res, page := webGet(t, base+"/", "text/html,application/xhtml+xml")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if !strings.Contains(page, `<div id="app">`) {
		t.Fatalf("GET / is not the client's page:\n%s", page)
	}
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "connect-src 'self'", "img-src 'self' data:", "frame-ancestors 'none'", "script-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline or eval: %q", csp)
	}
	for h, want := range map[string]string{"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
		if got := res.Header.Get(h); got != want {
			t.Errorf("GET / %s = %q, want %q", h, got, want)
		}
	}
	if strings.Contains(page, "<script>") || regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`).MatchString(page) {
		t.Errorf("the page has an inline script")
	}

	// The hashed script the page loads is cached for good.
	m := regexp.MustCompile(`src="(/assets/app-[0-9a-f]+\.js)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no hashed script in the page:\n%s", page)
	}
	res, js := webGet(t, base+m[1], "*/*")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") || len(js) < 1000 {
		t.Fatalf("GET %s: %d %s (%d bytes)", m[1], res.StatusCode, res.Header.Get("Content-Type"), len(js))
	}
	if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") || !strings.Contains(cc, "max-age=31536000") {
		t.Errorf("hashed asset Cache-Control = %q", cc)
	}

	res, _ = webGet(t, base+"/sw.js", "*/*")
	if res.StatusCode != 200 || res.Header.Get("Service-Worker-Allowed") != "/" || res.Header.Get("Cache-Control") != "no-cache" ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("GET /sw.js: %d, Service-Worker-Allowed %q, Cache-Control %q, Content-Type %q", res.StatusCode,
			res.Header.Get("Service-Worker-Allowed"), res.Header.Get("Cache-Control"), res.Header.Get("Content-Type"))
	}

	// A deep link is a navigation: the page. A missing file is not.
	if res, body := webGet(t, base+"/c/some-conversation", "text/html"); res.StatusCode != 200 || body != page {
		t.Errorf("navigation to a deep link: %d", res.StatusCode)
	}
	if res, _ := webGet(t, base+"/missing.js", "*/*"); res.StatusCode != 404 {
		t.Errorf("GET /missing.js: %d, want 404", res.StatusCode)
	}
	// The API's namespace is not the client's: JSON 404 even for a navigation.
	if res, body := webGet(t, base+"/v1/nothing-here", "text/html"); res.StatusCode != 404 || !strings.Contains(body, `"not_found"`) {
		t.Errorf("GET /v1/nothing-here: %d %s", res.StatusCode, body)
	}
	if res, _ := webGet(t, base+"/healthz", ""); res.StatusCode != 200 {
		t.Errorf("GET /healthz: %d", res.StatusCode)
	}

	off := e2e.StartParleyd(t, t.TempDir(), nil, "--web", "off")
	if res, body := webGet(t, off.Base+"/", "text/html"); res.StatusCode != 404 || strings.Contains(body, `id="app"`) {
		t.Errorf("--web off: GET / = %d", res.StatusCode)
	}
	if res, _ := webGet(t, off.Base+"/sw.js", "*/*"); res.StatusCode != 404 {
		t.Errorf("--web off: GET /sw.js = %d", res.StatusCode)
	}
	if res, _ := webGet(t, off.Base+"/healthz", ""); res.StatusCode != 200 {
		t.Errorf("--web off: GET /healthz = %d", res.StatusCode)
	}
}

// TestWebSetting: --web is on by default and parses on/off from the flag,
// the environment and the config file like the other switches.
func TestWebSetting(t *testing.T) {
	load := func(args []string, env map[string]string) (*Config, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c, _, err := loadConfig(fs, args, func(k string) string { return env[k] })
		return c, err
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"default", nil, nil, true},
		{"flag off", []string{"--web", "off"}, nil, false},
		{"env off", nil, map[string]string{"PARLEY_WEB": "off"}, false},
		{"flag over env", []string{"--web=on"}, map[string]string{"PARLEY_WEB": "false"}, true},
	} {
		c, err := load(tc.args, tc.env)
		if err != nil || c.Web != tc.want {
			t.Errorf("%s: Web = %v, err %v; want %v", tc.name, c != nil && c.Web, err, tc.want)
		}
	}
	if _, err := load([]string{"--web", "maybe"}, nil); err == nil {
		t.Error("--web maybe was accepted")
	}
}
