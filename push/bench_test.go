package push_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
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

type nobodyLive struct{}

func (nobodyLive) LiveDevices(context.Context, []string) (map[string]bool, error) {
	return map[string]bool{}, nil
}

// BenchmarkNotify measures the push role on one node: messages committed
// to 200 direct conversations whose recipient has an APNs device and no
// live session, each enqueued as the core does, fanned out, and sent to a
// local APNs server (HTTP/2, ES256 provider tokens). It reports
// notifications accepted per second, the median from commit to the
// provider's acceptance, and the connections the provider saw (one:
// every send multiplexed on one HTTP/2 connection). Messages are
// committed by several goroutines at once, as a gateway's connections
// do, so the store's commit round trip does not set the rate. The
// collapse window is 1 ms, so nearly every message is its own
// notification (the most work per message).
func BenchmarkNotify(b *testing.B) {
	ctx := context.Background()
	kr, err := seal.NewKeyring([][]byte{bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{Sealer: kr})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	emb, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: filepath.Join(b.TempDir(), "nats")})
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Shutdown()
	bus, err := natsbus.ConnectEmbedded(emb, natsbus.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	q, err := push.OpenQueue(ctx, bus.Conn(), push.QueueConfig{}, push.NewMetrics(reg), log)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	fake := pushtest.NewAPNs(b)
	apns, err := push.NewAPNs(push.APNsConfig{KeyFile: fake.KeyFile(), KeyID: fake.KeyID(), TeamID: fake.TeamID(), URL: fake.URL(), TLS: fake.TLSConfig()})
	if err != nil {
		b.Fatal(err)
	}
	w := push.NewWorker(q, st, nobodyLive{}, push.WorkerConfig{CollapseWindow: time.Millisecond}, log, apns)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	defer func() { stop(); <-done }()

	const conversations, committers = 200, 16
	now := time.Now().UTC().Truncate(time.Millisecond)
	sender := &parley.User{ID: parley.NewID(), Handle: "sender", DisplayName: "Sender", Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: now}
	if err := st.CreateUser(ctx, sender); err != nil {
		b.Fatal(err)
	}
	convs := make([]string, conversations)
	for i := range convs {
		u := &parley.User{ID: parley.NewID(), Handle: fmt.Sprint("r", i), DisplayName: "r", Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: now}
		if err := st.CreateUser(ctx, u); err != nil {
			b.Fatal(err)
		}
		d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: "ios", Name: "phone", CreatedAt: now, LastSeenAt: now, SessionID: parley.NewID()}
		if err := st.CreateSession(ctx, d, &parley.RefreshToken{Hash: parley.NewID(), UserID: u.ID, DeviceID: d.ID, SessionID: d.SessionID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, 0); err != nil {
			b.Fatal(err)
		}
		if err := st.SetPush(ctx, u.ID, d.ID, &parley.PushRegistration{Provider: parley.PushAPNs, Token: fake.NewToken(), Topic: "com.example.app", Environment: "production", UpdatedAt: now}); err != nil {
			b.Fatal(err)
		}
		c, _, err := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: now, Members: []parley.Member{
			{UserID: sender.ID, Role: parley.MemberRoleMember, JoinedAt: now}, {UserID: u.ID, Role: parley.MemberRoleMember, JoinedAt: now}}})
		if err != nil {
			b.Fatal(err)
		}
		convs[i] = c.ID
	}
	sent := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "parley_push_sent_total" {
				total := 0.0
				for _, m := range mf.GetMetric() {
					total += m.GetCounter().GetValue()
				}
				return total
			}
		}
		return 0
	}
	b.ResetTimer()
	start := time.Now()
	// Messages are committed by that many goroutines at once, as a
	// gateway's many connections do (the store's group commit batches
	// them), so that one sender's commit round trip does not bound what
	// is measured: the push role's rate.
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, committers)
	for range committers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				m, _, err := st.AppendMessage(ctx, &parley.Message{ID: parley.NewID(), ConversationID: convs[i%conversations], SenderID: sender.ID,
					SenderDeviceID: parley.NewID(), Type: parley.MessageText, Body: "hello", CreatedAt: time.Now().UTC().Truncate(time.Millisecond)})
				if err != nil {
					errs <- err
					return
				}
				q.MessageCommitted(m)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	// Every conversation's newest message notified: wait for the
	// notifications to stop coming.
	last, quiet := sent(), time.Now()
	for time.Since(quiet) < 500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
		if n := sent(); n != last {
			last, quiet = n, time.Now()
		}
	}
	elapsed := quiet.Sub(start)
	b.StopTimer()
	b.ReportMetric(last/elapsed.Seconds(), "notifications/s")
	b.ReportMetric(last/float64(b.N), "notifications/msg")
	b.ReportMetric(float64(fake.Connections()), "provider-connections")
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "parley_push_latency_seconds" {
			continue
		}
		// The median's bucket: the upper bound of the first holding half.
		h := mf.GetMetric()[0].GetHistogram()
		for _, bk := range h.GetBucket() {
			if bk.GetCumulativeCount() > h.GetSampleCount()/2 {
				b.ReportMetric(bk.GetUpperBound()*1000, "ms-commit-to-accept-p50-bucket")
				break
			}
		}
	}
}
