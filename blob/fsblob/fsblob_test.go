package fsblob_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/blob/blobtest"
	"github.com/parleychat/parley/blob/fsblob"
)

func open(tb testing.TB, dir string, keys [][]byte) *fsblob.Store {
	tb.Helper()
	s, err := fsblob.Open(dir, keys)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	blobtest.Run(t, blobtest.Harness{
		NewPlace: func(tb testing.TB) string { return tb.TempDir() },
		Open: func(tb testing.TB, dir string, keys [][]byte) parley.BlobStore {
			return open(tb, dir, keys)
		},
		Tamper: func(tb testing.TB, dir, key string, edit func([]byte) []byte) {
			tb.Helper()
			path := filepath.Join(dir, filepath.FromSlash(key)+".blob")
			b, err := os.ReadFile(path)
			if err != nil {
				tb.Fatal(err)
			}
			if err := os.WriteFile(path, edit(b), 0o600); err != nil {
				tb.Fatal(err)
			}
		},
	})
}

// TestLayout checks what lands on disk: one file per object, in the key's
// directories, encrypted, private, and no temporary file left.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, [][]byte{bytes.Repeat([]byte{1}, 32)})
	plain := bytes.Repeat([]byte("secret photo "), 1000)
	if _, err := s.Put(t.Context(), "media/ab/cd", bytes.NewReader(plain)); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		return err
	})
	if len(files) != 1 || files[0] != filepath.FromSlash("media/ab/cd.blob") {
		t.Fatalf("files on disk: %v", files)
	}
	b, err := os.ReadFile(filepath.Join(dir, files[0]))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("secret photo")) {
		t.Fatal("plaintext on disk")
	}
	st, _ := os.Stat(filepath.Join(dir, files[0]))
	if st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("object file mode %v: readable by others", st.Mode())
	}
	// Deleting the last object removes its empty directories, not the root.
	if err := s.Delete(t.Context(), "media/ab/cd"); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("root after Delete: %v, %v", entries, err)
	}
}

func TestSweepTemp(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, [][]byte{bytes.Repeat([]byte{1}, 32)})
	os.MkdirAll(filepath.Join(dir, "a"), 0o700)
	stale := filepath.Join(dir, "a", ".tmp-123")
	fresh := filepath.Join(dir, "a", ".tmp-456")
	os.WriteFile(stale, []byte("x"), 0o600)
	os.WriteFile(fresh, []byte("x"), 0o600)
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(stale, old, old)
	n, err := s.SweepTemp(time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("SweepTemp = %d, %v; want 1", n, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatal("stale temporary file kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatal("fresh temporary file removed")
	}
}

func TestOpenBadKeys(t *testing.T) {
	for _, keys := range [][][]byte{nil, {make([]byte, 31)}, {bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{1}, 32)}} {
		if _, err := fsblob.Open(t.TempDir(), keys); err == nil {
			t.Errorf("Open with %d keys of %d bytes succeeded", len(keys), len(strings.Repeat("x", 0)))
		}
	}
}
