package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// Group commit.
//
// Every write is a job: a function that runs inside the writer's
// transaction. One goroutine, writeLoop, owns the writer connection. It
// takes whatever jobs are queued (up to MaxBatch), runs them in one
// transaction, commits once (one fsync), and only then answers each job.
// With N callers waiting the batches settle near N/2 by themselves. It
// waits for more jobs only at a light, steady load (commitWait, below).
//
// A job normally runs inside its own SAVEPOINT, so a job that fails is
// rolled back alone and the rest of the batch commits. A job may run
// without one (appends do, to save the statements) if it promises to fail
// with a client error (*parley.Error) only before it has written anything.
// A job that fails with an internal error outside a savepoint leaves the
// transaction in an unknown state: the batch is rolled back, that job gets
// its error and the others run again in a new transaction. A job function
// must therefore be safe to run again: it sets its results, never appends
// to them.

// Job states. A caller may abandon only a queued job; once the writer has
// claimed it, it runs to completion and the caller waits for it.
const (
	jobQueued int32 = iota
	jobClaimed
	jobAbandoned
)

// job is one write waiting for, or in, a group commit.
type job struct {
	fn        func(t *txn) error
	savepoint bool
	state     atomic.Int32
	err       error         // the outcome; written by the writer before done is closed
	done      chan struct{} // closed once the job's batch has committed or failed
}

// bg is the context of everything the writer runs: a job that has been
// claimed runs to completion whatever happens to its caller.
var bg = context.Background()

// write queues fn as a job and waits until it has committed, or failed. If
// ctx ends before the writer claims the job, write returns ctx.Err() and the
// job never runs; once claimed, the job runs and write waits for it. A full
// queue blocks the caller (until ctx ends). After Close, write returns
// errClosed.
func (s *Store) write(ctx context.Context, savepoint bool, fn func(t *txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j := &job{fn: fn, savepoint: savepoint, done: make(chan struct{})}
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

// writeAll queues jobs in their order and waits until each has committed
// or failed, calling each with the outcome of every job in order of i,
// as soon as it is known. The writer takes jobs in
// queue order, so they run in this order, in one group commit or in
// consecutive ones (other callers' jobs may come between them). If ctx
// ends, the jobs the writer has not claimed fail with ctx.Err(): they are
// abandoned from the last one back, and the writer claims from the first
// on, so those that run are always the first ones. After Close, the jobs
// not queued yet fail with errClosed.
func (s *Store) writeAll(ctx context.Context, jobs []*job, each func(i int, err error)) {
	engine.SubmitAll(ctx, &s.mu, &s.closed, errClosed, s.jobs, jobs, each)
}

// The writer job as engine.SubmitAll sees it.
func (j *job) Prepare()              { j.done = make(chan struct{}) }
func (j *job) Done() <-chan struct{} { return j.done }
func (j *job) Outcome() error        { return j.err }
func (j *job) Abandon() bool         { return j.state.CompareAndSwap(jobQueued, jobAbandoned) }

// writeLoop is the writer goroutine. It runs until Close closes the queue,
// commits what is left in it, and then closes writerDone.
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
		batch = s.wait.fill(s.jobs, batch, s.maxBatch)
		s.batches.Add(1)
		s.batchJobs.Add(int64(len(batch)))
		s.commitBatch(batch)
		clear(batch)
		s.ckpt.committed()
	}
}

// Waiting for company.
//
// At a light, steady load most batches hold one job, so every write pays
// for a whole commit of its own: the WAL frames of every page it touched
// (pages that several jobs in one batch would share), an fsync, and the
// checkpoints that copy those frames back. A CPU profile of the server at
// a fixed 1,000 msgs/s (docs/benchmarks.md) put 45% of its time in the
// writer's commits of one-message batches. So when the writer finds a
// lone job and jobs arrive steadily, fast enough that at least one more is
// expected within Options.CommitWait, it holds that batch open until the
// time has passed (or it is full) before it commits, as PostgreSQL's
// commit_delay does when other transactions are active.
//
// Who does not wait: an idle server (the arrival rate is low), so a lone
// write's latency does not change; a busy one, whose batches hold more
// than one job: there the commits are shared already, and holding them
// would only delay acks. A first version that waited whenever more jobs
// were expected than a batch held made a group load at maximum rate,
// whose senders keep a window of sends in flight, slower (0.79x the
// deliveries a second in docs/benchmarks.md): the bottleneck was delivery,
// not the writer, and every wait held back the acks that open the
// senders' windows. Nor does a lone caller writing one job after another
// (an import, a bot) keep getting waited for: its next job comes only
// after this one commits, so waiting finds nobody. The writer keeps track
// of whether its recent waits found company, stops waiting when they
// mostly did not, and tries again every commitWaitProbe batches.

