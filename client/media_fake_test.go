package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/fakemedia"
)

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
	f, srv := fakemedia.New(t)
	const size = 10 << 20
	f.CutUploadAt = size * 6 / 10
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
	f.Mu.Lock()
	got := f.Uploads[res.MediaID].Data
	meta := f.LastMeta
	f.Mu.Unlock()
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("the server got %d different bytes", len(got))
	}
	if f.Count("HEAD") == 0 || f.Count("POST /v1/uploads") != 1 {
		t.Fatalf("requests: %v", f.Reqs)
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
	f, srv := fakemedia.New(t)
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
	f.Mu.Lock()
	had := len(f.Uploads["0193media0001"].Data)
	f.Mu.Unlock()
	if had == 0 || had >= size {
		t.Fatalf("the first attempt left %d bytes", had)
	}
	res, err := fakeClient(srv).UploadFile(testCtx(t), "conv1", path, UploadOptions{ChunkSize: 256 << 10, Resume: store})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.MediaID != "0193media0001" || f.Count("POST /v1/uploads") != 1 {
		t.Fatalf("not resumed: %+v, requests %v", res, f.Reqs)
	}
	f.Mu.Lock()
	got := f.Uploads[res.MediaID].Data
	f.Mu.Unlock()
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

// A stored URL of an upload the server no longer has, or of another
// length, is dropped and a new upload made.
func TestUploadStaleResumeEntry(t *testing.T) {
	f, srv := fakemedia.New(t)
	_, data := randomFile(t, 5000)
	store := &FileResumeStore{Path: filepath.Join(t.TempDir(), "uploads.json")}
	c := fakeClient(srv)
	// Another upload (of 100 bytes), stored under the key of the
	// 5000-byte upload.
	first, err := c.Upload(testCtx(t), "conv1", bytes.NewReader(make([]byte, 100)), 100, UploadOptions{Fingerprint: "fp"})
	if err != nil {
		t.Fatal(err)
	}
	key := resumeKey(c, "conv1", "fp")
	if err := store.Set(key, srv.URL+"/v1/uploads/"+first.MediaID); err != nil {
		t.Fatal(err)
	}
	res, err := c.Upload(testCtx(t), "conv1", bytes.NewReader(data), int64(len(data)), UploadOptions{Resume: store, Fingerprint: "fp"})
	if err != nil {
		t.Fatal(err)
	}
	f.Mu.Lock()
	got := f.Uploads[res.MediaID].Data
	f.Mu.Unlock()
	if res.MediaID == first.MediaID || res.Resumed || !bytes.Equal(got, data) {
		t.Fatalf("%+v", res)
	}
	// Gone: the same.
	if err := store.Set(key, srv.URL+"/v1/uploads/nope"); err != nil {
		t.Fatal(err)
	}
	if res, err = c.Upload(testCtx(t), "conv1", bytes.NewReader(data), int64(len(data)), UploadOptions{Resume: store, Fingerprint: "fp"}); err != nil || res.Resumed {
		t.Fatalf("%+v %v", res, err)
	}
	if m, _ := store.load(); len(m) != 0 {
		t.Fatalf("store %v", m)
	}
}

// A refusal at creation is the server's error, not retried.
func TestUploadRefused(t *testing.T) {
	f, srv := fakemedia.New(t)
	f.CreateErr = &fakemedia.Err{Status: 413, Code: parley.CodePayloadTooLarge}
	path, _ := randomFile(t, 1000)
	_, err := fakeClient(srv).UploadFile(testCtx(t), "conv1", path, UploadOptions{})
	if parley.ErrorCode(err) != parley.CodePayloadTooLarge || f.Count("POST /v1/uploads") != 1 {
		t.Fatalf("err %v, requests %v", err, f.Reqs)
	}
	f.CreateErr = &fakemedia.Err{Status: 409, Code: parley.CodeLimitExceeded}
	_, err = fakeClient(srv).UploadFile(testCtx(t), "conv1", path, UploadOptions{})
	if parley.ErrorCode(err) != parley.CodeLimitExceeded || f.Count("POST /v1/uploads") != 2 {
		t.Fatalf("err %v, requests %v", err, f.Reqs)
	}
}

// An upload the server could not process is an error with its reason.
func TestUploadFailedProcessing(t *testing.T) {
	f, srv := fakemedia.New(t)
	f.FailReason = "image too large: 40000x40000 pixels"
	path, _ := randomFile(t, 5000)
	res, err := fakeClient(srv).UploadFile(testCtx(t), "conv1", path, UploadOptions{})
	if err == nil || !strings.Contains(err.Error(), "40000x40000") || res == nil || res.State != "failed" {
		t.Fatalf("%+v %v", res, err)
	}
}

// An expired access token is refreshed and the request repeated.
func TestUploadRefreshesToken(t *testing.T) {
	f, srv := fakemedia.New(t)
	f.ExpireOnce = true
	path, data := randomFile(t, 5000)
	c := fakeClient(srv)
	res, err := c.UploadFile(testCtx(t), "conv1", path, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Tokens().AccessToken != "tok2" || f.Count("POST /v1/sessions/refresh") != 1 {
		t.Fatalf("no refresh: %v", f.Reqs)
	}
	if !bytes.Equal(f.Uploads[res.MediaID].Data, data) {
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
			fakemedia.WriteErr(w, 503, parley.CodeUnavailable, "down")
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
	f, srv := fakemedia.New(t)
	const size = 4 << 20
	path, data := randomFile(t, size)
	c := fakeClient(srv)
	res, err := c.UploadFile(testCtx(t), "conv1", path, UploadOptions{ContentType: "image/jpeg"})
	if err != nil {
		t.Fatal(err)
	}
	f.CutDownloadAt = size * 6 / 10
	var buf bytes.Buffer
	n, ct, err := c.Download(testCtx(t), res.MediaID, "", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || ct != "image/jpeg" || sha256.Sum256(buf.Bytes()) != sha256.Sum256(data) {
		t.Fatalf("n %d, type %q, equal %v", n, ct, bytes.Equal(buf.Bytes(), data))
	}
	f.Mu.Lock()
	auths := f.AuthOnLink
	f.Mu.Unlock()
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
	f, srv := fakemedia.New(t)
	path, _ := randomFile(t, 1<<20)
	c := fakeClient(srv)
	res, err := c.UploadFile(testCtx(t), "conv1", path, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.CutDownloadAt, f.ChangeETag = 1000, true
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

// The client's own cost of moving bytes, against the in-process fake
// (the server's figures are in docs/benchmarks.md).
func BenchmarkUpload(b *testing.B) {
	_, srv := fakemedia.New(b)
	data := make([]byte, 8<<20)
	rand.Read(data)
	c := fakeClient(srv)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := c.Upload(ctx, "conv1", bytes.NewReader(data), int64(len(data)), UploadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDownload(b *testing.B) {
	_, srv := fakemedia.New(b)
	data := make([]byte, 8<<20)
	rand.Read(data)
	c := fakeClient(srv)
	ctx := context.Background()
	res, err := c.Upload(ctx, "conv1", bytes.NewReader(data), int64(len(data)), UploadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if n, _, err := c.Download(ctx, res.MediaID, "", io.Discard); err != nil || n != int64(len(data)) {
			b.Fatal(n, err)
		}
	}
}
