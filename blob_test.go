package parley

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidBlobKey(t *testing.T) {
	for _, key := range []string{"a", "a/b", "media/2026/12/ab-cd_EF.jpg", "x.blob.y", "v1..2", strings.Repeat("k", MaxBlobKeyLen)} {
		if err := ValidBlobKey(key); err != nil {
			t.Errorf("ValidBlobKey(%q) = %v", key, err)
		}
	}
	for _, key := range []string{"", "/", "/a", "a/", "a//b", ".", "..", "../a", "a/..", "a/./b", ".a", "a/.b", "a b", "a\\b", "a\x00", "ä", "a.blob", "a.blob/b", "%2e%2e", strings.Repeat("k", MaxBlobKeyLen+1)} {
		if err := ValidBlobKey(key); !errors.Is(err, ErrBlobKey) || ErrorCode(err) != CodeInvalidRequest {
			t.Errorf("ValidBlobKey(%q) = %v, want ErrBlobKey", key, err)
		}
	}
	for _, prefix := range []string{"", "a", "a/", "a/b", "a/b/", "a/x.bl", "a/x.blob"} {
		if err := ValidBlobPrefix(prefix); err != nil {
			t.Errorf("ValidBlobPrefix(%q) = %v", prefix, err)
		}
	}
	for _, prefix := range []string{"/", "//", "a//", "../", "a/../", ".", "a/.", "x.blob/", "a b"} {
		if err := ValidBlobPrefix(prefix); !errors.Is(err, ErrBlobKey) {
			t.Errorf("ValidBlobPrefix(%q) = %v, want ErrBlobKey", prefix, err)
		}
	}
}

// FuzzValidBlobKey: a key that passes maps to a path inside the root that
// is its own clean form, with no hidden segment and no engine suffix, and
// each of its prefixes passes ValidBlobPrefix.
func FuzzValidBlobKey(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../x", "a/./b", "a//b", ".tmp-1", "x.blob", "a/b.blob", "é", "a\x00", "/abs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if ValidBlobKey(key) != nil {
			return
		}
		root := "/srv/parley/blobs"
		path := filepath.Join(root, filepath.FromSlash(key)+".blob")
		rel, err := filepath.Rel(root, path)
		if err != nil || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
			t.Fatalf("key %q escapes the root: %q", key, path)
		}
		if filepath.ToSlash(rel) != key+".blob" || filepath.Clean("/"+key) != "/"+key {
			t.Fatalf("key %q is not clean: %q", key, rel)
		}
		for seg := range strings.SplitSeq(key, "/") {
			if seg == "" || seg[0] == '.' || strings.HasSuffix(seg, ".blob") {
				t.Fatalf("key %q has segment %q", key, seg)
			}
		}
		for i := range len(key) + 1 {
			if err := ValidBlobPrefix(key[:i]); err != nil {
				t.Fatalf("prefix %q of valid key %q: %v", key[:i], key, err)
			}
		}
	})
}
