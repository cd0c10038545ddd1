package auth

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestDeviceTokens(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	old, err := NewDeviceTokens([][]byte{oldKey})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDeviceTokens([][]byte{newKey, oldKey}) // rotated
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := d.Issue("alice", now)
	id, ok := d.Verify(tok, "alice", now)
	if !ok || id == "" {
		t.Fatalf("Verify(own token) = %q, %v", id, ok)
	}
	if id2, _ := d.Verify(d.Issue("alice", now), "alice", now); id2 == id {
		t.Fatal("two tokens share an id")
	}
	// A token made before the rotation is still known; one made under a
	// key no longer held is not.
	if _, ok := d.Verify(old.Issue("alice", now), "alice", now); !ok {
		t.Fatal("a token under the previous key was refused")
	}
	if _, ok := old.Verify(tok, "alice", now); ok {
		t.Fatal("a token under a key not held was accepted")
	}
	for name, tc := range map[string]struct {
		token, handle string
		at            time.Time
	}{
		"other handle": {tok, "bob", now},
		"expired":      {tok, "alice", now.Add(DeviceTokenTTL)},
		"empty":        {"", "alice", now},
		"truncated":    {tok[:len(tok)-2], "alice", now},
		"flipped":      {tok[:10] + string(tok[10]^1) + tok[11:], "alice", now},
		"long":         {tok + strings.Repeat("A", 200), "alice", now},
	} {
		if _, ok := d.Verify(tc.token, tc.handle, tc.at); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewDeviceTokens(nil); err == nil {
		t.Error("no secret accepted")
	}
}

// FuzzDeviceTokenVerify: any string a client sends as device_token is
// refused without panicking unless it is a token this server issued.
func FuzzDeviceTokenVerify(f *testing.F) {
	d, _ := NewDeviceTokens([][]byte{bytes.Repeat([]byte{3}, 32)})
	now := time.Unix(1_800_000_000, 0)
	tok := d.Issue("alice", now)
	for _, s := range []string{tok, "", "dt1.", "dt1." + strings.Repeat("A", 75), tok + "="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := d.Verify(s, "alice", now)
		if s == tok && !ok {
			t.Fatalf("own token refused")
		}
		if !ok {
			return
		}
		// Accepted: it must be a token Issue makes (each fuzz worker
		// issues its own with the same key, so not only tok).
		raw, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimPrefix(s, "dt1."))
		if !strings.HasPrefix(s, "dt1.") || err != nil || len(raw) != 40 ||
			"dt1."+base64.RawURLEncoding.EncodeToString(raw) != s || id != base64.RawURLEncoding.EncodeToString(raw[:16]) {
			t.Fatalf("Verify(%q) accepted a token Issue cannot make (id %q)", s, id)
		}
	})
}
