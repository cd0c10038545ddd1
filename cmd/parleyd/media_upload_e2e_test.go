package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/blob/fsblob"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/store/sqlite"
)

// tusClient is a minimal tus 1.0 client: create, PATCH in chunks, HEAD.
type tusClient struct {
	t     testing.TB
	base  string
	token string
}

// create POSTs an upload of length bytes with the given metadata and
// returns the status, the Location and the JSON body (on refusal).
func (c *tusClient) create(length int64, meta map[string]string) (int, string, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+"/v1/uploads", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+c.token)
	if length >= 0 {
		req.Header.Set("Upload-Length", strconv.FormatInt(length, 10))
	}
	var pairs []string
	for k, v := range meta {
		pairs = append(pairs, k+" "+base64.StdEncoding.EncodeToString([]byte(v)))
	}
	req.Header.Set("Upload-Metadata", strings.Join(pairs, ","))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &body)
	loc := res.Header.Get("Location")
	if loc != "" && !strings.HasPrefix(loc, "http") {
		loc = c.base + loc
	}
	return res.StatusCode, loc, body
}

// head returns the upload's offset and the response.
func (c *tusClient) head(loc string) (int64, *http.Response) {
	c.t.Helper()
	req, _ := http.NewRequest("HEAD", loc, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	res.Body.Close()
	off, _ := strconv.ParseInt(res.Header.Get("Upload-Offset"), 10, 64)
	return off, res
}

// patch sends data at offset and returns the response (body read).
func (c *tusClient) patch(loc string, offset int64, data []byte) (*http.Response, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest("PATCH", loc, bytes.NewReader(data))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, body
}

// upload sends data from offset to the end in chunks and returns the last
// response.
func (c *tusClient) upload(loc string, offset int64, data []byte, chunk int) *http.Response {
	c.t.Helper()
	var last *http.Response
	for offset < int64(len(data)) {
		end := min(offset+int64(chunk), int64(len(data)))
		res, body := c.patch(loc, offset, data[offset:end])
		if res.StatusCode != http.StatusNoContent {
			c.t.Fatalf("PATCH at %d: %d %s", offset, res.StatusCode, body)
		}
		offset, _ = strconv.ParseInt(res.Header.Get("Upload-Offset"), 10, 64)
		last = res
	}
	return last
}

// cutPatch starts a PATCH of data at offset over a raw connection, sends
// only sendBytes of it and closes the connection.
func (c *tusClient) cutPatch(loc string, offset int64, data []byte, sendBytes int) {
	c.t.Helper()
	u, _ := url.Parse(loc)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "PATCH %s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: %d\r\nContent-Length: %d\r\n\r\n",
		u.Path, u.Host, c.token, offset, len(data))
	w.Write(data[:sendBytes])
	w.Flush()
	time.Sleep(300 * time.Millisecond) // let the server take the bytes in
	conn.Close()
}

// mediaNode is a parleyd with two members of a group and an outsider.
type mediaNode struct {
	p                 *e2e.Proc
	data              string
	alice, bob, carol tusClient
	conv              string
}

func startMediaNode(t *testing.T, args ...string) *mediaNode {
	t.Helper()
	data := t.TempDir()
	p := e2e.StartParleyd(t, data, nil, append([]string{"--limits", "off"}, args...)...)
	aliceID, aliceTok := e2e.Signup(t, p.Base, "alice")
	bobID, bobTok := e2e.Signup(t, p.Base, "bob")
	_, carolTok := e2e.Signup(t, p.Base, "carol")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", aliceTok, map[string]any{"kind": "group", "title": "media", "members": []string{bobID}})
	_ = aliceID
	return &mediaNode{p: p, data: data, conv: conv["conversation"].(map[string]any)["id"].(string),
		alice: tusClient{t, p.Base, aliceTok}, bob: tusClient{t, p.Base, bobTok}, carol: tusClient{t, p.Base, carolTok}}
}

