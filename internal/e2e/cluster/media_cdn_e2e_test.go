package cluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"image"
	"image/color"
	pngenc "image/png"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
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

var mediaCDNMiB = flag.Int("media-cdn-mib", 8, "size in MiB of the file TestMediaCDN downloads to measure throughput")

// noRedirect is a client that shows a 302 instead of following it.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// TestMediaCDN runs the real parleyd with the real nginx in front
// (deploy/nginx-media.conf with this test's ports and directories) and
// checks the media path end to end: a send with an attachment carries its
// fields; a member gets a 302 to a signed link, a non-member and a removed
// member get 404; through nginx the first fetch is a MISS and the second a
// HIT with parleyd hit once; a Range request gets the right bytes with
// 206; a tampered link is 403 at nginx and parleyd alike and not cached;
// a second member gets the same link and a HIT. It also measures download
// throughput from parleyd and from nginx's cache (-media-cdn-mib).
func TestMediaCDN(t *testing.T) {
	nginxBin, err := exec.LookPath("nginx")
	if err != nil {
		nginxBin = "/usr/sbin/nginx"
		if _, err := os.Stat(nginxBin); err != nil {
			if os.Getenv("PARLEY_TEST_REQUIRE_SERVICES") == "1" {
				t.Fatal("nginx is not installed (apt-get install nginx); PARLEY_TEST_REQUIRE_SERVICES=1 makes that a failure")
			}
			t.Skip("skipping: nginx is not installed (apt-get install nginx)")
		}
	}
	data := t.TempDir()
	// 1. Accounts and a conversation, then parleyd stops so that the test
	// can put a media record and its blob in place with the server's own
	// store and keys (what the tus upload path does; uploads are tested
	// on their own).
	p := e2e.StartParleyd(t, data, nil)
	aliceID, alice := e2e.Signup(t, p.Base, "alice")
	bobID, bob := e2e.Signup(t, p.Base, "bob")
	_, carol := e2e.Signup(t, p.Base, "carol")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", alice, map[string]any{"kind": "group", "title": "media", "members": []string{bobID}})
	convID := conv["conversation"].(map[string]any)["id"].(string)
	p.Stop(10 * time.Second)

	content := make([]byte, *mediaCDNMiB<<20+12345) // not a multiple of the slice
	rand.Read(content)
	sum := sha256.Sum256(content)
	media := &parley.Media{
		ID: parley.NewID(), UploaderID: aliceID, UploaderDeviceID: parley.NewID(), ConversationID: convID,
		State: parley.MediaReady, ContentType: "application/pdf", Filename: "Résumé 2026.pdf",
		Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:]), DeclaredSize: int64(len(content)),
		CreatedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(24 * time.Hour),
	}
	small := make([]byte, 100_000) // one slice
	rand.Read(small)
	smallSum := sha256.Sum256(small)
	smallMedia := &parley.Media{
		ID: parley.NewID(), UploaderID: aliceID, UploaderDeviceID: parley.NewID(), ConversationID: convID,
		State: parley.MediaReady, ContentType: "image/webp", Size: int64(len(small)), SHA256: hex.EncodeToString(smallSum[:]),
		DeclaredSize: int64(len(small)), CreatedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(24 * time.Hour),
	}
	putMedia(t, data, media, content)
	putMedia(t, data, smallMedia, small)

	// 2. parleyd again, with nginx in front.
	p = e2e.StartParleyd(t, data, nil, "--limits", "off")
	cdn := startNginx(t, nginxBin, strings.TrimPrefix(p.Base, "http://"))

	// The send carries the attachment's fields; bob's history has them.
	sent := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations/"+convID+"/messages", alice, map[string]any{
		"client_msg_id": "m1", "type": "file", "body": "the CV", "attachments": []map[string]any{{"media_id": media.ID}}})
	att := sent["message"].(map[string]any)["attachments"].([]any)[0].(map[string]any)
	if att["media_id"] != media.ID || att["content_type"] != "application/pdf" || att["filename"] != media.Filename ||
		att["sha256"] != media.SHA256 || int(att["size"].(float64)) != len(content) {
		t.Fatalf("attachment in the ack: %v", att)
	}
	hist := e2e.MustAPI(t, 200, "GET", p.Base+"/v1/conversations/"+convID+"/messages", bob, nil)
	if a := hist["messages"].([]any)[0].(map[string]any)["attachments"].([]any); len(a) != 1 {
		t.Fatalf("history attachments: %v", a)
	}
	// Attaching it again is refused, naming the media.
	code, out := e2e.API(t, http.DefaultClient, "POST", p.Base+"/v1/conversations/"+convID+"/messages", alice, map[string]any{
		"client_msg_id": "m2", "body": "again", "attachments": []map[string]any{{"media_id": media.ID}}})
	if code != 400 || !strings.Contains(fmt.Sprint(out), media.ID) {
		t.Fatalf("second attach: %d %v", code, out)
	}

	// 3. Links: members get the same one; a non-member gets 404.
	link := mediaLink(t, p.Base, alice, media.ID)
	if other := mediaLink(t, p.Base, bob, media.ID); other != link {
		t.Fatalf("bob's link %q differs from alice's %q", other, link)
	}
	if code := mediaLinkCode(t, p.Base, carol, media.ID); code != 404 {
		t.Fatalf("non-member: %d, want 404", code)
	}
	if code := mediaLinkCode(t, p.Base, carol, parley.NewID()); code != 404 {
		t.Fatalf("unknown media: %d, want 404", code)
	}

	// 4. Through nginx: MISS, then HIT, parleyd hit once.
	before := originRequests(t, p.Base)
	res, body := fetch(t, cdn+link, nil)
	if res.StatusCode != 200 || !bytes.Equal(body, content) || res.Header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("first fetch: %d %s, %d bytes, equal %v", res.StatusCode, res.Header.Get("X-Cache-Status"), len(body), bytes.Equal(body, content))
	}
	for name, want := range map[string]string{
		"ETag": `"` + media.SHA256 + `"`, "Content-Type": "application/pdf", "X-Content-Type-Options": "nosniff",
		"Content-Security-Policy": "sandbox", "Content-Disposition": `attachment; filename="R_sum_ 2026.pdf"; filename*=UTF-8''R%C3%A9sum%C3%A9%202026.pdf`,
	} {
		if got := res.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if cc := res.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=") || !strings.HasSuffix(cc, ", immutable") {
		t.Errorf("Cache-Control %q", cc)
	}
	res, body = fetch(t, cdn+link, nil)
	if res.StatusCode != 200 || !bytes.Equal(body, content) || res.Header.Get("X-Cache-Status") != "HIT" {
		t.Fatalf("second fetch: %d %s", res.StatusCode, res.Header.Get("X-Cache-Status"))
	}
	// The file is several slices: the first fetch asked parleyd once per
	// slice, the second not at all.
	slices := (len(content) + (1<<20 - 1)) >> 20
	if got := originRequests(t, p.Base) - before; got != slices {
		t.Fatalf("parleyd served %d requests for two fetches, want %d (one per 1 MiB slice, once)", got, slices)
	}
	t.Logf("cache: first fetch MISS, second HIT; parleyd served %d slice requests, once", slices)

	// A file of one slice: parleyd serves exactly one request for any
	// number of fetches, and an image is not sent as an attachment.
	e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations/"+convID+"/messages", alice, map[string]any{
		"client_msg_id": "m3", "type": "image", "attachments": []map[string]any{{"media_id": smallMedia.ID}}})
	smallLink := mediaLink(t, p.Base, bob, smallMedia.ID)
	before = originRequests(t, p.Base)
	for i, want := range []string{"MISS", "HIT", "HIT"} {
		res, body := fetch(t, cdn+smallLink, nil)
		if res.StatusCode != 200 || !bytes.Equal(body, small) || res.Header.Get("X-Cache-Status") != want ||
			res.Header.Get("Content-Disposition") != "" || res.Header.Get("Content-Type") != "image/webp" {
			t.Fatalf("small fetch %d: %d %s (want %s) %v", i+1, res.StatusCode, res.Header.Get("X-Cache-Status"), want, res.Header)
		}
	}
	if got := originRequests(t, p.Base) - before; got != 1 {
		t.Fatalf("parleyd served %d requests for three fetches of one small file, want 1", got)
	}
	t.Logf("cache: small file MISS, HIT, HIT; parleyd served 1 request")

	// 5. Range: the right bytes, 206, from the cache.
	from, to := 3<<20-100, 3<<20+99 // across a slice boundary
	res, body = fetch(t, cdn+link, map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", from, to)})
	if res.StatusCode != 206 || !bytes.Equal(body, content[from:to+1]) ||
		res.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", from, to, len(content)) {
		t.Fatalf("range: %d %q, %d bytes", res.StatusCode, res.Header.Get("Content-Range"), len(body))
	}
	// Directly from parleyd too.
	res, body = fetch(t, p.Base+link, map[string]string{"Range": "bytes=10-19"})
	if res.StatusCode != 206 || !bytes.Equal(body, content[10:20]) {
		t.Fatalf("range at parleyd: %d", res.StatusCode)
	}

	// 6. A tampered signature: 403, not cached (parleyd sees both).
	tampered := tamperSig(link)
	before = forbiddenRequests(t, p.Base)
	for i := range 2 {
		res, _ := fetch(t, cdn+tampered, nil)
		if res.StatusCode != 403 || res.Header.Get("X-Cache-Status") == "HIT" || res.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("tampered fetch %d: %d %s %q", i+1, res.StatusCode, res.Header.Get("X-Cache-Status"), res.Header.Get("Cache-Control"))
		}
	}
	if got := forbiddenRequests(t, p.Base) - before; got != 2 {
		t.Fatalf("parleyd saw %d of 2 tampered requests: one was cached", got)
	}
	// An expired link: 403 too (exp moved into the past breaks the
	// signature first; the unit tests cover expiry with a valid one).

	// 7. Bob, a second member, fetches the same link: a HIT.
	bobLink := mediaLink(t, p.Base, bob, media.ID)
	res, body = fetch(t, cdn+bobLink, nil)
	if res.StatusCode != 200 || res.Header.Get("X-Cache-Status") != "HIT" || !bytes.Equal(body, content) {
		t.Fatalf("bob's fetch: %d %s", res.StatusCode, res.Header.Get("X-Cache-Status"))
	}

	// 8. Throughput: parleyd (decrypting from the data directory) and
	// nginx's cache, same run, same file.
	direct := throughput(t, p.Base+link, len(content))
	cached := throughput(t, cdn+link, len(content))
	t.Logf("download of %.1f MiB: parleyd %.0f MB/s, nginx cache HIT %.0f MB/s", float64(len(content))/(1<<20), direct, cached)

	// 9. Bob is removed: no new link for him (404), alice still gets one.
	e2e.MustAPI(t, 204, "DELETE", p.Base+"/v1/conversations/"+convID+"/members/"+bobID, alice, nil)
	if code := mediaLinkCode(t, p.Base, bob, media.ID); code != 404 {
		t.Fatalf("removed member: %d, want 404", code)
	}
	if code := mediaLinkCode(t, p.Base, alice, media.ID); code != 302 {
		t.Fatalf("alice after the removal: %d", code)
	}
	// 10. Deleting the message deletes the media: parleyd refuses its
	// link (the cache keeps what it has until max-age: the operator's
	// purge, docs/operations.md).
	e2e.MustAPI(t, 200, "DELETE", p.Base+"/v1/conversations/"+convID+"/messages/1", alice, nil)
	if res, _ := fetch(t, p.Base+link, nil); res.StatusCode != 404 {
		t.Fatalf("deleted media at parleyd: %d, want 404", res.StatusCode)
	}
	if code := mediaLinkCode(t, p.Base, alice, media.ID); code != 404 {
		t.Fatalf("link to deleted media: %d, want 404", code)
	}
}

