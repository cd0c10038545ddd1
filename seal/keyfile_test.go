package seal

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoadOrCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "seal.key")
	created, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 1 || len(created[0]) != MasterKeySize {
		t.Fatalf("created %d keys", len(created))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file", len(entries))
	}
	again, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || !bytes.Equal(again[0], created[0]) {
		t.Error("reload gave another key")
	}
	if _, err := NewKeyring(again); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrCreateKeyFileRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seal.key")
	results := make([][][]byte, 8)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			keys, err := LoadOrCreateKeyFile(path)
			if err != nil {
				t.Error(err)
			}
			results[i] = keys
		})
	}
	wg.Wait()
	for _, keys := range results[1:] {
		if len(keys) != 1 || !bytes.Equal(keys[0], results[0][0]) {
			t.Fatal("racing creators ended up with different keys")
		}
	}
}

func TestKeyFileFormat(t *testing.T) {
	a, b := newMasterKey(t), newMasterKey(t)
	enc := func(k []byte) string { return encodeForTest(k) }
	dir := t.TempDir()
	for name, c := range map[string]struct {
		content string
		want    [][]byte // nil: an error
	}{
		"two keys, comments": {"# comment\n\n  " + enc(a) + "  \n# old\n" + enc(b) + "\n", [][]byte{a, b}},
		"no newline":         {enc(a), [][]byte{a}},
		"crlf":               {enc(a) + "\r\n" + enc(b) + "\r\n", [][]byte{a, b}},
		"only comments":      {"# nothing\n", nil},
		"empty":              {"", nil},
		"bad line":           {enc(a) + "\nnot-a-key\n", nil},
		"short key":          {enc(a[:16]) + "\n", nil},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadOrCreateKeyFile(path)
			if c.want == nil {
				if err == nil {
					t.Fatalf("loaded %d keys, want an error", len(got))
				}
				if bytes.Contains([]byte(err.Error()), []byte(enc(a))) {
					t.Errorf("error %q shows a key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("%d keys, want %d", len(got), len(c.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], c.want[i]) {
					t.Errorf("key %d differs", i)
				}
			}
		})
	}
}

func encodeForTest(k []byte) string { return base64.StdEncoding.EncodeToString(k) }
