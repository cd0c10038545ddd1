package upload

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tus/tusd/v2/pkg/handler"
)

// PGLocker is a tusd Locker that holds across nodes: an upload's lock is a
// PostgreSQL session advisory lock (pg_try_advisory_lock on a connection
// of its own, kept until Unlock; if the node dies, PostgreSQL ends the
// session and the lock goes with it). A request on another node that wants
// the lock polls until it is free or its context ends; on the same node the
// holder is also asked to let go (tusd's requestUnlock), so a client that
// resumes after a dropped connection gets the lock as soon as the old
// request winds up.
type PGLocker struct {
	pool *pgxpool.Pool
	poll time.Duration

	mu      sync.Mutex
	holders map[string]func() // upload id -> its local holder's requestUnlock
}

// NewPGLocker returns a locker on pool, which should have room for one
// connection per upload in progress besides its other users.
func NewPGLocker(pool *pgxpool.Pool) *PGLocker {
	return &PGLocker{pool: pool, poll: 100 * time.Millisecond, holders: map[string]func(){}}
}

// UseIn makes composer use the locker.
func (l *PGLocker) UseIn(composer *handler.StoreComposer) { composer.UseLocker(l) }

// NewLock implements handler.Locker.
func (l *PGLocker) NewLock(id string) (handler.Lock, error) {
	h := fnv.New64a()
	h.Write([]byte("parley-tus:" + id))
	return &pgLock{l: l, id: id, key: int64(h.Sum64())}, nil
}

type pgLock struct {
	l    *PGLocker
	id   string
	key  int64
	conn *pgxpool.Conn
}

// Lock implements handler.Lock.
func (k *pgLock) Lock(ctx context.Context, requestUnlock func()) error {
	for {
		conn, err := k.l.pool.Acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return handler.ErrLockTimeout
			}
			return err
		}
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, k.key).Scan(&ok); err != nil {
			conn.Release()
			if ctx.Err() != nil {
				return handler.ErrLockTimeout
			}
			return err
		}
		if ok {
			k.conn = conn
			k.l.mu.Lock()
			k.l.holders[k.id] = requestUnlock
			k.l.mu.Unlock()
			return nil
		}
		conn.Release()
		k.l.mu.Lock()
		ask := k.l.holders[k.id]
		k.l.mu.Unlock()
		if ask != nil {
			ask()
		}
		select {
		case <-ctx.Done():
			return handler.ErrLockTimeout
		case <-time.After(k.l.poll):
		}
	}
}

// Unlock implements handler.Lock.
func (k *pgLock) Unlock() error {
	if k.conn == nil {
		return nil
	}
	k.l.mu.Lock()
	delete(k.l.holders, k.id)
	k.l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := k.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, k.key)
	if err != nil {
		// The session may still hold the lock: close it rather than
		// return it to the pool.
		k.conn.Conn().Close(ctx)
	}
	k.conn.Release()
	k.conn = nil
	return err
}
