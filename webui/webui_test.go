package webui

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func serve(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	index := h.files["index.html"]

	// The page, compressed for a client that takes gzip, and revalidated by ETag.
	rec := serve(t, h, "GET", "/", map[string]string{"Accept-Encoding": "gzip, br"})
	if rec.Code != 200 || rec.Header().Get("Content-Encoding") != "gzip" || rec.Header().Get("Vary") != "Accept-Encoding" {
		t.Fatalf("GET / with gzip: %d %v", rec.Code, rec.Header())
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(zr)
	if string(body) != string(index.body) {
		t.Fatal("the gzipped page is not the page")
	}
	etag := rec.Header().Get("ETag")
	if rec := serve(t, h, "GET", "/", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": etag}); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", rec.Code)
	}
	plain := serve(t, h, "GET", "/", nil)
	if plain.Header().Get("Content-Encoding") != "" || plain.Body.String() != string(index.body) || plain.Header().Get("ETag") == etag {
		t.Errorf("GET / without gzip: encoding %q, ETag %q (gzip's %q)", plain.Header().Get("Content-Encoding"), plain.Header().Get("ETag"), etag)
	}
	if rec := serve(t, h, "GET", "/", map[string]string{"Accept-Encoding": "gzip;q=0"}); rec.Header().Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 got gzip")
	}

	// Every response carries the policy.
	for _, p := range []string{"/", "/sw.js", "/missing.js", "/icon.svg"} {
		rec := serve(t, h, "GET", p, nil)
		if rec.Header().Get("Content-Security-Policy") != ContentSecurityPolicy || rec.Header().Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v", p, rec.Header())
		}
	}

	// Navigations fall back to the page; other requests for missing files are 404.
	if rec := serve(t, h, "GET", "/c/abc", map[string]string{"Accept": "text/html"}); rec.Code != 200 || rec.Body.String() != string(index.body) {
		t.Errorf("navigation fallback: %d", rec.Code)
	}
	if rec := serve(t, h, "GET", "/assets/app-000000000000.js", map[string]string{"Accept": "*/*"}); rec.Code != 404 {
		t.Errorf("missing asset: %d", rec.Code)
	}
	if rec := serve(t, h, "GET", "/../../etc/passwd", map[string]string{"Accept": "*/*"}); rec.Code != 404 {
		t.Errorf("path outside dist: %d", rec.Code)
	}
	if rec := serve(t, h, "POST", "/", nil); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", rec.Code)
	}
	if rec := serve(t, h, "HEAD", "/sw.js", nil); rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Service-Worker-Allowed") != "/" {
		t.Errorf("HEAD /sw.js: %d, %d bytes", rec.Code, rec.Body.Len())
	}

	// Hashed assets are immutable; the rest revalidates.
	for name, f := range h.files {
		want := "no-cache"
		if strings.HasPrefix(name, "assets/") {
			want = "public, max-age=31536000, immutable"
		}
		if f.cacheCtl != want {
			t.Errorf("%s: Cache-Control %q, want %q", name, f.cacheCtl, want)
		}
	}
}
