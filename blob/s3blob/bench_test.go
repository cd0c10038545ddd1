package s3blob_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/parleychat/parley/blob/s3blob"
)

const benchSize = 10 << 20

func benchStore(b *testing.B) (*s3blob.Store, []byte) {
	g := needGateway(b)
	c := g.config(g.newBucket(b), "")
	c.PartSize = s3blob.DefaultPartSize
	s, err := s3blob.New(b.Context(), c, [][]byte{bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, benchSize)
	rand.NewChaCha8([32]byte{}).Read(payload)
	return s, payload
}

// BenchmarkPut10MB: a 10 MB object to the local versitygw (encrypt, a
// two-part multipart upload); MB/s is plaintext.
func BenchmarkPut10MB(b *testing.B) {
	s, payload := benchStore(b)
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := s.Put(b.Context(), "bench/object", bytes.NewReader(payload)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet10MB: reading it back whole (one GET, decrypt and verify).
func BenchmarkGet10MB(b *testing.B) {
	s, payload := benchStore(b)
	if _, err := s.Put(b.Context(), "bench/object", bytes.NewReader(payload)); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 128<<10)
	b.SetBytes(benchSize)
	for b.Loop() {
		r, err := s.Get(b.Context(), "bench/object", 0, -1)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.CopyBuffer(io.Discard, r, buf); err != nil || n != benchSize {
			b.Fatal(n, err)
		}
		r.Close()
	}
}

// BenchmarkGetRange64KB: a 64 KiB range in the middle: one ranged GET of
// two packages.
func BenchmarkGetRange64KB(b *testing.B) {
	s, payload := benchStore(b)
	if _, err := s.Put(b.Context(), "bench/object", bytes.NewReader(payload)); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 128<<10)
	b.SetBytes(64 << 10)
	for b.Loop() {
		r, err := s.Get(b.Context(), "bench/object", benchSize/2+100, 64<<10)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.CopyBuffer(io.Discard, r, buf); err != nil || n != 64<<10 {
			b.Fatal(n, err)
		}
		r.Close()
	}
}
