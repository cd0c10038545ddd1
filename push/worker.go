package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley"
)

// Store is what the push role reads and changes in the system of record.
type Store interface {
	PushTargets(ctx context.Context, conversationID, exceptUserID string) ([]parley.PushTarget, error)
	PushFanOut(ctx context.Context, reqs []parley.PushFanOutRequest, now time.Time) ([]parley.PushFanOut, error)
	PushTarget(ctx context.Context, conversationID, deviceID string) (*parley.PushTarget, error)
	Unread(ctx context.Context, userID, conversationID string, now time.Time) (conv, total int64, err error)
	User(ctx context.Context, id string) (*parley.User, error)
	Devices(ctx context.Context, userID string) ([]parley.Device, error)
	Push(ctx context.Context, deviceID string) (*parley.PushRegistration, error)
	DeletePush(ctx context.Context, userID, deviceID string) error
	Message(ctx context.Context, conversationID string, seq int64, now time.Time) (*parley.Message, error)
}

// Liveness tells which devices have a live session somewhere.
type Liveness interface {
	// LiveDevices returns the ids of those of the users' devices with a
	// live session. On an error the caller treats every device of the
	// users as possibly live.
	LiveDevices(ctx context.Context, userIDs []string) (map[string]bool, error)
}

// WorkerConfig configures the push role.
type WorkerConfig struct {
	// CollapseWindow is how long a device's first notification of a
	// burst waits for more messages of the conversation, so that a burst
	// makes one notification with the count. Default 1s.
	CollapseWindow time.Duration
	// DeliveredGrace is how long a device with a live session has to
	// report delivered before it is pushed all the same. Default 4s.
	DeliveredGrace time.Duration
	// TTL: jobs older than this (since commit) are dropped. Default 7 days.
	TTL time.Duration
	// Attempts per notification before it goes to the dead-letter stream
	// (default 8), backing off from RetryBase (default 1s), doubling, with
	// jitter, up to RetryMax (default 5m), and at least Retry-After.
	Attempts  int
	RetryBase time.Duration
	RetryMax  time.Duration
	// Concurrency is how many jobs are handled at once. Default 64.
	Concurrency int
	// HostConcurrency bounds the sends in flight on this node to one Web
	// Push host that is not a known push service (KnownPushHost); default
	// 4. UserConcurrency bounds those to the devices of one user; default
	// 4. A job that finds its host or user at the limit is put back for
	// about a second rather than wait on a worker.
	HostConcurrency int
	UserConcurrency int
	// UnknownHostTimeout bounds a send to a Web Push host that is not a
	// known push service; default 3s, at most 10s (what known services,
	// APNs and FCM get).
	UnknownHostTimeout time.Duration
	// EndpointBackoff is how long a Web Push registration whose sends
	// failed twice in a row gets no sends, doubling per further failure
	// up to an hour; default 30s. After EndpointDropAfter failures in a
	// row (default 10) spanning at least EndpointDropSpan (default 24h)
	// the registration is removed.
	EndpointBackoff   time.Duration
	EndpointDropAfter int
	EndpointDropSpan  time.Duration
	// Preview puts the start of a text message's body in notifications.
	// Default off: payloads carry no content.
	Preview bool
}

