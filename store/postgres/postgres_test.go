package postgres

import (
	"context"
	"strings"
	"sync"
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

// TestMigrations: nodes starting together migrate once, every node reads
// the version, and a node refuses a schema newer than it knows.
func TestMigrations(t *testing.T) {
	dsn := testenv.Postgres(t)
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stores := make([]*Store, 3)
	for i := range stores {
		wg.Go(func() { stores[i] = openStore(t, dsn, newTestSealer(t)) })
	}
	wg.Wait()
	for i, s := range stores {
		if v, err := s.SchemaVersion(t.Context()); err != nil || v != len(ms) {
			t.Fatalf("store %d: schema version %d, %v; want %d", i, v, err, len(ms))
		}
	}
	if _, err := stores[0].pool.Exec(t.Context(), `UPDATE parley_schema SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), dsn, Options{Sealer: newTestSealer(t)}); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open on a newer schema: %v", err)
	}
}