// putMedia stores a ready media record and its original in the data
// directory of a stopped parleyd, with its master key.
func putMedia(t *testing.T, data string, m *parley.Media, content []byte) {
	t.Helper()
	keys, err := seal.LoadOrCreateKeyFile(filepath.Join(data, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.Context(), filepath.Join(data, "parley.db"), sqlite.Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	blobs, err := fsblob.Open(filepath.Join(data, "media"), keys)
	if err != nil {
		t.Fatal(err)
	}
	info, err := blobs.Put(t.Context(), parley.MediaOriginalKey(m.ID), bytes.NewReader(content))
	if err != nil || info.SHA256 != m.SHA256 {
		t.Fatalf("put: %+v, %v", info, err)
	}
	if err := st.CreateMedia(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

// startNginx runs nginx with deploy/nginx-media.conf, its listen address,
// upstream and cache directory replaced, and returns its base URL.
func startNginx(t *testing.T, bin, upstream string) string {
	t.Helper()
	dir := t.TempDir()
	deploy, err := os.ReadFile("../../../deploy/nginx-media.conf")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	site := string(deploy)
	for old, repl := range map[string]string{
		"listen 80;":                     "listen " + addr + ";",
		"server 127.0.0.1:8080;":         "server " + upstream + ";",
		"/var/cache/nginx/parley-media ": dir + "/cache ",
	} {
		if !strings.Contains(site, old) {
			t.Fatalf("deploy/nginx-media.conf no longer has %q", old)
		}
		site = strings.Replace(site, old, repl, 1)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers must write the test's cache directory
	}
	conf := fmt.Sprintf(`%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 256; }
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
%[3]s
}
`, user, dir, site)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", path, "-g", "daemon off;")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx stderr:\n%s\nerror.log:\n%s", stderr.String(), logs)
		}
	})
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "http://" + addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nginx is not listening on %s: %s", addr, stderr.String())
	return ""
}

