package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// With Options.Reconnect (`parley bench direct|group --reconnect`) a
// connection outlives its socket, as the protocol's client algorithm does
// (docs/protocol.md, section 7): when the server or the network closes the
// socket, the connection dials again with the same device token (capped
// exponential backoff with jitter), syncs from the last position it
// applied, backfills with history what the sync cut, and only then writes
// its outbox again: the sends that were in flight first, with their
// client_msg_id unchanged, so that the server's idempotency acks a send
// that had committed with its original seq.
//
// The checks change meaning (the strict ones in conn.go would count every
// catch-up as duplicates):
//
//   - lost: an acked message that is not held, at the end of the drain, by
//     a member connection other than its sender's. Counted exactly, per
//     (recipient, conversation, seq), not as expected - delivered.
//   - duplicates: a message stored twice: the same (sender, client_msg_id)
//     seen with two seqs in one conversation, on any connection, in a
//     message frame, a sync or history page, or an ack; and, at the end, a
//     delivered message that no ack accounts for although every send in
//     its conversation was acked (a copy stored under another seq whose
//     ack never came; see deliveryCheck).
//   - reordered: a message that arrived live on a socket after that same
//     socket had delivered a higher seq of the conversation live, and that
//     was not yet held: a client would show it after the higher one.
//     Messages fetched by sync or history fill holes and are not reordered.
//   - redelivered (informational): a (conversation, seq) that arrived again
//     and is dropped by the client rule "keep one copy per (conversation,
//     seq)": the overlap of live frames with a catch-up, or a replay.

// Reconnect and retry timing: the wait before attempt n (0 first) is
// uniform in [d/2, d] with d = backoffStart * 2^n, capped at backoffCap.
const (
	backoffStart = 100 * time.Millisecond
	backoffCap   = 2 * time.Second
	// maxInFlight is the most sends written and not yet answered on one
	// socket (the server queues 32 requests; the protocol says about 16).
	maxInFlight = 16
)

// backoff is the wait before attempt n (0 first).
func backoff(n int) time.Duration {
	d := backoffCap
	if n < 5 {
		d = min(backoffCap, backoffStart<<n)
	}
	return d/2 + rand.N(d/2+1)
}

// reconnState is a connection's state with Reconnect. Guarded by conn.mu,
// except pingInterval, which only the supervisor uses.
type reconnState struct {
	epoch        int           // sockets opened before the current one
	up           bool          // the socket is caught up and carries sends
	sockDone     chan struct{} // closed when the current socket's reader returns
	pingInterval time.Duration
	position     string           // the last sync_result.position applied
	owed         map[string]int64 // conversation -> last_seq to backfill up to
	outbox       []*outMsg        // not written on the current socket, oldest first
	inflight     map[string]*outMsg
	msgN         int
	kick         chan struct{}      // wakes the pump; capacity 1
	acked        map[string][]int64 // conversation -> seqs of this connection's acked sends
}

func newReconnState(pingIntervalSeconds int) *reconnState {
	pi := time.Duration(pingIntervalSeconds) * time.Second
	if pi <= 0 {
		pi = 25 * time.Second
	}
	return &reconnState{up: true, sockDone: make(chan struct{}), pingInterval: pi, owed: map[string]int64{},
		inflight: map[string]*outMsg{}, kick: make(chan struct{}, 1), acked: map[string][]int64{}}
}

// outMsg is a message the bench sent and the server has not acked: the
// outbox entry of the protocol's client algorithm.
type outMsg struct {
	n           int // creation order on the connection
	conv        string
	clientMsgID string
	body        string
	created     time.Time // when the bench sent it first: ack latency counts from here
	attempts    int       // refusals with rate_limited or unavailable so far
	notBefore   time.Time // write it again no earlier than this
	written     bool      // written at least once: a later write is a resend
}

// msgKey identifies a message by its idempotency key: client_msg_id is
// unique per sending user.
type msgKey struct{ sender, clientMsgID string }

// requeue puts sends back into the outbox in creation order. The caller
// holds k.mu.
func (rc *reconnState) requeue(ms ...*outMsg) {
	rc.outbox = append(rc.outbox, ms...)
	slices.SortFunc(rc.outbox, func(a, b *outMsg) int { return a.n - b.n })
}

func (k *conn) kickPump() {
	select {
	case k.rc.kick <- struct{}{}:
	default:
	}
}

