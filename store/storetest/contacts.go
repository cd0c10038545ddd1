package storetest

import (
	"slices"
	"testing"

	"github.com/parleychat/parley"
)

func testContacts(t *testing.T, f *fixture) {
	a, b, c, d, loner := f.user(), f.user(), f.user(), f.user(), f.user()
	f.direct(a, b)
	f.group(a, b, c)
	g := f.group(d, a)
	want := func(u *parley.User, ids ...string) {
		t.Helper()
		got, err := f.s.Contacts(f.ctx, u.ID)
		if err != nil {
			t.Fatalf("Contacts: %v", err)
		}
		slices.Sort(got)
		slices.Sort(ids)
		if !slices.Equal(got, ids) {
			t.Fatalf("contacts of %s: %v, want %v", u.Handle, got, ids)
		}
	}
	want(a, b.ID, c.ID, d.ID)
	want(c, a.ID, b.ID)
	want(loner)
	if err := removeMember(f, g.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	want(d)
	want(a, b.ID, c.ID)
}
