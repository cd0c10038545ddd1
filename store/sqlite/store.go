// Package sqlite is Parley's embedded storage engine: a parley.Store on one
// SQLite database file in WAL mode, through the pure-Go modernc.org/sqlite
// driver.
//
// Writes go through one writer goroutine that owns the only writing
// connection and commits them in groups (see writer.go): every write that is
// queued when the writer is ready shares one transaction and one fsync, so
// throughput grows with the number of concurrent writers while every
// acknowledged write is durable (synchronous=FULL). Reads run on a separate
// pool of read-only connections and see the last committed state.
//
// Message bodies are sealed (encrypted) with the Options.Sealer before they
// are written and opened after they are read; the database file, its WAL and
// its shared-memory file never hold a plaintext body.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"

	"modernc.org/sqlite" // also registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// DefaultMaxBatch is the default Options.MaxBatch.
const DefaultMaxBatch = 512

// busyTimeout is how long a connection waits for a lock another process (or
// a checkpoint) holds before it fails with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// Options configures a Store. The zero value is not usable: Sealer is
// required.
type Options struct {
	// Sealer encrypts message bodies at rest. Required.
	Sealer parley.Sealer
	// Observe, if non-nil, is called after every Store method returns, with
	// the operation's name (the method's name in snake_case: "append_message",
	// "messages", "create_user", ...) and its latency including the time
	// queued for the writer. It is called concurrently and must be fast (a
	// histogram update).
	Observe func(op string, d time.Duration)
	// MaxBatch is the largest number of writes committed in one
	// transaction. Default (0): DefaultMaxBatch. It is a ceiling, not a
	// target: the writer waits to fill a batch only as CommitWait allows.
	MaxBatch int
	// CommitWait is how long the writer may hold a batch of one write
	// open for more while writes arrive steadily (see commitWait in
	// writer.go): fewer, larger commits at a light load, for about this
	// much added latency. 0 (the default): never wait. parleyd allows up
	// to 50 ms.
	CommitWait time.Duration
	// Logger receives errors that no caller can be told about (a failed
	// background checkpoint, a failed rollback). Default: discard.
	Logger *slog.Logger
}

// Store is a parley.Store on a SQLite database. It is safe for concurrent
// use. Create it with Open and release it with Close.
type Store struct {
	sealer   parley.Sealer
	observe  func(op string, d time.Duration)
	log      *slog.Logger
	maxBatch int
	wait     commitWait // the writer's; see writer.go

	// writeDB has one connection, which wconn holds for the life of the
	// Store and only the writer goroutine uses: after Open, anything run
	// on writeDB itself would wait forever.
	writeDB *sql.DB
	wconn   *sql.Conn
	hot     hotStatements
	readDB  *sql.DB // read-only pool
	wst     writerStatements
	rst     readerStatements
	ckpt    *checkpointer

	// mu guards sending on jobs against Close closing it: senders hold it
	// for reading, Close for writing.
	mu         sync.RWMutex
	closed     atomic.Bool
	jobs       chan *job
	writerDone chan struct{}

	// deviceSweep is set once a purge has looked at every device for
	// one left with no refresh token (see purgeRefreshTokens).
	deviceSweep atomic.Bool

	// stamp is the last committed change stamp (see txn.changeStamp): the
	// default upper bound of Sync. Only the writer stores it, after commit.
	stamp atomic.Int64

	// Counters of the writer, read by the benchmark.
	batches   atomic.Int64 // transactions committed or attempted
	batchJobs atomic.Int64 // jobs in them
}

var _ parley.Store = (*Store)(nil)

// errClosed is returned by every method called after Close.
var errClosed = parley.Errorf(parley.CodeUnavailable, "the store is closed")

// Open opens (creating it if needed) the database at path, applies any
// pending schema migrations in one transaction and starts the writer. It
// fails if the database has a newer schema than this binary knows. ctx
// bounds only the opening and migration.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.Sealer == nil {
		return nil, errors.New("sqlite: Options.Sealer is required")
	}
	if path == "" || path == ":memory:" {
		return nil, errors.New("sqlite: a database file path is required")
	}
	s := &Store{
		sealer:     opts.Sealer,
		observe:    opts.Observe,
		log:        opts.Logger,
		maxBatch:   opts.MaxBatch,
		wait:       commitWait{max: max(opts.CommitWait, 0), useful: 1},
		writerDone: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBatch <= 0 {
		s.maxBatch = DefaultMaxBatch
	}

	path, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := ownerOnly(path); err != nil {
		return nil, err
	}
	s.writeDB, err = sql.Open("sqlite", dsn(path, roleWriter))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	// One connection, kept forever: the writer goroutine is its only user,
	// and its prepared statements live on it.
	s.writeDB.SetMaxOpenConns(1)
	s.writeDB.SetMaxIdleConns(1)
	s.writeDB.SetConnMaxLifetime(0)
	s.writeDB.SetConnMaxIdleTime(0)
	if err := s.writeDB.PingContext(ctx); err != nil {
		s.writeDB.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, s.writeDB); err != nil {
		s.writeDB.Close()
		return nil, err
	}

	s.readDB, err = sql.Open("sqlite", dsn(path, roleReader))
	if err != nil {
		s.writeDB.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	s.readDB.SetMaxOpenConns(readers)
	s.readDB.SetMaxIdleConns(readers)
	s.readDB.SetConnMaxLifetime(0)
	s.readDB.SetConnMaxIdleTime(0)

	var stamp int64
	if err := s.writeDB.QueryRowContext(ctx, `SELECT stamp FROM sync_stamp`).Scan(&stamp); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: read change stamp: %w", err)
	}
	s.stamp.Store(stamp)

	if err := s.wst.prepare(ctx, s.writeDB); err != nil {
		s.closeDBs()
		return nil, err
	}
	if err := s.rst.prepare(ctx, s.readDB); err != nil {
		s.closeDBs()
		return nil, err
	}
	// The writer keeps its connection: the hot statements live on the
	// driver connection under it (see hot.go).
	s.wconn, err = s.writeDB.Conn(ctx)
	if err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: writer connection: %w", err)
	}
	if err := s.hot.prepare(ctx, s.wconn); err != nil {
		s.closeDBs()
		return nil, err
	}

	ckdb, err := sql.Open("sqlite", dsn(path, roleCheckpointer))
	if err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: open checkpointer: %w", err)
	}
	ckdb.SetMaxOpenConns(1)
	ckdb.SetConnMaxLifetime(0)
	ckdb.SetConnMaxIdleTime(0)
	s.ckpt = newCheckpointer(ckdb, s.log)
	go s.ckpt.run()

	s.jobs = make(chan *job, s.maxBatch)
	go s.writeLoop()
	return s, nil
}

