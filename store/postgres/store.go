// Package postgres is Parley's cluster storage engine: a parley.Store on
// PostgreSQL through pgx, which any number of parleyd nodes share.
//
// Writes go through one writer goroutine per Store that commits them in
// groups (see writer.go): every write queued when the writer is ready
// shares one transaction and one commit. Appends, the hot path, run as a
// few set-based statements per batch, not a few per message.
//
// Every write transaction first raises the store-wide change stamp
// (sync_stamp), which takes that row's lock: write transactions of all
// nodes run one after another. That makes sequence numbers gap-free and
// unique without further locks (each batch reads last_seq after the
// previous writer committed), keeps idempotency checks free of races, and
// makes stamps commit in order, so a snapshot that sees stamp W has every
// row stamped up to W (what sync needs). The cost is that the cluster's
// write transactions are serialized; group commit keeps each short and
// large (see docs/adr/0002-postgres-sharding.md for the limits and the way past
// them).
//
// Reads run on a pool of connections to the primary, or, for the reads
// that may lag (older history pages, and sync when the replica has caught
// up with the client), on an optional replica (see Options.ReplicaDSN).
//
// Message bodies are sealed (encrypted) before they are written and
// opened after they are read: the database never holds a plaintext body.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// DefaultMaxBatch is the default Options.MaxBatch.
const DefaultMaxBatch = 512

// Options configures a Store. Sealer is required.
type Options struct {
	// Sealer encrypts message bodies at rest. Required.
	Sealer parley.Sealer
	// ReplicaDSN, if set, is a streaming replica of the primary: older
	// history pages and sync read from it when it is far enough along
	// (see Store.Messages and Store.Sync).
	ReplicaDSN string
	// Observe, if non-nil, is called after every Store method returns with
	// the operation's name (snake_case) and its latency.
	Observe func(op string, d time.Duration)
	// MaxBatch is the most writes committed in one transaction. Default
	// (0): DefaultMaxBatch.
	MaxBatch int
	// MaxConns is the size of the primary's read pool (the writer has a
	// connection of its own). Default (0): 16.
	MaxConns int
	// Logger receives errors no caller can be told about. Default: discard.
	Logger *slog.Logger
}

// Store is a parley.Store on PostgreSQL. Safe for concurrent use; create it
// with Open and release it with Close.
type Store struct {
	sealer   parley.Sealer
	observe  func(op string, d time.Duration)
	log      *slog.Logger
	maxBatch int

	pool    *pgxpool.Pool // the primary: reads that must see every commit
	writer  *pgxpool.Pool // the primary: the writer goroutine's connection
	replica *pgxpool.Pool // nil without a replica

	mu         sync.RWMutex
	closed     atomic.Bool
	jobs       chan *job
	writerDone chan struct{}

	// deviceSweep is set once a purge has looked at every device for
	// one left with no refresh token (see purgeRefreshTokens).
	deviceSweep atomic.Bool

	// Counters of the writer, read by the benchmark.
	batches   atomic.Int64
	batchJobs atomic.Int64
	lockHeld  atomic.Int64 // ns the writer's transactions held the stamp row
	// Reads served by the replica and those it could not serve (it lagged).
	replicaReads, replicaMisses atomic.Int64
	// replicaDownUntil (Unix ns): the replica failed a read; until then
	// the primary serves every read.
	replicaDownUntil atomic.Int64
}

var _ parley.Store = (*Store)(nil)

// errClosed is returned by every method called after Close.
var errClosed = parley.Errorf(parley.CodeUnavailable, "the store is closed")

// errUnavailable is what a caller sees when the database cannot be reached:
// retryable, unlike an internal error.
var errUnavailable = parley.Errorf(parley.CodeUnavailable, "the database is unavailable; retry later")

// Open connects to the database at dsn (a postgres:// URL or key=value
// string), applies pending schema migrations (one node at a time, under an
// advisory lock) and starts the writer. It fails if the database has a
// newer schema than this binary knows. ctx bounds only the opening.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.Sealer == nil {
		return nil, errors.New("postgres: Options.Sealer is required")
	}
	s := &Store{
		sealer:     opts.Sealer,
		observe:    opts.Observe,
		log:        opts.Logger,
		maxBatch:   opts.MaxBatch,
		writerDone: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBatch <= 0 {
		s.maxBatch = DefaultMaxBatch
	}
	maxConns := opts.MaxConns
	if maxConns <= 0 {
		maxConns = 16
	}
	var err error
	if s.pool, err = newPool(ctx, dsn, int32(maxConns)); err != nil {
		return nil, err
	}
	if s.writer, err = newPool(ctx, dsn, 1, writerParams); err != nil {
		s.pool.Close()
		return nil, err
	}
	if err := migrate(ctx, s.pool); err != nil {
		s.closePools()
		return nil, err
	}
	if opts.ReplicaDSN != "" {
		if s.replica, err = newPool(ctx, opts.ReplicaDSN, int32(maxConns)); err != nil {
			s.closePools()
			return nil, fmt.Errorf("postgres: replica: %w", err)
		}
	}
	s.jobs = make(chan *job, s.maxBatch)
	go s.writeLoop()
	return s, nil
}

