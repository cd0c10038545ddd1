package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/storetest"
)

// BenchmarkAppendMessage measures durable appends per second with about 256
// concurrent senders, the shape of research/store-throughput.md: 1,000
// conversations of two members, bodies of 100-200 bytes sealed with
// AES-256-GCM, a unique client_msg_id each. It reports msgs/s, the mean
// group-commit batch and the p50/p99 latency of AppendMessage. Run it on a
// real disk:
//
//	go test -run x -bench AppendMessage -benchtime 5s ./store/sqlite
func BenchmarkAppendMessage(b *testing.B) {
	storetest.BenchAppend(b, func(tb testing.TB, observe func(string, time.Duration)) (parley.Store, func() (int64, int64)) {
		s, err := Open(context.Background(), filepath.Join(tb.TempDir(), "parley.db"), Options{Sealer: storetest.NewSealer(tb), Observe: observe})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s, func() (int64, int64) { return s.batches.Load(), s.batchJobs.Load() }
	})
}

// BenchmarkPresencePeers measures ContactPeers against Peers for a user
// in a group of 100, 1,000 and 10,000 members (storetest.BenchPresencePeers):
//
//	go test -run x -bench PresencePeers ./store/sqlite
func BenchmarkPresencePeers(b *testing.B) {
	storetest.BenchPresencePeers(b, []int{100, 1000, 10000}, func(tb testing.TB) parley.Store {
		return openStore(tb, filepath.Join(tb.TempDir(), "parley.db"), storetest.NewSealer(tb))
	}, nil)
}
