package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// The server defers part of a message's work: its push job goes into an
// in-memory buffer at commit, from there into the push queue (a JetStream
// work queue), and the push role consumes it later, under load seconds
// or minutes later. A run that stopped counting the server's CPU at the
// last delivery would leave that work out, so the direct and group
// scenarios wait for the queue to drain (Options.PushDrain) and count
// the CPU until then.

// pushSampleEvery is how often the push backlog is read while sending,
// pushPollEvery while waiting for it to drain. A /metrics scrape costs
// the server about 2 ms of CPU (its process collector, the push queue's
// JetStream stream info, the encoding; measured on the 2-core machine of
// docs/benchmarks.md), so sampling costs it about 0.2% of a core while
// sending and 0.8% while draining, counted in its CPU like the rest.
const (
	pushSampleEvery = time.Second
	pushPollEvery   = 250 * time.Millisecond
)

// pushBacklog watches the server's push work for one measured phase.
// peak is written by the sampling goroutine until stopSampling returns,
// then by waitPushDrain; read it after both.
type pushBacklog struct {
	base serverStats // the reading at the start of the phase
	peak int64
	stop chan struct{}
	done chan struct{}
}

// backlogOf is the push work waiting at reading s: the jobs in the push
// queue (parley_push_queue_depth) plus the messages committed since base
// whose job has not reached the queue yet (still in the server's enqueue
// buffer): the new parley_messages_stored_total less the new
// parley_push_jobs_enqueued_total{kind="message"}, the jobs dropped at
// enqueueing and the messages that needed no job
// (parley_push_jobs_avoided_total: no other member has a push
// registration). That relies on every message the bench sends getting one
// push job (none is withheld by a block) and on no other traffic; a
// retried send enqueues its job again, so the estimate never runs high.
// ok is false when the server could not read its queue (NaN).
//
// A reading from another process start (the server restarted, or another
// node behind a load balancer) has other counters: ok is false.
func backlogOf(s, base serverStats) (n int64, ok bool) {
	if !s.pushKnown || math.IsNaN(s.pushDepth) || s.pushDepth < 0 || s.start != base.start {
		return 0, false
	}
	unqueued := (s.stored - base.stored) - (s.enqueued - base.enqueued) - (s.dropped - base.dropped)
	return int64(s.pushDepth) + int64(max(unqueued, 0)), true
}

// watchPush starts sampling the backlog every pushSampleEvery.
func (b *bench) watchPush(ctx context.Context, base serverStats) *pushBacklog {
	w := &pushBacklog{base: base, stop: make(chan struct{}), done: make(chan struct{})}
	if n, ok := backlogOf(base, base); ok {
		w.peak = n
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(pushSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if s, err := b.serverStats(ctx, false); err == nil {
				if n, ok := backlogOf(s, w.base); ok {
					w.peak = max(w.peak, n)
				}
			}
		}
	}()
	return w
}

// stopSampling stops the sampling goroutine and waits for it.
func (w *pushBacklog) stopSampling() {
	close(w.stop)
	<-w.done
}

// waitPushDrain polls the backlog every pushPollEvery until it is 0 or
// PushDrain has passed, and records how long that took and what was left.
func (b *bench) waitPushDrain(ctx context.Context, w *pushBacklog) {
	began := time.Now()
	deadline := began.Add(b.o.PushDrain)
	left := int64(-1)
	for ctx.Err() == nil {
		restarted := false
		if s, err := b.serverStats(ctx, false); err == nil {
			if n, ok := backlogOf(s, w.base); ok {
				w.peak = max(w.peak, n)
				left = n
			}
			restarted = s.start != w.base.start
		}
		if left == 0 || restarted || !time.Now().Before(deadline) {
			// A restarted server's counters start again: the drain cannot
			// be followed (nor its CPU counted, measureServer).
			break
		}
		if left >= 0 {
			b.o.Progress(fmt.Sprintf("waiting for the server's push queue to drain: %d jobs left after %.0fs", left, time.Since(began).Seconds()))
		}
		time.Sleep(pushPollEvery)
	}
	waited := time.Since(began).Seconds()
	b.res.PushDrainSeconds = &waited
	if left >= 0 {
		b.res.PushQueueLeft = &left
	}
}

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// procCPUSeconds is a process's CPU time so far, user and system, from
// /proc/PID/stat (Linux).
func procCPUSeconds(pid int) (float64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(data)
}

// parseProcStatCPU reads utime and stime (fields 14 and 15) from the
// contents of /proc/PID/stat. The command name (field 2) is in
// parentheses and may hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parseProcStatCPU(data []byte) (float64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: no command name in %q", data)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 { // f[0] is field 3 (state)
		return 0, fmt.Errorf("/proc stat: %d fields after the command name", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc stat: utime %q, stime %q", f[11], f[12])
	}
	return float64(utime+stime) / userHZ, nil
}