// stopAndOpen stops the node and opens its store and media store.
func (n *mediaNode) stopAndOpen(t *testing.T) (parley.Store, parley.BlobStore) {
	t.Helper()
	n.p.Kill()
	keys, err := loadMasterKeys(&Config{Data: n.data}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(n.data, "parley.db"), sqlite.Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := fsblob.Open(filepath.Join(n.data, "media"), keys)
	if err != nil {
		t.Fatal(err)
	}
	return st, blobs
}

func readBlob(t *testing.T, b parley.BlobStore, key string) []byte {
	t.Helper()
	r, err := b.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatalf("blob %s: %v", key, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestMediaUploadResume uploads 10 MB, cuts the connection at 60%,
// resumes from the offset HEAD gives and finishes; the record is ready
// with the right size and digest and the blob store holds the bytes.
func TestMediaUploadResume(t *testing.T) {
	n := startMediaNode(t)
	data := make([]byte, 10<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(data)
	status, loc, body := n.alice.create(int64(len(data)), map[string]string{"conversation_id": n.conv, "filename": "../big.bin", "content_type": "application/octet-stream"})
	if status != http.StatusCreated || loc == "" {
		t.Fatalf("create: %d %v", status, body)
	}
	id := loc[strings.LastIndex(loc, "/")+1:]
	if !parley.ValidID(id) {
		t.Fatalf("Location %s does not end in a media id", loc)
	}
	// Others cannot see or touch it.
	if _, res := n.bob.head(loc); res.StatusCode != http.StatusNotFound {
		t.Fatalf("bob's HEAD of alice's upload: %d", res.StatusCode)
	}
	// 1 MB, then a PATCH cut at 60% of the whole.
	n.alice.upload(loc, 0, data[:1<<20], 1<<20)
	cut := len(data) * 6 / 10
	n.alice.cutPatch(loc, 1<<20, data[1<<20:], cut-(1<<20))
	var off int64
	deadline := time.Now().Add(15 * time.Second)
	for {
		var res *http.Response
		off, res = n.alice.head(loc)
		if res.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD after the cut: %d", res.StatusCode)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("offset after the cut at %d: %d", cut, off)
	if off < 1<<20 || off > int64(cut) {
		t.Fatalf("offset after the cut = %d, want 1 MiB..%d", off, cut)
	}
	start := time.Now()
	last := n.alice.upload(loc, off, data, 1<<20)
	t.Logf("resumed %d bytes in 1 MiB PATCHes, processing and storing included: %.1f MB/s",
		int64(len(data))-off, float64(int64(len(data))-off)/1e6/time.Since(start).Seconds())
	if last.Header.Get("Parley-Media-Id") != id || last.Header.Get("Parley-Media-State") != "ready" {
		t.Fatalf("final PATCH headers: %v", last.Header)
	}
	// A HEAD of the finished upload tells the same.
	if o, res := n.alice.head(loc); res.StatusCode != 200 || o != int64(len(data)) || res.Header.Get("Parley-Media-State") != "ready" {
		t.Fatalf("HEAD after finishing: %d offset %d %v", res.StatusCode, o, res.Header)
	}
	st, blobs := n.stopAndOpen(t)
	m, err := st.Media(context.Background(), id)
	if err != nil || m.State != parley.MediaReady || m.Size != int64(len(data)) || m.SHA256 != hex.EncodeToString(sum[:]) ||
		m.Filename != "big.bin" || m.ConversationID != n.conv || m.ContentType != "application/octet-stream" {
		t.Fatalf("record = %+v, %v", m, err)
	}
	if got := readBlob(t, blobs, parley.MediaOriginalKey(id)); !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes, not the upload", len(got))
	}
	if entries, _ := filepath.Glob(filepath.Join(n.data, "uploads", "*")); len(entries) != 0 {
		t.Fatalf("tus data left: %v", entries)
	}
}

// TestMediaUploadRefusals: a non-member, an upload over the size limit,
// over the quotas, and without a length are refused with the API's JSON
// errors, before anything is stored.
func TestMediaUploadRefusals(t *testing.T) {
	n := startMediaNode(t, "--max-upload-bytes", "1000000", "--upload-quota-daily", "1500000", "--upload-quota-stored", "1200000")
	meta := map[string]string{"conversation_id": n.conv}
	check := func(what string, status int, body map[string]any, wantStatus int, wantCode string) {
		t.Helper()
		e, _ := body["error"].(map[string]any)
		if status != wantStatus || e == nil || e["code"] != wantCode {
			t.Fatalf("%s: %d %v, want %d %s", what, status, body, wantStatus, wantCode)
		}
		t.Logf("%s: %d %v", what, status, e["message"])
	}
	status, _, body := n.carol.create(10, meta)
	check("a non-member", status, body, 404, "conversation_not_found")
	status, _, body = n.alice.create(1000001, meta)
	check("over the size limit", status, body, 413, "payload_too_large")
	status, _, body = n.alice.create(-1, meta)
	check("no Upload-Length", status, body, 400, "invalid_request")
	status, _, body = n.alice.create(10, map[string]string{"filename": "x"})
	check("no conversation", status, body, 400, "invalid_request")
	// 1,000,000 then 300,000 (stored would be 1.3 MB > 1.2 MB).
	if status, _, body = n.alice.create(1000000, meta); status != 201 {
		t.Fatalf("first upload: %d %v", status, body)
	}
	status, _, body = n.alice.create(300000, meta)
	check("over the stored quota", status, body, 409, "limit_exceeded")
	if msg := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "storage quota") {
		t.Fatalf("quota message %q does not say which quota", msg)
	}
	// Bob has his own quotas.
	if status, _, body = n.bob.create(1000000, meta); status != 201 {
		t.Fatalf("bob's upload: %d %v", status, body)
	}
	// Unauthenticated.
	req, _ := http.NewRequest("POST", n.p.Base+"/v1/uploads", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "5")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("without a token: %d", res.StatusCode)
	}
}

// TestMediaUploadDailyQuota: the daily quota counts uploads abandoned too.
func TestMediaUploadDailyQuota(t *testing.T) {
	n := startMediaNode(t, "--upload-quota-daily", "1000", "--upload-quota-stored", "100000")
	meta := map[string]string{"conversation_id": n.conv}
	status, loc, body := n.alice.create(800, meta)
	if status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	req, _ := http.NewRequest("DELETE", loc, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+n.alice.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 204 {
		t.Fatalf("DELETE: %v %v", res, err)
	}
	status, _, body = n.alice.create(300, meta)
	if e, _ := body["error"].(map[string]any); status != 409 || e["code"] != "limit_exceeded" || !strings.Contains(e["message"].(string), "daily") {
		t.Fatalf("over the daily quota: %d %v", status, body)
	}
}

// gpsMarker marks the GPS metadata in the test PNG.
const gpsMarker = "GPS-48.8584N-2.2945E"

func pngChunk(typ string, data []byte) []byte {
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(c, typ...)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

// TestMediaUploadStripsGPSAndRefusesBombs: a PNG with GPS metadata is
// stored without it, with a thumbnail; a decompression bomb ends failed
// with a reason and stores nothing.
func TestMediaUploadStripsGPSAndRefusesBombs(t *testing.T) {
	n := startMediaNode(t)
	src := image.NewNRGBA(image.Rect(0, 0, 64, 48))
	for i := range src.Pix {
		src.Pix[i] = byte(i*7) | 0x80
	}
	var b bytes.Buffer
	png.Encode(&b, src)
	plain := b.Bytes()
	withGPS := append(append(append([]byte{}, plain[:33]...),
		pngChunk("tEXt", []byte("GPSPosition\x00"+gpsMarker))...), plain[33:]...)
	status, loc, body := n.alice.create(int64(len(withGPS)), map[string]string{"conversation_id": n.conv, "filename": "photo.png", "content_type": "image/png"})
	if status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	photo := loc[strings.LastIndex(loc, "/")+1:]
	if res := n.alice.upload(loc, 0, withGPS, 1<<20); res.Header.Get("Parley-Media-State") != "ready" {
		t.Fatalf("photo: %v", res.Header)
	}

	ihdr := binary.BigEndian.AppendUint32(nil, 100000)
	ihdr = binary.BigEndian.AppendUint32(ihdr, 100000)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	bomb := append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
	bomb = append(bomb, pngChunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})...)
	bomb = append(bomb, pngChunk("IEND", nil)...)
	status, loc, body = n.alice.create(int64(len(bomb)), map[string]string{"conversation_id": n.conv, "filename": "bomb.png"})
	if status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	bombID := loc[strings.LastIndex(loc, "/")+1:]
	res := n.alice.upload(loc, 0, bomb, 1<<20)
	if res.Header.Get("Parley-Media-State") != "failed" || !strings.Contains(res.Header.Get("Parley-Media-Error"), "pixels") {
		t.Fatalf("bomb: %v", res.Header)
	}
	t.Logf("bomb: %s", res.Header.Get("Parley-Media-Error"))

	st, blobs := n.stopAndOpen(t)
	m, err := st.Media(context.Background(), photo)
	if err != nil || m.State != parley.MediaReady || m.ContentType != "image/png" || m.Width != 64 || m.Height != 48 || m.ThumbWidth == 0 || m.Blurhash == "" {
		t.Fatalf("photo record = %+v, %v", m, err)
	}
	stored := readBlob(t, blobs, parley.MediaOriginalKey(photo))
	if bytes.Contains(stored, []byte(gpsMarker)) || !bytes.Equal(stored, plain) {
		t.Fatalf("stored PNG still has the GPS text (or is not the clean image): %d bytes", len(stored))
	}
	sum := sha256.Sum256(stored)
	if m.SHA256 != hex.EncodeToString(sum[:]) || m.Size != int64(len(stored)) {
		t.Fatalf("record digest/size %s %d, stored %x %d", m.SHA256, m.Size, sum, len(stored))
	}
	if thumb := readBlob(t, blobs, parley.MediaThumbnailKey(photo)); len(thumb) == 0 {
		t.Fatal("no thumbnail")
	}
	bm, err := st.Media(context.Background(), bombID)
	if err != nil || bm.State != parley.MediaFailed || !strings.Contains(bm.FailReason, "pixels") || bm.ThumbWidth != 0 {
		t.Fatalf("bomb record = %+v, %v", bm, err)
	}
	for _, key := range []string{parley.MediaOriginalKey(bombID), parley.MediaThumbnailKey(bombID)} {
		if _, err := blobs.Stat(context.Background(), key); parley.ErrorCode(err) != parley.CodeNotFound {
			t.Fatalf("bomb blob %s: %v", key, err)
		}
	}
}

// TestMediaUploadExpiry: an unfinished upload is collected after
// --upload-expiry: record, tus data and all.
func TestMediaUploadExpiry(t *testing.T) {
	n := startMediaNode(t, "--upload-expiry", "2s")
	data := bytes.Repeat([]byte("x"), 5000)
	status, loc, body := n.alice.create(int64(len(data)), map[string]string{"conversation_id": n.conv})
	if status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	if res, b := n.alice.patch(loc, 0, data[:2000]); res.StatusCode != 204 {
		t.Fatalf("PATCH: %d %s", res.StatusCode, b)
	}
	id := loc[strings.LastIndex(loc, "/")+1:]
	if entries, _ := filepath.Glob(filepath.Join(n.data, "uploads", id+"*")); len(entries) == 0 {
		t.Fatal("no tus data while uploading")
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, res := n.alice.head(loc)
		entries, _ := filepath.Glob(filepath.Join(n.data, "uploads", id+"*"))
		if res.StatusCode == 404 && len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload not collected: HEAD %d, tus files %v", res.StatusCode, entries)
		}
		time.Sleep(300 * time.Millisecond)
	}
	st, _ := n.stopAndOpen(t)
	if _, err := st.Media(context.Background(), id); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("record after expiry: %v", err)
	}
}

