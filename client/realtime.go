package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
)

// realtime is the WebSocket side of a Client. One goroutine (run) owns
// all of its state; the app talks to it through post, which never blocks.
type realtime struct {
	c      *Client
	events chan Event

	qmu   sync.Mutex
	q     []func()
	wake  chan struct{}
	ended bool // run has ended: post runs functions at once (guarded by qmu)

	evMu   sync.Mutex
	evQ    []Event
	evWake chan struct{}

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	firstMu    sync.Mutex
	firstReady chan struct{} // closed at the first ready, or when stopped
	stopErr    error

	stats Stats

	// Owned by run.
	conn        *Conn
	position    string
	convs       map[string]*convState
	outbox      []*Pending
	inflight    map[string]*Pending
	handlers    map[string]func(*InFrame)
	reqN        int
	synced      bool // the sync pass of this connection (and its backfill) is done
	backfills   int  // history requests of the backfill in flight
	dirty       map[string]bool
	flushAt     time.Time
	pingEvery   time.Duration
	renewAt     time.Time
	renewing    bool
	fullSeen    map[string]bool // conversations listed by a full-state pass
	connected   bool
	announced   bool // EventSynced went out for this connection
	userID      string
	errTooLarge error // set by write when it refused an oversized frame
	quickRetry  bool  // the last reconnect was immediate (after a token refresh)
	refresh     bool  // refresh the token before the next dial (after a 4001)
	started     bool  // run was started (guarded by Client.mu)
	e2ee        loopE2EE
}

type frameOrErr struct {
	f   *InFrame
	err error
}

// convState is what the client tracks per conversation.
type convState struct {
	known    bool  // heldUpto is set
	heldUpto int64 // every seq up to here was handed to the app or is gone
	ahead    map[int64]*parley.Message
	filling  bool
	reported int64 // highest delivered seq reported
	waitDir  bool  // the next message waits for its sender's device list
}

// Stats counts what the connection loop did.
type Stats struct {
	Connects        atomic.Int64 // connections that reached ready
	Duplicates      atomic.Int64 // message copies dropped (seen before)
	Backfills       atomic.Int64 // history requests to fill gaps
	Resent          atomic.Int64 // sends written again after a reconnect or retry
	DeliveredFrames atomic.Int64
}

// Stats returns the connection loop's counters (nil before Connect).
func (c *Client) Stats() *Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rt == nil {
		return nil
	}
	return &c.rt.stats
}

// Connect starts the WebSocket side: it connects, syncs, sends the outbox,
// and reconnects after every drop until Close. It returns when the first
// connection is ready, or with the error that stopped the client (the
// session ended, the account is suspended), or when ctx ends (the client
// keeps trying in the background).
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	if c.rt == nil {
		c.rt = newRealtime(c)
	}
	r := c.rt
	if !r.started {
		r.started = true
		go r.run()
	}
	c.mu.Unlock()
	select {
	case <-r.firstReady:
		r.firstMu.Lock()
		defer r.firstMu.Unlock()
		return r.stopErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Events delivers events when Config.OnEvent is not set. It is closed
// after the client stops.
func (c *Client) Events() <-chan Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rt == nil {
		c.rt = newRealtime(c) // not running yet: Connect starts it
	}
	return c.rt.events
}

// Close stops the connection loop (close code 1000). Unacknowledged
// messages stay in State().Outbox.
func (c *Client) Close() error {
	c.mu.Lock()
	r := c.rt
	started := r != nil && r.started
	c.mu.Unlock()
	if r == nil {
		return nil
	}
	r.shutdown(errors.New("closed"))
	if started {
		<-r.done
	} else {
		r.emit(Event{Kind: EventStopped, Err: errors.New("closed")}) // closes Events
	}
	return nil
}

func newRealtime(c *Client) *realtime {
	r := &realtime{c: c, events: make(chan Event, c.cfg.EventBuffer), wake: make(chan struct{}, 1), evWake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), firstReady: make(chan struct{}),
		convs: map[string]*convState{}, inflight: map[string]*Pending{}, handlers: map[string]func(*InFrame){},
		dirty: map[string]bool{}}
	if c.cfg.OnEvent == nil {
		go r.dispatch()
	}
	if st := c.cfg.State; st != nil {
		r.position = st.Position
		for id, seq := range st.Held {
			r.convs[id] = &convState{known: true, heldUpto: seq, reported: seq}
		}
		for _, e := range st.Outbox {
			r.outbox = append(r.outbox, &Pending{ClientMsgID: e.ClientMsgID, ConversationID: e.ConversationID, Type: e.Type,
				Body: e.Body, TTL: time.Duration(e.TTLSeconds) * time.Second, Attachments: e.Attachments, Queued: e.Queued,
				E2EEAttachments: e.E2EEAttachments, encrypted: e.Encrypted, unknown: e.CheckE2EE && !e.Encrypted, done: make(chan struct{})})
		}
	}
	return r
}

// post runs fn on the connection goroutine.
func (r *realtime) post(fn func()) {
	r.qmu.Lock()
	if r.ended { // nothing else touches the state any more
		defer r.qmu.Unlock()
		fn()
		return
	}
	r.q = append(r.q, fn)
	r.qmu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *realtime) drainPosted() {
	r.qmu.Lock()
	q := r.q
	r.q = nil
	r.qmu.Unlock()
	for _, fn := range q {
		fn()
	}
}

