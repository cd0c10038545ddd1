package postgres

import (
	"context"
	"testing"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/testenv"
	"github.com/parleychat/parley/store/storetest"
)

// newTestSealer is the contract suite's sealer.
func newTestSealer(tb testing.TB) *storetest.Sealer { return storetest.NewSealer(tb) }

// openStore opens a store on dsn and closes it when the test ends.
func openStore(tb testing.TB, dsn string, sealer parley.Sealer) *Store {
	tb.Helper()
	s, err := Open(context.Background(), dsn, Options{Sealer: sealer})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(tb testing.TB) parley.Store {
		return openStore(tb, testenv.Postgres(tb), newTestSealer(tb))
	})
}

// TestShared runs the contract of stores that share a database: the
// stores stand for three parleyd nodes.
func TestShared(t *testing.T) {
	storetest.RunShared(t, func(tb testing.TB, n int) []parley.Store {
		dsn, sealer := testenv.Postgres(tb), newTestSealer(tb)
		stores := make([]parley.Store, n)
		for i := range stores {
			stores[i] = openStore(tb, dsn, sealer)
		}
		return stores
	})
}
