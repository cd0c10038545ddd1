package storetest

import (
	"strings"
	"testing"

	"github.com/parleychat/parley"
)

// testSyncBudget: with a Budget, pages stay near it, a conversation over
// it keeps its newest messages with MoreMessages, and paging still returns
// every changed conversation exactly once.
func testSyncBudget(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	body := strings.Repeat("b", 20<<10)
	want := map[string]bool{}
	for range 10 {
		g := f.group(a, b)
		want[g.ID] = true
		for range 5 {
			f.send(g, a, body)
		}
	}
	const budget = 64 << 10
	seen := map[string]int{}
	q := parley.SyncQuery{Conversations: 100, Messages: 50, Budget: budget}
	for pages := 0; ; pages++ {
		if pages > 50 {
			t.Fatal("paging does not end")
		}
		page, err := f.s.Sync(f.ctx, b.ID, q, f.now)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, c := range page.Conversations {
			seen[c.View.ID]++
			if len(c.Messages) == 0 {
				t.Fatalf("conversation %s came with no message", c.View.ID)
			}
			if last := c.Messages[len(c.Messages)-1].Seq; last != 5 {
				t.Fatalf("conversation %s: newest returned seq %d, want 5", c.View.ID, last)
			}
			if len(c.Messages) < 5 && !c.MoreMessages {
				t.Fatalf("conversation %s: %d of 5 messages without MoreMessages", c.View.ID, len(c.Messages))
			}
			for _, m := range c.Messages {
				size += len(m.Body)
			}
		}
		if size > budget+len(body) {
			t.Fatalf("page of %d body bytes, budget %d", size, budget)
		}
		if !page.HasMore {
			break
		}
		q.Until, q.AfterStamp, q.AfterID = page.Until, page.NextStamp, page.NextID
	}
	if len(seen) != len(want) {
		t.Fatalf("saw %d conversations, want %d", len(seen), len(want))
	}
	for id, n := range seen {
		if !want[id] || n != 1 {
			t.Fatalf("conversation %s seen %d times", id, n)
		}
	}
}
