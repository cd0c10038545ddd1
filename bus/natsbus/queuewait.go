package natsbus

import (
	"sync/atomic"
	"time"
)

// queueWait measures how long each event of a subscription waited in the
// client's queue (nats.go's pending list) before its handler got it: the
// node's delivery backlog, in time.
//
// nats.go does not stamp arrivals, but during a handler call the
// subscription's Delivered count includes the event handled (number d)
// and its Pending count the events received and not yet handed over, so
// d+pending-1 events had arrived by then. observe keeps those
// (arrivals, time) samples in a ring, oldest first; event number d arrived
// no later than the first sample whose count reaches d, and its wait is
// the time since that sample. A sample is taken at each event (a
// ring slot at most every sampleGap, and when the ring is full the newest
// slot takes the count without its time moving), so a wait is off by at
// most the handling time of one event and sampleGap, and only ever too
// long when the ring is full (a backlog longer than about
// waitSamples*sampleGap, far past any bound that matters).
//
// That wait reacts late: a queue that grows fast shows in it only once
// its first events are handled. So the backlog reported is the larger of
// it and the expected wait of the newest event: the events queued behind
// the one being handled times the recent time per event (a moving
// average of the intervals between handler calls while events waited).
//
// observe is called from the subscription's one handler goroutine; last
// may be read from any goroutine.
type queueWait struct {
	base   time.Time // the monotonic origin of at
	counts [waitSamples]uint64
	at     [waitSamples]int64 // ns since base
	head   int                // the oldest sample
	n      int                // samples held
	// prev is when the previous event's handling began, busy whether
	// events waited then; perEvent the average handling time, ns.
	prev     int64
	busy     bool
	perEvent int64
	last     atomic.Int64 // the backlog at the event last handled, ns
}

const (
	waitSamples = 4096
	sampleGap   = int64(time.Millisecond)
)

func newQueueWait() *queueWait { return &queueWait{base: time.Now()} }

// observe records that event number d (1-based) is being handled, with
// arrived events received so far, and returns the backlog: how long it
// waited or, if longer, how long the newest is expected to.
func (q *queueWait) observe(d, arrived uint64) time.Duration {
	now := int64(time.Since(q.base))
	if q.busy { // this event waited while the previous one was handled
		q.perEvent += (now - q.prev - q.perEvent) / 8
	}
	q.prev, q.busy = now, arrived > d
	if q.n == 0 {
		q.push(arrived, now)
	} else if newest := (q.head + q.n - 1) % waitSamples; arrived > q.counts[newest] {
		if q.n == waitSamples || now-q.at[newest] < sampleGap {
			q.counts[newest] = arrived // arrived by now; counted from earlier: errs long
		} else {
			q.push(arrived, now)
		}
	}
	// Samples whose arrivals were all handled before d are done with.
	for q.n > 1 && q.counts[q.head] < d {
		q.head = (q.head + 1) % waitSamples
		q.n--
	}
	wait := max(now-q.at[q.head], q.perEvent*int64(arrived-d), 0)
	q.last.Store(wait)
	return time.Duration(wait)
}

func (q *queueWait) push(count uint64, at int64) {
	i := (q.head + q.n) % waitSamples
	q.counts[i], q.at[i] = count, at
	q.n++
}
