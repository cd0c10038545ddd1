package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// conn is one benchmark connection: it reads on its own goroutine and
// checks every message frame for order, duplicates and loss. Without
// Options.Reconnect it has one socket for its life; with it, a socket
// that ends is replaced (reconnect.go) and the conn's counters, checks
// and unacknowledged sends carry over.
type conn struct {
	b     *bench
	idx   int
	dev   device
	shard int

	mu       sync.Mutex
	sock     *client.Conn         // the current socket; replaced only with Reconnect
	pending  map[string]time.Time // send request id -> when written (without Reconnect)
	reqs     map[string]chan *client.InFrame
	track    map[string]*seqTrack // per conversation
	received int64                // deliveries counted (messages from others)
	reqN     int
	readyAt  time.Time
	closed   chan struct{} // closed when the connection has ended for good
	window   chan struct{} // sends in flight, when sending as fast as acks allow
	lastAck  atomic.Int64
	// lastDelivery is when this connection last counted a delivery (Unix
	// ns): the rates run to the latest of them.
	lastDelivery atomic.Int64
	ackedN       atomic.Int64
	bytesIn      atomic.Int64
	dropped      atomic.Bool  // closed by the bench on purpose (storm)
	noE2E        bool         // do not record end-to-end latency (set before traffic)
	rc           *reconnState // the reconnecting state, with Options.Reconnect; nil without
}

// seqTrack checks one conversation's message stream on one connection:
// last is the highest seq seen; missing holds seqs skipped over. The
// seqs held are 1..last but the missing ones.
type seqTrack struct {
	last       int64
	missing    map[int64]bool
	fromOthers map[int64]bool // seqs of others' messages received (for loss)

	// With Reconnect only:
	liveEpoch int              // the socket liveLast belongs to
	liveLast  int64            // the highest seq that socket delivered live
	ids       map[msgKey]int64 // (sender, client_msg_id) -> the first seq seen with it
	extraSeqs map[msgKey][]int64
}

// hold records seq as held. filled reports that it filled a hole below
// last; repeated, that it was already held.
func (t *seqTrack) hold(seq int64) (filled, repeated bool) {
	switch {
	case seq == t.last+1:
		t.last = seq
	case seq > t.last+1:
		if t.missing == nil {
			t.missing = map[int64]bool{}
		}
		for s := t.last + 1; s < seq; s++ {
			t.missing[s] = true
		}
		t.last = seq
	case t.missing[seq]:
		delete(t.missing, seq)
		filled = true
	default:
		repeated = true
	}
	return filled, repeated
}

// holds reports whether seq is held.
func (t *seqTrack) holds(seq int64) bool {
	return seq >= 1 && seq <= t.last && !t.missing[seq]
}

// heldUpto is the highest seq such that it and every lower seq are held
// (the protocol's held_upto).
func (t *seqTrack) heldUpto() int64 {
	h := t.last
	for s := range t.missing {
		h = min(h, s-1)
	}
	return h
}

// trackOf returns the conversation's seqTrack, made on first use. The
// caller holds k.mu.
func (k *conn) trackOf(conv string) *seqTrack {
	t := k.track[conv]
	if t == nil {
		t = &seqTrack{fromOthers: map[int64]bool{}}
		k.track[conv] = t
	}
	return t
}