// enqueue adds a message to the outbox; the pump writes it.
func (k *conn) enqueue(conv string, now time.Time) {
	k.mu.Lock()
	k.rc.msgN++
	m := &outMsg{n: k.rc.msgN, conv: conv, clientMsgID: k.b.runTag + k.dev.deviceID[:8] + "m" + strconv.Itoa(k.rc.msgN),
		body: k.b.body(now), created: now}
	k.rc.outbox = append(k.rc.outbox, m)
	k.mu.Unlock()
	k.b.sent.Add(1)
	k.kickPump()
}

// pump writes the outbox while the connection is up, until the bench
// stops. It is the only writer of send frames, so sends go out oldest
// first.
func (k *conn) pump() {
	defer k.b.bg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-k.rc.kick:
		case <-timer.C:
		case <-k.b.runCtx.Done():
			return
		}
		if wait := k.flush(); wait > 0 {
			timer.Reset(wait)
		}
	}
}

// flush writes the sends at the head of the outbox that are due, keeping
// at most maxInFlight unanswered. It returns how long until the head is
// due, if it is waiting for a retry (0 otherwise). A write that fails
// aborts the socket: its reader returns and the supervisor reconnects and
// requeues what was in flight.
func (k *conn) flush() time.Duration {
	k.mu.Lock()
	rc := k.rc
	if !rc.up {
		k.mu.Unlock()
		return 0
	}
	sock := k.sock
	now := time.Now()
	var frames []client.OutFrame
	var wait time.Duration
	var resent int64
	taken := 0
	for _, m := range rc.outbox {
		if len(rc.inflight) >= maxInFlight {
			break
		}
		if m.notBefore.After(now) {
			wait = m.notBefore.Sub(now)
			break
		}
		k.reqN++
		id := "s" + strconv.Itoa(k.reqN)
		rc.inflight[id] = m
		if m.written {
			resent++
		}
		m.written = true
		frames = append(frames, client.OutFrame{Type: "send", ID: id, ConversationID: m.conv, ClientMsgID: m.clientMsgID, Body: m.body})
		taken++
	}
	rc.outbox = slices.Delete(rc.outbox, 0, taken)
	k.mu.Unlock()
	k.b.resent.Add(resent)
	for _, f := range frames {
		if err := sock.Write(f); err != nil {
			_ = sock.Abort()
			break
		}
	}
	return wait
}

// onAckReconnect settles the send an ack answers.
func (k *conn) onAckReconnect(f *client.InFrame, now time.Time) {
	k.mu.Lock()
	m := k.rc.inflight[f.ID]
	delete(k.rc.inflight, f.ID)
	dup := false
	if m != nil && f.Message != nil {
		msg := f.Message
		dup = k.trackOf(msg.ConversationID).noteID(msgKey{msg.SenderID, msg.ClientMsgID}, msg.Seq)
		k.rc.acked[msg.ConversationID] = append(k.rc.acked[msg.ConversationID], msg.Seq)
	}
	k.mu.Unlock()
	if m == nil {
		return
	}
	if dup {
		k.b.dups.Add(1)
	}
	k.b.acked.Add(1)
	k.ackedN.Add(1)
	k.lastAck.Store(now.UnixNano())
	k.b.recordAck(k.shard, now.Sub(m.created))
	k.release()
	k.kickPump()
}

// onSendError handles an error frame that answers a send, and reports
// whether it did: rate_limited and unavailable put the send back at its
// place in the outbox, due after a backoff; any other code fails it. The
// caller counted the code.
func (k *conn) onSendError(f *client.InFrame) bool {
	k.mu.Lock()
	m := k.rc.inflight[f.ID]
	if m == nil {
		k.mu.Unlock()
		return false
	}
	delete(k.rc.inflight, f.ID)
	retry := f.Error.Code == parley.CodeRateLimited || f.Error.Code == parley.CodeUnavailable
	if retry {
		m.notBefore = time.Now().Add(backoff(m.attempts))
		m.attempts++
		k.rc.requeue(m)
	}
	k.mu.Unlock()
	if retry {
		k.kickPump()
	} else {
		k.release()
	}
	return true
}