// ownerOnly makes the database file readable by its owner only, creating
// it empty (mode 0600) if it does not exist, and tightens the files an
// older version may have left 0644 (umask 022): the database holds sealed
// bodies, password and token hashes. SQLite creates the -wal and -shm files
// with the database file's mode.
func ownerOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sqlite: %w", err)
		}
	}
	return nil
}

// connRole says what a connection is for; dsn configures it accordingly.
type connRole int

const (
	roleWriter       connRole = iota // the writer goroutine's one connection
	roleReader                       // the read-only pool
	roleCheckpointer                 // the checkpointer goroutine's connection
)

// dsn returns the modernc.org/sqlite data source name of a connection for
// role to the database at the absolute path. Every connection waits
// busyTimeout for locks held by others. The writer turns on WAL (persistent
// in the file), synchronous=FULL so that a commit is fsync'd before it
// returns, foreign keys, and BEGIN IMMEDIATE for its transactions, so that
// a transaction never fails to upgrade a read lock; it leaves checkpoints
// to the checkpointer, whose synchronous=FULL makes each checkpoint durable
// before the WAL can restart. The writer also sets secure_delete: content
// it deletes or replaces (a deleted or edited message's sealed body, a
// purged message, a used token) is overwritten with zeros in its page,
// not left in free space where a copy of the file would keep it. Readers
// are query_only.
func dsn(path string, role connRole) string {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	switch role {
	case roleWriter:
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", "FULL")
		q.Set("_foreign_keys", "1")
		q.Set("_txlock", "immediate")
		q.Add("_pragma", "wal_autocheckpoint(0)")
		// Truncate a WAL that grew past 128 MiB once it restarts (it
		// restarts near 64 MiB; see defaultRestartPages).
		q.Add("_pragma", "journal_size_limit(134217728)")
		// Up to 64 MiB of pages, so that the random index leaves that
		// appends touch stay in memory.
		q.Add("_pragma", "cache_size(-65536)")
		q.Add("_pragma", "secure_delete(1)")
	case roleReader:
		q.Set("_query_only", "1")
	case roleCheckpointer:
		q.Set("_synchronous", "FULL")
	}
	// A file: URI of the absolute path keeps a '?' or '#' in the path from
	// being read as the start of the parameters.
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// Close stops accepting writes, waits for the queued ones to commit, and
// closes the database. Calls after Close fail with CodeUnavailable. Close
// is safe to call more than once; later calls return nil.
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
	err := s.ckpt.stop()
	return errors.Join(err, s.closeDBs())
}

func (s *Store) closeDBs() error {
	s.wst.close()
	s.rst.close()
	var errs []error
	if s.wconn != nil {
		s.hot.close(s.wconn)
		errs = append(errs, s.wconn.Close())
	}
	if s.readDB != nil {
		errs = append(errs, s.readDB.Close())
	}
	errs = append(errs, s.writeDB.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// Ping checks that a reader connection answers.
func (s *Store) Ping(ctx context.Context) (err error) {
	defer s.track("ping", time.Now())
	if s.closed.Load() {
		return errClosed
	}
	if err := s.readDB.PingContext(ctx); err != nil {
		return s.internal("ping", err)
	}
	return nil
}

// SchemaVersion returns the schema version recorded in the database (PRAGMA
// user_version): the number of migrations applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, errClosed
	}
	var v int
	if err := s.readDB.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, s.internal("schema version", err)
	}
	return v, nil
}

// track reports the latency of op to Options.Observe. Use it deferred, with
// the start time evaluated at the defer.
func (s *Store) track(op string, start time.Time) {
	if s.observe != nil {
		s.observe(op, time.Since(start))
	}
}

// internal wraps an unexpected error. After Close, errors caused by the
// closed database become errClosed.
func (s *Store) internal(op string, err error) error {
	if s.closed.Load() && (errors.Is(err, sql.ErrConnDone) || isDBClosed(err)) {
		return errClosed
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

func isDBClosed(err error) bool {
	return err != nil && err.Error() == "sql: database is closed"
}

// nullMillis converts an optional time: the zero time is NULL.
func nullMillis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// fromNullMillis converts an optional stored time: NULL is the zero time.
func fromNullMillis(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return engine.FromMillis(v.Int64)
}

// isUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// constraint failure.
func isUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
