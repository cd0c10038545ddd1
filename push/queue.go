package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley"
)

// QueueConfig configures the queue's JetStream resources.
type QueueConfig struct {
	// TTL is how long a job may wait; older ones are dropped. Default 7
	// days.
	TTL time.Duration
	// Replicas of the streams and buckets (1 on a single NATS server; 3 on
	// a NATS cluster that should survive losing one). Default 1.
	Replicas int
	// Namespace keeps this cluster's queue apart from others on the same
	// NATS (stream PARLEY_PUSH_<namespace>, subjects
	// parley.push.<namespace>.>). Default "main".
	Namespace string
}

func (c *QueueConfig) setDefaults() {
	if c.TTL <= 0 {
		c.TTL = 7 * 24 * time.Hour
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Namespace == "" {
		c.Namespace = "main"
	}
}

// Queue is the durable work queue and the state the push role keeps in
// JetStream. Every node opens it: gateways enqueue (through the core's
// hooks), push-role nodes consume (Worker).
type Queue struct {
	cfg    QueueConfig
	n      names
	js     jetstream.JetStream
	stream jetstream.Stream
	state  jetstream.KeyValue
	traces jetstream.KeyValue
	log    *slog.Logger
	m      *Metrics

	// pub publishes the core's jobs asynchronously (publishLoop): acks
	// come back on its own goroutine, failures go to retries.
	pub      jetstream.JetStream
	out      chan outJob
	retries  chan outJob
	fetched  chan string
	healedAt atomic.Int64 // Unix ns of the last heal

	// view, when set, spares messages that need no job; bus carries new
	// registrations to the other nodes' views.
	view *View
	bus  parley.Bus

	// awaited mirrors the devices with a fetch awaited (the "f." keys
	// of the trace bucket) while mirrored is true; otherwise every fetch
	// is looked up.
	awaitedMu sync.RWMutex
	awaited   map[string]bool
	mirrored  atomic.Bool
	stop      chan struct{}
	wg        sync.WaitGroup
}

// outJob is a job waiting to be published.
type outJob struct {
	subject, id string
	data        []byte
}

// Enqueueing is asynchronous: a send is acked at commit, and its push job
// follows. The buffer absorbs a NATS hiccup of a few seconds at full
// rate; jobs beyond it are dropped and counted.
const (
	enqueueBuffer = 65536
	// enqueueInFlight bounds the jobs published and not yet acked by
	// JetStream: publishing does not wait for each ack (a round trip per
	// job capped the rate at a few thousand a second under load), but
	// the stream must not be handed more than it takes.
	enqueueInFlight = 4096
	// enqueueRetriers publish again, one at a time with backoff, the
	// jobs whose asynchronous publish failed.
	enqueueRetriers = 2
	enqueueAttempts = 8 // about a minute of retries in all
	fetchBuffer     = 4096
	traceMaxEvents  = 200
	traceMaxBytes   = 128 << 10 // one trace (200 events fit)
	traceTTL        = 48 * time.Hour
	deadMaxJobs     = 1_000_000
)

// OpenQueue creates (or updates) the stream, the dead-letter stream and
// the buckets, and starts the enqueueing goroutines. Close stops them.
func OpenQueue(ctx context.Context, nc *nats.Conn, cfg QueueConfig, m *Metrics, log *slog.Logger) (*Queue, error) {
	cfg.setDefaults()
	if !validNamespace(cfg.Namespace) {
		return nil, fmt.Errorf("push: namespace %q: want 1 to 32 letters, digits, - or _", cfg.Namespace)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	q := &Queue{cfg: cfg, n: namesFor(cfg.Namespace), js: js, log: log, m: m,
		out: make(chan outJob, enqueueBuffer), retries: make(chan outJob, enqueueBuffer),
		fetched: make(chan string, fetchBuffer), stop: make(chan struct{})}
	q.pub, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(enqueueInFlight),
		jetstream.WithPublishAsyncTimeout(publishTimeout),
		jetstream.WithPublishAsyncAckHandler(q.published), jetstream.WithPublishAsyncErrHandler(q.publishFailed))
	if err != nil {
		return nil, err
	}
	if err := q.ensure(ctx); err != nil {
		return nil, err
	}
	q.wg.Add(1 + enqueueRetriers)
	go q.publishLoop()
	for range enqueueRetriers {
		go q.retryLoop()
	}
	q.wg.Add(2)
	go q.fetchLoop()
	go q.watchAwaiting()
	return q, nil
}

// ensure creates (or updates) the streams and buckets. The handles it
// keeps address them by name, so when NATS has lost them (an operator
// deleted them, a server came back without its storage) ensure may run
// again (heal) and the handles still work.
func (q *Queue) ensure(ctx context.Context) error {
	cfg, n := q.cfg, q.n
	stream, err := q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        n.stream,
		Description: "Parley push jobs (work queue)",
		Subjects:    []string{"parley.push." + cfg.Namespace + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.TTL + 24*time.Hour,
		Duplicates:  10 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("push: stream %s: %w", n.stream, err)
	}
	if _, err := q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        n.dead,
		Description: "Parley push jobs that failed their last attempt",
		Subjects:    []string{n.deadPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.TTL + 7*24*time.Hour,
		// A count, not MaxBytes: JetStream reserves MaxBytes on the
		// server up front, for every namespace.
		MaxMsgs: deadMaxJobs,
	}); err != nil {
		return fmt.Errorf("push: stream %s: %w", n.dead, err)
	}
	state, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: n.state, Description: "Parley push: notified seqs per device and conversation",
		TTL: cfg.TTL + 24*time.Hour, Storage: jetstream.FileStorage, Replicas: cfg.Replicas, History: 1,
	})
	if err != nil {
		return fmt.Errorf("push: bucket %s: %w", n.state, err)
	}
	traces, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: n.trace, Description: "Parley push traces per message",
		TTL: traceTTL, Storage: jetstream.FileStorage, Replicas: cfg.Replicas, History: 1,
		MaxValueSize: traceMaxBytes,
	})
	if err != nil {
		return fmt.Errorf("push: bucket %s: %w", n.trace, err)
	}
	if q.stream == nil {
		q.stream, q.state, q.traces = stream, state, traces
	}
	return nil
}

