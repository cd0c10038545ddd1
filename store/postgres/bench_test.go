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
func BenchmarkAppendMessage(b *testing.B) {
	storetest.BenchAppend(b, func(tb testing.TB, observe func(string, time.Duration)) (parley.Store, func() (int64, int64)) {
		s, err := Open(context.Background(), testenv.Postgres(tb), Options{Sealer: storetest.NewSealer(tb), Observe: observe})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s, s.Batches
	})
}