func (r *realtime) shutdown(err error) {
	r.stopOnce.Do(func() {
		r.firstMu.Lock()
		if r.stopErr == nil {
			r.stopErr = err
		}
		r.firstMu.Unlock()
		close(r.stop)
	})
}

func (r *realtime) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// emit hands an event to the app: to OnEvent on this goroutine, or to
// the queue that dispatch moves onto the Events channel, so the
// connection loop never waits for the app (State and Send keep working
// while the app is busy; the queue grows instead).
func (r *realtime) emit(e Event) {
	if r.c.cfg.OnEvent != nil {
		r.c.cfg.OnEvent(e)
		return
	}
	r.evMu.Lock()
	r.evQ = append(r.evQ, e)
	r.evMu.Unlock()
	select {
	case r.evWake <- struct{}{}:
	default:
	}
}

// dispatch moves queued events onto the Events channel, in order, and
// closes it after EventStopped.
func (r *realtime) dispatch() {
	defer close(r.events)
	for {
		r.evMu.Lock()
		q := r.evQ
		r.evQ = nil
		r.evMu.Unlock()
		for _, e := range q {
			r.events <- e
			if e.Kind == EventStopped {
				return
			}
		}
		<-r.evWake
	}
}

// Send queues a message and waits for its acknowledgement (the message as
// stored, with its seq). If ctx ends first, the message stays queued and
// is still sent; Enqueue does not wait at all.
func (c *Client) Send(ctx context.Context, conversationID, body string, opts ...SendOption) (*parley.Message, error) {
	return c.Enqueue(conversationID, body, opts...).Wait(ctx)
}

// Enqueue puts a message in the outbox and returns at once. The outbox
// sends it when connected and resends it with the same client_msg_id
// after every reconnect until the server acknowledges or refuses it.
// Call Connect to get it going.
func (c *Client) Enqueue(conversationID, body string, opts ...SendOption) *Pending {
	o := sendOptions(opts)
	p := &Pending{ClientMsgID: o.ClientMsgID, ConversationID: conversationID, Type: o.Type, Body: body, TTL: o.TTL,
		Attachments: o.Attachments, Queued: time.Now(), done: make(chan struct{})}
	// Keys of attachments uploaded encrypted go with the message (and
	// into the saved outbox): in an e2ee conversation they are part of
	// its content.
	p.E2EEAttachments = c.crypt.lookupUploads(o.Attachments)
	// Whether the conversation is e2ee must be known before anything
	// goes out: asked at send time if no sync or frame has told.
	e, known := c.crypt.knownE2EE(conversationID)
	p.encrypted, p.unknown = known && e, !known
	c.mu.Lock()
	if c.rt == nil {
		c.rt = newRealtime(c)
	}
	r := c.rt
	c.mu.Unlock()
	r.post(func() {
		r.outbox = append(r.outbox, p)
		r.pump()
	})
	return p
}

// Typing sends a typing indicator ("start" or "stop") if connected.
func (c *Client) Typing(conversationID, state string) {
	c.mu.Lock()
	r := c.rt
	c.mu.Unlock()
	if r == nil {
		return
	}
	r.post(func() {
		if r.conn != nil {
			r.write(OutFrame{Type: frameTyping, ConversationID: conversationID, State: state})
		}
	})
}

// MarkRead raises the user's read watermark in a conversation (over REST,
// so the answer says it worked); the user's other devices get a read
// receipt and clear their unread state.
func (c *Client) MarkRead(ctx context.Context, conversationID string, seq int64) error {
	return c.MarkReadREST(ctx, conversationID, seq)
}

// State returns what to save to resume later (see Config.State). It
// covers every event handed to the app, including events still queued
// for the Events channel: saved while the app is behind, a resume skips
// what the app had not read. Save it after the app has handled the
// events it got, or keep per-conversation progress from the events
// themselves (each EventMessage has its conversation and seq).
func (c *Client) State(ctx context.Context) (State, error) {
	c.mu.Lock()
	r := c.rt
	c.mu.Unlock()
	if r == nil {
		if c.cfg.State != nil {
			return *c.cfg.State, nil
		}
		return State{Held: map[string]int64{}}, nil
	}
	out := make(chan State, 1)
	r.post(func() { out <- r.snapshot() })
	select {
	case st := <-out:
		return st, nil
	case <-r.done:
		return r.snapshot(), nil // run has ended: nothing else touches the state
	case <-ctx.Done():
		return State{}, ctx.Err()
	}
}

func (r *realtime) snapshot() State {
	st := State{Position: r.position, Held: map[string]int64{}}
	for id, cs := range r.convs {
		if cs.known {
			st.Held[id] = cs.heldUpto
		}
	}
	for _, p := range r.outbox {
		st.Outbox = append(st.Outbox, OutboxEntry{ClientMsgID: p.ClientMsgID, ConversationID: p.ConversationID, Type: p.Type,
			Body: p.Body, TTLSeconds: int64(p.TTL / time.Second), Attachments: p.Attachments, Queued: p.Queued,
			E2EEAttachments: p.E2EEAttachments, Encrypted: p.encrypted || p.sealed != nil, CheckE2EE: p.unknown})
	}
	return st
}

