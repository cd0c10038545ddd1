package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleychat/parley/blob/fsblob"
	"github.com/parleychat/parley/blob/s3blob"
)

func TestMediaStoreSetting(t *testing.T) {
	load := func(args ...string) (*Config, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c, _, err := loadConfig(fs, args, func(string) string { return "" })
		return c, err
	}
	c, err := load()
	if err != nil || c.MediaStore != "" {
		t.Fatalf("default: %q, %v", c.MediaStore, err)
	}
	const good = "s3://media/p?endpoint=http://127.0.0.1:7070&region=us-east-1&path_style=true"
	if c, err = load("--media-store", good); err != nil || c.MediaStore != good {
		t.Fatalf("--media-store %s: %q, %v", good, c.MediaStore, err)
	}
	for _, bad := range []string{"/var/media", "s3://Bad_Bucket", "s3://media?endpoint=ftp://x", "s3://media?secret=x"} {
		if _, err := load("--media-store", bad); err == nil || !strings.Contains(err.Error(), "media-store") {
			t.Errorf("--media-store %q: %v, want an error naming the setting", bad, err)
		}
	}
}

func TestOpenMedia(t *testing.T) {
	keys := [][]byte{bytes.Repeat([]byte{7}, 32)}
	cfg := &Config{Data: t.TempDir()}
	m, err := openMedia(t.Context(), cfg, keys)
	if err != nil {
		t.Fatal(err)
	}
	fsStore, ok := m.(*fsblob.Store)
	if !ok || fsStore.Root() != filepath.Join(cfg.Data, "media") {
		t.Fatalf("default media store %T at %v", m, fsStore)
	}
	if _, err := os.Stat(filepath.Join(cfg.Data, "media")); err != nil {
		t.Fatal(err)
	}
	cfg.MediaStore = "s3://media?endpoint=http://127.0.0.1:1&path_style=true"
	if m, err = openMedia(t.Context(), cfg, keys); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*s3blob.Store); !ok {
		t.Fatalf("s3:// media store is %T", m)
	}
	// A bucket shared by nodes needs the key shared too, as PostgreSQL does.
	_, err = openNode(t.Context(), &Config{Data: t.TempDir(), MediaStore: cfg.MediaStore}, func(string) string { return "" }, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "S3 media store needs PARLEY_MASTER_KEY") {
		t.Fatalf("openNode with an S3 media store and a key file in the data directory: %v", err)
	}
}