// heal makes the streams and buckets again if err says NATS has lost one,
// at most once per healEvery.
func (q *Queue) heal(err error) {
	if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, jetstream.ErrStreamNotFound) &&
		!errors.Is(err, jetstream.ErrBucketNotFound) {
		return
	}
	now := time.Now().UnixNano()
	last := q.healedAt.Load()
	if now-last < int64(healEvery) || !q.healedAt.CompareAndSwap(last, now) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if herr := q.ensure(ctx); herr != nil {
		q.log.Error("push: the queue's streams are gone and could not be made again", "err", herr)
		return
	}
	q.log.Warn("push: the queue's streams or buckets were gone; made them again", "err", err)
}

// healEvery bounds how often heal recreates.
const healEvery = 5 * time.Second

// Close stops enqueueing; jobs still buffered get a few seconds to go out.
func (q *Queue) Close() {
	close(q.stop)
	q.wg.Wait()
}

// UseView makes the queue ask v whether a message needs a job at all.
// Call it before serving, only on a node that hears every conversation
// event (a gateway: ConversationChanged must be called for each).
func (q *Queue) UseView(v *View) { q.view = v }

// UseBus makes PushRegistered tell every node's view (b is the sealed
// bus). Call it before serving.
func (q *Queue) UseBus(b parley.Bus) { q.bus = b }

// MessageCommitted enqueues the push job of a committed message (also of
// a retried send: the stream keeps one per message), unless the view
// knows no other member of the conversation has a push registration. It
// never blocks.
func (q *Queue) MessageCommitted(m *parley.Message) {
	now := time.Now().UnixMilli()
	j := &MessageJob{ConversationID: m.ConversationID, Seq: m.Seq, MessageID: m.ID, SenderID: m.SenderID,
		MessageType: string(m.Type), CommittedAt: m.CreatedAt.UnixMilli(), EnqueuedAt: now}
	if q.view != nil && q.view.unneeded(j) {
		q.m.avoided.Inc()
		return
	}
	q.enqueue(q.n.msg, j.msgID(), j)
}

// PushRegistered tells every node's view that a device has a push
// registration now (after the store has it): its user's conversations
// get jobs from now on, and messages judged just before are enqueued. An
// error says the other nodes could not be told (they learn it at their
// next reload): the caller should fail the registration so that the
// client tries it again.
func (q *Queue) PushRegistered(userID, deviceID string) error {
	if q.view != nil {
		q.view.registered(userID, deviceID)
	}
	if q.bus == nil {
		return nil
	}
	data, _ := json.Marshal(registration{UserID: userID, DeviceID: deviceID}) // strings: cannot fail
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return q.bus.Publish(ctx, registrationSubject(q.cfg.Namespace), data)
}

// ConversationChanged tells the view that a conversation's membership
// changed or that it was deleted (every such event, local or heard on
// the bus).
func (q *Queue) ConversationChanged(conversationID string) {
	if q.view != nil {
		q.view.conversationChanged(conversationID)
	}
}

// ReadRaised enqueues the job that clears the notifications of a
// conversation on the reader's other devices.
func (q *Queue) ReadRaised(conversationID, userID, deviceID string, readSeq int64) {
	j := &ReadJob{ConversationID: conversationID, UserID: userID, DeviceID: deviceID, ReadSeq: readSeq, At: time.Now().UnixMilli()}
	q.enqueue(q.n.read, j.msgID(), j)
}

// Fetched notes that a device synced or read history: if it was sent
// notifications, their traces record the fetch. It never blocks, and for a
// device with no fetch awaited (watchAwaiting) it costs a map lookup.
func (q *Queue) Fetched(deviceID string) {
	if !q.mayAwait(deviceID) {
		return
	}
	select {
	case q.fetched <- deviceID:
	default: // traces only; never slow a read
	}
}

