package service_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/service"
	"github.com/parleychat/parley/store/sqlite"
)

// BenchmarkSend measures durable sends through the core: validation, body
// encryption, the group-committed SQLite append (synchronous=FULL, so each
// batch is fsync'd) and the answer. 1,000 direct conversations, bodies of
// 150 bytes, and 256 concurrent senders (b.SetParallelism scales with
// GOMAXPROCS), as in ../shared/research/store-throughput.md. Run:
//
//	go test -run '^$' -bench BenchmarkSend -benchtime 100000x ./service
func BenchmarkSend(b *testing.B) {
	ctx := context.Background()
	kr, err := seal.NewKeyring([][]byte{bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{Sealer: kr})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	svc := service.New(st, nil, nil, service.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)

	const conversations = 1000
	type pair struct {
		sender *parley.Principal
		convID string
	}
	pairs := make([]pair, conversations)
	now := time.Now().UTC()
	for i := range pairs {
		a := &parley.User{ID: parley.NewID(), Handle: fmt.Sprintf("a%d", i), DisplayName: "a", Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: now}
		z := &parley.User{ID: parley.NewID(), Handle: fmt.Sprintf("z%d", i), DisplayName: "z", Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: now}
		for _, u := range []*parley.User{a, z} {
			if err := st.CreateUser(ctx, u); err != nil {
				b.Fatal(err)
			}
		}
		c, _, err := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: now, Members: []parley.Member{
			{UserID: a.ID, Role: parley.MemberRoleMember, JoinedAt: now}, {UserID: z.ID, Role: parley.MemberRoleMember, JoinedAt: now},
		}})
		if err != nil {
			b.Fatal(err)
		}
		pairs[i] = pair{sender: &parley.Principal{UserID: a.ID, DeviceID: parley.NewID()}, convID: c.ID}
	}
	body := strings.Repeat("x", 150)
	var next atomic.Int64
	b.SetParallelism(128) // 256 goroutines on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			p := pairs[n%conversations]
			_, created, err := svc.Send(ctx, p.sender, service.SendRequest{
				ConversationID: p.convID, ClientMsgID: fmt.Sprintf("m%d", n), Body: body,
			})
			if err != nil || !created {
				b.Errorf("send: created=%v err=%v", created, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
