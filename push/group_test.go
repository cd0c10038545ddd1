package push_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/bus/natsbus"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/push/pushtest"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/store/sqlite"
)

// countingStore counts the push role's reads of targets and unread
// counts.
type countingStore struct {
	*sqlite.Store
	targets, unread, fanOuts, fanOutReqs atomic.Int64
}

func (s *countingStore) PushTargets(ctx context.Context, conversationID, exceptUserID string) ([]parley.PushTarget, error) {
	s.targets.Add(1)
	return s.Store.PushTargets(ctx, conversationID, exceptUserID)
}

func (s *countingStore) Unread(ctx context.Context, userID, conversationID string, now time.Time) (int64, int64, error) {
	s.unread.Add(1)
	return s.Store.Unread(ctx, userID, conversationID, now)
}

func (s *countingStore) PushFanOut(ctx context.Context, reqs []parley.PushFanOutRequest, now time.Time) ([]parley.PushFanOut, error) {
	s.fanOuts.Add(1)
	s.fanOutReqs.Add(int64(len(reqs)))
	return s.Store.PushFanOut(ctx, reqs, now)
}

// TestFanOutGroupReadsOnce: message jobs that are due together are
// fanned out with one store read for all of them (their targets and the
// recipients' unread counts), not two reads each, and every notification
// still carries its conversation's count and its user's badge over every
// conversation.
func TestFanOutGroupReadsOnce(t *testing.T) {
	ctx := context.Background()
	kr, err := seal.NewKeyring([][]byte{bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "push.db"), sqlite.Options{Sealer: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &countingStore{Store: db}
	emb, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: filepath.Join(t.TempDir(), "nats")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	bus, err := natsbus.ConnectEmbedded(emb, natsbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	q, err := push.OpenQueue(ctx, bus.Conn(), push.QueueConfig{}, push.NewMetrics(prometheus.NewRegistry()), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	fake := pushtest.NewAPNs(t)
	apns, err := push.NewAPNs(push.APNsConfig{KeyFile: fake.KeyFile(), KeyID: fake.KeyID(), TeamID: fake.TeamID(), URL: fake.URL(), TLS: fake.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now().UTC().Truncate(time.Millisecond)
	newUser := func(handle string) *parley.User {
		u := &parley.User{ID: parley.NewID(), Handle: handle, DisplayName: handle, Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: now}
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	direct := func(a, b *parley.User) string {
		c, _, err := db.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: now, Members: []parley.Member{
			{UserID: a.ID, Role: parley.MemberRoleMember, JoinedAt: now}, {UserID: b.ID, Role: parley.MemberRoleMember, JoinedAt: now}}})
		if err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	send := func(conv string, from *parley.User, enqueue bool) {
		m, _, err := db.AppendMessage(ctx, &parley.Message{ID: parley.NewID(), ConversationID: conv, SenderID: from.ID,
			SenderDeviceID: parley.NewID(), Type: parley.MessageText, Body: "hi", CreatedAt: time.Now().UTC().Truncate(time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		if enqueue {
			q.MessageCommitted(m)
		}
	}
	alice, dave := newUser("alice"), newUser("dave")
	const phones = 12
	tokens := map[string]int{} // token -> phone
	var convs []string
	for i := range phones {
		u := newUser(fmt.Sprint("u", i))
		d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: "ios", Name: "phone", CreatedAt: now, LastSeenAt: now, SessionID: parley.NewID()}
		if err := db.CreateSession(ctx, d, &parley.RefreshToken{Hash: parley.NewID(), UserID: u.ID, DeviceID: d.ID, SessionID: d.SessionID,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, 0); err != nil {
			t.Fatal(err)
		}
		tok := fake.NewToken()
		if err := db.SetPush(ctx, u.ID, d.ID, &parley.PushRegistration{Provider: parley.PushAPNs, Token: tok, Topic: "com.example.app",
			Environment: "production", UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		tokens[tok] = i
		convs = append(convs, direct(alice, u))
		// Phone i also has i unread messages from dave (no jobs of their
		// own): its badge is i+1, its count 1.
		other := direct(dave, u)
		for range i {
			send(other, dave, false)
		}
	}
	// Every job is due before the role starts: its first fetch takes
	// them together.
	for _, c := range convs {
		send(c, alice, true)
	}
	// The jobs are published asynchronously: wait until the queue holds
	// them all, not a fixed moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n, _, err := q.Depth(ctx)
		if err == nil && n >= uint64(phones) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue holds %d jobs (%v), want %d", n, err, phones)
		}
	}
	w := push.NewWorker(q, st, nobodyLive{}, push.WorkerConfig{CollapseWindow: time.Millisecond}, log, apns)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })

	got := fake.Wait(t, phones, 20*time.Second)
	seen := map[int]bool{}
	for _, r := range got {
		i, ok := tokens[r.Token]
		if !ok || seen[i] {
			t.Fatalf("a notification to an unknown or already notified token: %+v", r)
		}
		seen[i] = true
		pp, _ := r.Payload["parley"].(map[string]any)
		if pp["count"] != "1" || pp["badge"] != fmt.Sprint(i+1) {
			t.Fatalf("phone %d's notification: count %v, badge %v; want 1, %d", i, pp["count"], pp["badge"], i+1)
		}
	}
	if n := st.targets.Load() + st.unread.Load(); n != 0 {
		t.Fatalf("%d reads of targets or unread counts one message at a time; want none (read in groups)", n)
	}
	if n, reqs := st.fanOuts.Load(), st.fanOutReqs.Load(); reqs != phones || n >= phones {
		t.Fatalf("%d group reads for %d fan-outs of %d messages; want the %d messages read in fewer reads", n, reqs, phones, phones)
	}
}
