package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/testenv"
	"github.com/parleychat/parley/store/storetest"
)

// BenchmarkAppendMessage measures durable appends per second with about 256
// concurrent senders, the shape of research/store-throughput.md: 1,000
// conversations of two members, bodies of 100-200 bytes sealed with
// AES-256-GCM, a unique client_msg_id each. It reports msgs/s, the mean
// group-commit batch and the p50/p99 latency of AppendMessage, against the
// machine's PostgreSQL (PARLEY_TEST_POSTGRES):
//
//	go test -run x -bench AppendMessage -benchtime 5s ./store/postgres
//
// It also reports lock-ms/batch: how long a batch holds the sync_stamp row,
// the one write lock every node of a cluster takes (ADR 0002), so that
// batches/s of the whole cluster is at most 1000 / lock-ms/batch.
func BenchmarkAppendMessage(b *testing.B) {
	type snap struct {
		batches int64
		held    time.Duration
	}
	var snaps []snap // BenchAppend reads the counters before and after its loop
	storetest.BenchAppend(b, func(tb testing.TB, observe func(string, time.Duration)) (parley.Store, func() (int64, int64)) {
		s, err := Open(context.Background(), testenv.Postgres(tb), Options{Sealer: storetest.NewSealer(tb), Observe: observe})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s, func() (int64, int64) {
			n, jobs := s.Batches()
			snaps = append(snaps, snap{n, s.LockHeld()})
			return n, jobs
		}
	})
	if k := len(snaps); k >= 2 && snaps[k-1].batches > snaps[k-2].batches {
		b.ReportMetric(float64(snaps[k-1].held-snaps[k-2].held)/float64(time.Millisecond)/float64(snaps[k-1].batches-snaps[k-2].batches), "lock-ms/batch")
	}
}

// BenchmarkPresencePeers measures ContactPeers against Peers for a user
// in a group of 100, 1,000 and 10,000 members (storetest.BenchPresencePeers),
// against the machine's PostgreSQL (PARLEY_TEST_POSTGRES), with the
// statistics of a fresh ANALYZE (autovacuum's would come later):
//
//	go test -run x -bench PresencePeers ./store/postgres
func BenchmarkPresencePeers(b *testing.B) {
	storetest.BenchPresencePeers(b, []int{100, 1000, 10000}, func(tb testing.TB) parley.Store {
		s, err := Open(context.Background(), testenv.Postgres(tb), Options{Sealer: storetest.NewSealer(tb)})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s
	}, func(s parley.Store) {
		if _, err := s.(*Store).pool.Exec(context.Background(), "ANALYZE"); err != nil {
			b.Fatal(err)
		}
	})
}
