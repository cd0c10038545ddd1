package service_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// TestContactsWithBigGroup: the presence a user may see is over the
// conversations that are not paged, but the privacy rules between two
// users stay over everything they share: a peer who has accepted only a
// paged group with the viewer, and not the small conversation that makes
// them contacts for presence, is still a contact.
func TestContactsWithBigGroup(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newService(st, service.Config{MaxE2EEMembers: 2, MaxInlineMembers: 2})
	a, c, d, e, x := createUser(t, st, "a"), createUser(t, st, "c"), createUser(t, st, "d"), createUser(t, st, "e"), createUser(t, st, "x")
	for u, v := range map[*parley.User]parley.Visibility{c: parley.VisibleContacts, d: parley.VisibleNobody, e: parley.VisibleContacts} {
		if err := st.SetPrivacy(ctx, u.ID, parley.Privacy{Presence: v, ReadReceipts: parley.VisibleEveryone}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	create := func(kind parley.ConversationKind, members []*parley.User, request *parley.User) {
		t.Helper()
		conv := &parley.Conversation{ID: parley.NewID(), Kind: kind, CreatedAt: now}
		for _, u := range members {
			conv.Members = append(conv.Members, parley.Member{UserID: u.ID, Role: parley.MemberRoleMember, JoinedAt: now, Request: u == request})
		}
		if _, _, err := st.CreateConversation(ctx, conv); err != nil {
			t.Fatal(err)
		}
	}
	create(parley.KindGroup, []*parley.User{a, c, d, x}, nil) // paged: 4 members, inline up to 2
	create(parley.KindDirect, []*parley.User{a, c}, c)        // c has not accepted it, but has the group
	create(parley.KindDirect, []*parley.User{a, d}, nil)      // d: presence nobody
	create(parley.KindDirect, []*parley.User{a, e}, e)        // e: accepted nothing shared with a
	got, err := svc.Contacts(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{c.ID}) {
		t.Fatalf("Contacts(a) = %v, want only c (%s): x shares only the paged group, d shows nobody, e accepted nothing", got, c.ID)
	}
}