func (q *Queue) enqueue(subject, id string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		q.log.Error("push: encode job", "err", err)
		return
	}
	select {
	case q.out <- outJob{subject: subject, id: id, data: data}:
	default:
		q.m.dropped.WithLabelValues("enqueue_overflow").Inc()
		q.log.Warn("push: enqueue buffer full; job dropped", "subject", subject, "id", id)
	}
}

// publishLoop publishes buffered jobs, each with its deduplication id,
// without waiting for each ack: JetStream acks them on the publisher's
// own goroutine (published), and a job whose publish fails goes to the
// retriers (publishFailed), which publish it again with backoff while
// NATS is away.
func (q *Queue) publishLoop() {
	defer q.wg.Done()
	for {
		select {
		case j := <-q.out:
			q.publishAsync(j)
		case <-q.stop:
			// Publish what is buffered, then give the acks a few seconds.
			deadline := time.After(3 * time.Second)
		drain:
			for {
				select {
				case j := <-q.out:
					q.publishAsync(j)
				default:
					break drain
				}
			}
			select {
			case <-q.pub.PublishAsyncComplete():
			case <-deadline:
			}
			return
		}
	}
}

// publishAsync hands j to JetStream, waiting while enqueueInFlight jobs
// are unacked; a publish that cannot even be sent (NATS away) goes to
// the retriers.
func (q *Queue) publishAsync(j outJob) {
	msg := &nats.Msg{Subject: j.subject, Data: j.data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, j.id)
	for {
		_, err := q.pub.PublishMsgAsync(msg, jetstream.WithStallWait(time.Second))
		if err == nil {
			return
		}
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			select {
			case <-q.stop:
			default:
				continue // the stream is slow: wait for acks, keep order
			}
		}
		q.retry(j)
		return
	}
}

// published counts a job JetStream acked (on the publisher's goroutine:
// it must not block).
func (q *Queue) published(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
	q.m.enqueued.WithLabelValues(q.jobKind(m.Subject)).Inc()
}

// publishFailed hands a job whose publish failed (no ack in time, NATS
// disconnected, the stream gone) to the retriers, which heal the stream
// if it is gone (this runs on the publisher's goroutine: no waiting).
func (q *Queue) publishFailed(_ jetstream.JetStream, m *nats.Msg, _ error) {
	q.retry(outJob{subject: m.Subject, id: m.Header.Get(jetstream.MsgIDHeader), data: m.Data})
}

// retry queues j for the retriers; it never blocks.
func (q *Queue) retry(j outJob) {
	select {
	case q.retries <- j:
	default:
		q.m.dropped.WithLabelValues("enqueue_overflow").Inc()
		q.log.Warn("push: enqueue retries full; job dropped", "subject", j.subject, "id", j.id)
	}
}

// retryLoop publishes failed jobs again, synchronously with backoff.
func (q *Queue) retryLoop() {
	defer q.wg.Done()
	for {
		select {
		case j := <-q.retries:
			q.publish(j)
		case <-q.stop:
			return
		}
	}
}

// publishTimeout bounds the wait for JetStream's ack of one job.
const publishTimeout = 10 * time.Second

func (q *Queue) publish(j outJob) {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := q.publishOnce(j)
		if err == nil {
			return
		}
		q.heal(err)
		if attempt == enqueueAttempts {
			q.m.dropped.WithLabelValues("enqueue_failed").Inc()
			q.log.Error("push: job not enqueued; its notifications are lost", "id", j.id, "err", err)
			return
		}
		select {
		case <-time.After(delay):
		case <-q.stop:
			q.m.dropped.WithLabelValues("enqueue_failed").Inc()
			return
		}
		delay = min(delay*2, 15*time.Second)
	}
}

func (q *Queue) publishOnce(j outJob) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: j.subject, Data: j.data}, jetstream.WithMsgID(j.id))
	if err == nil {
		q.m.enqueued.WithLabelValues(q.jobKind(j.subject)).Inc()
	}
	return err
}

// publishJob publishes a job now (the worker's fan-out and retries),
// deduplicated by id.
func (q *Queue) publishJob(ctx context.Context, subject, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = q.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data}, jetstream.WithMsgID(id))
	return err
}

func (q *Queue) jobKind(subject string) string {
	switch subject {
	case q.n.msg:
		return "message"
	case q.n.read:
		return "read"
	default:
		return "device"
	}
}

// Depth returns the jobs waiting in the queue and the age of the oldest
// (a work queue deletes what is acked, so its first message is the
// oldest not done).
func (q *Queue) Depth(ctx context.Context) (jobs uint64, oldest time.Duration, err error) {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	if info.State.Msgs > 0 && !info.State.FirstTime.IsZero() {
		oldest = time.Since(info.State.FirstTime)
	}
	return info.State.Msgs, max(oldest, 0), nil
}

// DeadLetters returns how many jobs the dead-letter stream holds.
func (q *Queue) DeadLetters(ctx context.Context) (uint64, error) {
	s, err := q.js.Stream(ctx, q.n.dead)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// errClaimed says another worker is sending the same notification.
var errClaimed = errors.New("push: notification being sent by another worker")
