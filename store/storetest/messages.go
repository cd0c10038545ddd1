package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

func testAppendAndRead(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	bodies := []string{"hello", "", "ünïcödé ✓ 🙂", string(make([]byte, 4096))}
	var sent []*parley.Message
	for i, body := range bodies {
		m := f.message(g, a, body)
		if i == 1 {
			m.ClientMsgID = "" // no idempotency key
			m.Type = parley.MessageSystem
		}
		got := f.append(m)
		if got.Seq != int64(i+1) {
			t.Fatalf("message %d got seq %d", i, got.Seq)
		}
		sent = append(sent, got)
	}
	for _, want := range sent {
		got, err := f.s.Message(f.ctx, g.ID, want.Seq, f.now)
		if err != nil {
			t.Fatalf("Message(%d): %v", want.Seq, err)
		}
		checkMessage(t, got, want)
	}
	if c := f.conversation(g.ID); c.LastSeq != int64(len(bodies)) {
		t.Fatalf("last_seq = %d, want %d", c.LastSeq, len(bodies))
	}
	_, err := f.s.Message(f.ctx, g.ID, 99, f.now)
	wantCode(t, err, parley.CodeNotFound, "Message(unknown seq)")
	_, err = f.s.Message(f.ctx, parley.NewID(), 1, f.now)
	wantCode(t, err, parley.CodeNotFound, "Message(unknown conversation)")
}

// testAppendGapFreeConcurrent proves invariant 1: each conversation numbers
// its messages 1..n, no gap, no duplicate, under concurrent group commits.
func testAppendGapFreeConcurrent(t *testing.T, f *fixture) {
	const (
		goroutines = 32
		perG       = 50
		nconv      = 3
	)
	users := make([]*parley.User, 8)
	for i := range users {
		users[i] = f.user()
	}
	convs := make([]*parley.Conversation, nconv)
	for i := range convs {
		convs[i] = f.group(users[0], users[1:]...)
	}
	type result struct {
		conv string
		seq  int64
		id   string
	}
	results := make(chan result, goroutines*perG)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			sender := users[g%len(users)]
			for i := range perG {
				c := convs[(g+i)%nconv]
				m := &parley.Message{
					ID: parley.NewID(), ConversationID: c.ID, SenderID: sender.ID, SenderDeviceID: "dev",
					ClientMsgID: fmt.Sprintf("g%d-%d", g, i), Type: parley.MessageText,
					Body: fmt.Sprintf("message %d of goroutine %d", i, g), CreatedAt: f.now,
				}
				got, created, err := f.s.AppendMessage(f.ctx, m)
				if err != nil || !created {
					errs <- fmt.Errorf("AppendMessage: created=%v, %v", created, err)
					return
				}
				results <- result{c.ID, got.Seq, got.ID}
			}
		})
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ids := make(map[string]map[int64]string) // conversation -> seq -> id
	for r := range results {
		if ids[r.conv] == nil {
			ids[r.conv] = make(map[int64]string)
		}
		if prev, dup := ids[r.conv][r.seq]; dup {
			t.Fatalf("seq %d given twice in %s: %s and %s", r.seq, r.conv, prev, r.id)
		}
		ids[r.conv][r.seq] = r.id
	}
	total := 0
	for _, c := range convs {
		n := int64(len(ids[c.ID]))
		total += int(n)
		stored := f.history(c.ID)
		if got := seqs(stored); !slices.Equal(got, seqRange(1, n)) {
			t.Fatalf("conversation %s: stored seqs %v, want 1..%d", c.ID, got, n)
		}
		for _, m := range stored {
			if ids[c.ID][m.Seq] != m.ID {
				t.Fatalf("seq %d: stored id %s, acked id %s", m.Seq, m.ID, ids[c.ID][m.Seq])
			}
		}
		if last := f.conversation(c.ID).LastSeq; last != n {
			t.Fatalf("conversation %s: last_seq %d, want %d", c.ID, last, n)
		}
	}
	if total != goroutines*perG {
		t.Fatalf("%d messages acked, want %d", total, goroutines*perG)
	}
}

