package sqlite

import (
	"database/sql"
	"log/slog"
	"sync/atomic"
)

// WAL checkpoints.
//
// SQLite's automatic checkpoint runs inside the COMMIT that crosses the
// threshold, so that batch (and every write queued behind it) waits for
// thousands of pages to be copied and fsync'd. The writer connection turns
// it off (wal_autocheckpoint=0) and a checkpointer goroutine with its own
// connection runs PASSIVE checkpoints after commits instead, on the other
// core, without blocking the writer. BenchmarkAppendMessage ran 10-15%
// faster this way (7.3-8.3k against 6.5-7.0k msgs/s) with a lower p99.
//
// A WAL only starts over from its beginning when a write transaction begins
// while every frame is already copied back. A background checkpoint is
// always a batch behind, so that never happens by itself: once the WAL
// holds restartPages frames, the writer waits, between two batches, for a
// checkpoint of the little that is left, and its next transaction restarts
// the WAL. journal_size_limit then trims the file.

// defaultRestartPages is the WAL size, in pages, at which the writer waits
// for a full checkpoint so that the WAL restarts: 16,384 pages of 4 KiB, 64
// MiB.
const defaultRestartPages = 16384

// kickEvery is how many commits the writer makes between two kicks of the
// background checkpointer. Each checkpoint syncs the WAL and the database
// file and copies every distinct page written since the last one; spacing
// them out copies a hot page (a conversation's row, an index leaf) once
// instead of once per batch, and takes two fsyncs per batch off a disk the
// writer's commits are waiting on. Kicking every 16th commit with restarts
// at 16,384 pages ran BenchmarkAppendMessage about 20% faster than every
// commit with restarts at 4,096 (medians of three interleaved runs on a
// shared 2-core machine, 9.8k against 8.2k msgs/s; p99 75 against 60 ms).
// Every fourth commit alone, or 16,384 pages alone, made no clear difference.
// The writer learns the WAL's size only from checkpoints, so the WAL can
// outgrow restartPages by up to kickEvery batches (~300 pages each) before
// it restarts.
const kickEvery = 16

// checkpointer runs checkpoints for a Store. kick and full are used by the
// writer goroutine only.
type checkpointer struct {
	db  *sql.DB // one connection of its own
	log *slog.Logger

	kick chan struct{}   // capacity 1: the WAL has grown
	full chan chan error // the writer asks for a checkpoint and waits
	done chan struct{}   // closed when run returns

	walPages     atomic.Int64 // WAL size in pages at the last checkpoint
	restartPages int64        // see defaultRestartPages; set before the first write
	nextRestart  int64        // WAL size at which the writer waits; writer only
	kickEvery    int          // see kickEvery; set before the first write
	sinceKick    int          // commits since the last kick; writer only
}

func newCheckpointer(db *sql.DB, log *slog.Logger) *checkpointer {
	return &checkpointer{
		db:           db,
		log:          log,
		kick:         make(chan struct{}, 1),
		full:         make(chan chan error),
		done:         make(chan struct{}),
		restartPages: defaultRestartPages,
		nextRestart:  defaultRestartPages,
		kickEvery:    kickEvery,
	}
}

// run checkpoints whenever kicked or asked, until stop.
func (c *checkpointer) run() {
	defer close(c.done)
	for {
		select {
		case _, ok := <-c.kick:
			if !ok {
				return
			}
			if err := c.checkpoint(); err != nil {
				c.log.Error("sqlite: background checkpoint failed", "err", err)
			}
		case reply := <-c.full:
			reply <- c.checkpoint()
		}
	}
}

// checkpoint copies as much of the WAL into the database as no reader
// still needs, and records the WAL's size.
func (c *checkpointer) checkpoint() error {
	var busy, logPages, checkpointed int64
	if err := c.db.QueryRowContext(bg, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logPages, &checkpointed); err != nil {
		return err
	}
	c.walPages.Store(logPages)
	return nil
}

// committed is called by the writer after each commit: it kicks a
// background checkpoint and, if the WAL has grown past nextRestart, waits
// for a checkpoint so that the next transaction restarts the WAL.
func (c *checkpointer) committed() {
	pages := c.walPages.Load()
	if pages < c.restartPages {
		c.nextRestart = c.restartPages // the WAL has restarted
	}
	if pages < c.nextRestart {
		if c.sinceKick++; c.sinceKick < c.kickEvery {
			return
		}
		select {
		case c.kick <- struct{}{}:
			c.sinceKick = 0
		default: // one is pending already
		}
		return
	}
	c.sinceKick = 0
	reply := make(chan error, 1)
	c.full <- reply
	if err := <-reply; err != nil {
		c.log.Error("sqlite: checkpoint failed", "err", err)
	}
	// If a reader held on to an old snapshot the WAL cannot restart yet:
	// try again after another restartPages.
	c.nextRestart = c.walPages.Load() + c.restartPages
}

// stop ends run once the writer has stopped, and closes the connection.
func (c *checkpointer) stop() error {
	close(c.kick)
	<-c.done
	return c.db.Close()
}
