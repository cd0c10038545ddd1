package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/blob/fsblob"
	"github.com/parleychat/parley/httpapi"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/service"
	"github.com/parleychat/parley/store/sqlite"
)

// newMediaEnv is newEnv with the media routes on: links under the test's
// clock, blobs in a real fsblob store.
func newMediaEnv(t *testing.T) (*env, *fsblob.Store) {
	t.Helper()
	dir := t.TempDir()
	master := [][]byte{bytes.Repeat([]byte{7}, 32)}
	kr, err := seal.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "parley.db"), sqlite.Options{Sealer: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := fsblob.Open(filepath.Join(dir, "media"), master)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.LoadKeys(filepath.Join(dir, "keys"), auth.KeyOptions{AccessTTL: 15 * time.Minute}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e := &env{t: t, store: st, now: &now}
	clock := func() time.Time { return *e.now }
	links, err := seal.NewMediaLinks(master, seal.MediaLinkOptions{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.svc = service.New(st, keys, auth.NewArgon2id(auth.PasswordParams{Time: 1, MemoryKiB: 1024, Threads: 1}, 4),
		service.Config{MaxBodyBytes: 1024, Now: clock}, log, nil)
	h := httpapi.New(e.svc, httpapi.Config{LimitsOff: true}, httpapi.Options{JWKS: keys.JWKS,
		Media: &httpapi.MediaOptions{Links: links, Blobs: blobs}}, log, nil)
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e, blobs
}

// TestServeMedia: the headers of a signed download, conditional and range
// requests, an encrypted media served opaque, a missing thumbnail, and
// malformed, tampered and expired links refused with no-store. (Expiry
// uses the real clock of the links: see the seal tests for the bucket.)
func TestServeMedia(t *testing.T) {
	e, blobs := newMediaEnv(t)
	alice := e.user("alice")
	conv := e.must(201, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "group", "title": "t"})
	convID := str(conv, "conversation", "id")
	put := func(m *parley.Media, content []byte) {
		info, err := blobs.Put(context.Background(), parley.MediaOriginalKey(m.ID), bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		m.UploaderID, m.UploaderDeviceID, m.ConversationID, m.State = alice.id, alice.device, convID, parley.MediaReady
		m.Size, m.SHA256, m.DeclaredSize, m.CreatedAt = info.Size, info.SHA256, info.Size, time.Now()
		if err := e.store.CreateMedia(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	content := bytes.Repeat([]byte("parley "), 1000)
	doc := &parley.Media{ID: parley.NewID(), ContentType: "text/html", Filename: "page.html"}
	put(doc, content)
	secret := &parley.Media{ID: parley.NewID(), ContentType: "image/png", Encrypted: true}
	put(secret, []byte("ciphertext"))

	link := func(id, variant string) (int, string) {
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/media/"+id+"?variant="+variant, nil)
		req.Header.Set("Authorization", "Bearer "+alice.token)
		res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode, res.Header.Get("Location")
	}
	get := func(path string, hdr ...string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}

	code, loc := link(doc.ID, "original")
	if code != 302 {
		t.Fatalf("link: %d", code)
	}
	res, body := get(loc)
	sum := sha256.Sum256(content)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	for k, want := range map[string]string{"Content-Type": "text/html", "ETag": etag, "X-Content-Type-Options": "nosniff",
		"Content-Security-Policy": "sandbox", "Content-Disposition": `attachment; filename=page.html`, "Accept-Ranges": "bytes"} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if res.StatusCode != 200 || !bytes.Equal(body, content) || !strings.HasPrefix(res.Header.Get("Cache-Control"), "public, max-age=") {
		t.Fatalf("download: %d %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	if res, _ := get(loc, "If-None-Match", etag); res.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", res.StatusCode)
	}
	if res, body := get(loc, "Range", "bytes=7-13"); res.StatusCode != 206 || string(body) != "parley " {
		t.Fatalf("range: %d %q", res.StatusCode, body)
	}
	if res, _ := get(loc, "Range", "bytes=99999-"); res.StatusCode != 416 {
		t.Fatalf("range past the end: %d", res.StatusCode)
	}
	// Encrypted: opaque, as a download.
	_, sloc := link(secret.ID, "original")
	if res, body := get(sloc); res.Header.Get("Content-Type") != "application/octet-stream" || string(body) != "ciphertext" ||
		res.Header.Get("Content-Disposition") != "attachment" {
		t.Fatalf("encrypted: %v %q", res.Header, body)
	}
	// No thumbnail: 404 on both routes.
	if code, _ := link(doc.ID, "thumbnail"); code != 404 {
		t.Fatalf("thumbnail link: %d", code)
	}
	if code, _ := link(doc.ID, "poster"); code != 400 {
		t.Fatalf("bad variant: %d", code)
	}
	if res, _ := get(strings.Replace(loc, "/original?", "/thumbnail?", 1)); res.StatusCode != 403 {
		t.Fatalf("variant swapped in a link: %d", res.StatusCode)
	}
	// Refused links: 403, no-store.
	for name, path := range map[string]string{
		"no query":  "/m/" + doc.ID + "/original",
		"bad sig":   loc[:len(loc)-2] + "AA",
		"other id":  strings.Replace(loc, doc.ID, secret.ID, 1),
		"path junk": "/m/" + doc.ID + "/original/x?" + strings.SplitN(loc, "?", 2)[1],
	} {
		res, _ := get(path)
		if name == "path junk" {
			if res.StatusCode != 404 { // no route
				t.Errorf("%s: %d", name, res.StatusCode)
			}
			continue
		}
		if res.StatusCode != 403 || res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %q", name, res.StatusCode, res.Header.Get("Cache-Control"))
		}
	}
	// Expired: the clock moves past exp.
	*e.now = e.now.Add(3 * time.Hour)
	if res, _ := get(loc); res.StatusCode != 403 || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("expired: %d %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
}
