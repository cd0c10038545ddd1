package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/store/internal/engine"
)

// Group commit.
//
// Every write is a job. One goroutine, writeLoop, takes whatever jobs are
// queued (up to MaxBatch, never waiting for more), runs them in one
// transaction on the writer's connection, commits once, and only then
// answers each job. The transaction begins by raising the change stamp,
// which serializes it with the write transactions of every other node (see
// the package comment).
//
// A job is a function (fn), one statement (stmt) or an append (app).
// Functions run first, one by one, each normally inside its own SAVEPOINT, so that one that fails is
// rolled back alone; a function may run without one if it fails with a
// client error (*parley.Error) only before it has written anything and
// without a failed statement. One-statement jobs then run pipelined, and
// appends last, all together, as a few set-based statements
// (queueAppendReads, queueAppendWrites): a batch of N appends costs as
// many round trips as one (see tryBatch).
//
// A job that fails with an internal error leaves the transaction unusable:
// it is rolled back, the jobs that broke it get the error and the others
// run again in a new transaction. Job functions must be safe to run again.

const (
	jobQueued int32 = iota
	jobClaimed
	jobAbandoned
)

type job struct {
	fn        func(t *txn) error
	savepoint bool
	app       *appendJob
	appended  *appendJob // the append of app or of fn (an encrypted one), for its result
	stmt      *stmtJob
	state     atomic.Int32
	err       error
	done      chan struct{}
}

// bg is the context of everything the writer runs: a claimed job runs to
// completion whatever happens to its caller.
var bg = context.Background()

// stmtJob is a job that is one statement returning one row: its
// statements are pipelined with the others of the batch in one round trip
// (receipts, the most frequent write after appends, are such jobs). row
// reads the result; it returns the job's client error (*parley.Error), if
// any, as outcome and anything else as err, which breaks the transaction.
type stmtJob struct {
	sql  string
	args []any
	row  func(r pgx.Row) (outcome, err error)
}

// writeStmt queues a one-statement job (see stmtJob) and waits for its
// outcome.
func (s *Store) writeStmt(ctx context.Context, st *stmtJob) error {
	return s.submit(ctx, &job{stmt: st})
}

// write queues fn as a job and waits for its outcome (see submit).
func (s *Store) write(ctx context.Context, savepoint bool, fn func(t *txn) error) error {
	return s.submit(ctx, &job{fn: fn, savepoint: savepoint})
}

// submit queues j and waits until it has committed or failed. If ctx ends
// before the writer claims j, submit returns ctx.Err() and j never runs;
// once claimed, it runs and submit waits for it. After Close, errClosed.
func (s *Store) submit(ctx context.Context, j *job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j.done = make(chan struct{})
	s.mu.RLock()
	if s.closed.Load() {
		s.mu.RUnlock()
		return errClosed
	}
	select {
	case s.jobs <- j:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
			return ctx.Err()
		}
		<-j.done
		return j.err
	}
}

// submitAll queues jobs in their order and waits until each has committed
// or failed, calling each with the outcome of every job in order of i,
// as soon as it is known. The writer takes jobs in
// queue order and runs the appends of a batch in it (see tryBatch), so
// appends to one conversation get their seqs in this order, in one group
// commit or in consecutive ones (other callers' jobs may come between
// them). If ctx ends, the jobs the writer has not claimed fail with
// ctx.Err(): they are abandoned from the last one back, and the writer
// claims from the first on, so those that run are always the first ones.
// After Close, the jobs not queued yet fail with errClosed.
func (s *Store) submitAll(ctx context.Context, jobs []*job, each func(i int, err error)) {
	engine.SubmitAll(ctx, &s.mu, &s.closed, errClosed, s.jobs, jobs, each)
}

// The writer job as engine.SubmitAll sees it.
func (j *job) Prepare()              { j.done = make(chan struct{}) }
func (j *job) Done() <-chan struct{} { return j.done }
func (j *job) Outcome() error        { return j.err }
func (j *job) Abandon() bool         { return j.state.CompareAndSwap(jobQueued, jobAbandoned) }

