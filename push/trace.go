package push

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley"
)

// Keys of the trace bucket: a message's trace, and the messages sent to
// a device whose fetch is awaited.
func traceKey(messageID string) string { return "t." + messageID }
func awaitKey(deviceID string) string  { return "f." + deviceID }

// noteFailure counts and logs a failed trace write: traces are best
// effort and never fail a job.
func (q *Queue) noteFailure(err error) {
	q.m.traceFailures.Inc()
	q.log.Warn("push: trace", "err", err)
}

// traceEvent is an event of the given stage, now.
func traceEvent(stage string) parley.PushTraceEvent {
	return parley.PushTraceEvent{At: time.Now().UTC(), Stage: stage}
}

// appendTrace adds events to a message's trace (creating it as base if it
// has none), atomically, keeping at most traceMaxEvents.
func (q *Queue) appendTrace(ctx context.Context, base *parley.PushTrace, events ...parley.PushTraceEvent) {
	q.appendTraceFrom(ctx, base, nil, events)
}

// appendTraceNew is appendTrace for a trace that most likely does not
// exist yet (a message's fan-out writes it first): it is created without
// being read first, and read only if it exists after all.
func (q *Queue) appendTraceNew(ctx context.Context, base *parley.PushTrace, events ...parley.PushTraceEvent) {
	q.appendTraceFrom(ctx, base, &kvEntry{}, events)
}

func (q *Queue) appendTraceFrom(ctx context.Context, base *parley.PushTrace, known *kvEntry, events []parley.PushTraceEvent) {
	if !parley.ValidID(base.MessageID) || len(events) == 0 {
		return
	}
	_, err := casUpdateFrom(ctx, q.traces, traceKey(base.MessageID), known, func(cur []byte) ([]byte, error) {
		t := *base
		t.Events = nil
		if cur != nil && json.Unmarshal(cur, &t) != nil {
			t = *base
		}
		room := traceMaxEvents - len(t.Events)
		if room <= 0 {
			return nil, nil
		}
		t.Events = append(t.Events, events[:min(room, len(events))]...)
		return json.Marshal(&t)
	})
	if err != nil {
		q.noteFailure(err)
	}
}

// traceBatch gathers a message's trace events, to be written in one
// append (flush) rather than one each.
type traceBatch struct {
	base   *parley.PushTrace
	events []parley.PushTraceEvent
	// created says a flush wrote the trace already (later flushes read
	// it first).
	created bool
}

func (b *traceBatch) add(ev parley.PushTraceEvent) { b.events = append(b.events, ev) }

// flush appends the gathered events to the trace and forgets them.
func (b *traceBatch) flush(ctx context.Context, q *Queue) {
	if len(b.events) == 0 {
		return
	}
	if b.created {
		q.appendTrace(ctx, b.base, b.events...)
	} else {
		q.appendTraceNew(ctx, b.base, b.events...)
		b.created = true
	}
	b.events = b.events[:0]
}

// Trace returns a message's trace; CodeNotFound if there is none (no
// device of any member had a push registration, or it expired).
func (q *Queue) Trace(ctx context.Context, messageID string) (*parley.PushTrace, error) {
	if !parley.ValidID(messageID) {
		return nil, parley.Errorf(parley.CodeNotFound, "no push trace for this message")
	}
	e, err := q.traces.Get(ctx, traceKey(messageID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, parley.Errorf(parley.CodeNotFound, "no push trace for this message")
	}
	if err != nil {
		return nil, parley.Errorf(parley.CodeUnavailable, "push traces unavailable: %v", err)
	}
	var t parley.PushTrace
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// awaiting is the messages sent to a device whose fetch is not yet seen.
type awaiting struct {
	Traces []string `json:"traces"`
}

// awaitFetch records that a device was sent a notification for a message
// (the newest 64 are kept).
func (q *Queue) awaitFetch(ctx context.Context, deviceID, messageID string) {
	if !parley.ValidID(deviceID) {
		return
	}
	// A device with no fetch awaited (as the mirror says; nearly every
	// device, since its fetches clear it) has no entry: it is created
	// without a read first, and read only if it exists after all.
	var known *kvEntry
	if !q.mayAwait(deviceID) {
		known = &kvEntry{}
	}
	_, err := casUpdateFrom(ctx, q.traces, awaitKey(deviceID), known, func(cur []byte) ([]byte, error) {
		var a awaiting
		if cur != nil {
			_ = json.Unmarshal(cur, &a)
		}
		if len(a.Traces) >= 64 {
			a.Traces = a.Traces[1:]
		}
		a.Traces = append(a.Traces, messageID)
		return json.Marshal(&a)
	})
	if err != nil {
		q.noteFailure(err)
	}
}

// mayAwait reports whether deviceID may have a fetch awaited: from the
// mirror when it is up, otherwise yes.
func (q *Queue) mayAwait(deviceID string) bool {
	if !q.mirrored.Load() {
		return true
	}
	q.awaitedMu.RLock()
	defer q.awaitedMu.RUnlock()
	return q.awaited[deviceID]
}

// watchAwaiting mirrors the devices with a fetch awaited, so that a sync
// or history call of any other device (nearly all of them) costs no NATS
// request. While the watch is down (NATS away) the mirror is off and
// every fetch is looked up.
func (q *Queue) watchAwaiting() {
	defer q.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-q.stop
		cancel()
	}()
	for ctx.Err() == nil {
		q.mirrorAwaiting(ctx)
		q.mirrored.Store(false)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

// mirrorAwaiting runs one watch until it ends.
func (q *Queue) mirrorAwaiting(ctx context.Context) {
	w, err := q.traces.Watch(ctx, awaitKey("*"))
	if err != nil {
		return
	}
	defer w.Stop()
	awaited := map[string]bool{}
	for e := range w.Updates() {
		if e == nil { // the current keys are in: the mirror is good
			q.awaitedMu.Lock()
			q.awaited = awaited
			q.awaitedMu.Unlock()
			q.mirrored.Store(true)
			continue
		}
		device := strings.TrimPrefix(e.Key(), awaitKey(""))
		q.awaitedMu.Lock()
		if e.Operation() == jetstream.KeyValuePut {
			awaited[device] = true
		} else {
			delete(awaited, device)
		}
		q.awaitedMu.Unlock()
	}
}

// fetchLoop turns devices' fetches into trace events.
func (q *Queue) fetchLoop() {
	defer q.wg.Done()
	for {
		select {
		case <-q.stop:
			return
		case deviceID := <-q.fetched:
			q.recordFetch(deviceID)
		}
	}
}

func (q *Queue) recordFetch(deviceID string) {
	if !parley.ValidID(deviceID) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := awaitKey(deviceID)
	e, err := q.traces.Get(ctx, key)
	if err != nil {
		return // none awaited (the common case), or NATS away: traces only
	}
	var a awaiting
	_ = json.Unmarshal(e.Value(), &a)
	// Delete first, only if unchanged: a send racing the fetch keeps its
	// entry for the next fetch.
	if err := q.traces.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		return
	}
	ev := traceEvent("fetched")
	ev.DeviceID = deviceID
	for _, id := range a.Traces {
		q.appendTrace(ctx, &parley.PushTrace{MessageID: id}, ev)
	}
}
