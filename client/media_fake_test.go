package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// fakeMedia is a tus server at /v1/uploads and the download side of
// docs/design/media.md, written from the contract, for unit tests. It can
// drop a connection mid-PATCH or mid-download, once, after a byte count.
type fakeMedia struct {
	t *testing.T

	mu      sync.Mutex
	uploads map[string]*fakeUpload
	nextID  int
	token   string // the access token accepted
	reqs    []string

	cutUploadAt   int64 // drop the connection when the upload has this many bytes (0: never)
	cutDownloadAt int64 // drop the download after this many bytes (0: never)
	cutDone       bool
	createErr     *fakeErr // refuse creations with this
	expireOnce    bool     // answer the next authed request with token_expired
	changeETag    bool     // serve resumed downloads with another ETag
	lastMeta      map[string]string
	authOnLink    []string // Authorization headers seen on /m/
}

type fakeErr struct {
	status int
	code   parley.Code
}

type fakeUpload struct {
	lock   sync.Mutex // held by a PATCH and a HEAD, as tusd's locker does
	id     string
	length int64
	data   []byte
	meta   map[string]string
}

func newFakeMedia(t *testing.T) (*fakeMedia, *httptest.Server) {
	f := &fakeMedia{t: t, uploads: map[string]*fakeUpload{}, token: "tok1"}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeMedia) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func writeErr(w http.ResponseWriter, status int, code parley.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": string(code), "message": msg}})
}

// authed checks the bearer token; false means it answered.
func (f *fakeMedia) authed(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	expire := f.expireOnce
	f.expireOnce = false
	tok := f.token
	f.mu.Unlock()
	if expire {
		writeErr(w, 401, parley.CodeTokenExpired, "expired")
		return false
	}
	if r.Header.Get("Authorization") != "Bearer "+tok {
		writeErr(w, 401, parley.CodeUnauthorized, "bad token")
		return false
	}
	return true
}

func (f *fakeMedia) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	p := r.URL.Path
	switch {
	case p == "/v1/sessions/refresh" && r.Method == "POST":
		f.mu.Lock()
		f.token = "tok2"
		f.mu.Unlock()
		json.NewEncoder(w).Encode(sessionResponse{AccessToken: "tok2", RefreshToken: "r2", ExpiresIn: 900, UserID: "u1", DeviceID: "d1"})
	case p == "/v1/uploads" && r.Method == "POST":
		f.create(w, r)
	case strings.HasPrefix(p, "/v1/uploads/"):
		if r.Header.Get("Tus-Resumable") != tusVersion {
			writeErr(w, 412, parley.CodeInvalidRequest, "Tus-Resumable")
			return
		}
		if !f.authed(w, r) {
			return
		}
		f.mu.Lock()
		up := f.uploads[strings.TrimPrefix(p, "/v1/uploads/")]
		f.mu.Unlock()
		if up == nil {
			writeErr(w, 404, parley.CodeNotFound, "no such upload")
			return
		}
		up.lock.Lock()
		defer up.lock.Unlock()
		switch r.Method {
		case "HEAD":
			f.mu.Lock()
			w.Header().Set("Upload-Offset", strconv.Itoa(len(up.data)))
			f.mu.Unlock()
			w.Header().Set("Upload-Length", strconv.FormatInt(up.length, 10))
			w.Header().Set("Cache-Control", "no-store")
		case "PATCH":
			f.patch(w, r, up)
		default:
			w.WriteHeader(405)
		}
	case strings.HasPrefix(p, "/v1/media/") && strings.HasSuffix(p, "/info"):
		if !f.authed(w, r) {
			return
		}
		up := f.done(strings.TrimSuffix(strings.TrimPrefix(p, "/v1/media/"), "/info"))
		if up == nil {
			writeErr(w, 404, parley.CodeNotFound, "no such media")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"attachment": f.attachment(up)})
	case strings.HasPrefix(p, "/v1/media/"):
		if !f.authed(w, r) {
			return
		}
		id := strings.TrimPrefix(p, "/v1/media/")
		if f.done(id) == nil {
			writeErr(w, 404, parley.CodeNotFound, "no such media")
			return
		}
		variant := r.URL.Query().Get("variant")
		if variant == "" {
			variant = "original"
		}
		w.Header().Set("Cache-Control", "private, no-store")
		http.Redirect(w, r, "/m/"+id+"/"+variant+"?exp=4102444800&sig=abc", http.StatusFound)
	case strings.HasPrefix(p, "/m/"):
		f.serveLink(w, r)
	default:
		writeErr(w, 404, parley.CodeNotFound, "no route "+p)
	}
}

