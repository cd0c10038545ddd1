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

// changingStore is a store in which a membership change (change) commits
// right after the read number at (counting from 0) among the reads the
// presence paths make, to put it between any two of them.
type changingStore struct {
	parley.Store
	at, reads int
	change    func()
}

// read counts a read and makes the change after the one numbered at.
func (s *changingStore) read() {
	if s.reads == s.at {
		s.change()
	}
	s.reads++
}

// changed reports whether the change was made.
func (s *changingStore) changed() bool { return s.reads > s.at }

func (s *changingStore) User(ctx context.Context, id string) (*parley.User, error) {
	defer s.read()
	return s.Store.User(ctx, id)
}

func (s *changingStore) Relations(ctx context.Context, userID, conversationID string) (*parley.Relations, error) {
	defer s.read()
	return s.Store.Relations(ctx, userID, conversationID)
}

func (s *changingStore) ContactPeers(ctx context.Context, userID string, maxMembers int) ([]parley.Peer, error) {
	defer s.read()
	return s.Store.ContactPeers(ctx, userID, maxMembers)
}

func (s *changingStore) Peers(ctx context.Context, userID, conversationID string) ([]parley.Peer, error) {
	defer s.read()
	return s.Store.Peers(ctx, userID, conversationID)
}

func (s *changingStore) ConversationIDs(ctx context.Context, userID string) ([]string, error) {
	defer s.read()
	return s.Store.ConversationIDs(ctx, userID)
}

func (s *changingStore) MemberCount(ctx context.Context, conversationID string, upTo int) (int, error) {
	defer s.read()
	return s.Store.MemberCount(ctx, conversationID, upTo)
}

// TestPresenceOneSnapshot: who is a contact for presence and what the
// privacy rules say of each are decided from one snapshot. A group
// crosses the inline limit (and becomes paged: no presence through it)
// between any two of the store reads a presence answer makes, and the
// answer is the one before the change or the one after, never a mix: the
// contacts of before with the rules of after would show the online state
// of a user whose presence is nobody's, or send a user's presence to a
// stranger it hides it from.
func TestPresenceOneSnapshot(t *testing.T) {
	ctx := context.Background()
	// setup returns a service on a store where u shares a group g of four
	// (the inline limit) with w, s (a message request s has not
	// accepted: a stranger) and y (whose presence is nobody's); the
	// change, after read number at, adds z to g, which makes it paged.
	setup := func(t *testing.T, at int) (svc *service.Service, cs *changingStore, bus *recBus, u, w, y *parley.User) {
		st := openStore(t)
		u, w, s, y, z := createUser(t, st, "u"), createUser(t, st, "w"), createUser(t, st, "s"), createUser(t, st, "y"), createUser(t, st, "z")
		for user, v := range map[*parley.User]parley.Visibility{u: parley.VisibleContacts, y: parley.VisibleNobody} {
			if err := st.SetPrivacy(ctx, user.ID, parley.Privacy{Presence: v, ReadReceipts: parley.VisibleEveryone}); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		g := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, CreatedAt: now}
		for _, m := range []*parley.User{u, w, s, y} {
			g.Members = append(g.Members, parley.Member{UserID: m.ID, Role: parley.MemberRoleMember, JoinedAt: now, Request: m == s})
		}
		if _, _, err := st.CreateConversation(ctx, g); err != nil {
			t.Fatal(err)
		}
		cs = &changingStore{Store: st, at: at, change: func() {
			if _, err := st.ChangeMembers(ctx, g.ID, func(*parley.Conversation) (parley.MemberChange, error) {
				return parley.MemberChange{Add: []parley.Member{{UserID: z.ID, JoinedAt: now}}}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}}
		svc = newService(cs, service.Config{MaxE2EEMembers: 2, MaxInlineMembers: 4})
		bus = &recBus{}
		svc.UseBus(bus)
		return svc, cs, bus, u, w, y
	}
	// reach lists, sorted, the users presence events reach (as the
	// gateway reads them), but their subject.
	reach := func(t *testing.T, st parley.Store, events []service.Event) []string {
		t.Helper()
		var ids []string
		for _, e := range events {
			if e.Kind != service.EventPresence {
				continue
			}
			ids = append(ids, e.Users...)
			if len(e.Users) > 0 {
				continue
			}
			for _, id := range e.Conversations {
				members, _, err := st.Members(ctx, id, parley.MembersQuery{Limit: parley.MaxMembersPage})
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range members {
					if m.UserID != e.UserID && !slices.Contains(e.Hide, m.UserID) {
						ids = append(ids, m.UserID)
					}
				}
			}
		}
		slices.Sort(ids)
		return slices.Compact(ids)
	}
	for at := 0; ; at++ {
		svc, cs, _, u, w, _ := setup(t, at)
		// u lists its online contacts: before, w (not y: nobody's); after,
		// no one (g is paged).
		got, err := svc.Contacts(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{w.ID}) && len(got) != 0 {
			t.Errorf("change after read %d: Contacts(u) = %v; want [w] (%s) before the change or none after it", at, got, w.ID)
		}
		done := !cs.changed()

		svc, cs, bus, u, w, y := setup(t, at)
		// u comes online: before, w and y see it (y's own presence is
		// nobody's, not u's; s is a stranger, and u's presence is for
		// contacts); after, no one.
		if err := svc.Presence(ctx, u.ID, true, time.Time{}); err != nil {
			t.Fatal(err)
		}
		before := []string{w.ID, y.ID}
		slices.Sort(before)
		if got := reach(t, cs.Store, bus.events); !slices.Equal(got, before) && len(got) != 0 {
			t.Errorf("change after read %d: u's presence reaches %v; want w and y %v before the change or no one after it", at, got, before)
		}
		if done && !cs.changed() {
			break // the change came after every read of both
		}
	}
}
