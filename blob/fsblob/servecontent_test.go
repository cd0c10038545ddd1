package fsblob_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// TestServeContent: a BlobFile behind http.ServeContent answers Range
// requests with the right bytes and 206, as the media download handler
// will.
func TestServeContent(t *testing.T) {
	s := open(t, t.TempDir(), [][]byte{bytes.Repeat([]byte{1}, 32)})
	const size = 300_000
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{5}).Read(b)
	info, err := s.Put(t.Context(), "m/video", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := parley.NewBlobFile(r.Context(), s, "m/video", info.Size)
		defer f.Close()
		w.Header().Set("ETag", `"`+info.SHA256+`"`)
		http.ServeContent(w, r, "", time.Time{}, f)
	}))
	defer srv.Close()
	for _, c := range []struct {
		rng        string
		status     int
		start, end int // of b, end exclusive
	}{
		{"", 200, 0, size},
		{"bytes=0-0", 206, 0, 1},
		{"bytes=65530-65545", 206, 65530, 65546},
		{"bytes=-100", 206, size - 100, size},
		{"bytes=200000-", 206, 200000, size},
		{fmt.Sprintf("bytes=%d-%d", size-1, size+50), 206, size - 1, size},
		{fmt.Sprintf("bytes=%d-", size), 416, 0, 0},
	} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if c.rng != "" {
			req.Header.Set("Range", c.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != c.status {
			t.Fatalf("Range %q: status %d, %v; want %d", c.rng, resp.StatusCode, err, c.status)
		}
		if c.status != 416 && !bytes.Equal(got, b[c.start:c.end]) {
			t.Fatalf("Range %q: %d bytes, not b[%d:%d]", c.rng, len(got), c.start, c.end)
		}
	}
	// Two ranges in one request (multipart/byteranges): Seek back and forth.
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Range", "bytes=200000-200009,10-19")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || !bytes.Contains(body, b[200000:200010]) || !bytes.Contains(body, b[10:20]) {
		t.Fatalf("multi-range: status %d, body lacks a part", resp.StatusCode)
	}
}

func TestBlobFileSeek(t *testing.T) {
	s := open(t, t.TempDir(), [][]byte{bytes.Repeat([]byte{1}, 32)})
	if _, err := s.Put(t.Context(), "f", bytes.NewReader([]byte("0123456789"))); err != nil {
		t.Fatal(err)
	}
	f := parley.NewBlobFile(t.Context(), s, "f", 10)
	defer f.Close()
	read := func(n int) string {
		p := make([]byte, n)
		k, err := io.ReadFull(f, p)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			t.Fatal(err)
		}
		return string(p[:k])
	}
	if got := read(3); got != "012" {
		t.Fatalf("read %q", got)
	}
	if pos, _ := f.Seek(2, io.SeekCurrent); pos != 5 || read(2) != "56" {
		t.Fatal("SeekCurrent")
	}
	if pos, _ := f.Seek(-1, io.SeekEnd); pos != 9 || read(5) != "9" {
		t.Fatal("SeekEnd")
	}
	if _, err := f.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("negative position accepted")
	}
	if pos, _ := f.Seek(20, io.SeekStart); pos != 20 || read(1) != "" {
		t.Fatal("past the end")
	}
	// A recorded size larger than the object: the reader says so.
	long := parley.NewBlobFile(t.Context(), s, "f", 11)
	defer long.Close()
	if _, err := io.ReadAll(long); err != io.ErrUnexpectedEOF {
		t.Fatalf("object shorter than its size: %v", err)
	}
	missing := parley.NewBlobFile(t.Context(), s, "nope", 5)
	if _, err := missing.Read(make([]byte, 1)); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("missing object: %v", err)
	}
}
