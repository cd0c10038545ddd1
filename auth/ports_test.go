package auth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestArgon2idQueueHonoursContext: a request whose context ends while it
// waits for a hashing slot leaves the queue with the context's error and
// hashes nothing; the slot it never got stays free for the next caller.
func TestArgon2idQueueHonoursContext(t *testing.T) {
	a := NewArgon2id(cheapParams, 1)
	hash, err := a.Hash(context.Background(), "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	hold, err := a.acquire(context.Background()) // every slot busy
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func(ctx context.Context) error{
		"Hash":        func(ctx context.Context) error { _, err := a.Hash(ctx, "pw"); return err },
		"Verify":      func(ctx context.Context) error { _, err := a.Verify(ctx, "correct horse", hash); return err },
		"DummyVerify": func(ctx context.Context) error { return a.DummyVerify(ctx, "pw") },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- call(ctx) }()
			select {
			case err := <-done:
				t.Fatalf("returned while every slot was busy: %v", err)
			case <-time.After(20 * time.Millisecond): // it is queued (a returned call would have been seen)
			}
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a cancelled call stayed in the queue")
			}
		})
	}
	hold()
	if n := len(a.slots); n != 0 {
		t.Fatalf("%d slots held after every caller left", n)
	}
	// A context that ended before the call gets no slot even when one is free.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Verify(ctx, "correct horse", hash); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify with an ended context: %v", err)
	}
	if ok, err := a.Verify(context.Background(), "correct horse", hash); !ok || err != nil {
		t.Fatalf("Verify after the queue drained = %v, %v", ok, err)
	}
}