func (c *WorkerConfig) setDefaults() {
	if c.CollapseWindow <= 0 {
		c.CollapseWindow = time.Second
	}
	if c.DeliveredGrace <= 0 {
		c.DeliveredGrace = 4 * time.Second
	}
	if c.TTL <= 0 {
		c.TTL = 7 * 24 * time.Hour
	}
	if c.Attempts <= 0 {
		c.Attempts = 8
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.HostConcurrency <= 0 {
		c.HostConcurrency = 4
	}
	if c.UserConcurrency <= 0 {
		c.UserConcurrency = 4
	}
	if c.UnknownHostTimeout <= 0 {
		c.UnknownHostTimeout = 3 * time.Second
	}
	c.UnknownHostTimeout = min(c.UnknownHostTimeout, sendTimeout)
	if c.EndpointBackoff <= 0 {
		c.EndpointBackoff = 30 * time.Second
	}
	if c.EndpointDropAfter <= 0 {
		c.EndpointDropAfter = 10
	}
	if c.EndpointDropSpan <= 0 {
		c.EndpointDropSpan = 24 * time.Hour
	}
}

// Worker is the push role: it consumes the queue.
type Worker struct {
	q         *Queue
	store     Store
	live      Liveness
	providers map[parley.PushProvider]Provider
	cfg       WorkerConfig
	log       *slog.Logger
	m         *Metrics
	limits    *sendLimits

	namesMu sync.Mutex
	names   map[string]senderName // user id -> display name, briefly
}

// senderName is a cached display name and when it was read.
type senderName struct {
	name string
	at   time.Time
}

// Sender names are cached this long (a rename shows in notifications
// within it), for at most namesMax users.
const (
	namesTTL = time.Minute
	namesMax = 10000
)

// NewWorker builds the push role over q. Providers not given (nil) are
// not configured: their devices' notifications fail as not_configured.
func NewWorker(q *Queue, store Store, live Liveness, cfg WorkerConfig, log *slog.Logger, providers ...Provider) *Worker {
	cfg.setDefaults()
	w := &Worker{q: q, store: store, live: live, providers: map[parley.PushProvider]Provider{}, cfg: cfg, log: log, m: q.m,
		limits: newSendLimits(cfg.HostConcurrency, cfg.UserConcurrency)}
	for _, p := range providers {
		if p != nil {
			w.providers[p.Name()] = p
		}
	}
	return w
}

// Consumer settings: a job is redelivered ackWait after its worker went
// silent (it reports progress every ackWait/3 while working).
const (
	ackWait       = 10 * time.Second
	maxAckPending = 1 << 20
	infraNak      = 2 * time.Second // first retry after a store or NATS failure
	// jobTimeout bounds one job: its store calls, a claim and a send.
	jobTimeout = 2 * claimTTL
	// shutdownGrace is how long jobs in hand may run on after Run's ctx
	// ends.
	shutdownGrace = 5 * time.Second
	// claimRecheck is how soon a job that found another worker sending
	// looks again.
	claimRecheck = 2 * time.Second
)

// Run consumes jobs until ctx ends, then waits (at most shutdownGrace)
// for those in hand; jobs not finished by then are redelivered.
func (w *Worker) Run(ctx context.Context) error {
	// Handlers outlive ctx by the grace, so a job in hand can finish.
	hctx, hcancel := context.WithCancel(context.Background())
	defer hcancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(shutdownGrace, hcancel) })
	defer stop()
	sem := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		err := w.consume(ctx, hctx, sem, &wg)
		if ctx.Err() != nil {
			break
		}
		// The consumer went away (deleted by an operator, NATS lost its
		// state): make it again.
		w.log.Warn("push: consumer stopped; recreating it", "err", err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
	return nil
}

// consume creates (or updates) the durable consumer and hands its jobs to
// handlers until ctx ends or the consumer stops.
func (w *Worker) consume(ctx, hctx context.Context, sem chan struct{}, wg *sync.WaitGroup) error {
	cons, err := w.q.js.CreateOrUpdateConsumer(ctx, w.q.n.stream, jetstream.ConsumerConfig{
		Durable:     w.q.n.consumer,
		Description: "Parley push role",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     ackWait,
		MaxDeliver:  -1,
		// Jobs waiting for their due time (a collapse window, a grace,
		// a backoff) stay pending: the bound must not be what limits
		// throughput.
		MaxAckPending: maxAckPending,
	})
	if err != nil {
		w.q.heal(err)
		return fmt.Errorf("push: consumer: %w", err)
	}
	// Jobs are fetched in batches of as many as there are free workers,
	// each fetch a pull request that expires after fetchWait. A long-lived
	// pull (cons.Messages) stalled under load: the server had no pull
	// request waiting while the client counted one outstanding, and
	// consumption stopped until the missed heartbeats reset it, about 30
	// s later, with tens of thousands of jobs waiting. A fetch that is
	// lost ends at its expiry, and the next one asks again.
	for ctx.Err() == nil {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
	take:
		for n < w.cfg.Concurrency {
			select {
			case sem <- struct{}{}:
				n++
			default:
				break take
			}
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
		got := 0
		if err == nil {
			got = w.dispatch(hctx, batch.Messages(), sem, wg)
			err = batch.Error()
		}
		for range n - got {
			<-sem
		}
		if err == nil || ctx.Err() != nil {
			continue
		}
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			return err
		}
		// Is the consumer still there?
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, ierr := cons.Info(ictx)
		cancel()
		if errors.Is(ierr, jetstream.ErrConsumerNotFound) {
			return ierr
		}
		w.log.Warn("push: fetch", "err", err)
		select {
		case <-time.After(fetchWait):
		case <-ctx.Done():
		}
	}
	return nil
}

// fetchWait is how long a fetch waits for jobs: the longest a lost pull
// request can hold the role up.
const fetchWait = time.Second

