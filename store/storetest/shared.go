package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// RunShared runs the contract tests for engines that several processes
// share (store/postgres: one per parleyd node): newStores returns n
// stores, each opened separately (its own pools and writer) on one new,
// empty database, closed when the test ends. Engines for one process
// (store/sqlite) do not run it.
func RunShared(t *testing.T, newStores func(tb testing.TB, n int) []parley.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, fs []*fixture)
	}{
		{"AppendGapFreeAcrossStores", testSharedAppendGapFree},
		{"IdempotencyAcrossStores", testSharedIdempotency},
		{"SyncAcrossStores", testSharedSync},
		{"ChangeMembersAcrossStores", testSharedChangeMembers},
		{"DeviceCapAcrossStores", deviceCap},
		{"SecretsAcrossStores", func(t *testing.T, fs []*fixture) { incrementConcurrently(t, fs, 30) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stores := newStores(t, 3)
			now := time.Now().UTC().Truncate(time.Millisecond)
			fs := make([]*fixture, len(stores))
			for i, s := range stores {
				fs[i] = &fixture{tb: t, s: s, ctx: t.Context(), now: now}
			}
			tc.fn(t, fs)
		})
	}
}

// testSharedAppendGapFree hammers one conversation from every store at
// once: seqs stay 1..n, each acked message is stored once under its seq,
// and every store reads the same history.
func testSharedAppendGapFree(t *testing.T, fs []*fixture) {
	const perStore, goroutines = 150, 8
	f := fs[0]
	users := []*parley.User{f.user(), f.user(), f.user()}
	g := f.group(users[0], users[1:]...)
	var (
		mu   sync.Mutex
		seen = map[int64]string{}
		wg   sync.WaitGroup
		errs = make(chan error, len(fs)*goroutines)
	)
	for si, sf := range fs {
		for gi := range goroutines {
			wg.Go(func() {
				sender := users[(si+gi)%len(users)]
				for i := range perStore / goroutines {
					m := &parley.Message{
						ID: parley.NewID(), ConversationID: g.ID, SenderID: sender.ID, SenderDeviceID: "dev",
						ClientMsgID: fmt.Sprintf("s%d-g%d-%d", si, gi, i), Type: parley.MessageText,
						Body: fmt.Sprintf("store %d goroutine %d message %d", si, gi, i), CreatedAt: f.now,
					}
					got, created, err := sf.s.AppendMessage(sf.ctx, m)
					if err != nil || !created {
						errs <- fmt.Errorf("store %d: AppendMessage: created=%v, %v", si, created, err)
						return
					}
					mu.Lock()
					prev, dup := seen[got.Seq]
					seen[got.Seq] = got.ID
					mu.Unlock()
					if dup {
						errs <- fmt.Errorf("seq %d given twice: %s and %s", got.Seq, prev, got.ID)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := int64(len(seen))
	if want := int64(len(fs) * goroutines * (perStore / goroutines)); n != want {
		t.Fatalf("%d messages acked, want %d", n, want)
	}
	for i, sf := range fs {
		stored := sf.history(g.ID)
		if got := seqs(stored); !slices.Equal(got, seqRange(1, n)) {
			t.Fatalf("store %d: stored seqs %v, want 1..%d", i, got, n)
		}
		for _, m := range stored {
			if seen[m.Seq] != m.ID {
				t.Fatalf("store %d: seq %d holds %s, acked %s", i, m.Seq, m.ID, seen[m.Seq])
			}
		}
		if last := sf.conversation(g.ID).LastSeq; last != n {
			t.Fatalf("store %d: last_seq %d, want %d", i, last, n)
		}
	}
}

// testSharedIdempotency sends one client_msg_id through every store at
// once, many times: exactly one is created and every attempt returns it.
func testSharedIdempotency(t *testing.T, fs []*fixture) {
	f := fs[0]
	a, b := f.user(), f.user()
	g := f.group(a, b)
	const attempts = 8
	type outcome struct {
		msg     *parley.Message
		created bool
		err     error
	}
	out := make([]outcome, len(fs)*attempts)
	var wg sync.WaitGroup
	for i := range out {
		sf := fs[i%len(fs)]
		wg.Go(func() {
			m := f.message(g, a, fmt.Sprintf("attempt %d", i))
			m.ClientMsgID = "one-click-many-nodes"
			out[i].msg, out[i].created, out[i].err = sf.s.AppendMessage(sf.ctx, m)
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
				t.Fatalf("created twice: seqs %d and %d", winner.Seq, o.msg.Seq)
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
	for i, sf := range fs {
		if c := sf.conversation(g.ID); c.LastSeq != 1 {
			t.Fatalf("store %d: last_seq = %d, want 1", i, c.LastSeq)
		}
	}
	// The same key in another conversation is refused on every store.
	g2 := f.group(a, b)
	for i, sf := range fs {
		m := f.message(g2, a, "elsewhere")
		m.ClientMsgID = "one-click-many-nodes"
		_, _, err := sf.s.AppendMessage(sf.ctx, m)
		wantCode(t, err, parley.CodeConflict, fmt.Sprintf("store %d: same client_msg_id in another conversation", i))
	}
}

// testSharedSync writes through one store and syncs through the others: a
// position one store issued is good on every other, and nothing written
// after it is skipped.
func testSharedSync(t *testing.T, fs []*fixture) {
	a, b := fs[0].user(), fs[0].user()
	g := fs[0].group(a, b)
	first := fs[0].syncOnce(b, 0)
	wantConversations(t, first, "full state from store 0", g.ID)
	since := first.until
	// Messages are made by fs[0], whose counter keeps client ids unique.
	m1 := fs[1].append(fs[0].message(g, a, "through store 1"))
	m2 := fs[2].append(fs[0].message(g, a, "through store 2"))
	if _, err := fs[1].s.MarkRead(fs[1].ctx, g.ID, b.ID, m1.Seq); err != nil {
		t.Fatalf("MarkRead: %v", err)
	}
	for i, sf := range fs {
		pass := sf.syncOnce(b, since)
		wantConversations(t, pass, fmt.Sprintf("store %d: changes after store 0's position", i), g.ID)
		sc := pass.convs[g.ID]
		wantMessages(t, sc, false, m1, m2)
		if sc.View.ReadSeq != m1.Seq || sc.View.LastSeq != m2.Seq {
			t.Fatalf("store %d: read_seq %d last_seq %d, want %d and %d", i, sc.View.ReadSeq, sc.View.LastSeq, m1.Seq, m2.Seq)
		}
		if pass.until <= since {
			t.Fatalf("store %d: until %d not above %d", i, pass.until, since)
		}
	}
}

// testSharedChangeMembers removes a member through one store while the
// others append as that member: every append either committed before the
// removal (and is in the history) or was refused after it.
func testSharedChangeMembers(t *testing.T, fs []*fixture) {
	f := fs[0]
	owner, leaver := f.user(), f.user()
	g := f.group(owner, leaver)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		okSeqs  []int64
		refused int
	)
	for si, sf := range fs[1:] {
		wg.Go(func() {
			for i := range 60 {
				m := f.message(g, leaver, fmt.Sprintf("store %d message %d", si+1, i))
				got, _, err := sf.s.AppendMessage(sf.ctx, m)
				mu.Lock()
				switch {
				case err == nil:
					okSeqs = append(okSeqs, got.Seq)
				case parley.ErrorCode(err) == parley.CodeConversationNotFound:
					refused++
				default:
					mu.Unlock()
					t.Errorf("AppendMessage: %v", err)
					return
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	if err := removeMember(f, g.ID, leaver.ID); err != nil {
		t.Fatalf("remove member: %v", err)
	}
	wg.Wait()
	slices.Sort(okSeqs)
	if !slices.Equal(okSeqs, seqRange(1, int64(len(okSeqs)))) {
		t.Fatalf("acked seqs %v are not 1..%d", okSeqs, len(okSeqs))
	}
	if got := seqs(f.history(g.ID)); !slices.Equal(got, okSeqs) {
		t.Fatalf("stored seqs %v, acked %v", got, okSeqs)
	}
	t.Logf("%d appends before the removal, %d refused after it", len(okSeqs), refused)
}
