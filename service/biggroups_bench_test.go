package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// lastEvent is a parley.Bus that keeps the last event published.
type lastEvent struct {
	mu   sync.Mutex
	data []byte
}

func (b *lastEvent) Publish(_ context.Context, _ string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.data = append(b.data[:0], data...)
	return nil
}

func (b *lastEvent) Subscribe(string, func(string, []byte)) (parley.Subscription, error) {
	return nil, fmt.Errorf("not subscribable")
}

func (b *lastEvent) Close() error { return nil }

// BenchmarkBigGroup measures a group of 10,000 members on SQLite, with the
// conversation object paged (inline limit 100) and, as before paging,
// inline (limit above the group): the time to create it, a member's sync
// page (time and JSON bytes), the member_added event (bytes: the frame
// every connected member gets), a read receipt and a send. Run:
//
//	go test -run '^$' -bench BenchmarkBigGroup -benchtime 20x ./service
func BenchmarkBigGroup(b *testing.B) {
	const members = 10000
	for _, mode := range []struct {
		name   string
		inline int
	}{{"paged", 100}, {"inline", parley.MaxGroupMembersCap}} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			st := openStore(b)
			svc := newService(st, service.Config{MaxInlineMembers: mode.inline, MaxGroupMembers: members + 10})
			bus := &lastEvent{}
			svc.UseBus(bus)
			users := make([]*parley.User, members+1)
			ids := make([]string, 0, members)
			for i := range users {
				users[i] = createUser(b, st, fmt.Sprintf("u%d", i))
				if i > 0 && i < members {
					ids = append(ids, users[i].ID)
				}
			}
			owner := &parley.Principal{UserID: users[0].ID, DeviceID: parley.NewID()}
			start := time.Now()
			c, _, err := svc.CreateConversation(ctx, owner, service.CreateConversationRequest{Kind: parley.KindGroup, Title: "all hands", Members: ids})
			if err != nil {
				b.Fatal(err)
			}
			created := time.Since(start)
			createdBytes := len(bus.data)
			for i := range 3 {
				if _, _, err := svc.Send(ctx, owner, service.SendRequest{ConversationID: c.ID, ClientMsgID: fmt.Sprint("m", i), Body: "hello everyone"}); err != nil {
					b.Fatal(err)
				}
			}
			start = time.Now()
			if _, err := svc.AddMember(ctx, owner, c.ID, users[members].ID, ""); err != nil {
				b.Fatal(err)
			}
			added := time.Since(start)
			addedBytes := len(bus.data)

			member := &parley.Principal{UserID: users[1].ID, DeviceID: parley.NewID()}
			var syncBytes int
			var syncTime, receiptTime, sendTime time.Duration
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				res, err := svc.Sync(ctx, member, "", 50)
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				js, _ := json.Marshal(res.Conversations)
				syncBytes = len(js)
				reader := &parley.Principal{UserID: users[2+i%(members-2)].ID, DeviceID: parley.NewID()}
				t2 := time.Now()
				if _, err := svc.MarkRead(ctx, reader, c.ID, 3); err != nil {
					b.Fatal(err)
				}
				t3 := time.Now()
				if _, _, err := svc.Send(ctx, owner, service.SendRequest{ConversationID: c.ID, ClientMsgID: fmt.Sprint("b", i), Body: "hello everyone"}); err != nil {
					b.Fatal(err)
				}
				syncTime += t1.Sub(t0)
				receiptTime += t3.Sub(t2)
				sendTime += time.Since(t3)
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(created.Seconds()*1000, "create-ms")
			b.ReportMetric(float64(createdBytes), "created-event-B")
			b.ReportMetric(added.Seconds()*1000, "add-ms")
			b.ReportMetric(float64(addedBytes), "added-event-B")
			b.ReportMetric(float64(syncBytes), "sync-page-B")
			b.ReportMetric(float64(syncTime.Microseconds())/n, "sync-µs")
			b.ReportMetric(float64(receiptTime.Microseconds())/n, "read-receipt-µs")
			b.ReportMetric(float64(sendTime.Microseconds())/n, "send-µs")
		})
	}
}