// run is the connection loop.
func (r *realtime) run() {
	defer close(r.done)
	defer func() {
		r.firstMu.Lock()
		select {
		case <-r.firstReady:
		default:
			close(r.firstReady)
		}
		err := r.stopErr
		r.firstMu.Unlock()
		// Run what was posted, and from now on run posts at once.
		r.drainPosted()
		r.qmu.Lock()
		r.ended = true
		q := r.q
		r.q = nil
		r.qmu.Unlock()
		for _, fn := range q {
			fn()
		}
		r.emit(Event{Kind: EventStopped, Err: err})
	}()
	attempt := 0
	for !r.stopped() {
		began := time.Now()
		err := r.session()
		if r.stopped() {
			return
		}
		var delay time.Duration
		switch code := closeCodeOf(err); {
		case isFatal(err):
			r.shutdown(err)
			return
		case (code == 4001 || parley.ErrorCode(err) == parley.CodeTokenExpired) && !r.quickRetry:
			delay = 0 // refresh and reconnect at once, once in a row
			r.quickRetry = true
			// After a 4001 refresh even if the local clock says the token
			// is still good (protocol.md, section 12): a clock behind the
			// server's would otherwise dial with the expired token, get
			// token_expired, and then wait a backoff.
			r.refresh = code == 4001
		default:
			r.quickRetry = false
			if r.connected && time.Since(began) > time.Minute {
				attempt = 0
			}
			delay = r.backoff(attempt)
			attempt++
			var he *Error
			if errors.As(err, &he) && he.RetryAfter > delay {
				delay = he.RetryAfter
			}
			if spread := r.c.cfg.ShutdownSpread; code == 1001 && spread > 0 {
				// The node is shutting down: every client of it reconnects,
				// each after its own random delay (protocol.md, section 13).
				delay = max(delay, time.Duration(rand.Int64N(int64(spread)+1)))
			}
		}
		r.connected = false
		r.c.log.Info("parley: disconnected", "err", err, "retry_in", delay)
		r.emit(Event{Kind: EventDisconnected, Err: err})
		wait := time.NewTimer(delay)
		for waiting := true; waiting; {
			select {
			case <-wait.C:
				waiting = false
			case <-r.wake: // State and Enqueue work while disconnected too
				r.drainPosted()
			case <-r.stop:
				wait.Stop()
				return
			}
		}
	}
}

