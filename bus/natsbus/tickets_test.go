package natsbus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/testenv"
	"github.com/parleychat/parley/service"
)

var _ service.TicketStore = (*Tickets)(nil)

// TestTickets: a ticket is taken once, by one of many redeemers on
// separate connections (nodes), and not after its TTL; on the embedded
// server and on the machine's NATS.
func TestTickets(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		e, err := StartEmbedded(EmbeddedOptions{StoreDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Shutdown)
		testTickets(t, func(tb testing.TB) *Bus {
			b, err := ConnectEmbedded(e, Options{})
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { b.Close() })
			return b
		})
	})
	t.Run("external", func(t *testing.T) {
		url := testenv.Service(t, "PARLEY_TEST_NATS_URL", "nats://127.0.0.1:4222")
		testTickets(t, func(tb testing.TB) *Bus {
			b, err := Connect(url, Options{})
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { b.Close() })
			return b
		})
	})
}

func testTickets(t *testing.T, connect func(testing.TB) *Bus) {
	ctx := context.Background()
	bucket := "parley_test_tickets_" + parley.NewID()
	const nodes = 4
	var stores []*Tickets
	for i := 0; i < nodes; i++ {
		b := connect(t)
		if i == 0 {
			js, err := jetstream.New(b.nc)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = js.DeleteKeyValue(context.Background(), bucket) })
		}
		ts, err := NewTickets(ctx, b, TicketOptions{Bucket: bucket, TTL: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, ts)
	}

	for round := 0; round < 5; round++ {
		key := fmt.Sprintf("k%d%s", round, parley.NewID())
		if err := stores[0].Put(ctx, key, []byte("ids")); err != nil {
			t.Fatal(err)
		}
		if err := stores[1].Put(ctx, key, []byte("other")); err == nil {
			t.Fatal("Put over a live ticket succeeded")
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for i := 0; i < 3*nodes; i++ {
			wg.Add(1)
			go func(ts *Tickets) {
				defer wg.Done()
				v, ok, err := ts.Take(ctx, key)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					won++
					mu.Unlock()
					if string(v) != "ids" {
						t.Errorf("value %q", v)
					}
				}
			}(stores[i%nodes])
		}
		wg.Wait()
		if won != 1 {
			t.Fatalf("round %d: %d redeemers got the ticket, want 1", round, won)
		}
		if _, ok, err := stores[2].Take(ctx, key); ok || err != nil {
			t.Fatalf("Take after use = %v, %v", ok, err)
		}
	}
	if _, ok, err := stores[0].Take(ctx, "never"+parley.NewID()); ok || err != nil {
		t.Fatalf("Take(unknown) = %v, %v", ok, err)
	}
	// Past the TTL a ticket is gone, whether or not the server swept it.
	key := "late" + parley.NewID()
	if err := stores[0].Put(ctx, key, []byte("ids")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		e, err := stores[1].kv.Get(ctx, key)
		if err != nil || time.Since(e.Created()) >= 2*time.Second {
			break // swept, or due
		}
		if time.Now().After(deadline) {
			t.Fatal("the ticket never aged")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, ok, err := stores[1].Take(ctx, key); ok || err != nil {
		t.Fatalf("Take after the TTL = %v, %v", ok, err)
	}
}
