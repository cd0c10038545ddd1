package engine

import (
	"context"
	"sync"
	"sync/atomic"
)

// Queued is a writer job as SubmitAll sees it. Prepare readies the job to
// be queued (its done channel); Done is closed once its batch has
// committed or failed, and Outcome is then its error; Abandon withdraws it
// if the writer has not claimed it yet and reports whether it did.
type Queued interface {
	Prepare()
	Done() <-chan struct{}
	Outcome() error
	Abandon() bool
}

// SubmitAll queues jobs on a writer's queue in their order and waits until
// each has committed or failed, calling each with the outcome of every job
// in order of i, as soon as it is known. A writer that takes jobs in
// queue order runs them in this order, in one group commit or in
// consecutive ones (other callers' jobs may come between them). If ctx
// ends, the jobs the writer has not claimed fail with ctx.Err(): they are
// abandoned from the last one back while the writer claims from the first
// on, so those that run are always the first ones. Once closed is set
// (under mu's write lock), the jobs not queued yet fail with errClosed.
func SubmitAll[J Queued](ctx context.Context, mu *sync.RWMutex, closed *atomic.Bool, errClosed error, queue chan<- J, jobs []J, each func(i int, err error)) {
	queued, qerr := 0, error(nil)
	mu.RLock()
	for _, j := range jobs {
		j.Prepare()
		if qerr = ctx.Err(); qerr != nil {
			break
		}
		if closed.Load() {
			qerr = errClosed
			break
		}
		select {
		case queue <- j:
			queued++
			continue
		case <-ctx.Done():
			qerr = ctx.Err()
		}
		break
	}
	mu.RUnlock()
	// abandoned is the first job abandoned after ctx ended (none yet).
	abandoned := queued
	for i := 0; i < queued; i++ {
		if i < abandoned {
			select {
			case <-jobs[i].Done():
				each(i, jobs[i].Outcome())
				continue
			case <-ctx.Done():
			}
			// Abandon from the last back; those already claimed, and
			// all before them, run to completion.
			for abandoned > i && jobs[abandoned-1].Abandon() {
				abandoned--
			}
			if i < abandoned {
				<-jobs[i].Done()
				each(i, jobs[i].Outcome())
				continue
			}
		}
		each(i, ctx.Err())
	}
	for i := queued; i < len(jobs); i++ {
		each(i, qerr)
	}
}