// mediaLink asks parleyd for a member's link and returns its Location.
func mediaLink(t *testing.T, base, token, mediaID string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/media/"+mediaID, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 302 || res.Header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("GET /v1/media/%s: %d %q", mediaID, res.StatusCode, res.Header.Get("Cache-Control"))
	}
	return res.Header.Get("Location")
}

func mediaLinkCode(t *testing.T, base, token, mediaID string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/media/"+mediaID, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func fetch(t *testing.T, url string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// tamperSig changes one character of a link's sig.
func tamperSig(link string) string {
	i := strings.Index(link, "sig=") + len("sig=") + 3
	c := byte('A')
	if link[i] == 'A' {
		c = 'B'
	}
	return link[:i] + string(c) + link[i+1:]
}

// originRequests counts the signed downloads parleyd served.
func originRequests(t *testing.T, base string) int {
	return int(e2e.MetricValue(t, base, `parley_media_requests_total{outcome="ok",variant="original"}`))
}

// forbiddenRequests counts the signed links parleyd refused.
func forbiddenRequests(t *testing.T, base string) int {
	return int(e2e.MetricValue(t, base, `parley_media_requests_total{outcome="forbidden",variant="original"}`))
}

// throughput downloads url repeatedly for about a second and returns MB/s
// (10^6 bytes).
func throughput(t *testing.T, url string, size int) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	n := 0
	for time.Since(start) < time.Second || n < 3 {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil || got != int64(size) || res.StatusCode != 200 {
			t.Fatalf("throughput fetch: %d, %d bytes, %v", res.StatusCode, got, err)
		}
		n++
	}
	return float64(n*size) / 1e6 / time.Since(start).Seconds()
}