// openSocket dials /v1/ws with the device's token and waits (at most
// 30 s, or until ctx ends) for ready. It returns the socket, the ready
// frame and its size in bytes.
func (b *bench) openSocket(ctx context.Context, i int, d device) (*client.Conn, *client.InFrame, int, error) {
	c, err := client.Dial(ctx, b.wsServer(i), d.token, b.dialer(i))
	if err != nil {
		return nil, nil, 0, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Abort() })
	defer stop()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	f, raw, err := c.ReadFrame()
	if err != nil {
		_ = c.Abort()
		return nil, nil, 0, fmt.Errorf("waiting for ready: %w", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	if f.Type != "ready" {
		_ = c.Abort()
		return nil, nil, 0, errUnexpected(f)
	}
	return c, f, len(raw), nil
}

func (b *bench) dial(ctx context.Context, i int, d device) (*conn, error) {
	c, ready, n, err := b.openSocket(ctx, i, d)
	if err != nil {
		return nil, err
	}
	k := &conn{b: b, idx: i, dev: d, sock: c, shard: i % len(b.shards), pending: map[string]time.Time{},
		reqs: map[string]chan *client.InFrame{}, track: map[string]*seqTrack{}, closed: make(chan struct{}),
		window: make(chan struct{}, b.o.Window)}
	k.bytesIn.Add(int64(n))
	k.readyAt = time.Now()
	if !b.o.Reconnect {
		go k.read(c, k.closed)
		return k, nil
	}
	k.rc = newReconnState(ready.PingInterval)
	go k.read(c, k.rc.sockDone)
	b.bg.Add(2)
	go k.supervise(c, k.rc.sockDone)
	go k.pump()
	return k, nil
}

// socket is the current socket.
func (k *conn) socket() *client.Conn {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sock
}

func errUnexpected(f *client.InFrame) error {
	if f.Error != nil {
		return f.Error
	}
	return &unexpected{f.Type}
}

type unexpected struct{ typ string }

func (e *unexpected) Error() string { return "unexpected first frame " + e.typ }

// connectAll dials n connections with at most DialConc at once.
func (b *bench) connectAll(ctx context.Context, devs []device, n int) (time.Duration, error) {
	b.conns = make([]*conn, n)
	start := time.Now()
	var ok atomic.Int64
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				b.o.Progress("connect: " + strconv.FormatInt(ok.Load(), 10) + "/" + strconv.Itoa(n) + " ready")
			}
		}
	}()
	err := forEach(ctx, n, b.o.DialConc, func(ctx context.Context, i int) error {
		d := devs[(i/b.o.PerToken)%len(devs)]
		if b.o.PerToken == 1 {
			d = devs[i%len(devs)]
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		k, err := b.dial(dctx, i, d)
		cancel()
		if err != nil {
			b.failed.Add(1)
			b.countError(errCode(err))
			return nil
		}
		b.conns[i] = k
		ok.Add(1)
		return nil
	})
	close(stop)
	took := time.Since(start)
	b.res.ConnectSeconds = took.Seconds()
	if took > 0 {
		b.res.ConnectsPerSec = float64(ok.Load()) / took.Seconds()
	}
	return took, err
}

func (b *bench) closeAll() {
	for _, k := range b.conns {
		if k != nil {
			_ = k.socket().Close()
		}
	}
}

// read handles the frames of one socket, and closes done when the
// socket ends.
func (k *conn) read(sock *client.Conn, done chan struct{}) {
	defer close(done)
	for {
		f, raw, err := sock.ReadFrame()
		if err != nil {
			if raw == nil {
				if !k.b.stopped.Load() && !k.dropped.Load() {
					k.b.closes.Add(1) // closed or dropped by the server (or the network)
				}
				return
			}
			continue // an undecodable frame
		}
		k.bytesIn.Add(int64(len(raw)))
		now := time.Now()
		switch f.Type {
		case "message":
			if f.Message != nil {
				k.onMessage(f.Message, now, true)
			}
		case "ack":
			if k.rc != nil {
				k.onAckReconnect(f, now)
				continue
			}
			k.mu.Lock()
			t, ok := k.pending[f.ID]
			delete(k.pending, f.ID)
			k.mu.Unlock()
			if ok {
				k.b.acked.Add(1)
				k.ackedN.Add(1)
				k.lastAck.Store(now.UnixNano())
				k.b.recordAck(k.shard, now.Sub(t))
				k.release()
			}
		case "error":
			if f.Error == nil {
				continue
			}
			k.b.countError(string(f.Error.Code))
			if k.rc != nil && k.onSendError(f) {
				continue
			}
			k.mu.Lock()
			_, isSend := k.pending[f.ID]
			delete(k.pending, f.ID)
			ch := k.reqs[f.ID]
			delete(k.reqs, f.ID)
			k.mu.Unlock()
			if isSend {
				k.release()
			}
			if ch != nil {
				ch <- f
			}
		case "sync_result", "history_result":
			k.mu.Lock()
			ch := k.reqs[f.ID]
			delete(k.reqs, f.ID)
			k.mu.Unlock()
			if strings.HasPrefix(f.ID, probeID) {
				// A read for its own sake (--history-rate): what it holds
				// is not a delivery.
				if ch != nil {
					ch <- f
				}
				continue
			}
			for i := range f.Conversations {
				for j := range f.Conversations[i].Messages {
					k.onMessage(&f.Conversations[i].Messages[j], now, false)
				}
			}
			for i := range f.Messages {
				k.onMessage(&f.Messages[i], now, false)
			}
			if ch != nil {
				ch <- f
			}
		}
	}
}

