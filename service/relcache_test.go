package service

import (
	"fmt"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

func noRelations() *parley.Relations {
	return &parley.Relations{Blocks: map[string]int64{}, BlockedBy: map[string]int64{}}
}

// fill is a miss answered by r: it reports whether the answer was kept.
func (c *relationsCache) fill(t *testing.T, user, conv string, r *parley.Relations, now time.Time) bool {
	t.Helper()
	if got, _ := c.get(user, conv, now); got != nil {
		t.Fatalf("%s in %s: a hit, want a miss", user, conv)
	}
	_, token := c.get(user, conv, now)
	c.put(user, conv, r, token, now)
	got, _ := c.get(user, conv, now)
	return got == r
}

func TestRelationsCache(t *testing.T) {
	now := time.Unix(1000, 0)
	var c relationsCache
	r := noRelations()
	if !c.fill(t, "u", "c", r, now) {
		t.Fatal("an answer was not kept")
	}
	// Another user's block, or another conversation's change, leaves it.
	c.observe(&Event{Kind: EventBlock, UserID: "x", Users: []string{"y"}})
	c.observe(&Event{Kind: EventConversation, ConversationID: "d"})
	if got, _ := c.get("u", "c", now); got != r {
		t.Fatal("an unrelated event dropped the answer")
	}
	// A block naming the user (either side) drops it, in every
	// conversation; a change of the conversation too.
	for _, e := range []*Event{
		{Kind: EventBlock, UserID: "u", Users: []string{"v"}},
		{Kind: EventBlock, UserID: "v", Users: []string{"u"}},
		{Kind: EventConversation, ConversationID: "c", Action: ActionMemberAdded},
	} {
		if got, _ := c.get("u", "c", now); got == nil {
			c.fill(t, "u", "c", r, now)
		}
		c.observe(e)
		if got, _ := c.get("u", "c", now); got != nil {
			t.Fatalf("still cached after %+v", e)
		}
	}
	// clear drops all; an answer ages out.
	c.fill(t, "u", "c", r, now)
	c.clear()
	if got, _ := c.get("u", "c", now); got != nil {
		t.Fatal("served after clear")
	}
	c.fill(t, "u", "c", r, now)
	later := now.Add(relCacheMaxAge)
	if got, _ := c.get("u", "c", later); got != nil {
		t.Fatal("served past its age")
	}
	now = later
	// An answer listing many users is not kept.
	many := noRelations()
	for i := range relCacheMaxListed + 1 {
		many.Blocks[fmt.Sprint("b", i)] = 0
	}
	if c.fill(t, "u", "c", many, now) {
		t.Fatal("kept an answer listing many users")
	}
}

// TestRelationsCacheChanging: while a change of a user or a conversation
// is in flight on this node, their lookups miss and are not kept; a fill
// that began before a change and ends after it is not kept either.
func TestRelationsCacheChanging(t *testing.T) {
	now := time.Unix(1000, 0)
	var c relationsCache
	r := noRelations()
	for _, change := range []struct {
		users []string
		conv  string
	}{{[]string{"u", "v"}, ""}, {nil, "c"}} {
		if got, _ := c.get("u", "c", now); got == nil {
			c.fill(t, "u", "c", r, now)
		}
		_, early := c.get("u", "other", now) // a fill in flight
		done := c.changing(change.users, change.conv)
		if got, token := c.get("u", "c", now); got != nil || token != noFill {
			t.Fatalf("%+v: a lookup during the change got %v, token %d", change, got, token)
		}
		c.put("u", "c", r, noFill, now)
		c.put("u", "other", r, early, now)
		if got, _ := c.get("u", "c", now); got != nil {
			t.Fatalf("%+v: a fill during the change was kept", change)
		}
		done()
		if got, _ := c.get("u", "other", now); got != nil {
			t.Fatalf("%+v: a fill begun before the change was kept", change)
		}
		if got, _ := c.get("u", "c", now); got != nil {
			t.Fatalf("%+v: an answer from before the change served after it", change)
		}
		if !c.fill(t, "u", "c", r, now) {
			t.Fatalf("%+v: not kept after the change", change)
		}
	}
	// Two changes of one user at once: lookups read the store until both
	// are done.
	d1 := c.changing([]string{"u"}, "")
	d2 := c.changing([]string{"u"}, "")
	d1()
	if _, token := c.get("u", "c", now); token != noFill {
		t.Fatal("a change still in flight, but the lookup may fill")
	}
	d2()
	if !c.fill(t, "u", "c", r, now) {
		t.Fatal("not kept after both changes")
	}
}

// TestRelationsCacheBounds: the number of answers stays at most
// relCacheEntries, and the users named by blocks at most
// relCacheBlockedUsers.
func TestRelationsCacheBounds(t *testing.T) {
	now := time.Unix(1000, 0)
	var c relationsCache
	r := noRelations()
	for i := range relCacheEntries + 100 {
		_, token := c.get("u", fmt.Sprint("c", i), now)
		c.put("u", fmt.Sprint("c", i), r, token, now)
		_, token = c.get("v", fmt.Sprint("c", i), now)
		c.put("v", fmt.Sprint("c", i), r, token, now)
	}
	n := 0
	for _, users := range c.convs {
		n += len(users)
	}
	if n != c.entries || n > relCacheEntries || n < relCacheEntries/2 {
		t.Fatalf("%d answers held (counted %d), bound %d", n, c.entries, relCacheEntries)
	}
	for i := range relCacheBlockedUsers {
		c.observe(&Event{Kind: EventBlock, UserID: fmt.Sprint("x", i), Users: []string{fmt.Sprint("y", i)}})
		if len(c.blockedAt) > relCacheBlockedUsers {
			t.Fatalf("%d users named by blocks held", len(c.blockedAt))
		}
	}
}
