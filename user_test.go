package parley

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestCleanText(t *testing.T) {
	ok := []struct{ in, want string }{
		{"  Alice  ", "Alice"},
		{"Zoë 🦊", "Zoë 🦊"},
		{"مرحبا", "مرحبا"}, // right-to-left script is fine; overrides are not
		{"family 👨\u200D👩\u200D👧", "family 👨\u200D👩\u200D👧"},
		{"cook 👩🏽\u200D🍳", "cook 👩🏽\u200D🍳"},
		{"rainbow 🏳\uFE0F\u200D🌈", "rainbow 🏳\uFE0F\u200D🌈"},
	}
	for _, c := range ok {
		got, err := CleanText("display_name", c.in, 64)
		if err != nil || got != c.want {
			t.Errorf("CleanText(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	bad := []string{
		"photo\u202Egnp.exe", // right-to-left override
		"a\u202Ab", "a\u202Bb", "a\u202Cb", "a\u202Db",
		"a\u2066b", "a\u2067b", "a\u2068b", "a\u2069b", // isolates
		"a\u200Eb", "a\u200Fb", "a\u061Cb", // marks
		"ad\u200Bmin",            // zero-width space
		"ad\u200Cmin",            // zero-width non-joiner
		"ad\u200Dmin",            // zero-width joiner between letters
		"\u200D🦊",                // joiner at the start
		"🦊\u200D",                // and at the end
		"ad\u2060min",            // word joiner
		"ad\uFEFFmin",            // BOM
		"ad\u00ADmin",            // soft hyphen
		"hi\U000E0041\U000E0042", // tag characters (hidden text)
		"a\u2028b", "a\u2029b",   // line and paragraph separators
		"a\x00b", "a\nb", "a\u0085b", // controls
		"bad \xff utf-8",
	}
	for _, in := range bad {
		if got, err := CleanText("display_name", in, 64); err == nil || ErrorCode(err) != CodeInvalidRequest {
			t.Errorf("CleanText(%q) = %q, %v; want invalid_request", in, got, err)
		}
	}
	if _, err := CleanText("title", strings.Repeat("é", 65), 64); ErrorCode(err) != CodeInvalidRequest {
		t.Errorf("65 characters: got %v", err)
	}
}

// FuzzCleanText: whatever goes in, what comes out is trimmed valid UTF-8
// within the limit, with no control or format character other than a
// joiner inside an emoji sequence.
func FuzzCleanText(f *testing.F) {
	for _, s := range []string{"Alice", "photo\u202Egnp.exe", "👨\u200D👩", "a\u200Db", "", " \t "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := CleanText("f", in, 32)
		if err != nil {
			if ErrorCode(err) != CodeInvalidRequest {
				t.Fatalf("error code %v", err)
			}
			return
		}
		if !utf8.ValidString(out) || utf8.RuneCountInString(out) > 32 || out != strings.TrimSpace(out) {
			t.Fatalf("CleanText(%q) = %q", in, out)
		}
		for _, r := range out {
			if unicode.IsControl(r) || (unicode.Is(unicode.Cf, r) && r != zeroWidthJoiner) {
				t.Fatalf("CleanText(%q) kept U+%04X", in, r)
			}
		}
	})
}
