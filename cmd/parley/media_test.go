package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/fakemedia"
)

// runFake runs the CLI in-process against a fake server, logged in with
// the fake's token.
func runFake(t *testing.T, server, config string, args ...string) (string, string, error) {
	t.Helper()
	saved := savedConfig{Server: server, Tokens: &client.Tokens{UserID: "u1", DeviceID: "d1", AccessToken: "tok1",
		RefreshToken: "r1", AccessExpires: time.Now().Add(time.Hour)}}
	if _, err := os.Stat(filepath.Join(config, "config.json")); err != nil {
		data, _ := json.Marshal(saved)
		if err := os.WriteFile(filepath.Join(config, "config.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, append([]string{"--config", config}, args...), env{getenv: func(string) string { return "" },
		stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	return out.String(), errb.String(), err
}

// send-file uploads (through a connection cut at 60%) and sends a message
// with the attachment; download saves it under its name, and never
// overwrites without --force.
func TestSendFileAndDownloadFake(t *testing.T) {
	f, srv := fakemedia.New(t)
	const size = 3 << 20
	data := make([]byte, size)
	rand.Read(data)
	src := filepath.Join(t.TempDir(), "beach photo.jpg")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f.CutUploadAt = size * 6 / 10
	config := t.TempDir()
	out, errOut, err := runFake(t, srv.URL, config, "--json", "send-file", "conv1", src, "--caption", "look", "--chunk-mib", "1")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var got struct{ Message parley.Message }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	m := got.Message
	if m.Type != parley.MessageImage || m.Body != "look" || len(m.Attachments) != 1 || m.Attachments[0].Filename != "beach photo.jpg" ||
		m.Attachments[0].ContentType != "image/jpeg" || m.Attachments[0].Size != size {
		t.Fatalf("message %+v", m)
	}
	if !strings.Contains(errOut, "100% (3.1 MB of 3.1 MB)") { // not a terminal: plain lines
		t.Fatalf("progress: %q", errOut)
	}
	if f.Count("HEAD") == 0 {
		t.Fatal("the cut upload was not resumed with HEAD")
	}
	id := m.Attachments[0].MediaID

	dir := t.TempDir()
	if _, errOut, err := runFake(t, srv.URL, config, "download", id, dir); err != nil {
		t.Fatalf("%v %s", err, errOut)
	}
	saved, err := os.ReadFile(filepath.Join(dir, "beach photo.jpg"))
	if err != nil || !bytes.Equal(saved, data) {
		t.Fatalf("saved %d bytes, %v", len(saved), err)
	}
	// Again: refused, and the file is untouched.
	if err := os.WriteFile(filepath.Join(dir, "beach photo.jpg"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = runFake(t, srv.URL, config, "download", id, dir)
	if parley.ErrorCode(err) != parley.CodeConflict || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second download: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "beach photo.jpg")); string(b) != "mine" {
		t.Fatal("overwritten without --force")
	}
	if _, _, err := runFake(t, srv.URL, config, "download", id, dir, "--force"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "beach photo.jpg")); !bytes.Equal(b, data) {
		t.Fatal("--force did not overwrite")
	}
	if _, _, err := runFake(t, srv.URL, config, "download", "--thumbnail", id, dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "beach photo.thumbnail.jpg")); string(b) != "thumbnail of "+id {
		t.Fatalf("thumbnail %q", b)
	}
	// An explicit path; no temporary files left behind.
	if _, _, err := runFake(t, srv.URL, config, "download", id, filepath.Join(dir, "x.bin")); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("directory holds %v", entries)
	}
	// stdout
	out, _, err = runFake(t, srv.URL, config, "download", id, "-")
	if err != nil || out != string(data) {
		t.Fatalf("stdout: %d bytes, %v", len(out), err)
	}
}

// On a terminal the bar is redrawn in place; elsewhere a line per 10%.
func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	k := &cli{env: env{stderr: &buf}}
	p := k.progressBar("x.bin")
	p.tty = true
	p.update(0, 4<<20)
	p.update(4<<20, 4<<20)
	p.done(nil)
	out := buf.String()
	if !strings.HasPrefix(out, "\rx.bin [") || !strings.Contains(out, "\rx.bin [==============================] 100% 4.2 MB/4.2 MB") || !strings.HasSuffix(out, "done\n") {
		t.Fatalf("%q", out)
	}
	buf.Reset()
	p = k.progressBar("x.bin")
	for sent := int64(0); sent <= 1000; sent += 50 {
		p.update(sent, 1000)
	}
	p.done(nil)
	if lines := strings.Count(buf.String(), "\n"); lines != 11 || strings.Contains(buf.String(), "\r") {
		t.Fatalf("%d lines: %q", lines, buf.String())
	}
}

