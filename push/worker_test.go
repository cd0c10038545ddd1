package push_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
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

// TestFanOutAfterCollapseWindow: a message's fan-out waits out the
// collapse window. A device that reported the message delivered within it
// is skipped with no job of its own; one that did not is sent its
// notification by the fan-out itself (no device job).
func TestFanOutAfterCollapseWindow(t *testing.T) {
	ctx := context.Background()
	kr, err := seal.NewKeyring([][]byte{bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "push.db"), sqlite.Options{Sealer: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
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
	reg := prometheus.NewRegistry()
	q, err := push.OpenQueue(ctx, bus.Conn(), push.QueueConfig{}, push.NewMetrics(reg), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	fake := pushtest.NewAPNs(t)
	apns, err := push.NewAPNs(push.APNsConfig{KeyFile: fake.KeyFile(), KeyID: fake.KeyID(), TeamID: fake.TeamID(), URL: fake.URL(), TLS: fake.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	const collapse = 1500 * time.Millisecond
	w := push.NewWorker(q, st, nobodyLive{}, push.WorkerConfig{CollapseWindow: collapse}, log, apns)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })

	now := time.Now().UTC().Truncate(time.Millisecond)
	newUser := func(handle string) *parley.User {
		u := &parley.User{ID: parley.NewID(), Handle: handle, DisplayName: handle, Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: now}
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	alice := newUser("alice")
	type phone struct {
		user   *parley.User
		device *parley.Device
		token  string
		conv   string
	}
	newPhone := func(handle string) phone {
		u := newUser(handle)
		d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: "ios", Name: "phone", CreatedAt: now, LastSeenAt: now, SessionID: parley.NewID()}
		if err := st.CreateSession(ctx, d, &parley.RefreshToken{Hash: parley.NewID(), UserID: u.ID, DeviceID: d.ID, SessionID: d.SessionID,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, 0); err != nil {
			t.Fatal(err)
		}
		tok := fake.NewToken()
		if err := st.SetPush(ctx, u.ID, d.ID, &parley.PushRegistration{Provider: parley.PushAPNs, Token: tok, Topic: "com.example.app",
			Environment: "production", UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		c, _, err := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: now, Members: []parley.Member{
			{UserID: alice.ID, Role: parley.MemberRoleMember, JoinedAt: now}, {UserID: u.ID, Role: parley.MemberRoleMember, JoinedAt: now}}})
		if err != nil {
			t.Fatal(err)
		}
		return phone{u, d, tok, c.ID}
	}
	acking, asleep := newPhone("bob"), newPhone("carol")
	send := func(conv string) *parley.Message {
		m, _, err := st.AppendMessage(ctx, &parley.Message{ID: parley.NewID(), ConversationID: conv, SenderID: alice.ID,
			SenderDeviceID: parley.NewID(), Type: parley.MessageText, Body: "hi", CreatedAt: time.Now().UTC().Truncate(time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		q.MessageCommitted(m)
		return m
	}
	start := time.Now()
	acked := send(acking.conv)
	if _, _, err := st.MarkDelivered(ctx, acking.conv, acking.user.ID, acking.device.ID, acked.Seq); err != nil {
		t.Fatal(err)
	}
	last := send(asleep.conv)
	got := fake.Wait(t, 1, 10*time.Second)
	if since := got[0].Time.Sub(start); since < collapse-100*time.Millisecond {
		t.Fatalf("pushed %v after the first commit, before the collapse window (%v)", since, collapse)
	}
	time.Sleep(collapse) // room for a wrong second notification
	got = fake.Requests()
	if len(got) != 1 || got[0].Token != asleep.token {
		t.Fatalf("want one notification, to the device that did not ack; got %d: %+v", len(got), got)
	}
	pp, _ := got[0].Payload["parley"].(map[string]any)
	if pp["seq"] != "1" || pp["count"] != "1" || pp["trace_id"] != last.ID {
		t.Fatalf("the notification: %v", pp)
	}
	if n := counter(t, reg, "parley_push_jobs_enqueued_total", "device"); n != 0 {
		t.Fatalf("%v device jobs enqueued; the fan-out sends to due devices itself and skips delivered ones", n)
	}
	trace, err := q.Trace(ctx, last.ID)
	if err != nil {
		t.Fatal(err)
	}
	var stages []string
	for _, ev := range trace.Events {
		stages = append(stages, ev.Stage)
	}
	if want := []string{"committed", "enqueued", "fanned_out", "queued", "sent"}; !slices.Equal(stages, want) {
		t.Fatalf("trace stages %v, want %v", stages, want)
	}
}

// counter returns the value of a counter with the given label value.
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
