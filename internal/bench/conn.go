package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// conn is one benchmark connection: it reads on its own goroutine and
// checks every message frame for order, duplicates and loss.
type conn struct {
	b     *bench
	idx   int
	dev   device
	c     *client.Conn
	shard int

	mu       sync.Mutex
	pending  map[string]time.Time // send request id -> when written
	reqs     map[string]chan *client.InFrame
	track    map[string]*seqTrack // per conversation
	received int64                // deliveries counted (messages from others)
	reqN     int
	readyAt  time.Time
	closed   chan struct{}
	window   chan struct{} // sends in flight, when sending as fast as acks allow
	lastAck  atomic.Int64
	ackedN   atomic.Int64
	bytesIn  atomic.Int64
	dropped  atomic.Bool // closed by the bench on purpose (storm)
	noE2E    bool        // do not record end-to-end latency (set before traffic)
}

// seqTrack checks one conversation's message stream on one connection:
// last is the highest seq seen; missing holds seqs skipped over.
type seqTrack struct {
	last       int64
	missing    map[int64]bool
	fromOthers map[int64]bool // seqs of others' messages received (for loss)
}

func (b *bench) dial(ctx context.Context, i int, d device) (*conn, error) {
	c, err := client.Dial(ctx, b.o.Server, d.token, b.dialer(i))
	if err != nil {
		return nil, err
	}
	k := &conn{b: b, idx: i, dev: d, c: c, shard: i % len(b.shards), pending: map[string]time.Time{},
		reqs: map[string]chan *client.InFrame{}, track: map[string]*seqTrack{}, closed: make(chan struct{}),
		window: make(chan struct{}, b.o.Window)}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	f, raw, err := c.ReadFrame()
	if err != nil {
		c.Abort()
		return nil, fmt.Errorf("waiting for ready: %w", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	k.bytesIn.Add(int64(len(raw)))
	if f.Type != "ready" {
		c.Abort()
		return nil, errUnexpected(f)
	}
	k.readyAt = time.Now()
	go k.read()
	return k, nil
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
			_ = k.c.Close()
		}
	}
}

// read handles the server's frames.
func (k *conn) read() {
	defer close(k.closed)
	for {
		f, raw, err := k.c.ReadFrame()
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
			k.mu.Lock()
			t, ok := k.pending[f.ID]
			delete(k.pending, f.ID)
			k.mu.Unlock()
			if ok {
				k.b.acked.Add(1)
				k.ackedN.Add(1)
				k.lastAck.Store(now.UnixNano())
				k.b.record(k.shard, true, now.Sub(t))
				k.release()
			}
		case "error":
			k.b.countError(string(f.Error.Code))
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
func (k *conn) onMessage(m *parley.Message, now time.Time, live bool) {
	if !m.EditedAt.IsZero() {
		return
	}
	k.mu.Lock()
	t := k.track[m.ConversationID]
	if t == nil {
		t = &seqTrack{fromOthers: map[int64]bool{}}
		k.track[m.ConversationID] = t
	}
	var dup, reord bool
	switch {
	case m.Seq == t.last+1:
		t.last = m.Seq
	case m.Seq > t.last+1:
		if t.missing == nil {
			t.missing = map[int64]bool{}
		}
		for s := t.last + 1; s < m.Seq; s++ {
			t.missing[s] = true
		}
		t.last = m.Seq
	case t.missing[m.Seq]:
		delete(t.missing, m.Seq)
		reord = live
	default:
		dup = true
	}
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
		if at, ok := sentAt(m.Body); ok && !k.noE2E {
			k.b.record(k.shard, false, now.Sub(at))
		}
	}
}

func (b *bench) record(shard int, ack bool, d time.Duration) {
	s := &b.shards[shard]
	s.mu.Lock()
	if ack {
		_ = s.ack.RecordValue(max(d.Microseconds(), 1))
	} else {
		_ = s.e2e.RecordValue(max(d.Microseconds(), 1))
	}
	s.mu.Unlock()
}

// send writes one message; the ack is matched by the request id.
func (k *conn) send(conv string, now time.Time) error {
	k.mu.Lock()
	k.reqN++
	id := "s" + strconv.Itoa(k.reqN)
	k.pending[id] = now
	k.mu.Unlock()
	k.b.sent.Add(1)
	err := k.c.Write(client.OutFrame{Type: "send", ID: id, ConversationID: conv, ClientMsgID: k.dev.deviceID[:8] + id, Body: k.b.body(now)})
	if err != nil {
		k.b.countError(errCode(err))
	}
	return err
}

// request writes a frame with a fresh id and returns the channel its
// reply (or error) arrives on.
func (k *conn) request(f client.OutFrame) (<-chan *client.InFrame, error) {
	ch := make(chan *client.InFrame, 1)
	k.mu.Lock()
	k.reqN++
	f.ID = "r" + strconv.Itoa(k.reqN)
	k.reqs[f.ID] = ch
	k.mu.Unlock()
	return ch, k.c.Write(f)
}

// inFlight is the number of sends awaiting their ack.
func (k *conn) inFlight() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.pending)
}