func testIdempotency(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	orig := f.send(g, a, "original")
	retry := f.message(g, a, "retry with another body")
	retry.ClientMsgID = orig.ClientMsgID
	got, created, err := f.s.AppendMessage(f.ctx, retry)
	if err != nil || created {
		t.Fatalf("retry: created=%v, %v; want the original", created, err)
	}
	checkMessage(t, got, orig)
	if c := f.conversation(g.ID); c.LastSeq != 1 {
		t.Fatalf("last_seq after a retry = %d, want 1", c.LastSeq)
	}
	if msgs := f.history(g.ID); len(msgs) != 1 {
		t.Fatalf("%d messages stored, want 1", len(msgs))
	}
	// The key is per sender: another sender may use the same client id.
	other := f.message(g, b, "b's own")
	other.ClientMsgID = orig.ClientMsgID
	if got := f.append(other); got.Seq != 2 {
		t.Fatalf("another sender's message got seq %d, want 2", got.Seq)
	}
}

func testIdempotencyConcurrent(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	const n = 32
	type outcome struct {
		msg     *parley.Message
		created bool
		err     error
	}
	out := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m := f.message(g, a, fmt.Sprintf("attempt %d", i))
			m.ClientMsgID = "same-click"
			out[i].msg, out[i].created, out[i].err = f.s.AppendMessage(f.ctx, m)
		})
	}
	wg.Wait()
	var winner *parley.Message
	for _, o := range out {
		if o.err != nil {
			t.Fatalf("AppendMessage: %v", o.err)
		}
		if o.created {
			if winner != nil {
				t.Fatalf("two duplicates created: seqs %d and %d", winner.Seq, o.msg.Seq)
			}
			winner = o.msg
		}
	}
	if winner == nil {
		t.Fatal("no attempt created the message")
	}
	for _, o := range out {
		checkMessage(t, o.msg, winner)
	}
	if c := f.conversation(g.ID); c.LastSeq != 1 {
		t.Fatalf("last_seq = %d, want 1", c.LastSeq)
	}
}

func testIdempotencyOtherConversation(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g1, g2 := f.group(a, b), f.group(a, b)
	orig := f.send(g1, a, "in g1")
	m := f.message(g2, a, "same key in g2")
	m.ClientMsgID = orig.ClientMsgID
	_, _, err := f.s.AppendMessage(f.ctx, m)
	wantCode(t, err, parley.CodeConflict, "AppendMessage(client id used in another conversation)")
	if c := f.conversation(g2.ID); c.LastSeq != 0 {
		t.Fatalf("g2 last_seq = %d, want 0", c.LastSeq)
	}
}

