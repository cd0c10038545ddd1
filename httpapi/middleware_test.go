package httpapi

import "testing"

func TestLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1":            "127.0.0.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::99":     "2001:db8:1:2::/64",
		"::ffff:10.0.0.1":      "::ffff:10.0.0.1",
		"garbage":              "garbage",
	} {
		if got := limitKey(in); got != want {
			t.Errorf("limitKey(%q) = %q, want %q", in, got, want)
		}
	}
}
