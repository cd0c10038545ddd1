package storetest

import (
	"slices"
	"testing"

	"github.com/parleychat/parley"
)

// testMemberCount: exact without a bound, bounded reads stop at upTo+1,
// 0 for no conversation, and the count follows removals.
func testMemberCount(t *testing.T, f *fixture) {
	owner := f.user()
	var others []*parley.User
	for range 6 {
		others = append(others, f.user())
	}
	g := f.group(owner, others...)
	for _, tc := range []struct{ upTo, want int }{{0, 7}, {10, 7}, {7, 7}, {6, 7}, {3, 4}, {1, 2}} {
		n, err := f.s.MemberCount(f.ctx, g.ID, tc.upTo)
		if err != nil || n != tc.want {
			t.Errorf("MemberCount(upTo %d) = %d, %v; want %d", tc.upTo, n, err, tc.want)
		}
	}
	if n, err := f.s.MemberCount(f.ctx, parley.NewID(), 0); err != nil || n != 0 {
		t.Errorf("MemberCount of no conversation = %d, %v; want 0", n, err)
	}
	if err := removeMember(f, g.ID, others[0].ID); err != nil {
		t.Fatal(err)
	}
	if n, err := f.s.MemberCount(f.ctx, g.ID, 0); err != nil || n != 6 {
		t.Errorf("MemberCount after a removal = %d, %v; want 6", n, err)
	}
}

// testMembersPages: pages by user id cover every member once, with
// watermarks and requests as stored; bad queries and unknown
// conversations are refused.
func testMembersPages(t *testing.T, f *fixture) {
	owner := f.user()
	var others []*parley.User
	for range 11 {
		others = append(others, f.user())
	}
	g := f.group(owner, others...)
	f.send(g, owner, "one")
	f.send(g, owner, "two")
	if _, err := f.s.MarkRead(f.ctx, g.ID, others[3].ID, 2); err != nil {
		t.Fatal(err)
	}
	stored := f.conversation(g.ID).Members
	slices.SortFunc(stored, func(a, b parley.Member) int {
		if a.UserID < b.UserID {
			return -1
		}
		return 1
	})

	var got []parley.Member
	after := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		page, count, err := f.s.Members(f.ctx, g.ID, parley.MembersQuery{After: after, Limit: 5})
		if err != nil {
			t.Fatalf("Members: %v", err)
		}
		if count != 12 {
			t.Errorf("count = %d, want 12", count)
		}
		if len(page) > 5 {
			t.Fatalf("page of %d, limit 5", len(page))
		}
		got = append(got, page...)
		if len(page) < 5 {
			break
		}
		after = page[len(page)-1].UserID
	}
	if !slices.EqualFunc(got, stored, func(a, b parley.Member) bool {
		return a.UserID == b.UserID && a.Role == b.Role && a.ReadSeq == b.ReadSeq && a.DeliveredSeq == b.DeliveredSeq &&
			a.JoinedAt.Equal(b.JoinedAt) && a.Request == b.Request
	}) {
		t.Errorf("pages:\n%v\nwant the members by user id:\n%v", got, stored)
	}

	// After the last member: an empty page.
	page, _, err := f.s.Members(f.ctx, g.ID, parley.MembersQuery{After: stored[len(stored)-1].UserID, Limit: 5})
	if err != nil || len(page) != 0 {
		t.Errorf("after the last: %v, %v; want an empty page", page, err)
	}
	for _, q := range []parley.MembersQuery{{Limit: 0}, {Limit: parley.MaxMembersPage + 1}, {After: "nope", Limit: 5}} {
		if _, _, err := f.s.Members(f.ctx, g.ID, q); parley.ErrorCode(err) != parley.CodeInvalidRequest {
			t.Errorf("Members(%+v): %v, want invalid_request", q, err)
		}
	}
	if _, _, err := f.s.Members(f.ctx, parley.NewID(), parley.MembersQuery{Limit: 5}); parley.ErrorCode(err) != parley.CodeConversationNotFound {
		t.Errorf("Members of no conversation: %v, want conversation_not_found", err)
	}
}
