package postgres

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/clustertest"
)

// TestReplica checks the consistency rule of docs/operations.md ("Read
// replicas and the consistency rule") against a real streaming hot
// standby: the reads that may use the replica do when it is far enough
// along, and return exactly what the primary would; when it lags, they go
// to the primary, and nothing older than the primary's state is returned.
// A second store on the same primary, without a replica, is the reference
// every answer is compared with.
func TestReplica(t *testing.T) {
	t.Parallel()
	pg := clustertest.StartPostgres(t, clustertest.PostgresOptions{Replica: true})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sealer := newTestSealer(t)
	s, err := Open(ctx, pg.DSN(), Options{Sealer: sealer, ReplicaDSN: pg.ReplicaDSN()})
	if err != nil {
		t.Fatalf("Open with a replica: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ref := openStore(t, pg.DSN(), sealer)
	f := &replicaFixture{t: t, ctx: ctx, s: s, ref: ref, now: time.Now()}

	alice, bob, carol := f.user("alice"), f.user("bob"), f.user("carol")
	users := []*parley.User{alice, bob, carol}
	group := f.conversation(parley.KindGroup, alice, bob, carol)
	direct := f.conversation(parley.KindDirect, alice, bob)
	f.send(group.ID, users, 300, "first")
	f.send(direct.ID, []*parley.User{alice, bob}, 5, "direct")
	f.edit(group.ID, 40, "edited before the first sync")
	f.markRead(group.ID, bob, 150)
	pg.WaitReplica(ctx)

	// since[u] is where user u's client stands after each sync pass.
	since := map[string]int64{}
	if !t.Run("sync in step", func(t *testing.T) {
		for _, u := range users {
			pages := f.syncBoth(t, u, 0, wantReplica)
			since[u.ID] = pages[0].Until
		}
		// Incremental: new messages, an edit and a delete of old ones, a
		// read marker.
		f.send(group.ID, users, 20, "second")
		f.edit(group.ID, 7, "edited between syncs")
		f.remove(group.ID, 8)
		f.markRead(group.ID, carol, 310)
		pg.WaitReplica(ctx)
		for _, u := range users {
			pages := f.syncBoth(t, u, since[u.ID], wantReplica)
			if got := countMessages(pages); got < 22 {
				t.Errorf("incremental sync of %s has %d messages, want the 20 new, the edit and the delete", u.Handle, got)
			}
			since[u.ID] = pages[0].Until
		}
	}) {
		return
	}

	last := f.lastSeq(pg.DSN(), group.ID)
	if !t.Run("history", func(t *testing.T) {
		// Older pages: the replica's last_seq covers them.
		f.historyBoth(t, group.ID, parley.HistoryQuery{Before: 101, Limit: 50}, wantReplica)
		f.historyBoth(t, group.ID, parley.HistoryQuery{Before: 30, Limit: 50}, wantReplica)
		f.historyBoth(t, group.ID, parley.HistoryQuery{Before: last + 1, Limit: 50}, wantReplica)
		// The newest page and pages after a seq always read the primary.
		f.historyBoth(t, group.ID, parley.HistoryQuery{Limit: 50}, wantNeither)
		f.historyBoth(t, group.ID, parley.HistoryQuery{After: 250, Limit: 50}, wantNeither)
		f.historyBoth(t, group.ID, parley.HistoryQuery{Forward: true, Limit: 50}, wantNeither)
		f.historyBoth(t, direct.ID, parley.HistoryQuery{Limit: 10}, wantNeither)
	}) {
		return
	}

	if !t.Run("lag", func(t *testing.T) {
		// Replay stops before its next record, so the writes below reach
		// the replica's WAL but not its tables until replay resumes (the
		// stamps are checked: a pause that came too late fails here).
		f.exec(pg.ReplicaDSN(), "SELECT pg_wal_replay_pause()")
		lagged := f.send(group.ID, users, 30, "while the replica lags")
		unedited, err := ref.Message(ctx, group.ID, 10, f.now)
		if err != nil {
			t.Fatalf("Message(10): %v", err)
		}
		f.edit(group.ID, 10, "edited while the replica lags")
		f.markRead(group.ID, alice, last+30)
		primaryStamp, replicaStamp := f.stamp(pg.DSN()), f.stamp(pg.ReplicaDSN())
		if replicaStamp >= primaryStamp {
			t.Fatalf("the replica did not lag: its stamp is %d, the primary's %d", replicaStamp, primaryStamp)
		}
		if got := f.lastSeq(pg.ReplicaDSN(), group.ID); got != last {
			t.Fatalf("the replica's last_seq is %d, want %d (before the writes)", got, last)
		}

		// Sync: the primary serves it, with everything the primary has.
		for _, u := range users {
			pages := f.syncBoth(t, u, since[u.ID], wantPrimary)
			if pages[0].Until != primaryStamp {
				t.Errorf("%s's sync is until stamp %d, want the primary's %d (the replica has %d)", u.Handle, pages[0].Until, primaryStamp, replicaStamp)
			}
			bodies := map[string]bool{}
			for _, c := range pagesOf(pages, group.ID) {
				for _, m := range c.Messages {
					bodies[m.Body] = true
				}
			}
			for _, m := range lagged {
				if !bodies[m.Body] {
					t.Errorf("%s's sync lacks message %d %q, written while the replica lagged", u.Handle, m.Seq, m.Body)
				}
			}
			if !bodies["edited while the replica lags"] {
				t.Errorf("%s's sync lacks the edit made while the replica lagged", u.Handle)
			}
		}
		f.syncBoth(t, bob, 0, wantPrimary)

		// History: a page the replica lacks goes to the primary, complete.
		page := f.historyBoth(t, group.ID, parley.HistoryQuery{Before: last + 31, Limit: 50}, wantPrimary)
		if len(page) != 50 {
			t.Fatalf("page before %d has %d messages, want 50", last+31, len(page))
		}
		for i, m := range page {
			if want := last + 31 - 50 + int64(i); m.Seq != want {
				t.Fatalf("page before %d: message %d has seq %d, want %d", last+31, i, m.Seq, want)
			}
		}
		for i, m := range lagged {
			if got := page[len(page)-len(lagged)+i]; got.ID != m.ID || got.Body != m.Body {
				t.Errorf("page before %d: seq %d is %q, want %q", last+31, m.Seq, got.Body, m.Body)
			}
		}
		// The boundary: the replica's last_seq is last, so it serves a page
		// before last+1 but not one before last+2, which must hold last+1.
		f.historyBoth(t, group.ID, parley.HistoryQuery{Before: last + 1, Limit: 5}, wantReplica)
		edge := f.historyBoth(t, group.ID, parley.HistoryQuery{Before: last + 2, Limit: 5}, wantPrimary)
		if n := len(edge); n == 0 || edge[n-1].Seq != last+1 {
			t.Errorf("the page before %d is %v, want it to end at %d", last+2, seqs(edge), last+1)
		}
		// A page the replica holds is still read there, and is what the
		// primary has, but for edits of old messages, which the rule lets
		// lag: message 10 may show its earlier version.
		f.historyBoth(t, group.ID, parley.HistoryQuery{Before: 101, Limit: 50}, wantReplica)
		f.historyLagging(t, group.ID, parley.HistoryQuery{Before: 30, Limit: 50}, unedited)
		// The newest page is the primary's, with the new messages.
		newest := f.historyBoth(t, group.ID, parley.HistoryQuery{Limit: 5}, wantNeither)
		if n := len(newest); n == 0 || newest[n-1].Seq != last+30 {
			t.Errorf("the newest page ends at seq %v, want %d", seqs(newest), last+30)
		}

		f.exec(pg.ReplicaDSN(), "SELECT pg_wal_replay_resume()")
		pg.WaitReplica(ctx)
		for _, u := range users {
			f.syncBoth(t, u, since[u.ID], wantReplica)
		}
		f.historyBoth(t, group.ID, parley.HistoryQuery{Before: last + 31, Limit: 50}, wantReplica)
		f.historyBoth(t, group.ID, parley.HistoryQuery{Before: 30, Limit: 50}, wantReplica)
	}) {
		return
	}

	// clustertest can stop only the primary, so the replica cannot be
	// stopped here. Closing the store's replica pool makes every replica
	// read fail at once, as a refused connection would: each such read
	// must fall back to the primary, not fail and not return less.
	t.Run("replica unreachable", func(t *testing.T) {
		s.replica.Close()
		f.send(group.ID, users, 5, "the replica is unreachable")
		for _, u := range users {
			f.syncBoth(t, u, since[u.ID], wantPrimary)
			f.syncBoth(t, u, 0, wantPrimary)
		}
		f.historyBoth(t, group.ID, parley.HistoryQuery{Before: 101, Limit: 50}, wantPrimary)
		f.historyBoth(t, group.ID, parley.HistoryQuery{Limit: 50}, wantNeither)
	})
}

// replicaFixture writes through the store under test and compares its
// reads with ref, a store on the same primary without a replica.
type replicaFixture struct {
	t        *testing.T
	ctx      context.Context
	s, ref   *Store
	now      time.Time
	messages int // a counter that keeps bodies unique
}

// route says where a read is expected to go, by the replica counters.
type route int

const (
	wantReplica route = iota // the replica serves every read
	wantPrimary              // every read goes to the primary: the replica lags
	wantNeither              // a read the replica never serves: no counter moves
)

func (r route) String() string {
	return [...]string{"served by the replica", "sent to the primary as lagged", "not offered to the replica"}[r]
}

// routed runs fn and checks that its n replica-eligible reads went where
// want says.
func (f *replicaFixture) routed(t *testing.T, what string, want route, fn func() int) {
	t.Helper()
	served0, lagged0 := f.s.ReplicaReads()
	n := int64(fn())
	served1, lagged1 := f.s.ReplicaReads()
	served, lagged := served1-served0, lagged1-lagged0
	var wantServed, wantLagged int64
	switch want {
	case wantReplica:
		wantServed = n
	case wantPrimary:
		wantLagged = n
	}
	if served != wantServed || lagged != wantLagged {
		t.Errorf("%s: the replica served %d reads and %d lagged, want %d and %d (%s)", what, served, lagged, wantServed, wantLagged, want)
	}
}

func (f *replicaFixture) user(handle string) *parley.User {
	f.t.Helper()
	u := &parley.User{ID: parley.NewID(), Handle: handle, DisplayName: handle, Role: parley.SystemRoleUser,
		State: parley.UserActive, CreatedAt: f.now, PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA"}
	if err := f.s.CreateUser(f.ctx, u); err != nil {
		f.t.Fatalf("CreateUser(%s): %v", handle, err)
	}
	return u
}

// conversation creates a conversation of the given users, the first its
// owner.
func (f *replicaFixture) conversation(kind parley.ConversationKind, users ...*parley.User) *parley.Conversation {
	f.t.Helper()
	c := &parley.Conversation{ID: parley.NewID(), Kind: kind, CreatedAt: f.now}
	if kind == parley.KindGroup {
		c.Title = "group"
	}
	for i, u := range users {
		role := parley.MemberRoleMember
		if i == 0 && kind == parley.KindGroup {
			role = parley.MemberRoleOwner
		}
		c.Members = append(c.Members, parley.Member{UserID: u.ID, Role: role, JoinedAt: f.now})
	}
	got, created, err := f.s.CreateConversation(f.ctx, c)
	if err != nil || !created {
		f.t.Fatalf("CreateConversation(%s): created=%v, %v", kind, created, err)
	}
	return got
}

// send appends n messages to a conversation, from the senders in turn,
// several at once (so they share group commits), and returns them in seq
// order.
func (f *replicaFixture) send(conversationID string, senders []*parley.User, n int, label string) []*parley.Message {
	f.t.Helper()
	const writers = 8
	sent := make([]*parley.Message, n)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				m := &parley.Message{ConversationID: conversationID, SenderID: senders[i%len(senders)].ID,
					Type: parley.MessageText, Body: fmt.Sprintf("%s %d", label, f.messages+i), CreatedAt: f.now}
				got, _, err := f.s.AppendMessage(f.ctx, m)
				if err != nil {
					f.t.Errorf("AppendMessage: %v", err)
					return
				}
				sent[i] = got
			}
		})
	}
	wg.Wait()
	f.messages += n
	if f.t.Failed() {
		f.t.FailNow()
	}
	slices.SortFunc(sent, func(a, b *parley.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	return sent
}

func (f *replicaFixture) edit(conversationID string, seq int64, body string) {
	f.t.Helper()
	if _, err := f.s.UpdateMessage(f.ctx, conversationID, seq, f.now, func(m *parley.Message) error {
		m.Body, m.EditedAt = body, f.now
		return nil
	}); err != nil {
		f.t.Fatalf("UpdateMessage(%d): %v", seq, err)
	}
}

func (f *replicaFixture) remove(conversationID string, seq int64) {
	f.t.Helper()
	if _, err := f.s.UpdateMessage(f.ctx, conversationID, seq, f.now, func(m *parley.Message) error {
		m.Deleted, m.EditedAt = true, f.now
		return nil
	}); err != nil {
		f.t.Fatalf("UpdateMessage(delete %d): %v", seq, err)
	}
}

func (f *replicaFixture) markRead(conversationID string, u *parley.User, seq int64) {
	f.t.Helper()
	if _, err := f.s.MarkRead(f.ctx, conversationID, u.ID, seq); err != nil {
		f.t.Fatalf("MarkRead: %v", err)
	}
}

// syncPass runs a sync pass of userID from since, a conversation a page,
// and returns its pages.
func syncPass(ctx context.Context, t *testing.T, s *Store, userID string, since int64, now time.Time) []*parley.SyncPage {
	t.Helper()
	q := parley.SyncQuery{Since: since, Conversations: 1, Messages: 100}
	var pages []*parley.SyncPage
	for {
		page, err := s.Sync(ctx, userID, q, now)
		if err != nil {
			t.Fatalf("Sync(since %d, page %d): %v", since, len(pages)+1, err)
		}
		pages = append(pages, page)
		if !page.HasMore {
			return pages
		}
		if len(pages) > 10 {
			t.Fatalf("Sync(since %d): more than 10 pages", since)
		}
		q.Until, q.AfterStamp, q.AfterID = page.Until, page.NextStamp, page.NextID
	}
}

// syncBoth runs a sync pass of u from since on the store under test,
// checks that each page went where want says, and that the pass is the
// one the reference store returns; it returns the pages.
func (f *replicaFixture) syncBoth(t *testing.T, u *parley.User, since int64, want route) []*parley.SyncPage {
	t.Helper()
	what := fmt.Sprintf("sync of %s since %d", u.Handle, since)
	var got []*parley.SyncPage
	f.routed(t, what, want, func() int {
		got = syncPass(f.ctx, t, f.s, u.ID, since, f.now)
		return len(got)
	})
	wantPages := syncPass(f.ctx, t, f.ref, u.ID, since, f.now)
	if !reflect.DeepEqual(got, wantPages) {
		t.Errorf("%s differs from the primary's:\n got %s\nwant %s", what, describePages(got), describePages(wantPages))
	}
	if len(got[0].Conversations) == 0 {
		t.Errorf("%s is empty", what)
	}
	return got
}

// historyBoth reads a history page from the store under test, checks
// where it went and that it is the reference store's page, and returns it.
func (f *replicaFixture) historyBoth(t *testing.T, conversationID string, q parley.HistoryQuery, want route) []parley.Message {
	t.Helper()
	got, wantPage := f.history(t, conversationID, q, want)
	if !reflect.DeepEqual(got, wantPage) {
		t.Errorf("history %+v differs from the primary's:\n got %s\nwant %s", q, describeMessages(got), describeMessages(wantPage))
	}
	return got
}

// historyLagging is historyBoth for a page the replica serves while it
// lags behind an edit of an old message: that message may be the
// primary's version or the earlier one given (the rule lets edits of old
// messages lag); every other one must be the primary's.
func (f *replicaFixture) historyLagging(t *testing.T, conversationID string, q parley.HistoryQuery, earlier *parley.Message) {
	t.Helper()
	got, wantPage := f.history(t, conversationID, q, wantReplica)
	if len(got) != len(wantPage) {
		t.Fatalf("history %+v has %d messages, the primary's %d", q, len(got), len(wantPage))
	}
	for i := range got {
		if reflect.DeepEqual(got[i], wantPage[i]) || got[i].Seq == earlier.Seq && reflect.DeepEqual(got[i], *earlier) {
			continue
		}
		t.Errorf("history %+v: message %d is\n %+v\nwant %+v", q, got[i].Seq, got[i], wantPage[i])
	}
}

func (f *replicaFixture) history(t *testing.T, conversationID string, q parley.HistoryQuery, want route) (got, wantPage []parley.Message) {
	t.Helper()
	what := fmt.Sprintf("history %+v", q)
	f.routed(t, what, want, func() int {
		var err error
		if got, err = f.s.Messages(f.ctx, conversationID, q, f.now); err != nil {
			t.Fatalf("Messages(%+v): %v", q, err)
		}
		return 1
	})
	wantPage, err := f.ref.Messages(f.ctx, conversationID, q, f.now)
	if err != nil {
		t.Fatalf("Messages(%+v) without a replica: %v", q, err)
	}
	if len(wantPage) == 0 {
		t.Fatalf("%s is empty", what)
	}
	return got, wantPage
}

// exec runs sql, which returns one row, on a new connection to dsn.
func (f *replicaFixture) exec(dsn, sql string) {
	f.t.Helper()
	f.queryRow(dsn, sql, nil)
}

// stamp reads the change stamp of the server at dsn.
func (f *replicaFixture) stamp(dsn string) int64 {
	f.t.Helper()
	var stamp int64
	f.queryRow(dsn, `SELECT stamp FROM sync_stamp`, nil, &stamp)
	return stamp
}

// lastSeq reads a conversation's last_seq on the server at dsn.
func (f *replicaFixture) lastSeq(dsn, conversationID string) int64 {
	f.t.Helper()
	var seq int64
	f.queryRow(dsn, `SELECT last_seq FROM conversations WHERE id = $1`, []any{conversationID}, &seq)
	return seq
}

// queryRow runs sql on a new connection to dsn and scans its one row
// into dest (discards it when dest is empty).
func (f *replicaFixture) queryRow(dsn, sql string, args []any, dest ...any) {
	f.t.Helper()
	conn, err := pgx.Connect(f.ctx, dsn)
	if err != nil {
		f.t.Fatalf("connect to %s: %v", dsn, err)
	}
	defer conn.Close(context.Background())
	row := conn.QueryRow(f.ctx, sql, args...)
	if len(dest) == 0 {
		var ignored any
		dest = []any{&ignored}
	}
	if err := row.Scan(dest...); err != nil {
		f.t.Fatalf("%s on %s: %v", sql, dsn, err)
	}
}

// pagesOf returns the entries of a conversation in a sync pass.
func pagesOf(pages []*parley.SyncPage, conversationID string) []parley.SyncConversation {
	var out []parley.SyncConversation
	for _, p := range pages {
		for _, c := range p.Conversations {
			if c.View.ID == conversationID {
				out = append(out, c)
			}
		}
	}
	return out
}

func countMessages(pages []*parley.SyncPage) int {
	n := 0
	for _, p := range pages {
		for _, c := range p.Conversations {
			n += len(c.Messages)
		}
	}
	return n
}

// describePages summarizes a sync pass for a failure message.
func describePages(pages []*parley.SyncPage) string {
	var b strings.Builder
	for i, p := range pages {
		fmt.Fprintf(&b, "\n  page %d: until %d, more %v (%d, %s)", i+1, p.Until, p.HasMore, p.NextStamp, p.NextID)
		for _, c := range p.Conversations {
			v := c.View
			fmt.Fprintf(&b, "\n    %s key %d removed %v: last_seq %d read %d unread %d, %d members, messages %s more %v",
				v.ID, c.Key, c.Removed, v.LastSeq, v.ReadSeq, v.UnreadCount, len(v.Members), describeMessages(c.Messages), c.MoreMessages)
		}
	}
	return b.String()
}

// describeMessages summarizes messages for a failure message.
func describeMessages(msgs []parley.Message) string {
	var b strings.Builder
	b.WriteString("[")
	for i, m := range msgs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%d:%q", m.Seq, m.Body)
	}
	b.WriteString("]")
	return b.String()
}

func seqs(msgs []parley.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}