func testAppendNotMember(t *testing.T, f *fixture) {
	a, b, stranger := f.user(), f.user(), f.user()
	g := f.group(a, b)
	f.send(g, a, "one")
	_, _, err := f.s.AppendMessage(f.ctx, f.message(g, stranger, "let me in"))
	wantCode(t, err, parley.CodeConversationNotFound, "AppendMessage(non-member)")
	_, _, err = f.s.AppendMessage(f.ctx, f.message(&parley.Conversation{ID: parley.NewID()}, a, "nowhere"))
	wantCode(t, err, parley.CodeConversationNotFound, "AppendMessage(unknown conversation)")
	if err := removeMember(f, g.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.s.AppendMessage(f.ctx, f.message(g, b, "after removal"))
	wantCode(t, err, parley.CodeConversationNotFound, "AppendMessage(removed member)")
	if c := f.conversation(g.ID); c.LastSeq != 1 {
		t.Fatalf("last_seq = %d, want 1", c.LastSeq)
	}
	if msgs := f.history(g.ID); len(msgs) != 1 {
		t.Fatalf("%d messages stored, want 1", len(msgs))
	}
	// The next message still gets the next seq: a refused one takes none.
	if got := f.send(g, a, "two"); got.Seq != 2 {
		t.Fatalf("next seq = %d, want 2", got.Seq)
	}
}

func testHistory(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	var sent []*parley.Message
	for i := range 25 {
		sent = append(sent, f.send(g, a, fmt.Sprintf("m%d", i+1)))
	}
	for _, tc := range []struct {
		name string
		q    parley.HistoryQuery
		want []int64
	}{
		{"newest", parley.HistoryQuery{Limit: 10}, seqRange(16, 25)},
		{"all newest", parley.HistoryQuery{Limit: parley.MaxHistoryLimit}, seqRange(1, 25)},
		{"before", parley.HistoryQuery{Before: 16, Limit: 10}, seqRange(6, 15)},
		{"before, short page", parley.HistoryQuery{Before: 6, Limit: 10}, seqRange(1, 5)},
		{"before the first", parley.HistoryQuery{Before: 1, Limit: 10}, nil},
		{"after", parley.HistoryQuery{After: 5, Limit: 10}, seqRange(6, 15)},
		{"after, short page", parley.HistoryQuery{After: 20, Limit: 10}, seqRange(21, 25)},
		{"after the last", parley.HistoryQuery{After: 25, Limit: 10}, nil},
		{"oldest", parley.HistoryQuery{Forward: true, Limit: 10}, seqRange(1, 10)},
		{"forward after", parley.HistoryQuery{After: 10, Forward: true, Limit: 10}, seqRange(11, 20)},
		{"one", parley.HistoryQuery{Before: 13, Limit: 1}, []int64{12}},
	} {
		got, err := f.s.Messages(f.ctx, g.ID, tc.q, f.now)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(seqs(got), tc.want) {
			t.Fatalf("%s: seqs %v, want %v", tc.name, seqs(got), tc.want)
		}
		for _, m := range got {
			checkMessage(t, &m, sent[m.Seq-1])
		}
	}
}

func testHistoryLimit(t *testing.T, f *fixture) {
	a := f.user()
	g := f.group(a)
	f.send(g, a, "x")
	for _, limit := range []int{0, -1, parley.MaxHistoryLimit + 1} {
		_, err := f.s.Messages(f.ctx, g.ID, parley.HistoryQuery{Limit: limit}, f.now)
		wantCode(t, err, parley.CodeInvalidRequest, fmt.Sprintf("Messages(limit %d)", limit))
	}
}

func testExpiry(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	send := func(body string, ttl time.Duration) *parley.Message {
		t.Helper()
		m := f.message(g, a, body)
		if ttl != 0 {
			m.ExpiresAt = f.now.Add(ttl)
		}
		return f.append(m)
	}
	m1 := send("stays", 0)
	m2 := send("vanishes", time.Minute)
	m3 := send("stays too", 0)
	m4 := send("vanishes too", time.Minute) // the newest
	before := f.view(g.ID, b)
	checkMessage(t, before.LastMessage, m4)
	if before.UnreadCount != 4 {
		t.Fatalf("unread before expiry = %d, want 4", before.UnreadCount)
	}
	if got, err := f.s.Message(f.ctx, g.ID, m2.Seq, f.now); err != nil {
		t.Fatalf("Message before expiry: %v", err)
	} else {
		checkMessage(t, got, m2)
	}

	f.now = m2.ExpiresAt // expired at exactly ExpiresAt
	_, err := f.s.Message(f.ctx, g.ID, m2.Seq, f.now)
	wantCode(t, err, parley.CodeNotFound, "Message(expired)")
	if got := seqs(f.history(g.ID)); !slices.Equal(got, []int64{m1.Seq, m3.Seq}) {
		t.Fatalf("history after expiry: seqs %v, want [1 3]", got)
	}
	newest, err := f.s.Messages(f.ctx, g.ID, parley.HistoryQuery{Limit: 1}, f.now)
	if err != nil || len(newest) != 1 || newest[0].Seq != m3.Seq {
		t.Fatalf("newest page after expiry = %v, %v; want seq 3", seqs(newest), err)
	}
	after := f.view(g.ID, b)
	checkMessage(t, after.LastMessage, m3)
	if after.UnreadCount != 2 || after.LastSeq != 4 {
		t.Fatalf("view after expiry: unread %d last_seq %d, want 2, 4", after.UnreadCount, after.LastSeq)
	}
}

func testPurgeExpired(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	var expiring []*parley.Message
	for i := range 3 {
		m := f.message(g, a, "short-lived")
		m.ExpiresAt = f.now.Add(time.Duration(i+1) * time.Minute)
		expiring = append(expiring, f.append(m))
	}
	kept := f.send(g, a, "long-lived")
	d, tok := f.session(a) // expires a day after f.now

	later := f.now.Add(time.Hour)
	n, err := f.s.PurgeExpired(f.ctx, later, 2)
	if err != nil || n != 2 {
		t.Fatalf("PurgeExpired(limit 2) = %d, %v; want 2", n, err)
	}
	n, err = f.s.PurgeExpired(f.ctx, later, 100)
	if err != nil || n != 1 {
		t.Fatalf("PurgeExpired(rest) = %d, %v; want 1", n, err)
	}
	// Gone even for a reader whose clock says they have not expired.
	for _, m := range expiring {
		_, err := f.s.Message(f.ctx, g.ID, m.Seq, f.now)
		wantCode(t, err, parley.CodeNotFound, "Message(purged)")
	}
	if got, err := f.s.Message(f.ctx, g.ID, kept.Seq, f.now); err != nil {
		t.Fatalf("Message(kept): %v", err)
	} else {
		checkMessage(t, got, kept)
	}
	// Seqs are never reused.
	if c := f.conversation(g.ID); c.LastSeq != 4 {
		t.Fatalf("last_seq after purge = %d, want 4", c.LastSeq)
	}
	if got := f.send(g, a, "next"); got.Seq != 5 {
		t.Fatalf("seq after purge = %d, want 5", got.Seq)
	}
	if n, err := f.s.PurgeExpired(f.ctx, later, 100); err != nil || n != 0 {
		t.Fatalf("PurgeExpired(nothing left) = %d, %v", n, err)
	}
	// Expired refresh tokens are purged too: after that, the token is
	// unknown even to a clock before its expiry.
	if _, err := f.s.PurgeExpired(f.ctx, tok.ExpiresAt, 100); err != nil {
		t.Fatal(err)
	}
	_, err = f.s.RotateRefreshToken(f.ctx, tok.Hash, f.nextToken(d.ID+"-2"), f.now)
	wantCode(t, err, parley.CodeUnauthorized, "RotateRefreshToken(purged token)")
}

func testEditAndDelete(t *testing.T, f *fixture) {
	a, b := f.user(), f.user()
	g := f.group(a, b)
	orig := f.send(g, a, "typo")
	f.send(g, a, "after")

	edited := *orig
	edited.Body, edited.EditedAt = "fixed", f.now.Add(time.Second)
	if err := updateMessage(f, &edited); err != nil {
		t.Fatalf("UpdateMessage(edit): %v", err)
	}
	got, err := f.s.Message(f.ctx, g.ID, orig.Seq, f.now)
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, got, &edited)

	deleted := edited
	deleted.Deleted, deleted.Body, deleted.EditedAt = true, "", f.now.Add(2*time.Second)
	if err := updateMessage(f, &deleted); err != nil {
		t.Fatalf("UpdateMessage(delete): %v", err)
	}
	got, err = f.s.Message(f.ctx, g.ID, orig.Seq, f.now)
	if err != nil {
		t.Fatalf("Message(tombstone): %v", err)
	}
	checkMessage(t, got, &deleted)
	// The tombstone keeps its place in history.
	if got := seqs(f.history(g.ID)); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("history seqs %v, want [1 2]", got)
	}
	missing := *orig
	missing.Seq = 99
	wantCode(t, updateMessage(f, &missing), parley.CodeNotFound, "UpdateMessage(unknown)")
}

