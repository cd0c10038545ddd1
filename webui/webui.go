// Package webui serves Parley's browser client: the files that
// clients/web/scripts/build.mjs writes into dist/, embedded into the binary
// at compile time (so rebuild the web client before building parleyd).
package webui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// ContentSecurityPolicy is sent with every response of the handler: only
// the page's own scripts, styles, images (and data: images), and
// connections back to the same origin (the REST API and the WebSocket);
// no inline script, no framing. connect-src 'self' covers ws:/wss: to the
// same host in CSP Level 3 browsers; Safari before 15.4 did not match
// WebSocket URLs against 'self'. The page's own ws(s) origin cannot be
// named in a static header (the host is the request's), so such browsers
// would need the header built per request; not done.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; worker-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// types names the content type of each extension the build writes; a file
// of another extension is not served.
var types = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".webmanifest": "application/manifest+json",
	".json":        "application/json",
	".txt":         "text/plain; charset=utf-8",
}

// file is one embedded file with what serving it needs, computed once.
type file struct {
	name     string
	body     []byte
	gzipped  []byte // nil when compression does not pay
	ctype    string
	etag     string
	cacheCtl string
}

// Handler serves the embedded client. It is safe for concurrent use.
//
//   - /assets/* hold content-hashed names: cached for a year, immutable.
//   - index.html (also for /) and everything else: Cache-Control no-cache
//     with an ETag, so a new build is picked up on the next load.
//   - /sw.js also carries Service-Worker-Allowed: / (the worker controls
//     the whole origin).
//   - An unknown path answers with index.html only to a navigation (GET or
//     HEAD whose Accept includes text/html: a deep link into the app);
//     anything else is 404.
//   - Only GET and HEAD are served.
type Handler struct {
	files map[string]*file // by path without the leading slash
}

var _ http.Handler = (*Handler)(nil)

// New reads the embedded files. It fails only when the binary was built
// without a dist/index.html.
func New() (*Handler, error) {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, err
	}
	h := &Handler{files: map[string]*file{}}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := types[path.Ext(p)]
		if !ok {
			return nil
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		f := &file{name: p, body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, cacheCtl: "no-cache"}
		if strings.HasPrefix(p, "assets/") {
			f.cacheCtl = "public, max-age=31536000, immutable"
		}
		if ctype != "image/png" && len(body) > 512 {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			zw.Write(body)
			zw.Close()
			if buf.Len() < len(body) {
				f.gzipped = buf.Bytes()
			}
		}
		h.files[p] = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	if h.files["index.html"] == nil {
		return nil, fs.ErrNotExist
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	f := h.files[name]
	if f == nil {
		if !strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		f = h.files["index.html"]
	}
	if f.name == "sw.js" {
		hdr.Set("Service-Worker-Allowed", "/")
	}
	hdr.Set("Content-Type", f.ctype)
	hdr.Set("Cache-Control", f.cacheCtl)
	body, etag := f.body, f.etag
	if f.gzipped != nil {
		hdr.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			hdr.Set("Content-Encoding", "gzip")
			body, etag = f.gzipped, strings.TrimSuffix(f.etag, `"`)+`-gz"`
		}
	}
	hdr.Set("ETag", etag)
	// ServeContent answers If-None-Match with 304 (the ETag is set) and
	// handles HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip
// (and does not refuse it with q=0).
func acceptsGzip(v string) bool {
	for _, part := range strings.Split(v, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(coding) != "gzip" {
			continue
		}
		q := strings.ReplaceAll(params, " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
