package upload

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/memorylocker"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/blob/fsblob"
	"github.com/parleychat/parley/media/process"
	"github.com/parleychat/parley/store/sqlite"
	"github.com/parleychat/parley/store/storetest"
)

// rig is an Uploads on SQLite, fsblob and tusd's filestore behind an
// httptest server that takes the user id as the bearer token.
type rig struct {
	u     *Uploads
	st    parley.Store
	blobs parley.BlobStore
	srv   *httptest.Server
	now   atomic.Pointer[time.Time]
	user  string
	conv  string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "parley.db"), sqlite.Options{Sealer: storetest.NewSealer(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	blobs, err := fsblob.Open(filepath.Join(dir, "media"), [][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{st: st, blobs: blobs}
	now := time.Now()
	r.now.Store(&now)
	u, err := New(Config{Store: st, Blobs: blobs, TusStore: filestore.New(t.TempDir()), Locker: memorylocker.New(),
		Workers: 1, Process: processLimits(t), Now: func() time.Time { return *r.now.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	r.u = u
	ctx := context.Background()
	a := &parley.User{ID: parley.NewID(), Handle: "alice", CreatedAt: now}
	if err := st.CreateUser(ctx, a); err != nil {
		t.Fatal(err)
	}
	g, _, err := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, Title: "g",
		CreatedAt: now, Members: []parley.Member{{UserID: a.ID, Role: parley.MemberRoleOwner}}})
	if err != nil {
		t.Fatal(err)
	}
	r.user, r.conv = a.ID, g.ID
	mux := http.NewServeMux()
	serve := func(w http.ResponseWriter, req *http.Request) {
		id, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		u.Serve(w, req, &parley.Principal{UserID: id, DeviceID: "d"})
	}
	mux.HandleFunc("/v1/uploads", serve)
	mux.HandleFunc("/v1/uploads/", serve)
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

// send creates an upload of data and sends it in one PATCH; it returns
// the media id and the final response.
func (r *rig) send(t *testing.T, data []byte) (string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest("POST", r.srv.URL+"/v1/uploads", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+r.user)
	req.Header.Set("Upload-Length", strconv.Itoa(len(data)))
	req.Header.Set("Upload-Metadata", "conversation_id "+base64.StdEncoding.EncodeToString([]byte(r.conv)))
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 201 {
		t.Fatalf("create: %v %v", res, err)
	}
	res.Body.Close()
	loc := res.Header.Get("Location")
	if !strings.HasPrefix(loc, "/v1/uploads/") {
		t.Fatalf("Location %q is not a path under /v1/uploads/", loc)
	}
	loc = r.srv.URL + loc
	req, _ = http.NewRequest("PATCH", loc, bytes.NewReader(data))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+r.user)
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", "0")
	res, err = http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 204 {
		t.Fatalf("PATCH: %v %v", res, err)
	}
	res.Body.Close()
	return loc[strings.LastIndex(loc, "/")+1:], res
}

// TestCollectReadyUnreferenced: a finished upload no message references
// is deleted with its blob once it expires, not before; one a message
// references (no expiry) stays.
func TestCollectReadyUnreferenced(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	loose, res := r.send(t, []byte("hello, world"))
	if res.Header.Get(HeaderMediaState) != "ready" {
		t.Fatalf("state %v", res.Header)
	}
	kept, _ := r.send(t, []byte("kept"))
	if _, err := r.st.UpdateMedia(ctx, kept, func(m *parley.Media) error {
		m.ExpiresAt, m.ConversationSeq = time.Time{}, 1
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := r.u.Collect(ctx, time.Now().Add(time.Hour), 100); err != nil || n != 0 {
		t.Fatalf("Collect before expiry = %d, %v", n, err)
	}
	if n, err := r.u.Collect(ctx, time.Now().Add(DefaultExpiry+time.Minute), 100); err != nil || n != 1 {
		t.Fatalf("Collect after expiry = %d, %v", n, err)
	}
	if _, err := r.st.Media(ctx, loose); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("record of the loose media: %v", err)
	}
	if _, err := r.blobs.Stat(ctx, parley.MediaOriginalKey(loose)); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("blob of the loose media: %v", err)
	}
	if m, err := r.st.Media(ctx, kept); err != nil || m.State != parley.MediaReady {
		t.Fatalf("referenced media: %+v, %v", m, err)
	}
	if _, err := r.blobs.Stat(ctx, parley.MediaOriginalKey(kept)); err != nil {
		t.Fatalf("blob of the referenced media: %v", err)
	}
}

// TestProcessingIsBounded: with Workers 1, a second finishing upload
// waits for the first's slot; both end ready.
func TestProcessingIsBounded(t *testing.T) {
	r := newRig(t)
	r.u.sem <- struct{}{} // the only slot is taken
	done := make(chan string, 1)
	go func() {
		defer close(done)
		_, res := r.send(t, []byte("waits"))
		done <- res.Header.Get(HeaderMediaState)
	}()
	select {
	case s := <-done:
		t.Fatalf("finished (%s) while no worker slot was free", s)
	case <-time.After(300 * time.Millisecond):
	}
	<-r.u.sem
	if s := <-done; s != "ready" {
		t.Fatalf("state %q after the slot freed", s)
	}
}

func BenchmarkParseMetadata(b *testing.B) {
	h := "conversation_id " + b64(parley.NewID()) + ",filename " + b64("IMG_2024_0001 holiday.jpg") + ",content_type " + b64("image/jpeg") + ",encrypted " + b64("false") + ",filetype " + b64("image/jpeg")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMetadata(h); err != nil {
			b.Fatal(err)
		}
	}
}

func processLimits(t *testing.T) process.Limits { return process.Limits{TempDir: t.TempDir()} }
