package main

import (
	"strconv"
	"strings"
	"testing"
)

// TestHistoryTruncated: a history page cut at the server's size budget
// says so, in text (with how to go on) and in --json, and going on as it
// says gets the rest.
func TestHistoryTruncated(t *testing.T) {
	srv := startServer(t)
	alice, bob := newTerm(t, srv.Base), newTerm(t, srv.Base)
	alice.ok("register", "alice")
	bob.ok("register", "bob")
	alice.ok("login", "alice")
	bob.ok("login", "bob")
	big := strings.Repeat("x", 60000) // 6 of them pass the 256 KiB budget
	for range 6 {
		alice.ok("send", "@bob", big)
	}
	type page struct {
		Messages  []struct{ Seq int64 }
		Truncated bool
	}
	var first page
	bob.okJSON(&first, "history", "@alice", "--limit", "10")
	n := len(first.Messages)
	if !first.Truncated || n == 0 || n == 6 || first.Messages[n-1].Seq != 6 {
		t.Fatalf("newest page: %d messages, truncated %v; want fewer than 6, ending at 6, truncated", n, first.Truncated)
	}
	out := bob.ok("history", "@alice", "--limit", "10")
	oldest := first.Messages[0].Seq
	if !strings.Contains(out, "truncated") || !strings.Contains(out, "--before "+itoa(oldest)) {
		t.Fatalf("history of a truncated page does not say so and how to go on:\n%s", lastLines(out, 3))
	}
	var rest page
	bob.okJSON(&rest, "history", "@alice", "--limit", "10", "--before", itoa(oldest))
	if rest.Truncated || len(rest.Messages) != 6-n {
		t.Fatalf("the page before %d: %d messages, truncated %v; want %d, not truncated", oldest, len(rest.Messages), rest.Truncated, 6-n)
	}
	if out := bob.ok("history", "@alice", "--limit", "10", "--before", itoa(oldest)); strings.Contains(out, "truncated") {
		t.Fatalf("a whole page says truncated:\n%s", lastLines(out, 3))
	}
	// Paging forward, the hint is --after the last seq.
	out = bob.ok("history", "@alice", "--limit", "10", "--after", "0")
	var fwd page
	bob.okJSON(&fwd, "history", "@alice", "--limit", "10", "--after", "0")
	if !fwd.Truncated || len(fwd.Messages) == 0 {
		t.Fatalf("the first page forward: %d messages, truncated %v", len(fwd.Messages), fwd.Truncated)
	}
	if last := fwd.Messages[len(fwd.Messages)-1].Seq; !strings.Contains(out, "--after "+itoa(last)) {
		t.Fatalf("a truncated page forward does not say to go on after %d:\n%s", last, lastLines(out, 3))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// lastLines is the end of s, without the long message bodies before it.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 200 {
			lines[i] = l[:200] + "..."
		}
	}
	return strings.Join(lines, "\n")
}