// backoff is exponential with full jitter.
func (r *realtime) backoff(attempt int) time.Duration {
	ceil := r.c.cfg.BackoffMin << min(attempt, 20)
	if ceil > r.c.cfg.BackoffMax || ceil <= 0 {
		ceil = r.c.cfg.BackoffMax
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// isFatal: errors after which reconnecting cannot help.
func isFatal(err error) bool {
	switch closeCodeOf(err) {
	case 4003: // session ended
		return true
	case 4004: // replaced by a newer connection of this device: another
		// client holds this device's tokens; reconnecting would replace
		// it in turn, forever
		return true
	}
	code := parley.ErrorCode(err)
	return code == parley.CodeUnauthorized || code == parley.CodeSuspended
}

// session is one connection's life: dial, ready, sync, live. It returns
// why it ended.
func (r *realtime) session() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	var err error
	if r.refresh {
		r.refresh = false
		err = r.c.Refresh(ctx)
	}
	var token string
	if err == nil {
		token, err = r.c.accessToken(ctx)
	}
	if err == nil {
		r.conn, err = Dial(ctx, r.c.cfg.Server, token, nil)
		// The handshake's refusals; a refused refresh above is final as it is.
		if IsCode(err, parley.CodeTokenExpired) {
			err = r.c.Refresh(ctx) // then reconnect at once
			if err == nil {
				err = parley.Errorf(parley.CodeTokenExpired, "token refreshed")
			}
		} else if IsCode(err, parley.CodeUnauthorized) && r.c.Tokens().RefreshToken != "" {
			// The access token may be from before a key rotation: a refresh
			// tells whether the session still exists.
			if rerr := r.c.Refresh(ctx); rerr == nil {
				err = parley.Errorf(parley.CodeTokenExpired, "token refreshed")
			} else {
				err = rerr
			}
		}
	}
	cancel()
	if err != nil {
		return err
	}
	conn := r.conn
	frames := make(chan frameOrErr, 256)
	readerDone := make(chan struct{})
	defer func() {
		_ = conn.Abort() // ends the reader's Read
		for {
			select {
			case <-frames:
				continue
			case <-readerDone:
			}
			break
		}
		r.conn = nil
		r.disconnected()
	}()
	go func() {
		defer close(readerDone)
		for {
			f, _, err := conn.ReadFrame()
			select {
			case frames <- frameOrErr{f, err}:
			case <-r.stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// ready comes first.
	var ready *InFrame
	select {
	case fe := <-frames:
		if fe.err != nil {
			return fe.err
		}
		if fe.f.Type == frameError {
			// The server refused the connection after the handshake
			// (limit_exceeded, then close 4008, when connections raced
			// past the cap): its own error says why.
			return errOf(fe.f)
		}
		if fe.f.Type != frameReady {
			return parley.Errorf(parley.CodeInternal, "expected ready, got %s", fe.f.Type)
		}
		ready = fe.f
	case <-time.After(30 * time.Second):
		return parley.Errorf(parley.CodeUnavailable, "no ready frame within 30s")
	case <-r.stop:
		_ = conn.Close()
		return nil
	}
	r.onReady(ready)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case fe := <-frames:
			if fe.err != nil {
				return fe.err
			}
			r.handle(fe.f)
		case <-r.wake:
			r.drainPosted()
		case now := <-tick.C:
			if err := r.onTick(now); err != nil {
				return err
			}
		case <-r.stop:
			r.drainPosted()
			_ = conn.Close()
			return nil
		}
		if r.conn == nil { // a write failed
			return parley.Errorf(parley.CodeUnavailable, "connection lost")
		}
	}
}

func (r *realtime) onReady(f *InFrame) {
	r.connected = true
	r.userID = f.UserID
	r.quickRetry = false
	if r.conn != nil {
		r.conn.MaxFrame = f.MaxFrameBytes
	}
	r.stats.Connects.Add(1)
	r.pingEvery = time.Duration(max(f.PingInterval, 1)) * time.Second
	r.scheduleRenewal(f.TokenExpiresAt)
	first := false
	r.firstMu.Lock()
	select {
	case <-r.firstReady:
	default:
		close(r.firstReady)
		first = true
	}
	r.firstMu.Unlock()
	r.c.log.Info("parley: connected")
	r.emit(Event{Kind: EventConnected, Reconnect: !first})
	// Devices may have changed while away: sends fetch the devices again
	// (docs/design/e2ee.md), and keys due for rotation or a publish go.
	r.c.crypt.mu.Lock()
	r.c.crypt.epoch++
	r.c.crypt.checked = time.Time{}
	r.c.crypt.mu.Unlock()
	r.onE2EETick(time.Now())
	if r.c.crypt.store != nil {
		// The user's own list as it is now: a device added later is
		// announced (EventDevices).
		r.fetchDevices(r.userID)
	}
	r.synced, r.announced = false, false
	r.fullSeen = nil
	r.syncPage()
}

// scheduleRenewal plans the in-band token renewal at 80% of what is left.
func (r *realtime) scheduleRenewal(expires time.Time) {
	if expires.IsZero() {
		r.renewAt = time.Time{}
		return
	}
	left := time.Until(expires)
	r.renewAt = time.Now().Add(left * 4 / 5)
	if latest := expires.Add(-2 * r.pingEvery); latest.Before(r.renewAt) {
		r.renewAt = latest
	}
}

// disconnected forgets what belonged to the connection: pending request
// handlers, sends in flight (they go again on the next connection).
func (r *realtime) disconnected() {
	r.handlers = map[string]func(*InFrame){}
	for id, p := range r.inflight {
		p.inFlight = false
		delete(r.inflight, id)
	}
	for _, cs := range r.convs {
		cs.filling = false
	}
	r.backfills = 0
	r.synced = false
	r.renewing = false
}

func (r *realtime) nextID(prefix string) string {
	r.reqN++
	return prefix + strconv.Itoa(r.reqN)
}

// write sends a frame; a failure drops the connection (session ends),
// except a frame too large to send, which is refused (errTooLarge set).
func (r *realtime) write(f OutFrame) bool {
	r.errTooLarge = nil
	if r.conn == nil {
		return false
	}
	if err := r.conn.Write(f); err != nil {
		if parley.ErrorCode(err) == parley.CodePayloadTooLarge {
			r.errTooLarge = err
			return false
		}
		r.c.log.Info("parley: write failed", "err", err)
		_ = r.conn.Abort()
		r.conn = nil
		return false
	}
	return true
}

// request sends a frame with a fresh id and calls reply with the answer
// (the reply frame or an error frame).
func (r *realtime) request(prefix string, f OutFrame, reply func(*InFrame)) {
	f.ID = r.nextID(prefix)
	r.handlers[f.ID] = reply
	r.write(f)
}

func (r *realtime) handle(f *InFrame) {
	switch f.Type {
	case frameAck, frameSyncResult, frameHistoryResult, frameAuthenticated, frameError, framePong:
		if f.ID != "" {
			if p := r.inflight[f.ID]; p != nil {
				r.onSendReply(f.ID, p, f)
				return
			}
			if h := r.handlers[f.ID]; h != nil {
				delete(r.handlers, f.ID)
				h(f)
				return
			}
		}
		if f.Type == frameError {
			if id, ok := strings.CutPrefix(f.ID, deliveredPrefix); ok {
				// A refused delivered report: the conversation is gone
				// (drop it locally, errors.md), or report again at a later
				// flush (rate limited).
				if parley.ErrorCode(errOf(f)) == parley.CodeConversationNotFound {
					r.dropConversation(id)
				} else if cs := r.convs[id]; cs != nil {
					cs.reported = 0
					r.dirty[id] = true
					r.flushAt = time.Now().Add(time.Second)
				}
				return
			}
			r.c.log.Warn("parley: error frame", "id", f.ID, "err", errOf(f))
		}
	case frameMessage:
		if f.Message != nil {
			r.onMessage(f.Message)
			r.pumpGaps()
		}
	case frameReceipt:
		r.emit(Event{Kind: EventReceipt, ConversationID: f.ConversationID, Receipt: &Receipt{ConversationID: f.ConversationID,
			UserID: f.UserID, DeviceID: f.DeviceID, Kind: f.Kind, Seq: f.Seq}})
	case frameTyping:
		r.emit(Event{Kind: EventTyping, ConversationID: f.ConversationID, Typing: &Typing{ConversationID: f.ConversationID,
			UserID: f.UserID, State: f.State, ExpiresIn: f.ExpiresIn}})
	case framePresence:
		p := &Presence{UserID: f.UserID, State: f.State}
		if f.LastSeen != nil {
			p.LastSeen = *f.LastSeen
		}
		r.emit(Event{Kind: EventPresence, Presence: p})
	case frameConversation:
		r.onConversation(f)
	case frameDeviceList:
		r.onDeviceList(f)
	case frameKeyRequest:
		r.onKeyRequest(f)
	case frameBlock:
		r.emit(Event{Kind: EventBlock, Block: &BlockChange{UserID: f.UserID, Blocked: f.Blocked}})
	}
}

func (r *realtime) conv(id string) *convState {
	cs := r.convs[id]
	if cs == nil {
		cs = &convState{}
		r.convs[id] = cs
	}
	return cs
}

// onMessage hands a message to the app once, in seq order per
// conversation; copies seen before are dropped, early ones wait for the
// gap to be filled.
func (r *realtime) onMessage(m *parley.Message) {
	cs := r.conv(m.ConversationID)
	if cs.known && m.Seq <= cs.heldUpto {
		if r.onRepeat(m) {
			return
		}
		if !m.EditedAt.IsZero() || m.Deleted {
			r.emit(Event{Kind: EventMessageChanged, ConversationID: m.ConversationID, Message: m})
			return
		}
		r.stats.Duplicates.Add(1)
		return
	}
	if old, ok := cs.ahead[m.Seq]; ok {
		if m.Deleted || m.EditedAt.After(old.EditedAt) {
			cs.ahead[m.Seq] = m // a newer version of a message still waiting
		} else {
			r.stats.Duplicates.Add(1)
		}
		return
	}
	if !cs.known {
		if !r.synced {
			// Until the sync pass says where this conversation starts for
			// us, wait: an older message may still come in the sync.
			r.hold(cs, m)
			return
		}
		cs.known, cs.heldUpto = true, m.Seq-1
	}
	if m.Seq != cs.heldUpto+1 || r.mustWait(cs, m) {
		r.hold(cs, m)
		return
	}
	r.deliver(cs, m)
	r.drainAhead(cs)
}

func (r *realtime) hold(cs *convState, m *parley.Message) {
	if cs.ahead == nil {
		cs.ahead = map[int64]*parley.Message{}
	}
	cs.ahead[m.Seq] = m
}

func (r *realtime) deliver(cs *convState, m *parley.Message) {
	cs.heldUpto = m.Seq
	r.dirty[m.ConversationID] = true
	if r.flushAt.IsZero() {
		r.flushAt = time.Now().Add(max(r.c.cfg.DeliveredDelay, 0))
	}
	d := r.decryptLive(m)
	r.emit(Event{Kind: EventMessage, ConversationID: m.ConversationID, Message: m, E2EE: d})
}

func (r *realtime) drainAhead(cs *convState) {
	for {
		m, ok := cs.ahead[cs.heldUpto+1]
		if !ok || r.mustWait(cs, m) {
			break
		}
		delete(cs.ahead, m.Seq)
		r.deliver(cs, m)
	}
	for seq := range cs.ahead {
		if seq <= cs.heldUpto {
			delete(cs.ahead, seq)
		}
	}
	if len(cs.ahead) == 0 {
		cs.ahead = nil
	}
}

// pumpGaps starts a backfill for every conversation with messages
// waiting behind a gap (only once the sync pass is done).
func (r *realtime) pumpGaps() {
	if !r.synced {
		return
	}
	for id, cs := range r.convs {
		if len(cs.ahead) > 0 && !cs.filling && !cs.waitDir {
			r.backfill(id, cs)
		}
	}
}

// backfill reads the gap of a conversation with history after heldUpto.
func (r *realtime) backfill(id string, cs *convState) {
	if !cs.known {
		lowest := int64(-1)
		for seq := range cs.ahead {
			if lowest < 0 || seq < lowest {
				lowest = seq
			}
		}
		cs.known, cs.heldUpto = true, lowest-1
		r.drainAhead(cs)
		return
	}
	cs.filling = true
	r.backfills++
	r.stats.Backfills.Add(1)
	after, limit := cs.heldUpto, 200
	r.request("h", OutFrame{Type: "history", ConversationID: id, After: &after, Limit: &limit}, func(f *InFrame) {
		cs.filling = false
		r.backfills--
		if f.Type == frameError {
			if parley.ErrorCode(errOf(f)) == parley.CodeConversationNotFound {
				delete(r.convs, id)
			} else {
				r.c.log.Warn("parley: backfill", "conversation_id", id, "err", errOf(f))
			}
			r.maybeSynced()
			return
		}
		for i := range f.Messages {
			// History after heldUpto returns every stored message past
			// it: a seq it skips expired or was purged, and is gone.
			// Messages already waiting ahead up to it are handed over
			// now: drainAhead would otherwise drop them once heldUpto
			// passes them (onMessage only merges a copy held ahead).
			if m := &f.Messages[i]; m.Seq-1 > cs.heldUpto {
				cs.heldUpto = m.Seq - 1
				r.drainAhead(cs)
			}
			r.onMessage(&f.Messages[i])
		}
		if len(cs.ahead) > 0 && len(f.Messages) < limit && !f.Truncated {
			// The store has nothing more between: the seqs that did not
			// come expired or were purged.
			lowest := int64(-1)
			for seq := range cs.ahead {
				if lowest < 0 || seq < lowest {
					lowest = seq
				}
			}
			if lowest-1 > cs.heldUpto {
				cs.heldUpto = lowest - 1
			}
			r.drainAhead(cs)
		}
		if len(cs.ahead) > 0 && !cs.waitDir {
			r.backfill(id, cs)
		}
		r.maybeSynced()
	})
}

// syncPage asks for the next page of the sync pass.
func (r *realtime) syncPage() {
	limit := r.c.cfg.SyncLimit
	r.request("y", OutFrame{Type: "sync", Position: r.position, Limit: &limit}, r.onSyncResult)
}

func (r *realtime) onSyncResult(f *InFrame) {
	if f.Type == frameError {
		err := errOf(f)
		if parley.ErrorCode(err) == parley.CodeInvalidRequest && r.position != "" {
			r.c.log.Warn("parley: sync position refused; starting over", "err", err)
			r.position = ""
			r.syncPage()
			return
		}
		r.c.log.Warn("parley: sync failed", "err", err)
		if r.conn != nil {
			_ = r.conn.Abort() // reconnect and try again
			r.conn = nil
		}
		return
	}
	if f.FullState && r.fullSeen == nil {
		r.fullSeen = map[string]bool{}
	}
	var stale []Event
	for i := range f.Conversations {
		e := &f.Conversations[i]
		id := e.Conversation.ID
		if e.Removed {
			delete(r.convs, id)
			r.emit(Event{Kind: EventConversation, ConversationID: id, Conversation: &ConversationChange{Action: "removed", Conversation: &e.Conversation}})
			continue
		}
		if r.fullSeen != nil {
			r.fullSeen[id] = true
		}
		cs := r.conv(id)
		wasKnown := cs.known
		conv := e.Conversation
		r.c.crypt.noteConversation(&conv)
		r.emit(Event{Kind: EventConversation, ConversationID: id, Conversation: &ConversationChange{Action: "synced", Conversation: &conv,
			ReadSeq: e.ReadSeq, UnreadCount: e.UnreadCount}})
		if !cs.known {
			// First sight: the conversation starts for us at the oldest
			// message returned (older ones are history), or after its
			// last seq if none was.
			base := conv.LastSeq
			for _, m := range e.Messages {
				base = min(base, m.Seq-1)
			}
			for seq := range cs.ahead {
				base = min(base, seq-1)
			}
			cs.known, cs.heldUpto = true, base
		}
		if wasKnown && e.MoreMessages && len(e.Messages) > 0 {
			// Messages the device holds below what came may have been
			// edited or deleted meanwhile.
			stale = append(stale, Event{Kind: EventStale, ConversationID: id, Seq: min(cs.heldUpto+1, e.Messages[0].Seq)})
		}
		for j := range e.Messages {
			r.onMessage(&e.Messages[j])
		}
		r.drainAhead(cs)
		// A delivered report the server does not have (written on a
		// connection that died before it arrived) goes again after the
		// sync.
		if me := conv.MemberOf(r.userID); me != nil && cs.reported > me.DeliveredSeq && cs.heldUpto > me.DeliveredSeq {
			cs.reported = me.DeliveredSeq
			r.dirty[id] = true
		}
	}
	for _, ev := range stale {
		r.emit(ev)
	}
	r.position = f.Position
	if f.HasMore {
		r.syncPage()
		return
	}
	if r.fullSeen != nil {
		for id := range r.convs {
			if !r.fullSeen[id] {
				delete(r.convs, id)
				r.emit(Event{Kind: EventConversation, ConversationID: id, Conversation: &ConversationChange{Action: "removed", Conversation: &parley.Conversation{ID: id}}})
			}
		}
		r.fullSeen = nil
	}
	r.synced = true
	r.pumpGaps()
	r.maybeSynced()
}

// maybeSynced finishes the pass once the backfills are done: report
// delivery, announce, and send the outbox.
func (r *realtime) maybeSynced() {
	if !r.synced || r.backfills > 0 || r.conn == nil {
		return
	}
	for _, cs := range r.convs {
		if cs.filling || cs.waitDir {
			return
		}
	}
	if !r.announced {
		r.announced = true
		r.flushDelivered() // always after a sync: heals reports lost with a crash
		r.emit(Event{Kind: EventSynced})
	}
	r.pump()
}

// flushDelivered reports delivery for the conversations that received
// messages.
func (r *realtime) flushDelivered() {
	for id := range r.dirty {
		cs := r.convs[id]
		delete(r.dirty, id)
		if cs == nil || cs.heldUpto <= cs.reported {
			continue
		}
		seq := cs.heldUpto
		r.stats.DeliveredFrames.Add(1)
		// No reply on success, so no handler: the id names the
		// conversation, for the error frame if one comes.
		r.write(OutFrame{Type: "delivered", ID: deliveredPrefix + id, ConversationID: id, Seq: &seq})
		cs.reported = seq
	}
	r.flushAt = time.Time{}
}

// pump writes queued sends, oldest first, up to MaxInFlight, once the
// connection is synced.
func (r *realtime) pump() {
	if r.conn == nil || !r.synced || r.backfills > 0 {
		return
	}
	now := time.Now()
	var held map[string]bool // conversations waiting for a refused send's retry
	for _, p := range r.outbox {
		if len(r.inflight) >= r.c.cfg.MaxInFlight {
			return
		}
		if held[p.ConversationID] {
			continue
		}
		if !p.retryAt.IsZero() {
			// Refused with a retryable error: the later sends of its
			// conversation wait until it is acked (or refused for good)
			// so they do not commit before it. Those already in flight
			// when the refusal came may still commit first.
			if held == nil {
				held = map[string]bool{}
			}
			held[p.ConversationID] = true
		}
		if p.inFlight || now.Before(p.retryAt) {
			continue
		}
		if r.needsSeal(p) {
			// Sealed in the background (the devices are fetched); the
			// conversation's later sends wait so that they do not pass it.
			if held == nil {
				held = map[string]bool{}
			}
			held[p.ConversationID] = true
			if !p.preparing {
				r.prepare(p)
			}
			continue
		}
		id := r.nextID("s")
		p.inFlight = true
		if p.attempts.Add(1) > 1 {
			r.stats.Resent.Add(1)
		}
		r.inflight[id] = p
		f := OutFrame{Type: "send", ID: id, ConversationID: p.ConversationID, ClientMsgID: p.ClientMsgID, MessageType: p.Type,
			Body: p.Body, TTLSeconds: int64(p.TTL / time.Second), Attachments: attachmentRefs(p.Attachments)}
		if p.sealed != nil {
			f.MessageType, f.Body, f.Envelope, f.Attachments = parley.MessageEncrypted, "", p.sealed.env, serverRefs(p.sealed.atts)
		}
		if !r.write(f) {
			if r.errTooLarge != nil && p.sealed != nil {
				// Too large for a frame (many devices): over REST, with
				// the same client_msg_id.
				delete(r.inflight, id)
				r.sendOverREST(p)
				continue
			}
			if err := r.errTooLarge; err != nil { // never sendable: refuse it
				delete(r.inflight, id)
				p.inFlight = false
				r.finishSend(p, nil, err)
				r.emit(Event{Kind: EventSendFailed, ConversationID: p.ConversationID, Pending: p, Err: err})
				r.pump()
			}
			return
		}
	}
}

func (r *realtime) onSendReply(id string, p *Pending, f *InFrame) {
	delete(r.inflight, id)
	p.inFlight = false
	r.onSendResult(p, f)
}

// onSendResult handles the server's answer to a send (over the WebSocket
// or REST).
func (r *realtime) onSendResult(p *Pending, f *InFrame) {
	switch {
	case f.Type == frameAck && f.Message != nil:
		if f.Message.Type == parley.MessageEncrypted {
			r.c.decrypt(f.Message) // the stored copy, opened with the kept key
		}
		r.finishSend(p, f.Message, nil)
	case f.Type == frameError:
		err := errOf(f)
		switch code := parley.ErrorCode(err); {
		case code == parley.CodeRateLimited || code == parley.CodeUnavailable || code == parley.CodeInternal:
			p.retryAt = time.Now().Add(time.Second)
		case code == parley.CodeDeviceMismatch && p.sealed != nil && p.mismatches < maxMismatches:
			// The devices changed: fetch them again and redo the keys
			// (same K, ciphertext, signature and client_msg_id).
			p.mismatches++
			p.resealFrom, p.sealed = p.sealed, nil
			r.c.crypt.forgetRecipients(p.ConversationID, "", 0)
		case code == parley.CodeInvalidRequest && p.sealed == nil && !p.checkedE2EE:
			// Refused in plaintext: the conversation may be e2ee (it was
			// not known here). Ask, and encrypt if so.
			p.checkedE2EE = true
			p.retryAt = time.Now().Add(time.Hour) // until the answer
			r.checkE2EE(p, err)
		default: // refused for good
			r.finishSend(p, nil, err)
			r.emit(Event{Kind: EventSendFailed, ConversationID: p.ConversationID, Pending: p, Err: err})
			if parley.ErrorCode(err) == parley.CodeConversationNotFound {
				// Not (or no longer) a member: drop it locally (errors.md;
				// protocol.md, section 14).
				r.dropConversation(p.ConversationID)
			}
		}
	}
	r.pump()
}

// dropConversation forgets a conversation the client holds and tells the
// app (EventConversation "removed").
func (r *realtime) dropConversation(id string) {
	if _, ok := r.convs[id]; !ok {
		return
	}
	delete(r.convs, id)
	r.emit(Event{Kind: EventConversation, ConversationID: id, Conversation: &ConversationChange{Action: "removed", Conversation: &parley.Conversation{ID: id}}})
}

// checkE2EE asks whether p's conversation is e2ee after a plaintext send
// was refused: if it is, p is sealed and sent again; if not, the refusal
// stands.
func (r *realtime) checkE2EE(p *Pending, refusal error) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		v, err := r.c.Conversation(ctx, p.ConversationID)
		r.post(func() {
			if p.isDone() {
				return
			}
			if err == nil && v != nil && v.E2EE {
				p.encrypted, p.retryAt = true, time.Now()
			} else {
				r.finishSend(p, nil, refusal)
				r.emit(Event{Kind: EventSendFailed, ConversationID: p.ConversationID, Pending: p, Err: refusal})
			}
			r.pump()
		})
	}()
}