// writeLoop is the writer goroutine; it runs until Close closes the queue
// and what is left in it has been committed.
func (s *Store) writeLoop() {
	defer close(s.writerDone)
	batch := make([]*job, 0, s.maxBatch)
	for j := range s.jobs {
		batch = append(batch[:0], j)
	fill:
		for len(batch) < s.maxBatch {
			select {
			case j, ok := <-s.jobs:
				if !ok {
					break fill
				}
				batch = append(batch, j)
			default:
				break fill
			}
		}
		s.batches.Add(1)
		s.batchJobs.Add(int64(len(batch)))
		s.commitBatch(batch)
		clear(batch)
	}
}

// commitBatch claims the jobs of batch that their callers have not
// abandoned, runs them in one transaction and answers each.
func (s *Store) commitBatch(batch []*job) {
	live := batch[:0]
	for _, j := range batch {
		if j.state.CompareAndSwap(jobQueued, jobClaimed) {
			live = append(live, j)
		}
	}
	for len(live) > 0 {
		failed, err := s.tryBatch(live)
		if failed == nil {
			for _, j := range live {
				if err != nil {
					j.err = err
				}
				close(j.done)
			}
			return
		}
		s.log.Error("postgres: write failed; retrying the rest of its batch", "err", err, "batch", len(live), "failed", len(failed))
		rest := live[:0]
		for _, j := range live {
			if isIn(failed, j) {
				j.err = err
				close(j.done)
				continue
			}
			rest = append(rest, j)
		}
		live = rest
	}
}

func isIn(jobs []*job, j *job) bool {
	for _, f := range jobs {
		if f == j {
			return true
		}
	}
	return false
}

// tryBatch runs jobs in one transaction and commits it. It returns nil and
// nil if the commit succeeded (each job's own outcome is in its err), nil
// and an error if the transaction could not begin or commit (every job
// fails with it), or the jobs whose internal error broke the transaction,
// with that error, after rolling it back.
//
// A batch without function jobs (the common case: appends and receipts)
// takes two round trips: BEGIN, the stamp, the receipts and the appends'
// reads in one pipeline, then the appends' writes and COMMIT in another.
// Function jobs run one statement at a time between BEGIN and the rest.
// On two busy cores every round trip waits for the database backend to be
// scheduled, so their number, not the statements' work, set the pace
// (docs/benchmarks.md, "PostgreSQL store").
func (s *Store) tryBatch(jobs []*job) ([]*job, error) {
	ctx, cancel := context.WithTimeout(bg, batchTimeout)
	defer cancel()
	conn, err := s.writer.Acquire(ctx)
	if err != nil {
		return nil, s.internal("begin", err)
	}
	// A connection left inside a transaction (a failed rollback) is
	// destroyed by the pool on release, not reused.
	defer conn.Release()
	t := &txn{conn: conn, ctx: ctx}
	var fns, stmts, apps []*job
	for _, j := range jobs {
		j.err = nil
		switch {
		case j.app != nil:
			apps = append(apps, j)
		case j.stmt != nil:
			stmts = append(stmts, j)
		default:
			fns = append(fns, j)
		}
	}
	// The stamp row's lock is taken by the first pipeline and held until
	// COMMIT returns: the cluster's one write lock (ADR 0002). Its hold
	// time bounds every node's writes together; LockHeld reports it.
	held := time.Now()
	defer func() { s.lockHeld.Add(int64(time.Since(held))) }()
	p := &pgx.Batch{}
	p.Queue(`BEGIN`)
	p.Queue(`UPDATE sync_stamp SET stamp = stamp + 1 RETURNING stamp`).QueryRow(func(row pgx.Row) error {
		return row.Scan(&t.stamp)
	})
	begun := false // BEGIN has been sent, and succeeded
	if len(fns) > 0 {
		if err := conn.SendBatch(ctx, p).Close(); err != nil {
			t.rollback(s)
			return nil, s.internal("begin", err)
		}
		begun = true
		for _, j := range fns {
			if err := t.run(j); err != nil {
				t.rollback(s)
				return []*job{j}, err
			}
		}
		p = &pgx.Batch{}
	}
	// failed says which jobs a failed pipeline fails: all of them if it
	// held BEGIN or the database is gone, else those it ran (the
	// functions, done already, run again in a new transaction).
	failed := func(err error) ([]*job, error) {
		t.rollback(s)
		if !begun || isUnavailable(err) {
			return nil, s.internal("write", err)
		}
		return append(stmts, apps...), s.internal("write", err)
	}
	for _, j := range stmts {
		p.Queue(j.stmt.sql, j.stmt.args...).QueryRow(func(row pgx.Row) error {
			outcome, err := j.stmt.row(row)
			j.err = outcome
			return err
		})
	}
	for _, round := range appendRounds(apps) {
		r := queueAppendReads(p, round)
		if err := conn.SendBatch(ctx, p).Close(); err != nil {
			return failed(err)
		}
		begun = true
		p = &pgx.Batch{}
		queueAppendWrites(p, t.stamp, r)
	}
	p.Queue(`COMMIT`)
	if err := conn.SendBatch(ctx, p).Close(); err != nil {
		// The outcome of a COMMIT that failed in flight is unknown: every
		// job fails, and a retried send finds its original if it did commit.
		t.rollback(s)
		return nil, s.internal("commit", err)
	}
	return nil, nil
}