// TestMediaUploadToDownload goes the whole way through the real binary: a
// PNG uploaded with tus, processed, attached to a message (the ack carries
// the processed fields), downloaded by the other member through the
// redirect with bytes matching the attachment's sha256, its thumbnail
// too; a non-member gets 404; a link past its expiry is 403 (links of
// three seconds here, enough for a redirect to be followed on a loaded
// machine: --media-url-ttl 3s --media-url-bucket 1s).
func TestMediaUploadToDownload(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), nil, "--limits", "off", "--media-url-ttl", "3s", "--media-url-bucket", "1s")
	_, alice := e2e.Signup(t, p.Base, "alice")
	bobID, bob := e2e.Signup(t, p.Base, "bob")
	_, carol := e2e.Signup(t, p.Base, "carol")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", alice, map[string]any{"kind": "group", "title": "pics", "members": []string{bobID}})
	convID := conv["conversation"].(map[string]any)["id"].(string)

	var png bytes.Buffer
	img := image.NewNRGBA(image.Rect(0, 0, 640, 480))
	for y := range 480 {
		for x := range 640 {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	if err := pngenc.Encode(&png, img); err != nil {
		t.Fatal(err)
	}
	mediaID := tusUpload(t, p.Base, alice, convID, "gradient.png", png.Bytes())

	// Sent over the WebSocket: the ack and bob's live frame carry the
	// processed fields.
	aws, bws := e2e.Connect(t, p.Base, e2e.LoginDevice(t, p.Base, "alice", "ws")), e2e.Connect(t, p.Base, e2e.LoginDevice(t, p.Base, "bob", "ws"))
	aws.MustWrite(map[string]any{"type": "send", "id": "s1", "conversation_id": convID, "client_msg_id": "p1", "message_type": "image",
		"attachments": []map[string]any{{"media_id": mediaID}}})
	var ack e2e.MsgFrame
	if err := aws.Expect("ack", "message", "presence", "typing", "receipt", "conversation").Decode(&ack); err != nil {
		t.Fatal(err)
	}
	live := e2e.ExpectMessage(t, bws)
	for _, m := range []parley.Message{ack.Message, live} {
		if len(m.Attachments) != 1 {
			t.Fatalf("message %+v: want one attachment", m)
		}
		a := m.Attachments[0]
		if a.MediaID != mediaID || a.ContentType != "image/png" || a.Width != 640 || a.Height != 480 || a.Thumbnail == nil || a.Blurhash == "" || a.Filename != "gradient.png" {
			t.Fatalf("attachment %+v", a)
		}
	}
	att := e2e.MustAPI(t, 200, "GET", p.Base+"/v1/conversations/"+convID+"/messages/1", bob, nil)["message"].(map[string]any)["attachments"].([]any)[0].(map[string]any)
	if att["sha256"] != live.Attachments[0].SHA256 {
		t.Fatalf("GET of the message: attachment %v", att)
	}

	// Bob follows the redirect and gets the stored bytes.
	res, body := fetchAuthed(t, p.Base+"/v1/media/"+mediaID, bob)
	sum := sha256.Sum256(body)
	if res.StatusCode != 200 || hex.EncodeToString(sum[:]) != att["sha256"] || res.Header.Get("Content-Type") != "image/png" ||
		res.Header.Get("Content-Disposition") != "" || res.Header.Get("ETag") != `"`+att["sha256"].(string)+`"` {
		t.Fatalf("download: %d %v, sha256 match %v", res.StatusCode, res.Header, hex.EncodeToString(sum[:]) == att["sha256"])
	}
	res, body = fetchAuthed(t, p.Base+"/v1/media/"+mediaID+"?variant=thumbnail", bob)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "image/") || len(body) == 0 {
		t.Fatalf("thumbnail: %d %q %d bytes", res.StatusCode, res.Header.Get("Content-Type"), len(body))
	}
	if code := mediaLinkCode(t, p.Base, carol, mediaID); code != 404 {
		t.Fatalf("non-member: %d", code)
	}
	// The info route answers the same object.
	info := e2e.MustAPI(t, 200, "GET", p.Base+"/v1/media/"+mediaID+"/info", bob, nil)
	if info["sha256"] != att["sha256"] || info["media_id"] != mediaID {
		t.Fatalf("info %v", info)
	}

	// Expiry: a short link is refused once exp has passed.
	link := mediaLink(t, p.Base, bob, mediaID)
	exp, _ := strconv.ParseInt(link[strings.Index(link, "exp=")+4:strings.Index(link, "&")], 10, 64)
	time.Sleep(time.Until(time.Unix(exp, 0)) + 100*time.Millisecond)
	res, _ = fetch(t, p.Base+link, nil)
	if res.StatusCode != 403 || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("expired link: %d %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
}

// tusUpload creates an upload and sends it in one PATCH (a minimal tus
// 1.0 client), returning the media id once it is ready.
func tusUpload(t *testing.T, base, token, convID, filename string, content []byte) string {
	t.Helper()
	meta := "conversation_id " + base64.StdEncoding.EncodeToString([]byte(convID)) + ",filename " + base64.StdEncoding.EncodeToString([]byte(filename))
	req, _ := http.NewRequest("POST", base+"/v1/uploads", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.Itoa(len(content)))
	req.Header.Set("Upload-Metadata", meta)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("tus create: %d %s", res.StatusCode, b)
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	baseURL, _ := url.Parse(base)
	req, _ = http.NewRequest("PATCH", baseURL.ResolveReference(loc).String(), bytes.NewReader(content))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 204 || res.Header.Get("Parley-Media-State") != "ready" {
		t.Fatalf("tus patch: %d %v %s", res.StatusCode, res.Header, b)
	}
	return res.Header.Get("Parley-Media-Id")
}

// fetchAuthed GETs url with a token, following redirects.
func fetchAuthed(t *testing.T, url, token string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}
