package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// BenchAppend measures durable appends per second with about 256
// concurrent senders, the shape of research/store-throughput.md: 1,000
// conversations of two members, bodies of 100-200 bytes sealed, a unique
// client_msg_id each. It reports msgs/s, the mean group-commit batch and
// the p50/p99 latency of AppendMessage. open returns a new, empty store
// that reports each operation's latency to observe (closed when b ends)
// and a function that reads its group commits so far.
func BenchAppend(b *testing.B, open func(tb testing.TB, observe func(op string, d time.Duration)) (s parley.Store, batches func() (batches, jobs int64))) {
	const (
		conversations = 1000
		senders       = 256
	)
	ctx := context.Background()
	var (
		mu        sync.Mutex
		latencies []time.Duration
	)
	s, batches := open(b, func(op string, d time.Duration) {
		if op == "append_message" {
			mu.Lock()
			latencies = append(latencies, d)
			mu.Unlock()
		}
	})

	// Conversation i has users i and i+1; user i sends in it.
	now := time.Now()
	users := make([]string, conversations)
	convs := make([]string, conversations)
	for i := range users {
		users[i], convs[i] = parley.NewID(), parley.NewID()
	}
	Parallel(b, conversations, func(i int) error {
		return s.CreateUser(ctx, &parley.User{ID: users[i], Handle: fmt.Sprintf("u%d", i), CreatedAt: now})
	})
	Parallel(b, conversations, func(i int) error {
		_, _, err := s.CreateConversation(ctx, &parley.Conversation{ID: convs[i], Kind: parley.KindGroup, CreatedAt: now,
			Members: []parley.Member{{UserID: users[i]}, {UserID: users[(i+1)%conversations]}}})
		return err
	})
	body := make([]byte, 200)
	for i := range body {
		body[i] = byte('a' + i%26)
	}

	mu.Lock()
	latencies = latencies[:0]
	mu.Unlock()
	batches0, jobs0 := batches()
	var clientID atomic.Int64
	// RunParallel starts parallelism * GOMAXPROCS goroutines.
	b.SetParallelism(max(1, senders/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		for pb.Next() {
			i := r.IntN(conversations)
			m := &parley.Message{
				ConversationID: convs[i],
				SenderID:       users[i],
				SenderDeviceID: "bench",
				ClientMsgID:    fmt.Sprintf("c%d", clientID.Add(1)),
				Type:           parley.MessageText,
				Body:           string(body[:100+r.IntN(101)]),
			}
			if _, _, err := s.AppendMessage(ctx, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()

	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if n, jobs := batches(); n > batches0 {
		b.ReportMetric(float64(jobs-jobs0)/float64(n-batches0), "msgs/batch")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(latencies) > 0 {
		slices.Sort(latencies)
		b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// Parallel runs fn(0..n-1) on 64 goroutines, so that setup commits in
// groups, and fails tb on the first error.
func Parallel(tb testing.TB, n int, fn func(i int) error) {
	tb.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// BenchPresencePeers measures ContactPeers with maxMembers 100 (the
// default inline limit: presence's bound), and Peers for comparison, for
// a user who is in one group of each size in sizes and in five groups of
// ten of its members, the shape of a connection coming online in a big
// group (issue 15): every tenth other member has settings that are not
// the defaults. Above 100 members the group is paged and ContactPeers'
// cost should not follow its size; Peers' does. Sub-benchmarks are named
// group=N/Query, with the length of the answer as "peers"; newStore
// returns a new, empty store; analyze, if not nil, refreshes the
// planner's statistics after the setup.
func BenchPresencePeers(b *testing.B, sizes []int, newStore func(tb testing.TB) parley.Store, analyze func(s parley.Store)) {
	const maxMembers, smallGroups, smallSize = 100, 5, 10
	ctx := context.Background()
	now := time.Now()
	for _, size := range sizes {
		s := newStore(b)
		users := make([]string, max(size, 1+smallGroups*(smallSize-1)))
		for i := range users {
			users[i] = parley.NewID()
		}
		Parallel(b, len(users), func(i int) error {
			if err := s.CreateUser(ctx, &parley.User{ID: users[i], Handle: fmt.Sprintf("u%d", i), CreatedAt: now}); err != nil {
				return err
			}
			if i%10 != 9 {
				return nil
			}
			return s.SetPrivacy(ctx, users[i], parley.Privacy{Presence: parley.VisibleContacts, ReadReceipts: parley.VisibleEveryone})
		})
		group := func(ids []string) {
			c := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, CreatedAt: now}
			for _, id := range ids {
				c.Members = append(c.Members, parley.Member{UserID: id, Role: parley.MemberRoleMember, JoinedAt: now})
			}
			if _, _, err := s.CreateConversation(ctx, c); err != nil {
				b.Fatalf("CreateConversation of %d: %v", len(ids), err)
			}
		}
		me := users[0]
		group(users[:size])
		for g := range smallGroups { // among the group's members, as in issue 15
			first := 1 + g*(smallSize-1)
			group(append([]string{me}, users[first:first+smallSize-1]...))
		}
		if analyze != nil {
			analyze(s)
		}
		for _, q := range []struct {
			name string
			run  func() ([]parley.Peer, error)
		}{
			{"ContactPeers", func() ([]parley.Peer, error) { return s.ContactPeers(ctx, me, maxMembers) }},
			{"Peers", func() ([]parley.Peer, error) { return s.Peers(ctx, me, "") }},
		} {
			b.Run(fmt.Sprintf("group=%d/%s", size, q.name), func(b *testing.B) {
				var peers []parley.Peer
				for b.Loop() {
					var err error
					if peers, err = q.run(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(peers)), "peers")
			})
		}
	}
}
