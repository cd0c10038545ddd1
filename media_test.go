package parley

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitizeFilename(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"beach.jpg", "beach.jpg"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\me\photo.png`, "photo.png"},
		{"a\x00b\nc\u202ed.txt", "abcd.txt"},
		{` "quoted" .. `, "quoted"},
		{"..", ""},
		{"dir/", ""},
		{"bad\xffutf8", "bad\uFFFDutf8"},
	} {
		if got := SanitizeFilename(tc.in); got != tc.want {
			t.Errorf("SanitizeFilename(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := SanitizeFilename(strings.Repeat("é", 200))
	if len(long) > MediaFilenameMaxLen || !utf8.ValidString(long) || len(long) < MediaFilenameMaxLen-1 {
		t.Errorf("long name: %d bytes, valid %v", len(long), utf8.ValidString(long))
	}
}

func FuzzSanitizeFilename(f *testing.F) {
	f.Add("../a/b\\c.jpg")
	f.Add("\xff\x00 .")
	f.Fuzz(func(t *testing.T, in string) {
		out := SanitizeFilename(in)
		if len(out) > MediaFilenameMaxLen || !utf8.ValidString(out) || strings.ContainsAny(out, "/\\\"\x00\r\n") {
			t.Fatalf("SanitizeFilename(%q) = %q", in, out)
		}
		if out == "." || out == ".." {
			t.Fatalf("SanitizeFilename(%q) = %q", in, out)
		}
		if SanitizeFilename(out) != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, out, SanitizeFilename(out))
		}
	})
}