const (
	// commitWaitWeight is the weight of the newest figure in the moving
	// averages: about the last ten batches count in the rate, the last
	// ten waits in the usefulness.
	commitWaitWeight = 0.2
	// commitWaitProbe: while waits find no company, one batch in this
	// many waits anyway, to notice when company comes back.
	commitWaitProbe = 16
)

// commitWait is the writer's arrival-rate estimate and timer. The writer
// goroutine alone uses it.
type commitWait struct {
	max    time.Duration // Options.CommitWait; 0: never wait
	rate   float64       // jobs per second arriving, moving average
	useful float64       // share of recent waits that found company, moving average
	last   time.Time     // when the writer last took a batch
	skips  int           // batches not waited for since the last wait, while useful < 1/2
	waits  int           // waits so far (for tests)
	timer  *time.Timer
}

// fill returns batch, taken from jobs just now, with the jobs that arrive
// while it waits for company if it holds one job (see above), at most
// maxBatch in all. It returns at once if jobs is closed (Close), so the
// batch commits.
func (w *commitWait) fill(jobs <-chan *job, batch []*job, maxBatch int) []*job {
	if w.max <= 0 {
		return batch
	}
	now := time.Now()
	defer func() {
		gap := now.Sub(w.last)
		switch r := float64(len(batch)) / gap.Seconds(); {
		case gap <= 0:
		case gap > 100*w.max: // after a pause, only the pause counts
			w.rate = r
		default:
			w.rate += commitWaitWeight * (r - w.rate)
		}
		w.last = now
	}()
	if len(batch) != 1 || len(batch) >= maxBatch || w.rate*w.max.Seconds() < 1 {
		return batch
	}
	if w.useful < 0.5 {
		if w.skips++; w.skips < commitWaitProbe {
			return batch
		}
	}
	w.skips = 0
	w.waits++
	had := len(batch)
	defer func() {
		found := 0.0
		if len(batch) > had {
			found = 1
		}
		w.useful += commitWaitWeight * (found - w.useful)
	}()
	if w.timer == nil {
		w.timer = time.NewTimer(w.max)
	} else {
		w.timer.Reset(w.max)
	}
	defer w.timer.Stop()
	for len(batch) < maxBatch {
		select {
		case j, ok := <-jobs:
			if !ok {
				return batch
			}
			batch = append(batch, j)
		case <-w.timer.C:
			now = time.Now()
			return batch
		}
	}
	now = time.Now()
	return batch
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
		bad, err := s.tryBatch(live)
		if bad < 0 {
			for _, j := range live {
				if err != nil {
					j.err = err
				}
				close(j.done)
			}
			return
		}
		// The transaction was rolled back: answer the job that broke it and
		// run the others again.
		s.log.Error("sqlite: write failed; retrying the rest of its batch", "err", err, "batch", len(live))
		live[bad].err = err
		close(live[bad].done)
		live = append(live[:bad], live[bad+1:]...)
	}
}

