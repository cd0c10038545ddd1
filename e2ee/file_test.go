package e2ee

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestFileRoundTrip(t *testing.T) {
	key, _ := NewFileKey()
	for _, size := range []int64{0, 1, 15, 16, 17, FileChunkSize - 1, FileChunkSize, FileChunkSize + 1, 2 * FileChunkSize, 3*FileChunkSize + 7} {
		plain := filePlaintext(size)
		var blob bytes.Buffer
		n, err := EncryptFile(key, &blob, iotest.HalfReader(bytes.NewReader(plain)))
		if err != nil || n != int64(blob.Len()) || n != EncryptedFileSize(size) {
			t.Fatalf("size %d: wrote %d of %d (want %d): %v", size, n, blob.Len(), EncryptedFileSize(size), err)
		}
		if got, err := PlainFileSize(n); err != nil || got != size {
			t.Errorf("PlainFileSize(%d) = %d, %v; want %d", n, got, err, size)
		}
		// The seekable encrypter gives the same blob, read in odd pieces
		// and from any offset.
		fe, err := NewFileEncrypter(key, bytes.NewReader(plain), size)
		if err != nil {
			t.Fatal(err)
		}
		if fe.Size() != n {
			t.Fatalf("encrypter size %d, want %d", fe.Size(), n)
		}
		again, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(fe, 100)))
		if err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(fe)
		if err != nil || !bytes.Equal(append(again, rest...), blob.Bytes()) {
			t.Fatalf("size %d: the seekable encrypter differs (%v)", size, err)
		}
		for _, off := range []int64{0, n / 2, n - 1, sealedChunkSize, sealedChunkSize + 3} {
			if off < 0 || off >= n {
				continue
			}
			if _, err := fe.Seek(off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			tail, err := io.ReadAll(fe)
			if err != nil || !bytes.Equal(tail, blob.Bytes()[off:]) {
				t.Fatalf("size %d: read from %d differs", size, off)
			}
		}
		var out bytes.Buffer
		if _, err := DecryptFile(key, &out, iotest.HalfReader(bytes.NewReader(blob.Bytes()))); err != nil || !bytes.Equal(out.Bytes(), plain) {
			t.Fatalf("size %d: decrypt: %v", size, err)
		}
	}
}

func TestFileRefusesDamage(t *testing.T) {
	key, _ := NewFileKey()
	plain := filePlaintext(3*FileChunkSize + 100)
	var buf bytes.Buffer
	if _, err := EncryptFile(key, &buf, bytes.NewReader(plain)); err != nil {
		t.Fatal(err)
	}
	blob := buf.Bytes()
	decrypt := func(b []byte) error {
		_, err := DecryptFile(key, io.Discard, bytes.NewReader(b))
		return err
	}
	if err := decrypt(blob); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"truncated at a chunk boundary": blob[:2*sealedChunkSize],
		"truncated mid-chunk":           blob[:2*sealedChunkSize+50],
		"last chunk dropped and a byte": blob[:3*sealedChunkSize-1],
		"extended":                      append(bytes.Clone(blob), 0),
		"extended by an empty chunk":    append(bytes.Clone(blob), make([]byte, TagSize)...),
		"chunks swapped":                append(append(append([]byte{}, blob[sealedChunkSize:2*sealedChunkSize]...), blob[:sealedChunkSize]...), blob[2*sealedChunkSize:]...),
		"empty":                         {},
		"shorter than a tag":            blob[:10],
	}
	flipped := bytes.Clone(blob)
	flipped[sealedChunkSize+7] ^= 1
	cases["a byte changed"] = flipped
	otherKey, _ := NewFileKey()
	for name, b := range cases {
		if err := decrypt(b); !errors.Is(err, ErrBadFile) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := DecryptFile(otherKey, io.Discard, bytes.NewReader(blob)); !errors.Is(err, ErrBadFile) {
		t.Errorf("another key: %v", err)
	}
	// An empty file's blob is one tag; a lone tag after full chunks is not
	// a valid last chunk even when it opens (it cannot: nonce differs).
	var empty bytes.Buffer
	_, _ = EncryptFile(key, &empty, bytes.NewReader(nil))
	if empty.Len() != TagSize || decrypt(empty.Bytes()) != nil {
		t.Errorf("empty file: %d bytes", empty.Len())
	}
	for _, n := range []int64{1, 15, sealedChunkSize + 16, sealedChunkSize + 5} {
		if _, err := PlainFileSize(n); err == nil {
			t.Errorf("PlainFileSize(%d) accepted", n)
		}
	}
}

func TestFileEncrypterSourceShrinks(t *testing.T) {
	key, _ := NewFileKey()
	fe, _ := NewFileEncrypter(key, bytes.NewReader(make([]byte, 10)), 100)
	if _, err := io.ReadAll(fe); err == nil {
		t.Fatal("a source shorter than its size encrypted")
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