// writerParams are the session settings of the writer's connection. Every
// write transaction holds the cluster's write lock (sync_stamp), so one
// that stalls (its node frozen or cut off mid-transaction) would stop the
// writes of every node: the server ends a transaction idle that long, and
// a writer does not wait that long for the lock.
var writerParams = map[string]string{
	"idle_in_transaction_session_timeout": "10s",
	"lock_timeout":                        "20s",
}

// batchTimeout bounds one group commit, all its round trips: a writer cut
// off from the database gives up (its jobs get unavailable) instead of
// waiting for the kernel's TCP timeouts.
const batchTimeout = 30 * time.Second

// newPool opens a pool of at most n connections and checks that it
// answers; params are set on each of its sessions.
func newPool(ctx context.Context, dsn string, n int32, params ...map[string]string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	for _, p := range params {
		for k, v := range p {
			cfg.ConnConfig.RuntimeParams[k] = v
		}
	}
	cfg.MaxConns = n
	cfg.MinConns = 0
	// A dead server is noticed at once, not after the kernel's timeouts.
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	cfg.HealthCheckPeriod = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	return pool, nil
}

// Close stops accepting writes, waits for the queued ones to commit, and
// closes the pools. Later calls fail with CodeUnavailable; Close itself may
// be called again and returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil
	}
	s.closed.Store(true)
	close(s.jobs)
	s.mu.Unlock()
	<-s.writerDone
	s.closePools()
	return nil
}

func (s *Store) closePools() {
	for _, p := range []*pgxpool.Pool{s.pool, s.writer, s.replica} {
		if p != nil {
			p.Close()
		}
	}
}

// Ping checks that the primary answers.
func (s *Store) Ping(ctx context.Context) error {
	defer s.track("ping", time.Now())
	if s.closed.Load() {
		return errClosed
	}
	if err := s.pool.Ping(ctx); err != nil {
		return s.internal("ping", err)
	}
	return nil
}

// ReplicaReads returns how many reads the replica served and how many it
// could not serve because it lagged (they went to the primary).
func (s *Store) ReplicaReads() (served, lagged int64) {
	return s.replicaReads.Load(), s.replicaMisses.Load()
}

// Batches returns the writer's transactions so far and the jobs in them.
func (s *Store) Batches() (batches, jobs int64) {
	return s.batches.Load(), s.batchJobs.Load()
}

// LockHeld returns how long the writer's transactions have held the
// sync_stamp row so far, from their first pipeline to COMMIT's answer (an
// upper bound: it includes the last round trip).
func (s *Store) LockHeld() time.Duration { return time.Duration(s.lockHeld.Load()) }

// track reports the latency of op to Options.Observe. Use it deferred.
func (s *Store) track(op string, start time.Time) {
	if s.observe != nil {
		s.observe(op, time.Since(start))
	}
}

// internal wraps an unexpected error. A database that cannot be reached
// (or is shutting down, or in recovery) becomes CodeUnavailable, which a
// client retries; after Close, every error is errClosed.
func (s *Store) internal(op string, err error) error {
	if s.closed.Load() {
		return errClosed
	}
	if isUnavailable(err) {
		s.log.Warn("postgres: database unavailable", "op", op, "err", err)
		return fmt.Errorf("postgres: %s: %w", op, &unavailableError{cause: err})
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// unavailableError is errUnavailable with its cause kept for the logs.
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string {
	return errUnavailable.Error() + " (" + e.cause.Error() + ")"
}

// As lets errors.As find errUnavailable (a *parley.Error) in the chain.
func (e *unavailableError) As(target any) bool {
	if p, ok := target.(**parley.Error); ok {
		*p = errUnavailable
		return true
	}
	return false
}

func (e *unavailableError) Unwrap() error { return e.cause }

// isUnavailable reports whether err says the database could not be reached
// or cannot serve now, as opposed to a failed statement.
func isUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"53", // insufficient resources
			"55", // object not in prerequisite state: lock_timeout (55P03)
			"57": // operator intervention: admin shutdown, cannot connect now
			return true
		}
		// 25006: read-only transaction (a primary demoted, or a replica).
		return pgErr.Code == "25006"
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, net.ErrClosed)
}

// isUniqueViolation reports whether err is a unique or primary key
// violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// isClientError reports whether err carries a code for the client.
func isClientError(err error) bool {
	var e *parley.Error
	return errors.As(err, &e)
}

// querier is what reads need: a pool, a pooled connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// nullMillis converts an optional time: the zero time is NULL.
func nullMillis(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

// fromNullMillis converts an optional stored time: NULL is the zero time.
func fromNullMillis(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return engine.FromMillis(*v)
}
