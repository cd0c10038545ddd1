package seal

import (
	"bytes"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testMasterKey(b byte) []byte { return bytes.Repeat([]byte{b}, MasterKeySize) }

const testMediaID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

// splitLink cuts a signed link into the path and raw query a server sees.
func splitLink(t *testing.T, link string) (string, string) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.EscapedPath(), u.RawQuery
}

func newLinks(t *testing.T, now *time.Time, keys ...[]byte) *MediaLinks {
	t.Helper()
	l, err := NewMediaLinks(keys, MediaLinkOptions{Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestMediaLinkRoundTripAndBucket(t *testing.T) {
	now := time.Date(2026, 12, 5, 2, 10, 7, 0, time.UTC)
	l := newLinks(t, &now, testMasterKey(1))
	first, exp := l.Sign(testMediaID, MediaOriginal)
	// now+1h = 03:10:07, rounded up to the hour: 04:00.
	if want := time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC); !exp.Equal(want) {
		t.Fatalf("exp %v, want %v", exp.UTC(), want)
	}
	if !strings.HasPrefix(first, "/m/"+testMediaID+"/original?exp=") {
		t.Fatalf("link %q", first)
	}
	// Every member asking within the bucket gets the same URL.
	for _, d := range []time.Duration{time.Second, 20 * time.Minute, 49*time.Minute + 52*time.Second} {
		now = time.Date(2026, 12, 5, 2, 10, 7, 0, time.UTC).Add(d)
		if again, _ := l.Sign(testMediaID, MediaOriginal); again != first {
			t.Fatalf("+%v: link %q, want %q", d, again, first)
		}
	}
	// Past the bucket edge the link moves to the next bucket.
	now = time.Date(2026, 12, 5, 3, 0, 1, 0, time.UTC)
	if next, exp := l.Sign(testMediaID, MediaOriginal); next == first || exp.Sub(now) < time.Hour {
		t.Fatalf("next bucket: %q exp %v", next, exp)
	}
	// The first link still verifies (it is valid until 04:00).
	if _, err := l.Open(splitLink(t, first)); err != nil {
		t.Fatalf("open: %v", err)
	}
	// A link is valid for at least the TTL: just after an exact boundary.
	now = time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	if _, exp := l.Sign(testMediaID, MediaOriginal); !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("exact boundary: exp %v", exp)
	}
}

// TestMediaLinkSubSecondNow: a link signed late in a second is still
// valid for the whole TTL (exp is whole seconds: it rounds up, never
// down, which with a 1 s bucket left a link a few milliseconds of life).
func TestMediaLinkSubSecondNow(t *testing.T) {
	now := time.Date(2026, 12, 5, 2, 10, 7, 960_000_000, time.UTC)
	l, err := NewMediaLinks([][]byte{testMasterKey(1)}, MediaLinkOptions{TTL: time.Second, Bucket: time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	link, exp := l.Sign(testMediaID, MediaOriginal)
	if want := time.Date(2026, 12, 5, 2, 10, 9, 0, time.UTC); !exp.Equal(want) {
		t.Fatalf("exp %v, want %v (now+TTL rounded up)", exp.UTC(), want)
	}
	now = now.Add(time.Second - time.Millisecond) // just under the TTL later
	if _, err := l.Open(splitLink(t, link)); err != nil {
		t.Fatalf("open %v after signing: %v", time.Second-time.Millisecond, err)
	}
}

func TestMediaLinkTampered(t *testing.T) {
	now := time.Date(2026, 12, 5, 2, 10, 7, 0, time.UTC)
	l := newLinks(t, &now, testMasterKey(1))
	link, exp := l.Sign(testMediaID, MediaOriginal)
	path, query := splitLink(t, link)
	q, _ := url.ParseQuery(query)
	sig := q.Get("sig")
	other := "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"
	flip := []byte(sig)
	flip[5] ^= 'A' ^ 'B'
	if flip[5] == sig[5] {
		flip[5] = 'A'
	}
	for name, c := range map[string]struct{ path, query string }{
		"sig":     {path, "exp=" + q.Get("exp") + "&sig=" + string(flip)},
		"exp":     {path, "exp=" + itoa(exp.Unix()+3600) + "&sig=" + sig},
		"variant": {"/m/" + testMediaID + "/thumbnail", query},
		"id":      {"/m/" + other + "/original", query},
	} {
		_, err := l.Open(c.path, c.query)
		if !errors.Is(err, ErrMediaLinkSignature) {
			t.Errorf("%s tampered: %v, want ErrMediaLinkSignature", name, err)
		}
	}
	// Another deployment's keys do not verify it.
	if _, err := newLinks(t, &now, testMasterKey(2)).Open(path, query); !errors.Is(err, ErrMediaLinkSignature) {
		t.Errorf("other keys: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestMediaLinkExpired(t *testing.T) {
	now := time.Date(2026, 12, 5, 2, 10, 7, 0, time.UTC)
	l := newLinks(t, &now, testMasterKey(1))
	link, exp := l.Sign(testMediaID, MediaThumbnail)
	now = exp.Add(-time.Second)
	if _, err := l.Open(splitLink(t, link)); err != nil {
		t.Fatalf("a second before exp: %v", err)
	}
	now = exp
	if _, err := l.Open(splitLink(t, link)); !errors.Is(err, ErrMediaLinkExpired) {
		t.Fatalf("at exp: %v, want ErrMediaLinkExpired", err)
	}
}

func TestMediaLinkRotation(t *testing.T) {
	now := time.Date(2026, 12, 5, 2, 10, 7, 0, time.UTC)
	old := newLinks(t, &now, testMasterKey(1))
	link, _ := old.Sign(testMediaID, MediaOriginal)
	// Step 1: the new key added after the old one: old links verify, new
	// links are still signed with the old key.
	added := newLinks(t, &now, testMasterKey(1), testMasterKey(2))
	if l2, _ := added.Sign(testMediaID, MediaOriginal); l2 != link {
		t.Fatalf("added key changed the link")
	}
	// Step 2: the new key first: new links differ, old ones still verify.
	moved := newLinks(t, &now, testMasterKey(2), testMasterKey(1))
	l3, _ := moved.Sign(testMediaID, MediaOriginal)
	if l3 == link {
		t.Fatal("rotated key signs the same link")
	}
	for _, l := range []string{link, l3} {
		if _, err := moved.Open(splitLink(t, l)); err != nil {
			t.Fatalf("after rotation %q: %v", l, err)
		}
	}
	// Step 3: the old key removed: its links no longer verify.
	only := newLinks(t, &now, testMasterKey(2))
	if _, err := only.Open(splitLink(t, link)); !errors.Is(err, ErrMediaLinkSignature) {
		t.Fatalf("old key removed: %v", err)
	}
	if _, err := only.Open(splitLink(t, l3)); err != nil {
		t.Fatalf("new link: %v", err)
	}
}

func TestParseMediaLinkMalformed(t *testing.T) {
	sig := strings.Repeat("A", 43)
	good := "exp=1800000000&sig=" + sig
	id := "/m/" + testMediaID
	for _, c := range []struct{ path, query string }{
		{"/x/" + testMediaID + "/original", good},
		{"/m/" + testMediaID, good},
		{"/m//original", good},
		{id + "/original/extra", good},
		{id + "/poster", good},
		{"/m/" + strings.Repeat("a", 65) + "/original", good},
		{"/m/..%2F..%2Fetc/original", good},
		{"/m/a_b/original", good},
		{id + "/original", ""},
		{id + "/original", "exp=1800000000"},
		{id + "/original", good + "&x=1"},
		{id + "/original", good + "&exp=1"},
		{id + "/original", "exp=-1&sig=" + sig},
		{id + "/original", "exp=+1&sig=" + sig},
		{id + "/original", "exp=99999999999999999999&sig=" + sig},
		{id + "/original", "exp=1800000000&sig=" + sig[:42]},
		{id + "/original", "exp=1800000000&sig=" + sig + "="},
		{id + "/original", "exp=1800000000&sig=" + sig[:42] + "B"}, // non-zero padding bits
		{id + "/original", "exp=1800000000&sig=" + sig[:42] + "%"},
		{id + "/original", "exp=18;sig=" + sig},
	} {
		if _, err := ParseMediaLink(c.path, c.query); !errors.Is(err, ErrMediaLinkMalformed) {
			t.Errorf("ParseMediaLink(%q, %q) = %v, want ErrMediaLinkMalformed", c.path, c.query, err)
		}
	}
	if _, err := ParseMediaLink(id+"/original", good); err != nil {
		t.Errorf("good link: %v", err)
	}
}

func TestNewMediaLinksErrors(t *testing.T) {
	for name, c := range map[string]struct {
		keys [][]byte
		opts MediaLinkOptions
	}{
		"no key":   {nil, MediaLinkOptions{}},
		"short":    {[][]byte{make([]byte, 16)}, MediaLinkOptions{}},
		"repeated": {[][]byte{testMasterKey(1), testMasterKey(1)}, MediaLinkOptions{}},
		"bucket":   {[][]byte{testMasterKey(1)}, MediaLinkOptions{Bucket: time.Millisecond}},
	} {
		if _, err := NewMediaLinks(c.keys, c.opts); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzParseMediaLink checks that any path and query either fail to parse
// or parse to a link whose parts are what the grammar allows, and that a
// link signed for the parsed parts verifies while the fuzzed one does not
// unless its signature is exactly that.
func FuzzParseMediaLink(f *testing.F) {
	now := time.Date(2026, 12, 5, 2, 10, 7, 0, time.UTC)
	l, err := NewMediaLinks([][]byte{testMasterKey(1)}, MediaLinkOptions{Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	link, _ := l.Sign(testMediaID, MediaOriginal)
	p, q, _ := strings.Cut(link, "?")
	f.Add(p, q)
	f.Add("/m/x/thumbnail", "exp=1&sig="+strings.Repeat("_", 43))
	f.Add("/m/%2e%2e/original", "sig=a&exp=1")
	f.Add("/m/a/original", "exp=1&exp=2&sig=b")
	f.Fuzz(func(t *testing.T, path, query string) {
		got, err := ParseMediaLink(path, query)
		if err != nil {
			if !errors.Is(err, ErrMediaLinkMalformed) {
				t.Fatalf("error %v is not ErrMediaLinkMalformed", err)
			}
			return
		}
		if !validMediaID(got.MediaID) || got.Variant != MediaOriginal && got.Variant != MediaThumbnail || len(got.Sig) != 32 || got.Exp.Unix() < 0 {
			t.Fatalf("parsed %+v", got)
		}
		if path != MediaLinkPrefix+got.MediaID+"/"+got.Variant {
			t.Fatalf("path %q parsed as %+v", path, got)
		}
		want := mac(l.keys[0], got.MediaID, got.Variant, got.Exp.Unix(), nil)
		verr := l.Verify(got)
		if bytes.Equal(want, got.Sig) {
			if verr != nil && !errors.Is(verr, ErrMediaLinkExpired) {
				t.Fatalf("correct signature: %v", verr)
			}
		} else if !errors.Is(verr, ErrMediaLinkSignature) {
			t.Fatalf("wrong signature verified: %v", verr)
		}
	})
}

// BenchmarkMediaLink: signing (every GET /v1/media) and parsing plus
// verifying (every /m/ request that reaches parleyd).
func BenchmarkMediaLink(b *testing.B) {
	l, err := NewMediaLinks([][]byte{testMasterKey(1), testMasterKey(2)}, MediaLinkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	link, _ := l.Sign(testMediaID, MediaOriginal)
	path, query, _ := strings.Cut(link, "?")
	b.Run("Sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l.Sign(testMediaID, MediaOriginal)
		}
	})
	b.Run("Verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, err := l.VerifyLink(path, query); err != nil {
				b.Fatal(err)
			}
		}
	})
}
