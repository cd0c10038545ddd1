package client

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/internal/fakemedia"
)

// An upload to an e2ee conversation goes encrypted: the server gets
// opaque bytes and no file name or type; an image gets its thumbnail and
// blurhash made here and the thumbnail uploaded encrypted too; Download
// gives the plaintext back after checking the blob's digest, and refuses
// a blob changed on the server.
func TestEncryptedUploadAndDownload(t *testing.T) {
	f, srv := fakemedia.New(t)
	c := fakeClient(srv)
	c.crypt.convs["conv1"] = true // as a sync would have said

	img := image.NewNRGBA(image.Rect(0, 0, 800, 600))
	for y := range 600 {
		for x := range 800 {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	plain := buf.Bytes()
	path := filepath.Join(t.TempDir(), "holiday photo.png")
	if err := os.WriteFile(path, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := c.UploadFile(testCtx(t), "conv1", path, UploadOptions{ChunkSize: 100 << 10})
	if err != nil {
		t.Fatal(err)
	}
	a := res.E2EE
	if a == nil || a.ContentType != "image/png" || a.Width != 800 || a.Height != 600 || a.Filename != "holiday photo.png" ||
		a.Blurhash == "" || a.Thumbnail == nil || a.Thumbnail.Width == 0 || a.Size != int64(len(plain)) {
		t.Fatalf("attachment %+v", a)
	}
	f.Mu.Lock()
	up := f.Uploads[res.MediaID]
	thumb := f.Uploads[a.Thumbnail.MediaID]
	f.Mu.Unlock()
	if up == nil || thumb == nil {
		t.Fatal("the file or its thumbnail was not uploaded")
	}
	if int64(len(up.Data)) != e2ee.EncryptedFileSize(int64(len(plain))) || bytes.Contains(up.Data, plain[:64]) {
		t.Fatal("the server got the plaintext")
	}
	for _, u := range []*fakemedia.Upload{up, thumb} {
		if u.Meta["encrypted"] != "true" || u.Meta["filename"] != "" || u.Meta["content_type"] != "application/octet-stream" {
			t.Fatalf("upload metadata %v", u.Meta)
		}
	}

	var out bytes.Buffer
	n, ct, err := c.Download(testCtx(t), res.MediaID, "", &out)
	if err != nil || ct != "image/png" || n != int64(len(plain)) || !bytes.Equal(out.Bytes(), plain) {
		t.Fatalf("download: %d bytes, %q, %v", n, ct, err)
	}
	out.Reset()
	if _, ct, err := c.Download(testCtx(t), res.MediaID, VariantThumbnail, &out); err != nil || ct != "image/jpeg" {
		t.Fatalf("thumbnail: %q %v", ct, err)
	}
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(out.Bytes())); err != nil || cfg.Width != a.Thumbnail.Width {
		t.Fatalf("thumbnail does not decode: %+v %v", cfg, err)
	}

	// The blob changed on the server: refused before decrypting.
	f.Mu.Lock()
	up.Data[100] ^= 1
	f.Mu.Unlock()
	_, _, err = c.Download(testCtx(t), res.MediaID, "", io.Discard)
	if err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("changed blob: %v", err)
	}
}

// Upload of a reader to an e2ee conversation encrypts too; a send names
// the attachment's key only when it was uploaded by this client.
func TestEncryptedUploadReader(t *testing.T) {
	f, srv := fakemedia.New(t)
	c := fakeClient(srv)
	c.crypt.convs["conv1"] = true
	plain := bytes.Repeat([]byte("some notes "), 20000)
	res, err := c.Upload(testCtx(t), "conv1", bytes.NewReader(plain), int64(len(plain)), UploadOptions{Filename: "notes.txt", ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	if res.E2EE == nil || res.E2EE.Filename != "notes.txt" || res.E2EE.Thumbnail != nil {
		t.Fatalf("%+v", res.E2EE)
	}
	f.Mu.Lock()
	stored := f.Uploads[res.MediaID].Data
	f.Mu.Unlock()
	if bytes.Contains(stored, []byte("some notes")) {
		t.Fatal("plaintext on the server")
	}
	p := &Pending{Type: "text"}
	if err := c.resolveUploads(p, []string{res.MediaID}); err != nil || len(p.E2EEAttachments) != 1 {
		t.Fatalf("resolve: %v %+v", err, p)
	}
	// The default type with a file: the content says file.
	content, err := contentOf(p)
	if ct, _ := e2ee.ParseContent(content); err != nil || ct.Type != e2ee.TypeFile || ct.Attachments[0].Filename != "notes.txt" {
		t.Fatalf("content %s %v", content, err)
	}
	if err := c.resolveUploads(&Pending{}, []string{"someone-elses"}); err == nil {
		t.Fatal("a media id without key resolved")
	}
	// A plaintext conversation gets the bytes as they are.
	c.crypt.convs["conv2"] = false
	res2, err := c.Upload(testCtx(t), "conv2", bytes.NewReader(plain), int64(len(plain)), UploadOptions{})
	if err != nil || res2.E2EE != nil {
		t.Fatalf("plaintext upload: %+v %v", res2, err)
	}
}

func TestFileKeyStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s := &FileKeyStore{Dir: dir}
	if data, err := s.Load("d1"); data != nil || err != nil {
		t.Fatalf("empty store: %q %v", data, err)
	}
	if err := s.Save("d1", []byte(`{"k":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Save("../evil", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 || strings.Contains(e.Name(), "..") {
			t.Errorf("%s: mode %v", e.Name(), info.Mode().Perm())
		}
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", info.Mode().Perm())
	}
	if data, _ := s.Load("d1"); string(data) != `{"k":1}` {
		t.Fatalf("load %q", data)
	}
	if err := s.Delete("d1"); err != nil {
		t.Fatal(err)
	}
	if data, _ := s.Load("d1"); data != nil {
		t.Fatal("deleted keystore still there")
	}
}