// noteID records that seq carries key and reports whether the key was
// already seen with another seq in this conversation: the message was
// stored twice. Each extra seq is reported once.
func (t *seqTrack) noteID(key msgKey, seq int64) bool {
	if t.ids == nil {
		t.ids = map[msgKey]int64{}
	}
	first, ok := t.ids[key]
	if !ok {
		t.ids[key] = seq
		return false
	}
	if first == seq || slices.Contains(t.extraSeqs[key], seq) {
		return false
	}
	if t.extraSeqs == nil {
		t.extraSeqs = map[msgKey][]int64{}
	}
	t.extraSeqs[key] = append(t.extraSeqs[key], seq)
	return true
}

// onMessageReconnect classifies a message with Reconnect (see the top of
// this file). The reader of the current socket calls it; the epoch
// cannot change meanwhile, since the supervisor opens the next socket
// only after that reader returned.
func (k *conn) onMessageReconnect(m *parley.Message, now time.Time, live bool) {
	k.mu.Lock()
	t := k.trackOf(m.ConversationID)
	held := t.holds(m.Seq)
	reord := false
	if live {
		if t.liveEpoch != k.rc.epoch {
			t.liveEpoch, t.liveLast = k.rc.epoch, 0
		}
		reord = !held && m.Seq < t.liveLast
		t.liveLast = max(t.liveLast, m.Seq)
	}
	dup := false
	others := m.SenderDeviceID != k.dev.deviceID
	if !held {
		t.hold(m.Seq)
		dup = t.noteID(msgKey{m.SenderID, m.ClientMsgID}, m.Seq)
		if others {
			t.fromOthers[m.Seq] = true
			k.received++
		}
	}
	k.mu.Unlock()
	if held {
		k.b.redelivered.Add(1)
		return
	}
	if dup {
		k.b.dups.Add(1)
	}
	if reord {
		k.b.reordered.Add(1)
	}
	if others {
		k.b.delivered.Add(1)
		k.lastDelivery.Store(now.UnixNano())
		k.recordDelivery(m, now)
	}
}

// supervise runs for the connection's life with Reconnect: it waits for
// the socket to end, then reconnects, resyncs and reopens the connection
// to sends, until the bench stops. sock and done are the first socket and
// its reader's channel.
func (k *conn) supervise(sock *client.Conn, done <-chan struct{}) {
	defer k.b.bg.Done()
	defer close(k.closed)
	ctx := k.b.runCtx
	for {
		if !k.watch(sock, done) {
			return
		}
		_ = sock.Abort()
		closedAt := time.Now()
		k.mu.Lock()
		k.rc.up = false
		for id, m := range k.rc.inflight {
			k.rc.requeue(m)
			delete(k.rc.inflight, id)
		}
		k.mu.Unlock()
		if k.b.stopped.Load() || k.dropped.Load() {
			return
		}
		var ready *client.InFrame
		for attempt := 0; ; attempt++ {
			if !sleepCtx(ctx, backoff(attempt)) {
				return
			}
			var n int
			var err error
			if sock, ready, n, err = k.b.openSocket(ctx, k.idx, k.dev); err == nil {
				k.bytesIn.Add(int64(n))
				break
			}
			if ctx.Err() != nil {
				return
			}
			k.b.countError("redial:" + errCode(err))
		}
		k.b.noteReconnect(time.Since(closedAt))
		if ready.PingInterval > 0 {
			k.rc.pingInterval = time.Duration(ready.PingInterval) * time.Second
		}
		d := make(chan struct{})
		k.mu.Lock()
		k.sock = sock
		k.rc.epoch++
		k.rc.sockDone = d
		k.readyAt = time.Now()
		k.mu.Unlock()
		done = d
		if k.b.stopped.Load() { // closeAll may have missed this socket
			_ = sock.Abort()
			return
		}
		go k.read(sock, d)
		k.resync(ctx)
	}
}

// watch waits until the socket's reader returns (true) or the bench stops
// (false). A socket on which nothing arrived, not even a ping, for twice
// the ping interval plus 10 s is dead (docs/protocol.md, section 11) and
// is aborted.
func (k *conn) watch(sock *client.Conn, done <-chan struct{}) bool {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return true
		case <-k.b.runCtx.Done():
			return false
		case <-t.C:
			if time.Since(sock.LastRead()) > 2*k.rc.pingInterval+10*time.Second {
				_ = sock.Abort()
			}
		}
	}
}

