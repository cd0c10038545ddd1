package atomicfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/parleychat/parley/internal/atomicfile"
)

// TestWrite: a new file and a replaced one have the content and the mode
// asked for, with nothing left beside them; a write that fails leaves
// nothing behind.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret.json")
	check := func(want string, mode os.FileMode) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Fatalf("content %q, %v; want %q", got, err, want)
		}
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != mode {
			t.Fatalf("mode %v, %v; want %v", st.Mode(), err, mode)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("files in the directory: %v; want only %s", entries, filepath.Base(path))
		}
	}
	if err := atomicfile.Write(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("one", 0o600)
	// Replaced, with the mode asked for, not the old file's.
	if err := atomicfile.Write(path, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	check("two", 0o640)
	if err := atomicfile.Write(path, []byte("three"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("three", 0o600)
	// A directory in the way of the rename: the write fails, the
	// temporary file goes, the directory stays.
	blocked := filepath.Join(dir, "blocked")
	if err := os.Mkdir(blocked, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(blocked, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(blocked, []byte("four"), 0o600); err == nil {
		t.Fatal("Write over a directory that is not empty succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("files in the directory after a failed write: %v; want the file and the directory", entries)
	}
	if err := atomicfile.Write(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
}