func (r *realtime) finishSend(p *Pending, m *parley.Message, err error) {
	for i, q := range r.outbox {
		if q == p {
			r.outbox = append(r.outbox[:i], r.outbox[i+1:]...)
			break
		}
	}
	p.msg, p.err = m, err
	close(p.done)
}

func (r *realtime) onConversation(f *InFrame) {
	if f.Conversation == nil {
		return
	}
	id := f.Conversation.ID
	r.c.crypt.noteConversation(f.Conversation)
	me := r.userID
	// A big group's created frame names no one: every member is new, and
	// the user's entry starts as the protocol says.
	everyone := f.Action == "created" && f.Conversation.MembersPaged && f.UserIDs == nil
	aboutMe := everyone
	for _, u := range f.UserIDs {
		aboutMe = aboutMe || u == me
	}
	if everyone && f.Conversation.Me == nil {
		role := parley.MemberRoleMember
		if f.ByUserID == me {
			role = parley.MemberRoleOwner
		}
		f.Conversation.Me = &parley.Member{UserID: me, Role: role, JoinedAt: f.Conversation.CreatedAt}
	}
	switch f.Action {
	case "created", "member_added":
		r.c.crypt.forgetRecipients(id, "", 0)
		if aboutMe {
			if r.fullSeen != nil {
				r.fullSeen[id] = true // joined during a full-state pass: keep it
			}
			cs := r.conv(id)
			if !cs.known {
				// Live delivery starts after last_seq.
				cs.known, cs.heldUpto = true, f.Conversation.LastSeq
				r.drainAhead(cs)
			}
		}
	case "member_removed":
		r.c.crypt.forgetRecipients(id, "", 0)
		if aboutMe {
			delete(r.convs, id)
		}
	case "deleted":
		delete(r.convs, id)
	}
	if f.Conversation.MembersPaged && f.Conversation.Me == nil {
		// The frame is the same for every member: the user's own entry,
		// if the change is about the user, is among the members it names.
		for i := range f.Members {
			if f.Members[i].UserID == me {
				m := f.Members[i]
				f.Conversation.Me = &m
			}
		}
	}
	r.emit(Event{Kind: EventConversation, ConversationID: id, Conversation: &ConversationChange{Action: f.Action,
		Conversation: f.Conversation, UserIDs: f.UserIDs, Members: f.Members, ByUserID: f.ByUserID}})
}