// resync catches the connection up (retrying with backoff while the socket
// stays open) and then opens it to sends. It returns without opening it
// when the socket ends (the supervisor reconnects) or the bench stops.
func (k *conn) resync(ctx context.Context) {
	for attempt := 0; ; attempt++ {
		err := k.catchUp(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, errSocketClosed) || ctx.Err() != nil {
			return
		}
		if parley.ErrorCode(err) == parley.CodeInvalidRequest {
			// "position is not one this server issued": start over with a
			// full-state sync; the backfill still starts at held_upto.
			k.mu.Lock()
			k.rc.position = ""
			k.mu.Unlock()
		}
		if !sleepCtx(ctx, backoff(attempt)) {
			return
		}
	}
	k.mu.Lock()
	k.rc.up = true
	k.mu.Unlock()
	k.kickPump()
}

// catchUp syncs from the connection's position until has_more is false,
// then backfills with history, after held_upto, every conversation the
// sync showed with a last_seq above what the connection holds. The
// messages of the replies are applied (onMessage, not live) by the reader
// before the reply reaches catchUp. A conversation's backfill is owed until
// done, across failures and reconnects, since the position has moved past
// it.
func (k *conn) catchUp(ctx context.Context) error {
	limit := k.b.o.SyncLimit
	for {
		k.mu.Lock()
		pos := k.rc.position
		k.mu.Unlock()
		f, err := k.roundTrip(ctx, client.OutFrame{Type: "sync", Position: pos, Limit: &limit})
		if err != nil {
			return err
		}
		k.mu.Lock()
		for _, c := range f.Conversations {
			if !c.Removed {
				k.rc.owed[c.Conversation.ID] = max(k.rc.owed[c.Conversation.ID], c.Conversation.LastSeq)
			}
		}
		k.rc.position = f.Position
		k.mu.Unlock()
		if !f.HasMore {
			break
		}
	}
	k.mu.Lock()
	owed := make(map[string]int64, len(k.rc.owed))
	for conv, last := range k.rc.owed {
		owed[conv] = last
	}
	k.mu.Unlock()
	for conv, target := range owed {
		k.mu.Lock()
		after := k.trackOf(conv).heldUpto()
		k.mu.Unlock()
		for after < target {
			hl := 200
			f, err := k.roundTrip(ctx, client.OutFrame{Type: "history", ConversationID: conv, After: &after, Limit: &hl})
			if err != nil {
				return err
			}
			if len(f.Messages) == 0 {
				break
			}
			after = f.Messages[len(f.Messages)-1].Seq
			if len(f.Messages) < hl && !f.Truncated {
				break
			}
		}
		k.mu.Lock()
		if k.rc.owed[conv] == target {
			delete(k.rc.owed, conv)
		}
		k.mu.Unlock()
	}
	return nil
}

// sleepCtx waits d, or less if ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// deliveryCheck compares, for one conversation and its member
// connections, what was acked with what was delivered (Reconnect only):
//
//   - expected: every message acked to one member, at every other member's
//     connection;
//   - lost: those of them a recipient does not hold;
//   - stray: messages a recipient holds that no ack accounts for, counted
//     once each, and only when every send of every member was acked. The
//     bench sends nothing else, so such a message is a second copy of one
//     that was acked under another seq: stored twice.
func deliveryCheck(conv string, members []*conn) (expected, lost, stray int64) {
	acked := map[int64]bool{}
	settled := true
	for _, s := range members {
		s.mu.Lock()
		seqs := slices.Clone(s.rc.acked[conv])
		n := 0
		for _, a := range s.rc.acked {
			n += len(a)
		}
		settled = settled && n == s.rc.msgN // every send it made was acked
		s.mu.Unlock()
		for _, seq := range seqs {
			acked[seq] = true
		}
		for _, r := range members {
			if r.dev.deviceID == s.dev.deviceID {
				continue
			}
			r.mu.Lock()
			t := r.track[conv]
			for _, seq := range seqs {
				expected++
				if t == nil || !t.fromOthers[seq] {
					lost++
				}
			}
			r.mu.Unlock()
		}
	}
	if !settled {
		return expected, lost, 0
	}
	strays := map[int64]bool{}
	for _, r := range members {
		r.mu.Lock()
		if t := r.track[conv]; t != nil {
			for seq := range t.fromOthers {
				if !acked[seq] {
					strays[seq] = true
				}
			}
		}
		r.mu.Unlock()
	}
	return expected, lost, int64(len(strays))
}