// updateMessage stores m's Body, EditedAt and Deleted over the message at
// (m.ConversationID, m.Seq), as an UpdateMessage that always decides the same.
func updateMessage(f *fixture, m *parley.Message) error {
	_, err := f.s.UpdateMessage(f.ctx, m.ConversationID, m.Seq, f.now, func(stored *parley.Message) error {
		stored.Body, stored.EditedAt, stored.Deleted = m.Body, m.EditedAt, m.Deleted
		return nil
	})
	return err
}

// testAppendMessages: a list of appends commits in its order, each with
// AppendMessage's outcome, and one failing fails none of the others.
func testAppendMessages(t *testing.T, f *fixture) {
	a, b, stranger := f.user(), f.user(), f.user()
	g, h := f.group(a, b), f.group(a, b)
	first := f.send(g, a, "first") // seq 1
	retry := f.message(g, a, "first again")
	retry.ClientMsgID = first.ClientMsgID
	dup := f.message(g, a, "dup")
	dupAgain := f.message(g, a, "dup again")
	dupAgain.ClientMsgID = dup.ClientMsgID
	ms := []*parley.Message{
		f.message(g, a, "one"),            // g 2
		f.message(h, a, "h one"),          // h 1
		f.message(g, stranger, "nope"),    // not a member
		{SenderID: a.ID, Body: "nowhere"}, // invalid: no conversation
		f.message(g, a, "two"),            // g 3
		retry,                             // the original, g 1
		dup,                               // g 4
		dupAgain,                          // dup's message, in the same list
		f.message(g, a, "three"),          // g 5
		f.message(h, a, "h two"),          // h 2
	}
	var order []int
	var reported []parley.AppendResult
	res := f.s.AppendMessages(f.ctx, ms, func(i int, r parley.AppendResult) {
		order, reported = append(order, i), append(reported, r)
	})
	if len(res) != len(ms) {
		t.Fatalf("%d results for %d messages", len(res), len(ms))
	}
	for i := range res {
		if len(order) != len(ms) || order[i] != i || reported[i] != res[i] {
			t.Fatalf("each was called with %v, want every index once in order, with the results returned", order)
		}
	}
	want := []struct {
		conv    string
		seq     int64
		created bool
		code    parley.Code
	}{
		{g.ID, 2, true, ""}, {h.ID, 1, true, ""}, {code: parley.CodeConversationNotFound}, {code: parley.CodeInvalidRequest},
		{g.ID, 3, true, ""}, {g.ID, 1, false, ""}, {g.ID, 4, true, ""}, {g.ID, 4, false, ""}, {g.ID, 5, true, ""}, {h.ID, 2, true, ""},
	}
	for i, w := range want {
		r := res[i]
		if w.code != "" {
			wantCode(t, r.Err, w.code, fmt.Sprintf("message %d", i))
			continue
		}
		if r.Err != nil {
			t.Fatalf("message %d: %v", i, r.Err)
		}
		if r.Message.ConversationID != w.conv || r.Message.Seq != w.seq || r.Created != w.created {
			t.Fatalf("message %d: %s seq %d created %v, want %s seq %d created %v", i,
				r.Message.ConversationID, r.Message.Seq, r.Created, w.conv, w.seq, w.created)
		}
	}
	if got := res[5].Message.Body; got != "first" {
		t.Fatalf("the retry returned body %q, want the original's", got)
	}
	for _, c := range []struct {
		id     string
		bodies []string
	}{{g.ID, []string{"first", "one", "two", "dup", "three"}}, {h.ID, []string{"h one", "h two"}}} {
		msgs := f.history(c.id)
		var got []string
		for i, m := range msgs {
			if m.Seq != int64(i+1) {
				t.Fatalf("%s: message %d has seq %d", c.id, i, m.Seq)
			}
			got = append(got, m.Body)
		}
		if !slices.Equal(got, c.bodies) {
			t.Fatalf("%s holds %q, want %q", c.id, got, c.bodies)
		}
		if last := f.conversation(c.id).LastSeq; last != int64(len(c.bodies)) {
			t.Fatalf("%s: last_seq %d, want %d", c.id, last, len(c.bodies))
		}
	}

	// Lists from several callers at once: each caller's messages get
	// rising seqs in its order, and together the seqs are gap-free.
	const callers, each = 4, 25
	var wg sync.WaitGroup
	seqs := make([][]int64, callers)
	errs := make([]error, callers)
	for c := range callers {
		wg.Go(func() {
			ms := make([]*parley.Message, each)
			for i := range ms {
				ms[i] = f.message(h, a, fmt.Sprintf("caller %d message %d", c, i))
			}
			for _, r := range f.s.AppendMessages(f.ctx, ms, nil) {
				if r.Err != nil || !r.Created {
					errs[c] = fmt.Errorf("created %v, %v", r.Created, r.Err)
					return
				}
				seqs[c] = append(seqs[c], r.Message.Seq)
			}
		})
	}
	wg.Wait()
	seen := make(map[int64]bool)
	for c := range callers {
		if errs[c] != nil {
			t.Fatalf("caller %d: %v", c, errs[c])
		}
		if !slices.IsSorted(seqs[c]) {
			t.Fatalf("caller %d got seqs %v, not in its order", c, seqs[c])
		}
		for _, s := range seqs[c] {
			seen[s] = true
		}
	}
	for s := int64(3); s < 3+callers*each; s++ {
		if !seen[s] {
			t.Fatalf("seq %d missing: %v", s, seqs)
		}
	}

	// A list whose context has ended commits nothing.
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	for i, r := range f.s.AppendMessages(ctx, []*parley.Message{f.message(g, a, "late"), f.message(g, a, "later")}, nil) {
		if !errors.Is(r.Err, context.Canceled) {
			t.Fatalf("message %d after the context ended: %v", i, r.Err)
		}
	}
	if last := f.conversation(g.ID).LastSeq; last != 5 {
		t.Fatalf("last_seq %d after a cancelled list, want 5", last)
	}
}