func (f *fakeMedia) done(id string) *fakeUpload {
	f.mu.Lock()
	defer f.mu.Unlock()
	up := f.uploads[id]
	if up == nil || int64(len(up.data)) != up.length {
		return nil
	}
	return up
}

func (f *fakeMedia) attachment(up *fakeUpload) parley.Attachment {
	sum := sha256.Sum256(up.data)
	return parley.Attachment{MediaID: up.id, ContentType: up.meta["content_type"], Size: up.length,
		SHA256: hex.EncodeToString(sum[:]), Filename: up.meta["filename"], Width: 1024, Height: 768,
		Thumbnail: &parley.AttachmentThumbnail{Width: 320, Height: 240}, Blurhash: "LEHV6nWB2yk8pyo0adR*.7kCMdnj"}
}

func (f *fakeMedia) create(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Tus-Resumable") != tusVersion {
		writeErr(w, 412, parley.CodeInvalidRequest, "Tus-Resumable")
		return
	}
	if !f.authed(w, r) {
		return
	}
	if f.createErr != nil {
		writeErr(w, f.createErr.status, f.createErr.code, "refused")
		return
	}
	length, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
	if err != nil || length < 0 {
		writeErr(w, 400, parley.CodeInvalidRequest, "Upload-Length")
		return
	}
	meta := map[string]string{}
	for _, kv := range strings.Split(r.Header.Get("Upload-Metadata"), ",") {
		k, v, _ := strings.Cut(kv, " ")
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			writeErr(w, 400, parley.CodeInvalidRequest, "metadata "+k)
			return
		}
		meta[k] = string(b)
	}
	f.mu.Lock()
	f.nextID++
	id := fmt.Sprintf("0193media%04d", f.nextID)
	f.uploads[id] = &fakeUpload{id: id, length: length, meta: meta}
	f.lastMeta = meta
	f.mu.Unlock()
	w.Header().Set("Tus-Resumable", tusVersion)
	w.Header().Set("Location", "/v1/uploads/"+id) // relative: the client resolves it
	w.WriteHeader(http.StatusCreated)
}