// dispatch hands the jobs of one fetch to handlers as they arrive and
// returns how many came. Message jobs due for their fan-out are gathered
// while they arrive together (a gap of groupWait ends a group) and read
// from the store together (fanOutGroup): one PushFanOut for the group's
// targets and unread counts instead of two reads per message.
func (w *Worker) dispatch(hctx context.Context, msgs <-chan jetstream.Msg, sem chan struct{}, wg *sync.WaitGroup) int {
	got := 0
	var group []*dueFanOut
	flush := func() {
		if len(group) > 0 {
			wg.Add(len(group))
			go w.fanOutGroup(hctx, group, func() { <-sem; wg.Done() })
			group = nil
		}
	}
	gap := time.NewTimer(time.Hour)
	defer gap.Stop()
	for {
		var msg jetstream.Msg
		var ok bool
		if len(group) == 0 {
			msg, ok = <-msgs
		} else {
			gap.Reset(groupWait)
			select {
			case msg, ok = <-msgs:
			case <-gap.C:
				flush()
				msg, ok = <-msgs
			}
		}
		if !ok {
			flush()
			return got
		}
		got++
		if d := w.dueFanOutOf(msg); d != nil {
			group = append(group, d)
			if len(group) == parley.MaxPushFanOut {
				flush()
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			w.handle(hctx, msg, nil)
		}()
	}
}

// groupWait is how long a group of due message jobs waits for the next
// job of the same fetch: a fetch's jobs arrive back to back, so it is
// no wait for a full batch and little for a lone job.
const groupWait = time.Millisecond

// dueFanOut is a message job due for its fan-out, with what the store
// said for it (fanOutGroup).
type dueFanOut struct {
	msg jetstream.Msg
	job MessageJob
	// read is the store's answer for the job, err its failure.
	read *parley.PushFanOut
	err  error
}

// dueFanOutOf returns msg as a dueFanOut if it is a message job whose
// collapse window has passed and whose TTL has not, otherwise nil (the
// job is handled alone).
func (w *Worker) dueFanOutOf(msg jetstream.Msg) *dueFanOut {
	if msg.Subject() != w.q.n.msg {
		return nil
	}
	d := &dueFanOut{msg: msg}
	if decodeJob(msg.Data(), &d.job) != nil {
		return nil
	}
	now, committed := time.Now(), time.UnixMilli(d.job.CommittedAt)
	if committed.Add(w.cfg.CollapseWindow).After(now) || now.Sub(committed) > w.cfg.TTL {
		return nil
	}
	return d
}

// fanOutGroup reads the targets of a group of due message jobs and their
// users' unread counts in one store call, then runs each job's fan-out
// with its answer; done is called as each job is finished.
func (w *Worker) fanOutGroup(ctx context.Context, group []*dueFanOut, done func()) {
	reqs := make([]parley.PushFanOutRequest, len(group))
	for i, d := range group {
		reqs[i] = parley.PushFanOutRequest{ConversationID: d.job.ConversationID, ExceptUserID: d.job.SenderID}
	}
	rctx, cancel := context.WithTimeout(ctx, jobTimeout)
	read, err := w.store.PushFanOut(rctx, reqs, time.Now())
	cancel()
	if err == nil && len(read) != len(group) {
		err = fmt.Errorf("push: the store answered %d fan-outs of %d", len(read), len(group))
	}
	for i, d := range group {
		if err != nil {
			d.err = err
		} else {
			d.read = &read[i]
		}
		go func() {
			defer done()
			w.handle(ctx, d.msg, d)
		}()
	}
}

// handle processes one job and acks, naks (with a delay) or terminates
// it. A message job read with others (fanOutGroup) comes as due, with
// the store's answer.
func (w *Worker) handle(parent context.Context, msg jetstream.Msg, due *dueFanOut) {
	ctx, cancel := context.WithTimeout(parent, jobTimeout)
	defer cancel()
	// Report progress while working, so a slow provider does not get the
	// job redelivered to another worker.
	go func() {
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	var delay time.Duration
	var err error
	subject := msg.Subject()
	switch {
	case due != nil:
		if err = due.err; err == nil {
			delay, err = w.fanOut(ctx, &due.job, due.read)
		}
	case subject == w.q.n.msg:
		var j MessageJob
		if err = decodeJob(msg.Data(), &j); err == nil {
			delay, err = w.fanOut(ctx, &j, nil)
		}
	case subject == w.q.n.read:
		var j ReadJob
		if err = decodeJob(msg.Data(), &j); err == nil {
			delay, err = w.readFanOut(ctx, &j)
		}
	case strings.HasPrefix(subject, w.q.n.dev):
		var j DeviceJob
		if err = decodeJob(msg.Data(), &j); err == nil {
			delay, err = w.device(ctx, &j)
		}
	default:
		err = &decodeError{fmt.Errorf("push: job on unknown subject %q", subject)}
	}
	var undecodable *decodeError
	switch {
	case err != nil && parent.Err() != nil:
		_ = msg.Nak() // shutting down: another worker (or this one, restarted) takes it
	case errors.As(err, &undecodable):
		w.m.dropped.WithLabelValues("undecodable").Inc()
		w.log.Error("push: job dropped", "subject", subject, "err", err)
		_ = msg.Term()
	case err != nil:
		// The store or NATS failed: try again later, backing off as the
		// failures repeat (a job older than the TTL is dropped then).
		w.m.jobErrors.Inc()
		w.q.heal(err)
		n := uint64(1)
		if md, merr := msg.Metadata(); merr == nil {
			n = md.NumDelivered
		}
		wait := min(infraNak*time.Duration(min(n, 1000)), 5*time.Minute)
		w.log.Warn("push: job failed; retrying", "subject", subject, "err", err, "in", wait.String())
		_ = msg.NakWithDelay(wait)
	case delay > 0:
		_ = msg.NakWithDelay(delay)
	default:
		_ = msg.Ack()
	}
}

// decodeError marks a job that cannot be read: it is dropped, not retried.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }

// fanOut decides, for each device of the message's members, whether it
// may need a notification, and enqueues a device job for those that may.
// read, if not nil, is what the store said for the job (its targets with
// their unread counts), read with other jobs' (fanOutGroup); otherwise
// the targets are read here.
func (w *Worker) fanOut(ctx context.Context, j *MessageJob, read *parley.PushFanOut) (time.Duration, error) {
	now := time.Now()
	committed := time.UnixMilli(j.CommittedAt)
	if now.Sub(committed) > w.cfg.TTL {
		w.m.dropped.WithLabelValues("ttl").Inc()
		return 0, nil
	}
	// The fan-out waits out the collapse window: the devices without a
	// live session are due then, and the first few are sent to from
	// here, with the state the store holds then (a device that got the
	// message meanwhile is skipped), rather than through device jobs of
	// their own.
	if due := committed.Add(w.cfg.CollapseWindow); due.After(now) {
		return due.Sub(now), nil
	}
	var targets []parley.PushTarget
	if read != nil {
		if !read.Found {
			return 0, nil
		}
		targets = read.Targets
	} else {
		var err error
		targets, err = w.store.PushTargets(ctx, j.ConversationID, j.SenderID)
		if parley.ErrorCode(err) == parley.CodeConversationNotFound {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
	}
	if len(targets) == 0 {
		return 0, nil // nobody to wake: no trace either
	}
	trace := &parley.PushTrace{MessageID: j.MessageID, ConversationID: j.ConversationID, Seq: j.Seq}
	committedEv, enqueuedEv := traceEvent("committed"), traceEvent("enqueued")
	committedEv.At, enqueuedEv.At = committed.UTC(), time.UnixMilli(j.EnqueuedAt).UTC()
	fanned := traceEvent("fanned_out")
	fanned.Detail = fmt.Sprintf("%d registered devices of other members", len(targets))
	events := []parley.PushTraceEvent{committedEv, enqueuedEv, fanned}

	var users []string
	for _, t := range targets {
		if len(users) == 0 || users[len(users)-1] != t.UserID {
			users = append(users, t.UserID)
		}
	}
	live, err := w.live.LiveDevices(ctx, users)
	if err != nil {
		w.log.Warn("push: live sessions unknown; checking delivery after the grace", "err", err)
		live = nil
	}
	// A large group's trace records the first devices one by one and the
	// rest only in the fan-out's counts.
	counts := map[string]int{}
	note := func(ev parley.PushTraceEvent) {
		counts[ev.Stage+" "+ev.Detail]++
		if len(events) < traceFanOutEvents {
			events = append(events, ev)
		}
	}
	// Due devices sent to from here: their jobs need no queueing.
	var inline []*DeviceJob
	var inlineTargets []*parley.PushTarget
	for i := range targets {
		t := &targets[i]
		if reason := skipReason(t, j.Seq, now); reason != "" {
			w.m.skipped.WithLabelValues(reason).Inc()
			ev := traceEvent("skipped")
			ev.DeviceID, ev.Detail = t.DeviceID, reason
			note(ev)
			continue
		}
		dj := &DeviceJob{Kind: KindMessage, DeviceID: t.DeviceID, UserID: t.UserID, ConversationID: j.ConversationID,
			Seq: j.Seq, MessageID: j.MessageID, SenderID: j.SenderID, MessageType: j.MessageType, CommittedAt: j.CommittedAt}
		ev := traceEvent("queued")
		ev.DeviceID, ev.Provider = t.DeviceID, string(t.Registration.Provider)
		if live == nil || live[t.DeviceID] {
			dj.Live = true
			dj.Due = committed.Add(w.cfg.DeliveredGrace).UnixMilli()
			ev.Stage, ev.Detail = "waiting", "live session: pushed only if not delivered within "+w.cfg.DeliveredGrace.String()
		} else {
			dj.Due = committed.Add(w.cfg.CollapseWindow).UnixMilli()
			ev.Detail = "no live session"
			if len(inline) < fanOutInline {
				inline, inlineTargets = append(inline, dj), append(inlineTargets, t)
				note(ev)
				continue
			}
		}
		if err := w.q.publishJob(ctx, w.q.n.dev+t.DeviceID, dj.msgID(), dj); err != nil {
			return 0, err // the fan-out runs again; device jobs are deduplicated
		}
		w.m.enqueued.WithLabelValues("device").Inc()
		note(ev)
	}
	if len(targets) > traceFanOutEvents-3 {
		events[2].Detail += fmt.Sprintf("; outcomes: %v", counts)
	}
	// One trace write for the fan-out and the sends made from here (one
	// more for each send accepted, before its fetch is awaited).
	tr := &traceBatch{base: trace, events: events}
	defer tr.flush(ctx, w.q)
	for i, dj := range inline {
		delay, err := w.send(ctx, dj, inlineTargets[i], tr)
		if err != nil {
			// The fan-out runs again: a device already sent to is
			// covered (its state says so), one being sent to is claimed.
			return 0, err
		}
		if delay > 0 {
			// Not now (its user or host at the limit, another worker
			// sending): a device job tries again after delay.
			dj.Due = time.Now().Add(delay).UnixMilli()
			if err := w.q.publishJob(ctx, w.q.n.dev+dj.DeviceID, dj.msgID(), dj); err != nil {
				return 0, err
			}
			w.m.enqueued.WithLabelValues("device").Inc()
		}
	}
	return 0, nil
}

// traceFanOutEvents bounds the events a fan-out writes to a trace.
const traceFanOutEvents = 100

// fanOutInline is how many due devices a fan-out sends to itself; the
// others (a large group's) get device jobs, which other workers take in
// parallel.
const fanOutInline = 4

// skipReason says why a device needs no notification of seq now, or "".
func skipReason(t *parley.PushTarget, seq int64, now time.Time) string {
	switch {
	case t.ReadSeq >= seq:
		return "read"
	case t.DeliveredSeq >= seq:
		return "delivered"
	case t.MutedUntil.After(now):
		return "muted"
	case t.DNDUntil.After(now):
		return "dnd"
	}
	return ""
}

// readFanOut enqueues a read update for each other device of the reader
// that holds a notification of the conversation.
func (w *Worker) readFanOut(ctx context.Context, j *ReadJob) (time.Duration, error) {
	devices, err := w.store.Devices(ctx, j.UserID)
	if err != nil {
		return 0, err
	}
	for _, d := range devices {
		if d.ID == j.DeviceID {
			continue
		}
		held, err := w.q.holdsNotification(ctx, d.ID, j.ConversationID, time.Now())
		if err != nil {
			return 0, err
		}
		if !held {
			continue
		}
		dj := &DeviceJob{Kind: KindRead, DeviceID: d.ID, UserID: j.UserID, ConversationID: j.ConversationID,
			Seq: j.ReadSeq, CommittedAt: j.At, Due: j.At}
		if err := w.q.publishJob(ctx, w.q.n.dev+d.ID, dj.msgID(), dj); err != nil {
			return 0, err
		}
		w.m.enqueued.WithLabelValues("device").Inc()
	}
	return 0, nil
}

// device handles one device job: when it is due, checks the rules again
// against the store, claims the send, sends, and records the outcome.
func (w *Worker) device(ctx context.Context, j *DeviceJob) (time.Duration, error) {
	now := time.Now()
	if due := time.UnixMilli(j.Due); due.After(now) {
		return due.Sub(now), nil
	}
	trace := &parley.PushTrace{MessageID: j.MessageID, ConversationID: j.ConversationID, Seq: j.Seq}
	note := func(stage, detail string) {
		if j.Kind != KindMessage {
			return
		}
		ev := traceEvent(stage)
		ev.DeviceID, ev.Detail = j.DeviceID, detail
		w.q.appendTrace(ctx, trace, ev)
	}
	if now.Sub(j.committed()) > w.cfg.TTL {
		w.m.dropped.WithLabelValues("ttl").Inc()
		note("dropped", "older than the push TTL")
		return 0, nil
	}
	t, err := w.store.PushTarget(ctx, j.ConversationID, j.DeviceID)
	switch parley.ErrorCode(err) {
	case "":
	case parley.CodeNotFound, parley.CodeConversationNotFound:
		w.m.skipped.WithLabelValues("gone").Inc()
		note("skipped", "gone")
		return 0, nil
	default:
		return 0, err
	}
	return w.send(ctx, j, t, nil)
}

// send handles a due device job whose target t was just read: checks the
// rules, claims the send, sends, and records the outcome. Its trace
// events go to tr, to be written with others, or (tr nil) each at once.
// A delay says the job must be tried again then (its host or user at
// the limit, another worker sending). A target whose unread counts were
// read with it (Counted, by PushFanOut) is not counted again.
func (w *Worker) send(ctx context.Context, j *DeviceJob, t *parley.PushTarget, tr *traceBatch) (time.Duration, error) {
	now := time.Now()
	trace := &parley.PushTrace{MessageID: j.MessageID, ConversationID: j.ConversationID, Seq: j.Seq}
	note := func(stage, detail string, provider parley.PushProvider, status int) {
		if j.Kind != KindMessage {
			return
		}
		ev := traceEvent(stage)
		ev.DeviceID, ev.Detail, ev.Provider, ev.Status = j.DeviceID, detail, string(provider), status
		if tr != nil {
			tr.add(ev)
		} else {
			w.q.appendTrace(ctx, trace, ev)
		}
	}
	skip := func(reason string) (time.Duration, error) {
		w.m.skipped.WithLabelValues(reason).Inc()
		note("skipped", reason, "", 0)
		return 0, nil
	}
	var err error
	seq := j.Seq
	if j.Kind == KindMessage {
		if reason := skipReason(t, seq, now); reason != "" {
			return skip(reason)
		}
	} else {
		seq = max(seq, t.ReadSeq)
	}
	provider := w.providers[t.Registration.Provider]
	if provider == nil {
		w.m.failed.WithLabelValues(string(t.Registration.Provider), "not_configured").Inc()
		note("rejected", "provider not configured on the push role", t.Registration.Provider, 0)
		return 0, nil
	}
	// A Web Push registration whose sends keep failing backs off.
	host := webPushHost(t.Registration)
	var failures endpointState
	if host != "" {
		if failures, err = w.q.loadEndpoint(ctx, j.DeviceID, t.Registration); err != nil {
			return 0, err
		}
		if until := time.UnixMilli(failures.Until); until.After(now) {
			w.m.skipped.WithLabelValues("endpoint_backoff").Inc()
			note("skipped", fmt.Sprintf("endpoint_backoff: the registration failed %d sends in a row; none before %s",
				failures.Failures, until.UTC().Format(time.RFC3339)), t.Registration.Provider, 0)
			return 0, nil
		}
	}
	// One host's or one user's slow sends must not take the pool: at the
	// limit, the job gives its worker back and looks again shortly.
	limitHost, timeout := "", sendTimeout
	if host != "" && !KnownPushHost(host) {
		limitHost, timeout = host, w.cfg.UnknownHostTimeout
	}
	release, busy := w.limits.acquire(limitHost, t.UserID)
	if busy != "" {
		w.m.deferred.WithLabelValues(busy).Inc()
		return busyDelay(), nil
	}
	defer release()
	convUnread, badge := t.Unread, t.Badge
	if !t.Counted {
		if convUnread, badge, err = w.store.Unread(ctx, t.UserID, j.ConversationID, now); err != nil {
			return 0, err
		}
	}
	n := &Notification{Kind: j.Kind, ConversationID: j.ConversationID, Seq: seq, Count: convUnread, Badge: badge,
		TraceID: j.MessageID, Expires: j.committed().Add(w.cfg.TTL)}
	var claimed *kvEntry // the state the claim wrote: finishing it needs no read
	if j.Kind == KindMessage {
		if convUnread == 0 {
			return skip("no_unread")
		}
		n.Seq = t.LastSeq
		n.MessageType = j.MessageType
		w.describeSender(ctx, n, j, now)
		if t.Request { // issue 16: a message request shows no content
			n.Request, n.Preview = true, ""
		}
		claimed, err = w.q.claimNotifyEntry(ctx, j.DeviceID, j.ConversationID, j.Seq, n.Seq, time.Now())
	} else {
		err = w.q.claimClear(ctx, j.DeviceID, j.ConversationID, seq, time.Now())
	}
	switch {
	case errors.Is(err, errCovered):
		return skip("collapsed")
	case errors.Is(err, errClaimed):
		return claimRecheck, nil // look again once that send is done
	case err != nil:
		return 0, err
	}
	// The outcome is recorded even if the job's context ends meanwhile
	// (a shutdown): a send the provider accepted must not look unsent.
	finish := func(sent bool) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		var err error
		if j.Kind == KindMessage {
			err = w.q.finishNotifyFrom(rctx, j.DeviceID, j.ConversationID, n.Seq, sent, claimed)
		} else {
			err = w.q.finishClear(rctx, j.DeviceID, j.ConversationID, seq, sent)
		}
		if err != nil {
			w.log.Warn("push: record outcome", "device_id", j.DeviceID, "err", err)
		}
	}
	if j.Kind == KindMessage {
		// A read that landed after the rules were checked, before the
		// claim, found no notification to clear: look again now.
		again, err := w.store.PushTarget(ctx, j.ConversationID, j.DeviceID)
		if err == nil && again.ReadSeq >= j.Seq {
			finish(false)
			return skip("read")
		}
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	res := provider.Send(sctx, t.Registration, n)
	cancel()
	release()
	if res.Outcome == Retry && ctx.Err() != nil {
		// Cut short by a shutdown: not the provider's failure. The job
		// is redelivered; its claim lapses.
		finish(false)
		return 0, ctx.Err()
	}
	finish(res.Outcome == Accepted)
	name := t.Registration.Provider
	if host != "" && res.Outcome != Unregistered {
		if dropped := w.accountEndpoint(ctx, t, failures, res, note); dropped {
			return 0, nil
		}
	}
	switch res.Outcome {
	case Accepted:
		w.m.sent.WithLabelValues(string(name), j.Kind).Inc()
		if j.Kind == KindMessage {
			w.m.latency.WithLabelValues(string(name)).Observe(time.Since(j.committed()).Seconds())
			note("sent", fmt.Sprintf("covers up to seq %d; count %d, badge %d; provider id %s", n.Seq, n.Count, n.Badge, res.ID), name, res.Status)
			if tr != nil {
				tr.flush(ctx, w.q) // the send in the trace before a fetch can be
			}
			w.q.awaitFetch(ctx, j.DeviceID, j.MessageID)
		}
		return 0, nil
	case Unregistered:
		note("unregistered", res.Reason+"; registration removed", name, res.Status)
		w.unregister(ctx, t)
		w.m.failed.WithLabelValues(string(name), "unregistered").Inc() // once it is gone
		return 0, nil
	case Retry:
		w.m.failed.WithLabelValues(string(name), "retry").Inc()
		if j.Attempt+1 >= w.cfg.Attempts {
			note("dead_lettered", fmt.Sprintf("attempt %d of %d: %s", j.Attempt+1, w.cfg.Attempts, res.Reason), name, res.Status)
			return 0, w.deadLetter(ctx, j, name, res)
		}
		next := *j
		next.Attempt++
		wait := w.backoff(j.Attempt, res.RetryAfter)
		next.Due = time.Now().Add(wait).UnixMilli() // Retry-After counts from the answer
		note("retrying", fmt.Sprintf("attempt %d of %d failed (%s); next in %v", j.Attempt+1, w.cfg.Attempts, res.Reason, wait.Round(time.Millisecond)), name, res.Status)
		if err := w.q.publishJob(ctx, w.q.n.dev+j.DeviceID, next.msgID(), &next); err != nil {
			return 0, err
		}
		return 0, nil
	default:
		w.m.failed.WithLabelValues(string(name), "rejected").Inc()
		note("rejected", res.Reason, name, res.Status)
		return 0, w.deadLetter(ctx, j, name, res)
	}
}

// accountEndpoint records a Web Push send's outcome against its
// registration (endpointState): a success clears its failures; a failure
// adds one and, past EndpointDropAfter failures in a row spanning
// EndpointDropSpan, removes the registration (dropped true: the job is
// done). Errors are logged: the accounting is best effort.
func (w *Worker) accountEndpoint(ctx context.Context, t *parley.PushTarget, known endpointState, res Result,
	note func(stage, detail string, provider parley.PushProvider, status int)) (dropped bool) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if res.Outcome == Accepted {
		if err := w.q.endpointSucceeded(rctx, t.DeviceID, known); err != nil {
			w.log.Warn("push: clear endpoint failures", "device_id", t.DeviceID, "err", err)
		}
		return false
	}
	now := time.Now()
	s, err := w.q.endpointFailed(rctx, t.DeviceID, t.Registration, w.cfg.EndpointBackoff, now)
	if err != nil {
		w.log.Warn("push: record endpoint failure", "device_id", t.DeviceID, "err", err)
		return false
	}
	span := time.UnixMilli(s.Last).Sub(time.UnixMilli(s.First))
	if s.Failures < w.cfg.EndpointDropAfter || span < w.cfg.EndpointDropSpan {
		return false
	}
	name := t.Registration.Provider
	note("unregistered", fmt.Sprintf("%d failed sends in a row over %v (last: %s); registration removed",
		s.Failures, span.Round(time.Second), res.Reason), name, res.Status)
	w.log.Warn("push: Web Push registration removed after repeated failures", "device_id", t.DeviceID,
		"user_id", t.UserID, "failures", s.Failures, "span", span.String(), "status", res.Status, "reason", res.Reason)
	w.unregister(rctx, t)
	// Counted once the registration is gone: whoever sees the count can
	// rely on the user's slot being free.
	w.m.failed.WithLabelValues(string(name), "endpoint_dropped").Inc()
	if err := w.q.endpointForget(rctx, t.DeviceID); err != nil {
		w.log.Warn("push: forget endpoint failures", "device_id", t.DeviceID, "err", err)
	}
	return true
}

// describeSender fills in the sender's display name and, if previews are
// on, the start of a text message.
func (w *Worker) describeSender(ctx context.Context, n *Notification, j *DeviceJob, now time.Time) {
	n.SenderID = j.SenderID
	n.SenderName = w.senderName(ctx, j.SenderID, now)
	if !w.cfg.Preview {
		return
	}
	m, err := w.store.Message(ctx, j.ConversationID, j.Seq, now)
	if err != nil || m.Deleted || m.Type != parley.MessageText {
		return
	}
	n.Preview = truncateRunes(m.Body, previewRunes)
}

// senderName returns a user's display name, from the cache if read
// within namesTTL; "" if the user cannot be read.
func (w *Worker) senderName(ctx context.Context, userID string, now time.Time) string {
	w.namesMu.Lock()
	e, ok := w.names[userID]
	w.namesMu.Unlock()
	if ok && now.Sub(e.at) < namesTTL {
		return e.name
	}
	u, err := w.store.User(ctx, userID)
	if err != nil {
		return ""
	}
	w.namesMu.Lock()
	if w.names == nil || len(w.names) >= namesMax {
		w.names = map[string]senderName{}
	}
	w.names[userID] = senderName{name: u.DisplayName, at: now}
	w.namesMu.Unlock()
	return u.DisplayName
}

// previewRunes bounds a preview, leaving room in a 4 KiB payload.
const previewRunes = 120

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// backoff is the wait before retry attempt+1: exponential from RetryBase
// with jitter (half to all of it), capped at RetryMax, and never less
// than the provider's Retry-After.
func (w *Worker) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := w.cfg.RetryBase << min(attempt, 20)
	d = min(d, w.cfg.RetryMax)
	d = d/2 + rand.N(d/2+1)
	return max(d, retryAfter)
}

// unregister removes a registration the provider says is gone, unless
// the device registered anew meanwhile. (A registration made between the
// check and the delete is lost: the app registers again on its next
// start.)
func (w *Worker) unregister(ctx context.Context, t *parley.PushTarget) {
	cur, err := w.store.Push(ctx, t.DeviceID)
	if err != nil || !cur.UpdatedAt.Equal(t.Registration.UpdatedAt) {
		return
	}
	if err := w.store.DeletePush(ctx, t.UserID, t.DeviceID); err != nil && parley.ErrorCode(err) != parley.CodeNotFound {
		w.log.Warn("push: remove registration", "device_id", t.DeviceID, "err", err)
	}
}

// deadLetter moves a job that failed its last attempt to the dead-letter
// stream, with the provider's last answer.
func (w *Worker) deadLetter(ctx context.Context, j *DeviceJob, provider parley.PushProvider, res Result) error {
	data, _ := json.Marshal(j)
	m := &nats.Msg{Subject: w.q.n.deadPrefix + string(provider), Data: data, Header: nats.Header{}}
	m.Header.Set("Parley-Push-Status", fmt.Sprint(res.Status))
	m.Header.Set("Parley-Push-Reason", res.Reason)
	if _, err := w.q.js.PublishMsg(ctx, m, jetstream.WithMsgID("dead:"+j.msgID())); err != nil {
		return err
	}
	w.m.dead.WithLabelValues(string(provider)).Inc()
	w.log.Warn("push: notification dead-lettered", "device_id", j.DeviceID, "conversation_id", j.ConversationID,
		"seq", j.Seq, "provider", provider, "status", res.Status, "reason", res.Reason)
	return nil
}
