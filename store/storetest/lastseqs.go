package storetest

import (
	"testing"
)

// testLastSeqs: LastSeqs reports exactly the user's conversations, each
// with its last_seq.
func testLastSeqs(t *testing.T, f *fixture) {
	a, b, c := f.user(), f.user(), f.user()
	ab := f.group(a, b)
	bc := f.group(b, c)
	for range 3 {
		f.send(ab, a, "hi")
	}
	f.send(bc, c, "hi")

	got, err := f.s.LastSeqs(f.ctx, b.ID)
	if err != nil || len(got) != 2 || got[ab.ID] != 3 || got[bc.ID] != 1 {
		t.Fatalf("LastSeqs(b) = %v, %v; want %s:3 %s:1", got, err, ab.ID, bc.ID)
	}
	got, err = f.s.LastSeqs(f.ctx, a.ID)
	if err != nil || len(got) != 1 || got[ab.ID] != 3 {
		t.Fatalf("LastSeqs(a) = %v, %v; want only %s:3", got, err, ab.ID)
	}
}