func TestFormatAttachment(t *testing.T) {
	for _, c := range []struct {
		a    parley.Attachment
		want string
	}{
		{parley.Attachment{MediaID: "M1", ContentType: "image/jpeg", Width: 1024, Height: 768, Filename: "photo.jpg"}, "[image 1024x768 photo.jpg M1]"},
		{parley.Attachment{MediaID: "M2", ContentType: "video/mp4", Width: 1920, Height: 1080, DurationMS: 12500, Filename: "clip.mp4"}, "[video 1920x1080 12.5s clip.mp4 M2]"},
		{parley.Attachment{MediaID: "M3", ContentType: "application/pdf", Size: 2_100_000, Filename: "report.pdf"}, "[file 2.1 MB report.pdf M3]"},
		// Stored encrypted: opaque bytes, unless the message was decrypted
		// and gave the real type.
		{parley.Attachment{MediaID: "M4", ContentType: "application/octet-stream", Encrypted: true, Size: 10}, "[file 10 B M4]"},
		{parley.Attachment{MediaID: "M6", ContentType: "image/png", Encrypted: true, Size: 10, Width: 3, Height: 2}, "[image 3x2 M6]"},
		{parley.Attachment{MediaID: "M5", ContentType: "image/png", Filename: "a\x1b[31mred\n.png"}, "[image a[31mred .png M5]"},
	} {
		if got := formatAttachment(&c.a); got != c.want {
			t.Errorf("%+v: %q, want %q", c.a, got, c.want)
		}
	}
	m := parley.Message{Seq: 4, Type: parley.MessageImage, Body: "hi", SenderID: "u",
		Attachments: []parley.Attachment{{MediaID: "M1", ContentType: "image/jpeg", Width: 2, Height: 1, Filename: "p.jpg"}}}
	if got := formatMessage(&m, nil, func(string) string { return "ann" }); !strings.HasSuffix(got, "ann: [image] hi [image 2x1 p.jpg M1]") {
		t.Fatalf("%q", got)
	}
}

func TestDefaultFilename(t *testing.T) {
	for _, c := range []struct {
		a     *parley.Attachment
		thumb bool
		want  string
	}{
		{&parley.Attachment{Filename: "photo.jpg"}, false, "photo.jpg"},
		{&parley.Attachment{Filename: "photo.jpg"}, true, "photo.thumbnail.jpg"},
		{&parley.Attachment{Filename: "../../etc/passwd"}, false, "passwd"},
		{&parley.Attachment{Filename: `C:\x\..\evil.exe`}, false, "evil.exe"},
		{&parley.Attachment{Filename: ".."}, false, "ID1"},
		{&parley.Attachment{Filename: ".bashrc"}, false, "bashrc"},
		{&parley.Attachment{ContentType: "application/pdf"}, false, "ID1.pdf"},
		{nil, false, "ID1"},
		{&parley.Attachment{Filename: "a\x00b\u202ec<d>.txt"}, false, "abc_d_.txt"},
	} {
		if got := defaultFilename("ID1", c.a, c.thumb); got != c.want {
			t.Errorf("%+v: %q, want %q", c.a, got, c.want)
		}
	}
}

// Whatever the server calls a file, the local name stays a plain name
// in the directory.
func FuzzSanitizeFilename(f *testing.F) {
	f.Add("photo.jpg")
	f.Add("../../x")
	f.Add("a\x1b]0;title\x07.png")
	f.Fuzz(func(t *testing.T, s string) {
		n := defaultFilename("0193abc", &parley.Attachment{Filename: s}, false)
		if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\\\x00") || strings.HasPrefix(n, ".") || len(n) > 200 {
			t.Fatalf("%q -> %q", s, n)
		}
		if filepath.Base(n) != n {
			t.Fatalf("%q -> %q is not a base name", s, n)
		}
		for _, r := range n {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("%q -> %q has a control character", s, n)
			}
		}
	})
}
