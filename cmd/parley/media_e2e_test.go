package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	_ "image/jpeg" // thumbnails
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// The CLI against the real parleyd: send-file a photo and a file; Bob's
// tail shows [image 1024x768 photo.png ID]; download saves them by name
// (the file with identical bytes, the photo as the server stored it),
// never overwriting without --force; history shows the attachments.
func TestSendFileDownloadRoundTrip(t *testing.T) {
	srv := startServer(t)
	alice, bob := newTerm(t, srv.Base), newTerm(t, srv.Base)
	alice.ok("register", "alice")
	bob.ok("register", "bob")
	alice.ok("login", "alice")
	bob.ok("login", "bob")

	dir := t.TempDir()
	img := image.NewRGBA(image.Rect(0, 0, 1024, 768))
	for y := 0; y < 768; y++ {
		for x := 0; x < 1024; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var pngBuf bytes.Buffer
	if err := png.Encode(&pngBuf, img); err != nil {
		t.Fatal(err)
	}
	photo := filepath.Join(dir, "photo.png")
	if err := os.WriteFile(photo, pngBuf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 3<<20+17)
	rand.Read(blob)
	file := filepath.Join(dir, "data.bin")
	if err := os.WriteFile(file, blob, 0o600); err != nil {
		t.Fatal(err)
	}

	tail := bob.cmd("tail")
	stdout, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var tailErr lockedBuffer // written by exec's copier while the test reads it
	tail.Stderr = &tailErr
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tail.Process.Kill(); _ = tail.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitConnected(t, &tailErr)

	var sent struct{ Message parley.Message }
	alice.okJSON(&sent, "send-file", "@bob", photo, "--caption", "the view")
	m := sent.Message
	if m.Type != parley.MessageImage || m.Body != "the view" || len(m.Attachments) != 1 {
		t.Fatalf("sent %+v", m)
	}
	pa := m.Attachments[0]
	if pa.ContentType != "image/png" || pa.Width != 1024 || pa.Height != 768 || pa.Filename != "photo.png" || pa.Thumbnail == nil {
		t.Fatalf("photo attachment %+v", pa)
	}
	want := "[image 1024x768 photo.png " + pa.MediaID + "]"
	deadline := time.After(15 * time.Second)
	for found := false; !found; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("tail ended; stderr: %s", tailErr.String())
			}
			found = strings.Contains(l, want) && strings.Contains(l, "the view")
		case <-deadline:
			t.Fatalf("tail never printed %q; stderr: %s", want, tailErr.String())
		}
	}

	// Text output: the plain progress lines (not a terminal) and the
	// attachment.
	out, errOut, code := alice.run("send-file", "@bob", file)
	if code != 0 || !strings.Contains(errOut, "data.bin: 100% (3.1 MB of 3.1 MB)") || !strings.Contains(out, "[file 3.1 MB data.bin ") {
		t.Fatalf("send-file: exit %d\n%s\n%s", code, out, errOut)
	}
	var hist struct{ Messages []parley.Message }
	bob.okJSON(&hist, "history", "@alice")
	if len(hist.Messages) != 2 || len(hist.Messages[1].Attachments) != 1 {
		t.Fatalf("history %+v", hist)
	}
	fa := hist.Messages[1].Attachments[0]
	if text := bob.ok("history", "@alice"); !strings.Contains(text, want) || !strings.Contains(text, "[file 3.1 MB data.bin "+fa.MediaID+"]") {
		t.Fatalf("history text:\n%s", text)
	}

	down := t.TempDir()
	bob.ok("download", fa.MediaID, down)
	got, err := os.ReadFile(filepath.Join(down, "data.bin"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(blob) {
		t.Fatalf("downloaded %d bytes, %v", len(got), err)
	}
	if _, errOut, code := bob.run("download", fa.MediaID, down); code == 0 || !strings.Contains(errOut, "--force") {
		t.Fatalf("download over an existing file: exit %d, %s", code, errOut)
	}
	bob.ok("download", fa.MediaID, down, "--force")
	bob.ok("download", pa.MediaID, down)
	got, err = os.ReadFile(filepath.Join(down, "photo.png"))
	sum := sha256.Sum256(got)
	if err != nil || hex.EncodeToString(sum[:]) != pa.SHA256 {
		t.Fatalf("photo: %d bytes, %v", len(got), err)
	}
	if _, err := png.Decode(bytes.NewReader(got)); err != nil {
		t.Fatal(err)
	}
	bob.ok("download", "--thumbnail", pa.MediaID, down)
	th, err := os.ReadFile(filepath.Join(down, "photo.thumbnail.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(th))
	if err != nil || cfg.Width != pa.Thumbnail.Width || cfg.Height != pa.Thumbnail.Height {
		t.Fatalf("thumbnail %+v %v (want %+v)", cfg, err, pa.Thumbnail)
	}

	// A stranger gets not_found, and nothing is written.
	eve := newTerm(t, srv.Base)
	eve.ok("register", "eve")
	eve.ok("login", "eve")
	edir := t.TempDir()
	if _, errOut, code := eve.run("download", pa.MediaID, edir); code == 0 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("stranger: exit %d, %s", code, errOut)
	}
	if ents, _ := os.ReadDir(edir); len(ents) != 0 {
		t.Fatalf("stranger's directory: %v", ents)
	}
}