func (k *conn) release() {
	select {
	case <-k.window:
	default:
	}
}

// onMessage checks a message's place in its conversation's stream.
// Live messages must come in seq order; messages fetched by sync and
// history come in pages that may go backwards, so filling a hole with
// them is no reordering.
//
// Without Reconnect the checks are strict: a seq seen twice is a
// duplicate. With it, onMessageReconnect classifies (reconnect.go).
func (k *conn) onMessage(m *parley.Message, now time.Time, live bool) {
	if !m.EditedAt.IsZero() {
		return
	}
	if k.rc != nil {
		k.onMessageReconnect(m, now, live)
		return
	}
	k.mu.Lock()
	t := k.trackOf(m.ConversationID)
	filled, dup := t.hold(m.Seq)
	reord := filled && live
	others := m.SenderDeviceID != k.dev.deviceID
	if others && !dup {
		t.fromOthers[m.Seq] = true
		k.received++
	}
	k.mu.Unlock()
	switch {
	case dup:
		k.b.dups.Add(1)
	case reord:
		k.b.reordered.Add(1)
	}
	if others && !dup {
		k.b.delivered.Add(1)
		k.lastDelivery.Store(now.UnixNano())
		k.recordDelivery(m, now)
	}
}

// recordAck records a send's ack latency.
func (b *bench) recordAck(shard int, d time.Duration) {
	s := &b.shards[shard]
	s.mu.Lock()
	_ = s.ack.RecordValue(max(d.Microseconds(), 1))
	s.mu.Unlock()
}

// recordDelivery records a live delivery's latencies: end to end, from
// the send's time in its body, and after acceptance, from the server's
// created_at (Result.AfterAcceptMs).
func (k *conn) recordDelivery(m *parley.Message, now time.Time) {
	at, ok := sentAt(m.Body)
	if !ok || k.noE2E {
		return
	}
	s := &k.b.shards[k.shard]
	s.mu.Lock()
	_ = s.e2e.RecordValue(max(now.Sub(at).Microseconds(), 1))
	if !m.CreatedAt.IsZero() {
		_ = s.accepted.RecordValue(max(now.Sub(m.CreatedAt).Microseconds(), 1))
	}
	s.mu.Unlock()
}

// send writes one message; the ack is matched by the request id.
// With Reconnect it only queues the message (reconnect.go) and never
// fails.
func (k *conn) send(conv string, now time.Time) error {
	if k.rc != nil {
		k.enqueue(conv, now)
		return nil
	}
	k.mu.Lock()
	k.reqN++
	id := "s" + strconv.Itoa(k.reqN)
	k.pending[id] = now
	sock := k.sock
	k.mu.Unlock()
	k.b.sent.Add(1)
	err := sock.Write(client.OutFrame{Type: "send", ID: id, ConversationID: conv, ClientMsgID: k.b.runTag + k.dev.deviceID[:8] + id, Body: k.b.body(now)})
	if err != nil {
		k.b.countError(errCode(err))
	}
	return err
}

// request writes a frame with a fresh id on the current socket and
// returns the id, the channel its reply (or error) arrives on, the
// socket, and a channel closed when that socket ends.
func (k *conn) request(f client.OutFrame) (string, <-chan *client.InFrame, *client.Conn, <-chan struct{}, error) {
	ch := make(chan *client.InFrame, 1)
	k.mu.Lock()
	k.reqN++
	prefix := "r"
	if f.ID == probeID {
		prefix = probeID
	}
	f.ID = prefix + strconv.Itoa(k.reqN)
	k.reqs[f.ID] = ch
	sock, done := k.sock, k.closed
	if k.rc != nil {
		done = k.rc.sockDone
	}
	k.mu.Unlock()
	return f.ID, ch, sock, done, sock.Write(f)
}

// probeID, as a request's ID, marks a read whose reply is not a delivery
// (request gives it a unique ID with this prefix).
const probeID = "probe"

// errSocketClosed: the socket a request was written on ended before its
// reply came.
var errSocketClosed = errors.New("connection closed")

// inFlight is the number of sends awaiting their ack (with Reconnect,
// those waiting to be written too).
func (k *conn) inFlight() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.rc != nil {
		return len(k.rc.inflight) + len(k.rc.outbox)
	}
	return len(k.pending)
}
