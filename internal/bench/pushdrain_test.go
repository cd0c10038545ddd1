package bench

import (
	"math"
	"testing"
)

func TestParseProcStatCPU(t *testing.T) {
	// A real line's shape (Linux 6.x), with a command name holding a
	// space and a parenthesis: utime 1234 and stime 566 ticks.
	line := "4242 (par ley)d) S 1 4242 4242 0 -1 4194560 12345 0 0 0 1234 566 0 0 20 0 12 0 98765 123456789 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseProcStatCPU([]byte(line))
	if err != nil || math.Abs(got-18.0) > 1e-9 {
		t.Fatalf("parseProcStatCPU = %v, %v; want 18.00 s", got, err)
	}
	for _, bad := range []string{"", "4242 no parenthesis S 1", "4242 (x) S 1 2 3"} {
		if _, err := parseProcStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseProcStatCPU(%q) succeeded", bad)
		}
	}
}

func TestBacklog(t *testing.T) {
	base := serverStats{pushKnown: true, pushDepth: 0, stored: 10, enqueued: 10}
	for _, c := range []struct {
		name string
		s    serverStats
		want int64
		ok   bool
	}{
		{"empty", serverStats{pushKnown: true, stored: 10, enqueued: 10}, 0, true},
		{"in the queue", serverStats{pushKnown: true, pushDepth: 40, stored: 110, enqueued: 110}, 40, true},
		{"still in the enqueue buffer", serverStats{pushKnown: true, pushDepth: 40, stored: 110, enqueued: 80}, 70, true},
		{"dropped at enqueueing", serverStats{pushKnown: true, pushDepth: 0, stored: 110, enqueued: 100, dropped: 10}, 0, true},
		{"retried sends enqueue again", serverStats{pushKnown: true, pushDepth: 5, stored: 110, enqueued: 115}, 5, true},
		{"unreadable (NaN)", serverStats{pushKnown: true, pushDepth: math.NaN(), stored: 110, enqueued: 110}, 0, false},
		{"no push queue", serverStats{stored: 110}, 0, false},
		{"another process start", serverStats{pushKnown: true, start: 1e9, stored: 3, enqueued: 3}, 0, false},
	} {
		n, ok := backlogOf(c.s, base)
		if n != c.want || ok != c.ok {
			t.Errorf("%s: backlog %d, %v; want %d, %v", c.name, n, ok, c.want, c.ok)
		}
	}
}
