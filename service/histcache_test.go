package service

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// fakeHistory is a conversation's history as the store would return it,
// counting reads.
type fakeHistory struct {
	msgs  []parley.Message
	reads int
}

func (f *fakeHistory) load(_ context.Context, limit int) ([]parley.Message, error) {
	f.reads++
	return slices.Clone(f.msgs[max(0, len(f.msgs)-limit):]), nil
}

func (f *fakeHistory) add(n int) []parley.Message {
	var added []parley.Message
	for range n {
		seq := int64(len(f.msgs) + 1)
		m := parley.Message{ID: fmt.Sprint("m", seq), ConversationID: "c", Seq: seq, Body: fmt.Sprint("body ", seq), CreatedAt: time.Unix(1000+seq, 0)}
		f.msgs = append(f.msgs, m)
		added = append(added, m)
	}
	return added
}

func seqsOf(msgs []parley.Message) []int64 {
	var out []int64
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

func TestHistoryCache(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(2000, 0)
	c := newHistoryCache(10, 5)
	h := &fakeHistory{}
	h.add(7)
	read := func(limit int) []int64 {
		t.Helper()
		got, err := c.newest(ctx, "c", limit, now, time.Time{}, h.load)
		if err != nil {
			t.Fatal(err)
		}
		return seqsOf(got)
	}
	want := func(got, want []int64, reads int) {
		t.Helper()
		if !slices.Equal(got, want) || h.reads != reads {
			t.Fatalf("got %v after %d store reads, want %v after %d", got, h.reads, want, reads)
		}
	}
	want(read(3), []int64{5, 6, 7}, 1) // a miss fills the whole page
	want(read(5), []int64{3, 4, 5, 6, 7}, 1)
	want(read(2), []int64{6, 7}, 1)
	want(read(6), []int64{2, 3, 4, 5, 6, 7}, 2) // more than a page: the store

	// The next message is applied in place; the page slides.
	for _, m := range h.add(1) {
		c.apply(&Event{Kind: EventMessage, ConversationID: "c", Message: &m})
	}
	want(read(5), []int64{4, 5, 6, 7, 8}, 2)
	// Our own event heard again from the bus changes nothing.
	again := h.msgs[7]
	c.apply(&Event{Kind: EventMessage, ConversationID: "c", Message: &again})
	want(read(5), []int64{4, 5, 6, 7, 8}, 2)
	// An edit is applied in place.
	edited := h.msgs[6]
	edited.Body = "edited"
	h.msgs[6] = edited
	c.apply(&Event{Kind: EventMessageChanged, ConversationID: "c", Message: &edited})
	got, _ := c.newest(ctx, "c", 5, now, time.Time{}, h.load)
	if got[3].Body != "edited" || h.reads != 2 {
		t.Fatalf("edit not applied: %+v (%d reads)", got[3], h.reads)
	}
	// A gap (seq 10 while holding 8) drops the entry: the store again.
	h.add(2)
	c.apply(&Event{Kind: EventMessage, ConversationID: "c", Message: &h.msgs[9]})
	want(read(5), []int64{6, 7, 8, 9, 10}, 3)
	want(read(5), []int64{6, 7, 8, 9, 10}, 3)
	// Receipts, typing and membership leave it; a delete drops it.
	c.apply(&Event{Kind: EventReceipt, ConversationID: "c"})
	c.apply(&Event{Kind: EventConversation, ConversationID: "c", Action: ActionMemberAdded})
	want(read(5), []int64{6, 7, 8, 9, 10}, 3)
	c.apply(&Event{Kind: EventConversation, ConversationID: "c", Action: ActionDeleted})
	want(read(5), []int64{6, 7, 8, 9, 10}, 4)

	// Retention hides what is too old; the store fills what is missing.
	cutoff := h.msgs[7].CreatedAt // seqs before 8 are past retention
	got, _ = c.newest(ctx, "c", 3, now, cutoff, h.load)
	if !slices.Equal(seqsOf(got), []int64{8, 9, 10}) || h.reads != 4 {
		t.Fatalf("with retention: %v after %d reads", seqsOf(got), h.reads)
	}
	got, _ = c.newest(ctx, "c", 5, now, cutoff, h.load)
	if h.reads != 5 {
		t.Fatalf("a page the cache cannot fill after retention: %v after %d reads", seqsOf(got), h.reads)
	}

	// An entry ages out; clear drops everything.
	want(read(5), []int64{6, 7, 8, 9, 10}, 5)
	now = now.Add(cacheMaxAge)
	want(read(5), []int64{6, 7, 8, 9, 10}, 6)
	c.clear()
	want(read(5), []int64{6, 7, 8, 9, 10}, 7)
	if hits, misses := c.hits.Load(), c.misses.Load(); hits == 0 || misses != 7 {
		t.Fatalf("hits %d misses %d", hits, misses)
	}
}

// TestHistoryCacheShortAndTTL: a conversation shorter than a page is
// served whole; one with expiring messages is never cached.
func TestHistoryCacheShortAndTTL(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(2000, 0)
	c := newHistoryCache(10, 5)
	h := &fakeHistory{}
	h.add(2)
	for range 2 {
		got, _ := c.newest(ctx, "c", 5, now, time.Time{}, h.load)
		if !slices.Equal(seqsOf(got), []int64{1, 2}) || h.reads != 1 {
			t.Fatalf("short history: %v after %d reads", seqsOf(got), h.reads)
		}
	}
	h.msgs[1].ExpiresAt = now.Add(time.Hour)
	c.clear()
	for i := range 2 {
		if _, err := c.newest(ctx, "c", 5, now, time.Time{}, h.load); err != nil || h.reads != 2+i {
			t.Fatalf("a page with a TTL message was cached (%d reads)", h.reads)
		}
	}
}

// TestHistoryCacheFillRacesEvent: an event that arrives while a fill reads
// the store keeps the fill's answer out of the cache.
func TestHistoryCacheFillRacesEvent(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(2000, 0)
	c := newHistoryCache(10, 5)
	h := &fakeHistory{}
	h.add(3)
	racing := func(ctx context.Context, limit int) ([]parley.Message, error) {
		page, err := h.load(ctx, limit)
		// Seq 4 commits after the read; its event comes before the fill
		// is kept.
		m := h.add(1)[0]
		c.apply(&Event{Kind: EventMessage, ConversationID: "c", Message: &m})
		return page, err
	}
	if _, err := c.newest(ctx, "c", 5, now, time.Time{}, racing); err != nil {
		t.Fatal(err)
	}
	got, _ := c.newest(ctx, "c", 5, now, time.Time{}, h.load)
	if !slices.Equal(seqsOf(got), []int64{1, 2, 3, 4}) || h.reads != 2 {
		t.Fatalf("after a racing fill: %v after %d reads (the stale fill was kept?)", seqsOf(got), h.reads)
	}
}

// TestHistoryCacheEditsOutOfOrder: an older edit arriving after a newer
// one, or after a deletion, does not replace it.
func TestHistoryCacheEditsOutOfOrder(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(2000, 0)
	c := newHistoryCache(10, 5)
	h := &fakeHistory{}
	h.add(3)
	if _, err := c.newest(ctx, "c", 5, now, time.Time{}, h.load); err != nil {
		t.Fatal(err)
	}
	edit := func(body string, at int64, deleted bool) {
		m := h.msgs[1]
		m.Body, m.EditedAt, m.Deleted = body, time.Unix(at, 0), deleted
		c.apply(&Event{Kind: EventMessageChanged, ConversationID: "c", Message: &m})
	}
	body := func() string {
		got, _ := c.newest(ctx, "c", 5, now, time.Time{}, h.load)
		return got[1].Body
	}
	edit("second", 1502, false)
	edit("first", 1501, false) // late
	if got := body(); got != "second" {
		t.Fatalf("after a late older edit: %q, want the newer", got)
	}
	edit("", 1503, true)
	edit("third", 1504, false) // an edit of a deleted message cannot revive it
	if got := body(); got != "" {
		t.Fatalf("after a delete and a late edit: %q, want the tombstone", got)
	}
	if h.reads != 1 {
		t.Fatalf("%d store reads, want 1", h.reads)
	}
}

// TestHistoryCacheByteBudget: entries are evicted to keep the estimated
// memory under the byte budget, whatever the count bound; a page larger
// than the budget is not kept; growth by events is accounted too.
func TestHistoryCacheByteBudget(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(2000, 0)
	c := newHistoryCache(1000, 5)
	c.maxBytes = 5 * (messageOverhead + 10_000) // about one page of 10 kB bodies
	check := func() {
		t.Helper()
		var sum int64
		for _, e := range c.entries {
			sum += messageMemory(e.msgs)
		}
		if sum != c.bytes || c.bytes > c.maxBytes {
			t.Fatalf("accounted %d bytes, entries hold %d, budget %d", c.bytes, sum, c.maxBytes)
		}
	}
	big := func(conv string, n, size int) *fakeHistory {
		h := &fakeHistory{}
		for i := range n {
			h.msgs = append(h.msgs, parley.Message{ID: fmt.Sprint(conv, i), ConversationID: conv, Seq: int64(i + 1), Body: string(make([]byte, size)), CreatedAt: now})
		}
		return h
	}
	for i := range 20 {
		conv := fmt.Sprint("c", i)
		if _, err := c.newest(ctx, conv, 5, now, time.Time{}, big(conv, 5, 3000).load); err != nil {
			t.Fatal(err)
		}
		check()
	}
	if n := len(c.entries); n == 0 || n >= 20 {
		t.Fatalf("%d entries of 15 kB with a 52 kB budget", n)
	}
	// A page larger than the budget is served but not kept.
	huge := big("huge", 5, 20_000)
	for range 2 {
		if got, err := c.newest(ctx, "huge", 5, now, time.Time{}, huge.load); err != nil || len(got) != 5 {
			t.Fatalf("%d messages, %v", len(got), err)
		}
	}
	if huge.reads != 2 || c.entries["huge"] != nil {
		t.Fatalf("a page over the budget was cached (%d reads)", huge.reads)
	}
	check()
	// Messages appended by events grow an entry; others make room.
	h := big("grow", 1, 100)
	if _, err := c.newest(ctx, "grow", 5, now, time.Time{}, h.load); err != nil {
		t.Fatal(err)
	}
	for seq := int64(2); seq <= 5; seq++ {
		m := parley.Message{ID: fmt.Sprint("g", seq), ConversationID: "grow", Seq: seq, Body: string(make([]byte, 9000)), CreatedAt: now}
		c.apply(&Event{Kind: EventMessage, ConversationID: "grow", Message: &m})
		check()
	}
	if e := c.entries["grow"]; e == nil || len(e.msgs) != 5 {
		t.Fatal("the growing entry was dropped although it fits the budget alone")
	}
	c.clear()
	check()
	if c.bytes != 0 {
		t.Fatalf("%d bytes after clear", c.bytes)
	}
}
