package upload

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/parleychat/parley/internal/testenv"
)

// TestPGLocker: two lockers on separate pools (two nodes) exclude each
// other on one upload and not on another; a waiter gets the lock once the
// holder lets go, and times out with ErrLockTimeout while it does not; on
// one node, the holder is asked to let go.
func TestPGLocker(t *testing.T) {
	dsn := testenv.Postgres(t)
	newLocker := func() *PGLocker {
		pool, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		l := NewPGLocker(pool)
		l.poll = 20 * time.Millisecond
		return l
	}
	a, b := newLocker(), newLocker()
	la, _ := a.NewLock("upload-1")
	var asked atomic.Int32
	if err := la.Lock(context.Background(), func() { asked.Add(1) }); err != nil {
		t.Fatal(err)
	}
	// A failure below must not leave a lock holding its pool's
	// connection: the pools' Close (cleanups run last-in first-out, so
	// after this one) would wait for it forever. Unlock of a lock not
	// held is a no-op.
	t.Cleanup(func() { _ = la.Unlock() })
	// Another node: times out while a holds it.
	lb, _ := b.NewLock("upload-1")
	t.Cleanup(func() { _ = lb.Unlock() })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := lb.Lock(ctx, func() {})
	cancel()
	if !errors.Is(err, handler.ErrLockTimeout) {
		t.Fatalf("second node's Lock = %v, want ErrLockTimeout", err)
	}
	// Another upload is free.
	other, _ := b.NewLock("upload-2")
	if err := other.Lock(context.Background(), func() {}); err != nil {
		t.Fatalf("another upload: %v", err)
	}
	other.Unlock()
	// The same node asks the holder to let go.
	// It gives up once the holder was asked (the timeout is only a
	// bound: a fixed 100 ms failed on a loaded machine, where opening
	// the pool's second connection took longer than that).
	la2, _ := a.NewLock("upload-1")
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	go func() {
		for asked.Load() == 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_ = la2.Lock(ctx, func() {})
	cancel()
	if asked.Load() == 0 {
		t.Fatal("the local holder was not asked to unlock")
	}
	// Released: the other node gets it.
	done := make(chan error, 1)
	go func() { done <- lb.Lock(context.Background(), func() {}) }()
	time.Sleep(50 * time.Millisecond)
	if err := la.Unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second node never got the lock")
	}
	if err := lb.Unlock(); err != nil {
		t.Fatal(err)
	}
}
