package service

import (
	"strings"
	"testing"

	"github.com/parleychat/parley"
)

func TestSyncPositionRoundTrip(t *testing.T) {
	for _, p := range []syncPosition{
		{},
		{Since: 42},
		{Since: 3, Until: 90, AfterStamp: 17, AfterID: "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b"},
	} {
		got, err := decodePosition(p.encode())
		if err != nil || got != p {
			t.Errorf("%v: round trip gave %v, %v", p, got, err)
		}
	}
	for _, bad := range []string{"x", "djE", "djI6MQ" /* v2:1 */, "djE6LTE" /* v1:-1 */, "djE6MTo1OjM6bm90LWFuLWlk" /* v1:1:5:3:not-an-id */} {
		if _, err := decodePosition(bad); parley.ErrorCode(err) != parley.CodeInvalidRequest {
			t.Errorf("%q: %v, want invalid_request", bad, err)
		}
	}
}

// FuzzDecodePosition: a client's position either decodes to one that
// encodes back to itself or fails with invalid_request; never a panic.
func FuzzDecodePosition(f *testing.F) {
	for _, s := range []string{"", "djE6MA", syncPosition{Since: 5, Until: 9, AfterStamp: 6, AfterID: "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b"}.encode(), "!!", "djE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := decodePosition(s)
		if err != nil {
			if parley.ErrorCode(err) != parley.CodeInvalidRequest {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		if p.Since < 0 || p.Until < 0 || p.AfterStamp < 0 || (p.Until != 0 && p.Until < p.Since) {
			t.Fatalf("%q decoded to an impossible %v", s, p)
		}
		again, err := decodePosition(p.encode())
		if err != nil || again != p {
			t.Fatalf("%q: %v does not round-trip: %v %v", s, p, again, err)
		}
	})
}

func TestFitBudget(t *testing.T) {
	body := strings.Repeat("x", 10<<10)
	conv := func(id string, key int64, msgs int) parley.SyncConversation {
		c := parley.SyncConversation{Key: key}
		c.View.ID = id
		for i := range msgs {
			c.Messages = append(c.Messages, parley.Message{Seq: int64(i + 1), Body: body})
		}
		return c
	}
	// One conversation far over the budget keeps its newest messages.
	page := &parley.SyncPage{Conversations: []parley.SyncConversation{conv("a", 5, 100)}}
	fitBudget(page, 64<<10, 100)
	c := page.Conversations[0]
	if !c.MoreMessages || len(c.Messages) == 0 || c.Messages[len(c.Messages)-1].Seq != 100 || syncCost(&c, 100) > 64<<10 || page.HasMore {
		t.Fatalf("cut conversation: %d messages ending %d, more %v", len(c.Messages), c.Messages[len(c.Messages)-1].Seq, c.MoreMessages)
	}
	// A page of several ends before the one that passes the budget and
	// continues after the last kept.
	page = &parley.SyncPage{Conversations: []parley.SyncConversation{conv("a", 1, 3), conv("b", 2, 3), conv("c", 3, 3), conv("d", 4, 3)}}
	fitBudget(page, 70<<10, 100)
	if len(page.Conversations) != 2 || !page.HasMore || page.NextStamp != 2 || page.NextID != "b" {
		t.Fatalf("page cut to %d, has_more %v, next %d/%s", len(page.Conversations), page.HasMore, page.NextStamp, page.NextID)
	}
	// A big group is charged as the paged object it is sent as, not as
	// its member list: 10,000 members cut nothing.
	big := conv("big", 1, 2)
	big.View.Members = make([]parley.Member, 10000)
	page = &parley.SyncPage{Conversations: []parley.SyncConversation{big, conv("e", 2, 2)}}
	fitBudget(page, 64<<10, 100)
	if len(page.Conversations) != 2 || page.HasMore || page.Conversations[0].MoreMessages {
		t.Fatalf("a big group cut the page: %d conversations, has_more %v", len(page.Conversations), page.HasMore)
	}
	fitBudget(page, 64<<10, 20000) // inline: 1.6 MB of members
	if len(page.Conversations) != 1 || !page.HasMore {
		t.Fatalf("an inline list of 10,000 members did not cut the page: %d conversations", len(page.Conversations))
	}
}