// TestMediaUploadChunksNotRateLimited: with the per-user limit at 1
// request a second, an upload's many PATCHes all go through, while other
// requests are still limited.
func TestMediaUploadChunksNotRateLimited(t *testing.T) {
	data := t.TempDir()
	p := e2e.StartParleyd(t, data, nil, "--user-rate", "1", "--user-burst", "3")
	_, aliceTok := e2e.Signup(t, p.Base, "alice")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", aliceTok, map[string]any{"kind": "group", "title": "t"})["conversation"].(map[string]any)["id"].(string)
	c := tusClient{t, p.Base, aliceTok}
	time.Sleep(3 * time.Second) // the burst refills
	payload := bytes.Repeat([]byte("z"), 20*1000)
	status, loc, body := c.create(int64(len(payload)), map[string]string{"conversation_id": conv})
	if status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	if res := c.upload(loc, 0, payload, 1000); res.Header.Get("Parley-Media-State") != "ready" {
		t.Fatalf("20 PATCHes: %v", res.Header)
	}
	limited := false
	for range 5 {
		if code, _ := e2e.API(t, http.DefaultClient, "GET", p.Base+"/v1/me", aliceTok, nil); code == http.StatusTooManyRequests {
			limited = true
		}
	}
	if !limited {
		t.Fatal("other requests are no longer limited")
	}
}