// txn is the writer's transaction as jobs see it. Only the writer
// goroutine uses it.
type txn struct {
	conn  *pgxpool.Conn
	ctx   context.Context // bounds the whole batch (batchTimeout)
	stamp int64           // this transaction's change stamp
}

// changeStamp returns the change stamp every row this transaction changes
// gets (see parley.Store.Sync); the jobs of a group commit share it.
func (t *txn) changeStamp() int64 { return t.stamp }

func (t *txn) rollback(s *Store) {
	if t.conn.Conn().PgConn().IsClosed() {
		return
	}
	if _, err := t.conn.Exec(t.ctx, `ROLLBACK`); err != nil {
		s.log.Error("postgres: rollback failed", "err", err)
	}
}

// run runs j in t, inside a savepoint if j asks for one. A client error,
// or any error inside a savepoint once that is rolled back, becomes j's
// outcome and run returns nil; a non-nil result means the transaction is
// unusable.
func (t *txn) run(j *job) error {
	if !j.savepoint {
		err := j.call(t)
		if err != nil && !isClientError(err) {
			return err
		}
		j.err = err
		return nil
	}
	if _, err := t.exec(`SAVEPOINT job`); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if err := j.call(t); err != nil {
		if _, rerr := t.exec(`ROLLBACK TO SAVEPOINT job`); rerr != nil {
			return fmt.Errorf("rollback to savepoint: %w (after %w)", rerr, err)
		}
		if _, rerr := t.exec(`RELEASE SAVEPOINT job`); rerr != nil {
			return fmt.Errorf("release savepoint: %w (after %w)", rerr, err)
		}
		j.err = err
		return nil
	}
	if _, err := t.exec(`RELEASE SAVEPOINT job`); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

// call runs the job's function, turning a panic into an internal error for
// this job alone.
func (j *job) call(t *txn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("postgres: write job panicked: %v", p)
		}
	}()
	return j.fn(t)
}

func (t *txn) exec(sql string, args ...any) (int64, error) {
	tag, err := t.conn.Exec(t.ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (t *txn) query(sql string, args ...any) (pgx.Rows, error) {
	return t.conn.Query(t.ctx, sql, args...)
}

func (t *txn) queryRow(sql string, args ...any) pgx.Row {
	return t.conn.QueryRow(t.ctx, sql, args...)
}

// noRows reports whether err is pgx's "no rows in result set".
func noRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