// onTick: delivered reports, send retries, liveness, token renewal.
func (r *realtime) onTick(now time.Time) error {
	if !r.flushAt.IsZero() && !now.Before(r.flushAt) && r.synced {
		r.flushDelivered()
	}
	r.pump()
	r.pumpGaps() // a backfill that failed is tried again
	r.onE2EETick(now)
	if r.conn != nil && now.Sub(r.conn.LastRead()) > 2*r.pingEvery+10*time.Second {
		return parley.Errorf(parley.CodeUnavailable, "nothing from the server for %v", now.Sub(r.conn.LastRead()).Round(time.Second))
	}
	if !r.renewAt.IsZero() && now.After(r.renewAt) && !r.renewing {
		r.renewing = true
		conn := r.conn
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := r.c.Refresh(ctx)
			r.post(func() {
				if r.conn != conn { // reconnected meanwhile: the new connection has a fresh token
					return
				}
				if err != nil {
					r.c.log.Warn("parley: token renewal", "err", err)
					r.renewing = false
					r.renewAt = time.Now().Add(10 * time.Second)
					return
				}
				r.request("a", OutFrame{Type: "auth", AccessToken: r.c.Tokens().AccessToken}, func(f *InFrame) {
					r.renewing = false
					if f.Type == frameAuthenticated {
						r.scheduleRenewal(f.TokenExpiresAt)
					} else {
						r.renewAt = time.Now().Add(10 * time.Second)
					}
				})
			})
		}()
	}
	return nil
}

// deliveredPrefix starts the id of a delivered report.
const deliveredPrefix = "d:"
