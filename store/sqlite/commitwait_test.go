package sqlite

import (
	"path/filepath"
	"testing"
	"time"
)

// fillAsync runs w.fill on a goroutine and returns its result, failing
// the test if it does not return within limit.
func fillAsync(t *testing.T, w *commitWait, jobs chan *job, batch []*job, maxBatch int, limit time.Duration) []*job {
	t.Helper()
	done := make(chan []*job, 1)
	go func() { done <- w.fill(jobs, batch, maxBatch) }()
	select {
	case b := <-done:
		return b
	case <-time.After(limit):
		t.Fatalf("fill did not return within %v", limit)
		return nil
	}
}

// A quiet writer (a low arrival rate) commits at once: a lone write's
// latency does not change.
func TestCommitWaitIdleDoesNotWait(t *testing.T) {
	// 0.1 writes a second: 0.2 expected within the 2 s wait.
	w := &commitWait{max: 2 * time.Second, useful: 1, rate: 0.1, last: time.Now().Add(-time.Second)}
	start := time.Now()
	b := fillAsync(t, w, make(chan *job, 4), []*job{{}}, 512, 10*time.Second)
	if len(b) != 1 {
		t.Fatalf("batch of %d, want 1", len(b))
	}
	if d := time.Since(start); d >= time.Second {
		t.Fatalf("returned after %v: it waited", d)
	}
}

// With writes arriving steadily, a small batch waits and takes the
// writes that arrive meanwhile, up to the wait.
func TestCommitWaitCollects(t *testing.T) {
	w := &commitWait{max: 500 * time.Millisecond, useful: 1, rate: 1e6, last: time.Now()}
	jobs := make(chan *job, 4)
	go func() {
		for range 3 {
			time.Sleep(5 * time.Millisecond)
			jobs <- &job{}
		}
	}()
	start := time.Now()
	b := fillAsync(t, w, jobs, []*job{{}}, 512, 10*time.Second)
	if len(b) != 4 {
		t.Fatalf("batch of %d, want 4 (the first and the three that came while it waited)", len(b))
	}
	if d := time.Since(start); d < w.max {
		t.Fatalf("returned after %v, want the whole wait (%v): more might have come", d, w.max)
	}
	if w.useful != 1 || w.waits != 1 {
		t.Fatalf("useful = %v, waits = %d after one wait that found company, want 1 and 1", w.useful, w.waits)
	}
}

// A batch of more than one job commits at once: the commit is shared
// already, and on a busy server waiting would only hold back the acks.
func TestCommitWaitBusyDoesNotWait(t *testing.T) {
	w := &commitWait{max: time.Hour, useful: 1, rate: 1e9, last: time.Now()}
	if b := fillAsync(t, w, make(chan *job, 4), []*job{{}, {}}, 512, 10*time.Second); len(b) != 2 || w.waits != 0 {
		t.Fatalf("batch of %d after %d waits, want 2 and none", len(b), w.waits)
	}
}

// A full batch commits at once, and so does the last batch at Close.
func TestCommitWaitFullOrClosed(t *testing.T) {
	w := &commitWait{max: time.Hour, useful: 1, rate: 1e9, last: time.Now()}
	jobs := make(chan *job, 4)
	jobs <- &job{}
	jobs <- &job{}
	if b := fillAsync(t, w, jobs, []*job{{}}, 3, 10*time.Second); len(b) != 3 {
		t.Fatalf("batch of %d, want 3 (full)", len(b))
	}
	close(jobs)
	if b := fillAsync(t, w, jobs, []*job{{}}, 3, 10*time.Second); len(b) != 1 {
		t.Fatalf("batch of %d at close, want 1", len(b))
	}
}

// A lone caller writing one job after another never brings company: the
// writer stops waiting for it after a few tries and only probes, one
// batch in commitWaitProbe.
func TestCommitWaitLoneCallerStopsWaiting(t *testing.T) {
	w := &commitWait{max: time.Millisecond, useful: 1, rate: 1e9, last: time.Now()}
	jobs := make(chan *job, 1)
	const batches = 100
	for range batches {
		fillAsync(t, w, jobs, []*job{{}}, 512, 10*time.Second)
		w.rate = 1e9 // keep the arrival rate high: only the usefulness decides
	}
	// useful falls below 1/2 after 4 fruitless waits (1, 0.8, 0.64,
	// 0.51, 0.41); then one batch in commitWaitProbe waits.
	if want := 4 + (batches-4)/commitWaitProbe; w.waits != want {
		t.Fatalf("waited in %d of %d batches, want %d", w.waits, batches, want)
	}
}

// Concurrent appends through a store that waits for company are all
// answered committed, sharing commits.
func TestGroupCommitWithCommitWait(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "parley.db"), Options{Sealer: newTestSealer(t), CommitWait: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	groupCommit(t, s)
}