func (f *fakeMedia) patch(w http.ResponseWriter, r *http.Request, up *fakeUpload) {
	if r.Header.Get("Content-Type") != "application/offset+octet-stream" {
		writeErr(w, 415, parley.CodeInvalidRequest, "Content-Type")
		return
	}
	off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
	f.mu.Lock()
	have := int64(len(up.data))
	f.mu.Unlock()
	if err != nil || off != have {
		writeErr(w, 409, parley.CodeConflict, "offset mismatch")
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, rerr := r.Body.Read(buf)
		f.mu.Lock()
		if int64(len(up.data))+int64(n) > up.length {
			f.mu.Unlock()
			writeErr(w, 400, parley.CodeInvalidRequest, "past Upload-Length")
			return
		}
		up.data = append(up.data, buf[:n]...)
		cut := f.cutUploadAt > 0 && !f.cutDone && int64(len(up.data)) >= f.cutUploadAt
		if cut {
			f.cutDone = true
		}
		f.mu.Unlock()
		if cut { // the connection drops: what arrived stays, as in tusd
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				f.t.Error(err)
				return
			}
			conn.Close()
			return
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return
		}
	}
	f.mu.Lock()
	n := int64(len(up.data))
	f.mu.Unlock()
	w.Header().Set("Tus-Resumable", tusVersion)
	w.Header().Set("Upload-Offset", strconv.FormatInt(n, 10))
	if n == up.length {
		w.Header().Set("Parley-Media-Id", up.id)
		w.Header().Set("Parley-Media-State", "ready")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeMedia) serveLink(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.authOnLink = append(f.authOnLink, r.Header.Get("Authorization"))
	f.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/m/"), "/")
	if len(parts) != 2 || r.URL.Query().Get("sig") != "abc" {
		writeErr(w, 403, parley.CodeForbidden, "bad link")
		return
	}
	up := f.done(parts[0])
	if up == nil {
		writeErr(w, 404, parley.CodeNotFound, "gone")
		return
	}
	data := up.data
	if parts[1] == "thumbnail" {
		data = []byte("thumbnail of " + up.id)
	}
	sum := sha256.Sum256(data)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	f.mu.Lock()
	if f.changeETag && r.Header.Get("Range") != "" {
		etag = `"changed"`
	}
	cut := f.cutDownloadAt > 0 && !f.cutDone && r.Header.Get("Range") == ""
	if cut {
		f.cutDone = true
	}
	f.mu.Unlock()
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", up.meta["content_type"])
	w.Header().Set("Cache-Control", "public, max-age=3600, immutable")
	if cut {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(200)
		w.Write(data[:f.cutDownloadAt])
		rc := http.NewResponseController(w)
		rc.Flush()
		conn, _, err := rc.Hijack()
		if err != nil {
			f.t.Error(err)
			return
		}
		conn.Close()
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

func fakeClient(srv *httptest.Server) *Client {
	return New(Config{Server: srv.URL, Tokens: &Tokens{UserID: "u1", DeviceID: "d1", AccessToken: "tok1", RefreshToken: "r1",
		AccessExpires: time.Now().Add(time.Hour)}})
}

func randomFile(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "photo.jpg")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// An upload whose connection drops at 60% asks HEAD for the offset,
// goes on from there and finishes with the same bytes.
func TestUploadResumesAfterCut(t *testing.T) {
	f, srv := newFakeMedia(t)
	const size = 10 << 20
	f.cutUploadAt = size * 6 / 10
	path, data := randomFile(t, size)
	c := fakeClient(srv)
	var mu sync.Mutex
	var last, total int64
	backwards := 0
	res, err := c.UploadFile(testCtx(t), "conv1", path, UploadOptions{ContentType: "image/jpeg", ChunkSize: 1 << 20,
		Progress: func(sent, tot int64) {
			mu.Lock()
			defer mu.Unlock()
			if sent < last {
				backwards++
			}
			last, total = sent, tot
		}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.State != "ready" || res.MediaID != "0193media0001" {
		t.Fatalf("result %+v", res)
	}
	f.mu.Lock()
	got := f.uploads[res.MediaID].data
	meta := f.lastMeta
	f.mu.Unlock()
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("the server got %d different bytes", len(got))
	}
	if f.count("HEAD") == 0 || f.count("POST /v1/uploads") != 1 {
		t.Fatalf("requests: %v", f.reqs)
	}
	want := map[string]string{"conversation_id": "conv1", "filename": "photo.jpg", "content_type": "image/jpeg", "encrypted": "false"}
	for k, v := range want {
		if meta[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, meta[k], v)
		}
	}
	if last != size || total != size {
		t.Errorf("progress ended at %d/%d", last, total)
	}
	if backwards > 1 { // once, back to the server's offset after the cut
		t.Errorf("progress went backwards %d times", backwards)
	}
	a := res.Attachment
	if a == nil || a.MediaID != res.MediaID || a.Size != size || a.Filename != "photo.jpg" || a.Width != 1024 || a.Thumbnail == nil {
		t.Fatalf("attachment %+v", a)
	}
	sum := sha256.Sum256(data)
	if a.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatal("attachment sha256")
	}
}

// A process that stops mid-upload leaves the URL in the resume store; the
// next one (a new Client) goes on from the server's offset without
// creating another upload.
func TestUploadResumesAcrossProcesses(t *testing.T) {
	f, srv := newFakeMedia(t)
	const size = 3 << 20
	path, data := randomFile(t, size)
	store := &FileResumeStore{Path: filepath.Join(t.TempDir(), "uploads.json")}
	ctx, cancel := context.WithCancel(testCtx(t))
	_, err := fakeClient(srv).UploadFile(ctx, "conv1", path, UploadOptions{ChunkSize: 256 << 10, Resume: store,
		Progress: func(sent, _ int64) {
			if sent >= size/2 {
				cancel() // the process ends here
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first attempt: %v", err)
	}
	f.mu.Lock()
	had := len(f.uploads["0193media0001"].data)
	f.mu.Unlock()
	if had == 0 || had >= size {
		t.Fatalf("the first attempt left %d bytes", had)
	}
	res, err := fakeClient(srv).UploadFile(testCtx(t), "conv1", path, UploadOptions{ChunkSize: 256 << 10, Resume: store})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.MediaID != "0193media0001" || f.count("POST /v1/uploads") != 1 {
		t.Fatalf("not resumed: %+v, requests %v", res, f.reqs)
	}
	f.mu.Lock()
	got := f.uploads[res.MediaID].data
	f.mu.Unlock()
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	if _, ok := store.Get(""); ok {
		t.Fatal("odd key")
	}
	m, _ := store.load()
	if len(m) != 0 {
		t.Fatalf("the store still holds %v", m)
	}
	// Another conversation is another upload, not a resume.
	res2, err := fakeClient(srv).UploadFile(testCtx(t), "conv2", path, UploadOptions{Resume: store})
	if err != nil || res2.MediaID == res.MediaID || res2.Resumed {
		t.Fatalf("second upload %+v %v", res2, err)
	}
}

// A refusal at creation is the server's error, not retried.
func TestUploadRefused(t *testing.T) {
	f, srv := newFakeMedia(t)
	f.createErr = &fakeErr{413, parley.CodePayloadTooLarge}
	path, _ := randomFile(t, 1000)
	_, err := fakeClient(srv).UploadFile(testCtx(t), "conv1", path, UploadOptions{})
	if parley.ErrorCode(err) != parley.CodePayloadTooLarge || f.count("POST /v1/uploads") != 1 {
		t.Fatalf("err %v, requests %v", err, f.reqs)
	}
	f.createErr = &fakeErr{409, parley.CodeLimitExceeded}
	_, err = fakeClient(srv).UploadFile(testCtx(t), "conv1", path, UploadOptions{})
	if parley.ErrorCode(err) != parley.CodeLimitExceeded || f.count("POST /v1/uploads") != 2 {
		t.Fatalf("err %v, requests %v", err, f.reqs)
	}
}

// An expired access token is refreshed and the request repeated.
func TestUploadRefreshesToken(t *testing.T) {
	f, srv := newFakeMedia(t)
	f.expireOnce = true
	path, data := randomFile(t, 5000)
	c := fakeClient(srv)
	res, err := c.UploadFile(testCtx(t), "conv1", path, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Tokens().AccessToken != "tok2" || f.count("POST /v1/sessions/refresh") != 1 {
		t.Fatalf("no refresh: %v", f.reqs)
	}
	if !bytes.Equal(f.uploads[res.MediaID].data, data) {
		t.Fatal("bytes differ")
	}
}

// A server that keeps failing is given up on after MaxRetries.
func TestUploadGivesUp(t *testing.T) {
	var patches int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "POST":
			w.Header().Set("Location", "/v1/uploads/x")
			w.WriteHeader(201)
		case "HEAD":
			w.Header().Set("Upload-Offset", "0")
		case "PATCH":
			patches++
			writeErr(w, 503, parley.CodeUnavailable, "down")
		}
	}))
	defer srv.Close()
	path, _ := randomFile(t, 100)
	start := time.Now()
	_, err := fakeClient(srv).UploadFile(testCtx(t), "c", path, UploadOptions{MaxRetries: 2})
	if err == nil || parley.ErrorCode(err) != parley.CodeUnavailable || patches != 3 {
		t.Fatalf("err %v after %d patches", err, patches)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Fatal("no backoff")
	}
}

// Download follows the 302 without sending the token to the link, and
// resumes a cut download with Range from the bytes written.
func TestDownloadResumesAfterCut(t *testing.T) {
	f, srv := newFakeMedia(t)
	const size = 4 << 20
	path, data := randomFile(t, size)
	c := fakeClient(srv)
	res, err := c.UploadFile(testCtx(t), "conv1", path, UploadOptions{ContentType: "image/jpeg"})
	if err != nil {
		t.Fatal(err)
	}
	f.cutDownloadAt = size * 6 / 10
	var buf bytes.Buffer
	n, ct, err := c.Download(testCtx(t), res.MediaID, "", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || ct != "image/jpeg" || sha256.Sum256(buf.Bytes()) != sha256.Sum256(data) {
		t.Fatalf("n %d, type %q, equal %v", n, ct, bytes.Equal(buf.Bytes(), data))
	}
	f.mu.Lock()
	auths := f.authOnLink
	f.mu.Unlock()
	if len(auths) != 2 {
		t.Fatalf("%d fetches of the link, want 2 (cut, resumed)", len(auths))
	}
	for _, a := range auths {
		if a != "" {
			t.Fatalf("the link got Authorization %q", a)
		}
	}
	buf.Reset()
	if _, _, err := c.Download(testCtx(t), res.MediaID, VariantThumbnail, &buf); err != nil || buf.String() != "thumbnail of "+res.MediaID {
		t.Fatalf("thumbnail %q %v", buf.String(), err)
	}
	// Unknown media: the server's 404, at once.
	if _, _, err := c.Download(testCtx(t), "nope", "", io.Discard); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("unknown media: %v", err)
	}
}

// A file that changes between the cut and the resume is an error, never
// a splice of two files.
func TestDownloadRefusesChangedFile(t *testing.T) {
	f, srv := newFakeMedia(t)
	path, _ := randomFile(t, 1<<20)
	c := fakeClient(srv)
	res, err := c.UploadFile(testCtx(t), "conv1", path, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.cutDownloadAt, f.changeETag = 1000, true
	n, _, err := c.Download(testCtx(t), res.MediaID, "", io.Discard)
	if err == nil || n != 1000 || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("n %d, err %v", n, err)
	}
}

// SendREST carries the attachments as [{media_id}] and reads them back.
func TestSendRESTWithAttachments(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&got)
		io.WriteString(w, `{"message":{"id":"m1","seq":3,"type":"image","attachments":[{"media_id":"a1","content_type":"image/png","size":10,"width":2,"height":3,"thumbnail":{"width":1,"height":1}}]}}`)
	}))
	defer srv.Close()
	m, err := fakeClient(srv).SendREST(testCtx(t), "c", "look", WithType(parley.MessageImage), WithAttachments("a1", "a2"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got["attachments"])
	if string(b) != `[{"media_id":"a1"},{"media_id":"a2"}]` || got["type"] != "image" {
		t.Fatalf("sent %s, %v", b, got)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Width != 2 || m.Attachments[0].Thumbnail.Height != 1 {
		t.Fatalf("got %+v", m.Attachments)
	}
}

// The WebSocket send frame and the saved outbox keep the attachments.
func TestOutboxKeepsAttachments(t *testing.T) {
	b, _ := json.Marshal(OutFrame{Type: "send", Attachments: attachmentRefs([]string{"a1"})})
	if !strings.Contains(string(b), `"attachments":[{"media_id":"a1"}]`) {
		t.Fatalf("frame %s", b)
	}
	b, _ = json.Marshal(OutFrame{Type: "send"})
	if strings.Contains(string(b), "attachments") {
		t.Fatalf("frame %s", b)
	}
	st := State{Outbox: []OutboxEntry{{ClientMsgID: "x", ConversationID: "c", Type: parley.MessageFile, Attachments: []string{"a1", "a2"}}}}
	b, _ = json.Marshal(st)
	var back State
	if err := json.Unmarshal(b, &back); err != nil || len(back.Outbox[0].Attachments) != 2 {
		t.Fatalf("%s -> %+v %v", b, back, err)
	}
	r := newRealtime(New(Config{Server: "http://x", State: &back}))
	if got := r.snapshot().Outbox[0].Attachments; len(got) != 2 || got[1] != "a2" {
		t.Fatalf("restored outbox %v", got)
	}
}

func TestParseContentRange(t *testing.T) {
	for _, c := range []struct {
		in          string
		start, size int64
		ok          bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes 100-199/150", 0, 0, false},
		{"bytes 5-4/10", 0, 0, false},
		{"bytes -1-4/10", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"bytes 1-2", 0, 0, false},
		{"", 0, 0, false},
	} {
		s, n, ok := parseContentRange(c.in)
		if ok != c.ok || (ok && (s != c.start || n != c.size)) {
			t.Errorf("%q: %d %d %v", c.in, s, n, ok)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 100-199/200")
	f.Add("bytes 0-0/*")
	f.Fuzz(func(t *testing.T, s string) {
		start, size, ok := parseContentRange(s)
		if ok && (start < 0 || (size != -1 && size <= start)) {
			t.Fatalf("%q: start %d size %d", s, start, size)
		}
	})
}

func FuzzDecodeAttachment(f *testing.F) {
	f.Add([]byte(`{"attachment":{"media_id":"a","size":3}}`))
	f.Add([]byte(`{"media_id":"a","thumbnail":{"width":1,"height":2}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeAttachment(b)
		if err == nil && a.MediaID == "" {
			t.Fatal("attachment without a media id")
		}
	})
}
