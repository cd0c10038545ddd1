package push_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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
// to conversations whose other member has a device registered with APNs
// (half of them) or FCM (the other half) and no live session, each
// enqueued as the core does, fanned out, and sent to local APNs and FCM
// servers (HTTP/2; ES256 provider tokens, OAuth for FCM). It reports
// notifications accepted per second, the process's CPU time per
// notification (everything in it: the role, SQLite, the embedded NATS,
// the fakes; on a shared machine a steadier figure than the rate), the
// median from commit to the provider's acceptance, and the connections
// the providers saw (one each: every send multiplexed on one HTTP/2
// connection).
//
// Every message goes to a conversation of its own (200 recipients, each
// in b.N/200 of them), so every message is a notification of its own
// (the most work per message: notifications/msg says so) whatever the
// role's speed; sent to fewer conversations, a role that falls behind
// collapses more messages into one notification and looks no slower.
// Messages are committed by 16 goroutines at once, as a gateway's
// connections do (the store's group commit batches them), so the
// store's commit round trip does not set the rate. The collapse window
// is 1 ms.
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
	apnsFake, fcmFake := pushtest.NewAPNs(b), pushtest.NewFCM(b)
	apns, err := push.NewAPNs(push.APNsConfig{KeyFile: apnsFake.KeyFile(), KeyID: apnsFake.KeyID(), TeamID: apnsFake.TeamID(),
		URL: apnsFake.URL(), TLS: apnsFake.TLSConfig()})
	if err != nil {
		b.Fatal(err)
	}
	fcm, err := push.NewFCM(ctx, push.FCMConfig{CredentialsFile: fcmFake.CredentialsFile(), URL: fcmFake.Endpoint(), TLS: fcmFake.TLSConfig()})
	if err != nil {
		b.Fatal(err)
	}
	w := push.NewWorker(q, st, nobodyLive{}, push.WorkerConfig{CollapseWindow: time.Millisecond}, log, apns, fcm)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	defer func() { stop(); <-done }()

	const recipients, committers = 200, 16
	now := time.Now().UTC().Truncate(time.Millisecond)
	sender := &parley.User{ID: parley.NewID(), Handle: "sender", DisplayName: "Sender", Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: now}
	if err := st.CreateUser(ctx, sender); err != nil {
		b.Fatal(err)
	}
	users := make([]string, recipients)
	for i := range users {
		u := &parley.User{ID: parley.NewID(), Handle: fmt.Sprint("r", i), DisplayName: "r", Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: now}
		if err := st.CreateUser(ctx, u); err != nil {
			b.Fatal(err)
		}
		d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: "ios", Name: "phone", CreatedAt: now, LastSeenAt: now, SessionID: parley.NewID()}
		if err := st.CreateSession(ctx, d, &parley.RefreshToken{Hash: parley.NewID(), UserID: u.ID, DeviceID: d.ID, SessionID: d.SessionID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, 0); err != nil {
			b.Fatal(err)
		}
		r := &parley.PushRegistration{Provider: parley.PushAPNs, Token: apnsFake.NewToken(), Topic: "com.example.app", Environment: "production", UpdatedAt: now}
		if i%2 == 1 {
			d.Platform = "android"
			r = &parley.PushRegistration{Provider: parley.PushFCM, Token: fcmFake.NewToken(), UpdatedAt: now}
		}
		if err := st.SetPush(ctx, u.ID, d.ID, r); err != nil {
			b.Fatal(err)
		}
		users[i] = u.ID
	}
	// parallel runs f(i) for i in [0, n) on committers goroutines.
	parallel := func(n int, f func(i int) error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, committers)
		for range committers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
					if err := f(int(i)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	convs := make([]string, b.N)
	parallel(b.N, func(i int) error {
		c, _, err := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, Title: "g", CreatedAt: now,
			Members: []parley.Member{{UserID: sender.ID, Role: parley.MemberRoleOwner, JoinedAt: now},
				{UserID: users[i%recipients], Role: parley.MemberRoleMember, JoinedAt: now}}})
		if err == nil {
			convs[i] = c.ID
		}
		return err
	})
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
	start, cpuStart := time.Now(), processCPU()
	parallel(b.N, func(i int) error {
		m, _, err := st.AppendMessage(ctx, &parley.Message{ID: parley.NewID(), ConversationID: convs[i], SenderID: sender.ID,
			SenderDeviceID: parley.NewID(), Type: parley.MessageText, Body: "hello", CreatedAt: time.Now().UTC().Truncate(time.Millisecond)})
		if err == nil {
			q.MessageCommitted(m)
		}
		return err
	})
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
	cpu := processCPU() - cpuStart
	b.StopTimer()
	if last > 0 {
		// The whole process: the push role, the store, the embedded NATS
		// and the fake providers, including the commits of the messages.
		b.ReportMetric(float64(cpu.Microseconds())/last, "cpu-µs/notification")
	}
	b.ReportMetric(last/elapsed.Seconds(), "notifications/s")
	b.ReportMetric(last/float64(b.N), "notifications/msg")
	b.ReportMetric(float64(apnsFake.Connections()+fcmFake.Connections()), "provider-connections")
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "parley_push_latency_seconds" {
			continue
		}
		// The median's bucket, both providers together: the upper bound
		// of the first holding half.
		var samples uint64
		counts := map[float64]uint64{}
		var bounds []float64
		for _, m := range mf.GetMetric() {
			samples += m.GetHistogram().GetSampleCount()
			for _, bk := range m.GetHistogram().GetBucket() {
				if _, ok := counts[bk.GetUpperBound()]; !ok {
					bounds = append(bounds, bk.GetUpperBound())
				}
				counts[bk.GetUpperBound()] += bk.GetCumulativeCount()
			}
		}
		slices.Sort(bounds)
		for _, ub := range bounds {
			if counts[ub] > samples/2 {
				b.ReportMetric(ub*1000, "ms-commit-to-accept-p50-bucket")
				break
			}
		}
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