// tryBatch runs jobs in one transaction and commits it. It returns -1 and
// nil if the commit succeeded (each job's own outcome is in its err), -1 and
// an error if the transaction could not begin or commit (every job fails),
// or the index of a job whose internal error left the transaction unusable,
// with that error, after rolling the transaction back.
//
// The transaction's change stamp (see txn.changeStamp) is the last
// committed one plus one. If a job used it, it is recorded in sync_stamp
// in the same transaction, and published to readers (Store.stamp) only
// once the commit has returned: a reader that loads the stamp W and then
// begins its snapshot sees every row stamped W or lower, all of it.
func (s *Store) tryBatch(jobs []*job) (int, error) {
	tx, err := s.wconn.BeginTx(bg, nil)
	if err != nil {
		return -1, fmt.Errorf("sqlite: begin: %w", err)
	}
	t := &txn{tx: tx, stmts: make(map[*sql.Stmt]*sql.Stmt, 8), stamp: s.stamp.Load() + 1}
	rollback := func() {
		if rerr := tx.Rollback(); rerr != nil {
			s.log.Error("sqlite: rollback failed", "err", rerr)
		}
	}
	for i, j := range jobs {
		j.err = nil
		if err := t.run(j); err != nil {
			rollback()
			return i, err
		}
	}
	if t.stamped {
		if _, err := t.stmt(s.wst.setSyncStamp).ExecContext(bg, t.stamp); err != nil {
			rollback()
			return -1, fmt.Errorf("sqlite: record change stamp: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return -1, fmt.Errorf("sqlite: commit: %w", err)
	}
	if t.stamped {
		s.stamp.Store(t.stamp)
	}
	return -1, nil
}

// txn is the writer's transaction as jobs see it. Only the writer goroutine
// uses it.
type txn struct {
	tx    *sql.Tx
	stmts map[*sql.Stmt]*sql.Stmt // writer statements bound to tx

	stamp    int64 // the change stamp of this transaction
	stampArg any   // stamp, boxed once for the hot statements
	stamped  bool  // a job has used stamp
}

// changeStamp returns the change stamp that every row this transaction
// changes gets (see parley.Store.Sync): one per transaction, so the jobs
// of a group commit share it. Calling it marks the stamp used. A job that
// fails in its savepoint may leave it marked; that only leaves a gap.
func (t *txn) changeStamp() int64 {
	t.stamped = true
	return t.stamp
}

// changeStampArg is changeStamp as a statement argument, boxed once per
// transaction.
func (t *txn) changeStampArg() any {
	if t.stampArg == nil {
		t.stampArg = t.changeStamp()
	}
	return t.stampArg
}

// run runs j in t, inside a savepoint if j asks for one. A client error
// (*parley.Error), or any error inside a savepoint once that is rolled
// back, becomes j's outcome and run returns nil. A non-nil result means the
// transaction is unusable.
func (t *txn) run(j *job) error {
	if !j.savepoint {
		err := j.call(t)
		if err != nil && !isClientError(err) {
			return err
		}
		j.err = err
		return nil
	}
	if _, err := t.exec("SAVEPOINT job"); err != nil {
		return fmt.Errorf("sqlite: savepoint: %w", err)
	}
	if err := j.call(t); err != nil {
		if _, rerr := t.exec("ROLLBACK TO job"); rerr != nil {
			return fmt.Errorf("sqlite: rollback to savepoint: %w (after %w)", rerr, err)
		}
		if _, rerr := t.exec("RELEASE job"); rerr != nil {
			return fmt.Errorf("sqlite: release savepoint: %w (after %w)", rerr, err)
		}
		j.err = err
		return nil
	}
	if _, err := t.exec("RELEASE job"); err != nil {
		return fmt.Errorf("sqlite: release savepoint: %w", err)
	}
	return nil
}

// call runs the job's function, turning a panic (in a closure the core
// passed in, say) into an internal error for this job alone: the writer
// goroutine, and with it every other write, must survive it.
func (j *job) call(t *txn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlite: write job panicked: %v", p)
		}
	}()
	return j.fn(t)
}

// stmt returns the prepared writer statement st bound to the transaction.
func (t *txn) stmt(st *sql.Stmt) *sql.Stmt {
	if ts, ok := t.stmts[st]; ok {
		return ts
	}
	ts := t.tx.StmtContext(bg, st)
	t.stmts[st] = ts
	return ts
}

func (t *txn) exec(query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(bg, query, args...)
}

func (t *txn) query(query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(bg, query, args...)
}

func (t *txn) queryRow(query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(bg, query, args...)
}

// isClientError reports whether err carries a code for the client, as
// opposed to an internal failure.
func isClientError(err error) bool {
	var e *parley.Error
	return errors.As(err, &e)
}
