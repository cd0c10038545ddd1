package storetest

import (
	"slices"
	"testing"

	"github.com/parleychat/parley"
)

// contactIDs returns the user ids ContactPeers lists for u and
// maxMembers, sorted, each once.
func contactIDs(t *testing.T, f *fixture, u *parley.User, maxMembers int) []string {
	t.Helper()
	peers, err := f.s.ContactPeers(f.ctx, u.ID, maxMembers)
	if err != nil {
		t.Fatalf("ContactPeers: %v", err)
	}
	ids := make([]string, 0, len(peers))
	for _, p := range peers {
		ids = append(ids, p.UserID)
	}
	slices.Sort(ids)
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatalf("ContactPeers(%s, %d) lists a user twice: %v", u.Handle, maxMembers, ids)
	}
	return ids
}

// testContacts: ContactPeers lists every co-member of the user's
// conversations, and no longer those of a conversation the user left.
func testContacts(t *testing.T, f *fixture) {
	a, b, c, d, loner := f.user(), f.user(), f.user(), f.user(), f.user()
	f.direct(a, b)
	f.group(a, b, c)
	g := f.group(d, a)
	want := func(u *parley.User, ids ...string) {
		t.Helper()
		got := contactIDs(t, f, u, 0)
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

// testContactsBounded: with maxMembers, co-members of bigger
// conversations are no contacts (the presence of paged groups).
func testContactsBounded(t *testing.T, f *fixture) {
	a, b, c, d := f.user(), f.user(), f.user(), f.user()
	f.direct(a, b)
	f.group(a, b, c, d) // 4 members
	f.group(c, d)       // 2 members
	for _, tc := range []struct {
		u    *parley.User
		max  int
		want []string
	}{
		{a, 0, []string{b.ID, c.ID, d.ID}},
		{a, 4, []string{b.ID, c.ID, d.ID}},
		{a, 3, []string{b.ID}},
		{c, 3, []string{d.ID}},
		{c, 1, nil},
		{b, 2, []string{a.ID}},
	} {
		got := contactIDs(t, f, tc.u, tc.max)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if len(got) != len(want) || !slices.Equal(got, want) {
			t.Errorf("contacts of %s up to %d members: %v, want %v", tc.u.Handle, tc.max, got, want)
		}
	}
}
