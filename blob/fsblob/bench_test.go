package fsblob_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

const benchSize = 10 << 20

// BenchmarkPut10MB: writing a 10 MB object (encrypt, write, fsync,
// rename); MB/s is plaintext.
func BenchmarkPut10MB(b *testing.B) {
	s := open(b, b.TempDir(), [][]byte{bytes.Repeat([]byte{1}, 32)})
	payload := make([]byte, benchSize)
	rand.NewChaCha8([32]byte{}).Read(payload)
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := s.Put(b.Context(), "bench/object", bytes.NewReader(payload)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet10MB: reading a 10 MB object whole (decrypt and verify).
func BenchmarkGet10MB(b *testing.B) {
	s := open(b, b.TempDir(), [][]byte{bytes.Repeat([]byte{1}, 32)})
	payload := make([]byte, benchSize)
	rand.NewChaCha8([32]byte{}).Read(payload)
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

// BenchmarkGetRange64KB: a 64 KiB range in the middle of a 10 MB object,
// as a video player's Range request: it costs two packages, not the
// object.
func BenchmarkGetRange64KB(b *testing.B) {
	s := open(b, b.TempDir(), [][]byte{bytes.Repeat([]byte{1}, 32)})
	payload := make([]byte, benchSize)
	rand.NewChaCha8([32]byte{}).Read(payload)
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
