package wsgate

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio/nbhttp/websocket"
	"golang.org/x/time/rate"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// session is one authenticated connection of one device. It holds no
// goroutine while idle: nbio's pool calls onMessage, requests that reach
// the store wait on a small FIFO drained by a goroutine that exists only
// while there is work, so a device's own requests keep their order and the
// pool never waits for a commit.
type session struct {
	g *Gateway
	// conn holds the wsConn. nbio may read (and call onMessage) before
	// the upgrade call returns, so it is set by whichever comes first.
	conn atomic.Value
	p    parley.Principal
	user *userEntry // set by the hub on attach
	exp  atomic.Int64

	mu       sync.Mutex
	queue    []ClientFrame
	draining bool
	attached bool // the hub set live delivery up; requests may run
	closed   bool
	// shared says that out holds a fan-out's framing shared with other
	// sessions, not a buffer of outBufs (coalesce.go). Under mu.
	shared bool
	// lastRead is the gateway clock when the last frame (pongs
	// included) arrived; the heartbeat closes the connection when it is
	// older than IdleTimeout. 4 bytes beside the flags keep the session
	// in its 192-byte size class.
	lastRead atomic.Uint32

	// out holds the frames, framed by nbio, held for the hub's burst or
	// a large fan-out (coalesce.go); nil while the session is on neither
	// hub.dirty nor a fan-out's list. Under mu.
	out *[]byte
	lim *limiters // made on first use
}

// limiters are a session's rate limiters, made on first use: an idle
// connection has none, which keeps the session in its 192-byte size class.
type limiters struct {
	send, typing, req *rate.Limiter
}

// wsConn is the part of nbio's *websocket.Conn a session uses (tests
// substitute a recorder). Its methods are safe for concurrent use.
type wsConn interface {
	WriteMessage(mt websocket.MessageType, data []byte) error
	WriteClose(code int, reason string) error
	Close() error
}

func newSession(g *Gateway, p *parley.Principal) *session {
	s := &session{g: g, p: *p}
	s.exp.Store(p.ExpiresAt.UnixNano())
	s.touch() // the idle timeout counts from the handshake
	return s
}

// touch records that a frame arrived.
func (s *session) touch() { s.lastRead.Store(s.g.clock()) }

func (s *session) setConn(c wsConn) { s.conn.CompareAndSwap(nil, c) }

// c returns the connection; nil only before the upgrade completed.
func (s *session) c() wsConn {
	c, _ := s.conn.Load().(wsConn)
	return c
}

func (s *session) expiresAt() time.Time { return time.Unix(0, s.exp.Load()) }

// write sends one encoded frame: at once, unless a burst is open
// (coalesce.go). nbio queues what the socket cannot take at once and
// drops the connection past MaxWriteBuffer (a slow consumer).
func (s *session) write(data []byte) {
	s.send(&outFrame{data: data})
}

func (s *session) writeFrame(frame any) {
	data, err := Encode(frame)
	if err != nil {
		s.g.log.Error("encode frame", "err", err)
		return
	}
	s.write(data)
}

func (s *session) writeError(id string, err error) {
	if parley.ErrorCode(err) == parley.CodeInternal {
		s.g.log.Error("websocket request", "user_id", s.p.UserID, "err", err)
	}
	s.writeFrame(ErrorFrameFor(id, err))
}

// closeWith sends a close frame, after any frames held for the hub's
// burst, and closes the connection.
func (s *session) closeWith(code int, reason string) {
	if c := s.c(); c != nil {
		s.mu.Lock()
		s.writeHeld(c)
		s.mu.Unlock()
		_ = c.WriteClose(code, reason)
		_ = c.Close()
	}
}

// onMessage runs on nbio's pool, in order per connection.
func (s *session) onMessage(c *websocket.Conn, mt websocket.MessageType, data []byte) {
	s.setConn(c)
	s.receive(mt, data)
}

// receive handles one frame from the client: answers what needs no
// store at once, queues the rest.
func (s *session) receive(mt websocket.MessageType, data []byte) {
	s.touch()
	if mt != websocket.TextMessage {
		s.g.cfg.Metrics.Frame("")
		s.writeError("", parley.Errorf(parley.CodeInvalidRequest, "frames are JSON text frames"))
		return
	}
	f, err := DecodeClientFrame(data, s.g.cfg.MaxFrame)
	s.g.cfg.Metrics.Frame(f.Type)
	if err != nil {
		s.writeError(f.ID, err)
		return
	}
	if f.Type == FramePing {
		s.writeFrame(PongFrame{Type: FramePong, ID: f.ID})
		return
	}
	if retry := s.allow(&f); retry > 0 {
		s.writeError(f.ID, &service.RetryError{RetryAfter: retry, Err: parley.Errorf(parley.CodeRateLimited,
			"too many %s frames on this connection; retry after %d s", f.Type, service.RetryAfterSeconds(retry))})
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= s.g.cfg.QueueDepth {
		s.mu.Unlock()
		s.writeError(f.ID, parley.Errorf(parley.CodeRateLimited, "too many requests waiting; wait for replies"))
		return
	}
	if s.g.closing.Load() {
		s.mu.Unlock()
		s.writeError(f.ID, parley.Errorf(parley.CodeUnavailable, "the server is shutting down; reconnect"))
		return
	}
	s.queue = append(s.queue, f)
	start := s.attached && !s.draining
	if start {
		s.draining = true
	}
	s.mu.Unlock()
	if start {
		go s.drain()
	}
}

// allow applies the per-connection rate limits: 0 if f may go, else how
// long until it could. (Sends are also limited per user, in the core.)
func (s *session) allow(f *ClientFrame) time.Duration {
	if s.g.cfg.LimitsOff {
		return 0
	}
	c := &s.g.cfg
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lim == nil {
		s.lim = &limiters{}
	}
	var lim **rate.Limiter
	var r float64
	var b int
	switch f.Type {
	case FrameSend:
		lim, r, b = &s.lim.send, c.SendRate, c.SendBurst
	case FrameTyping:
		lim, r, b = &s.lim.typing, c.TypingRate, c.TypingBurst
	default:
		lim, r, b = &s.lim.req, c.RequestRate, c.RequestBurst
	}
	if *lim == nil {
		*lim = rate.NewLimiter(rate.Limit(r), b)
	}
	now := time.Now()
	res := (*lim).ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// ready lets queued requests run once live delivery is set up.
func (s *session) ready() {
	s.mu.Lock()
	s.attached = true
	start := len(s.queue) > 0 && !s.draining && !s.closed
	if start {
		s.draining = true
	}
	s.mu.Unlock()
	if start {
		go s.drain()
	}
}

// drain runs the queued requests in order. A run of sends and receipts
// at the head of the queue goes together (see handleRun): the sends to the
// store at once, so that a client pipelining sends gets them into one group
// commit rather than one commit each; any other request runs alone.
func (s *session) drain() {
	s.g.draining.Add(1)
	defer s.g.draining.Add(-1)
	var run []ClientFrame
	for {
		s.mu.Lock()
		if len(s.queue) == 0 || s.closed {
			s.queue = nil
			s.draining = false
			s.mu.Unlock()
			return
		}
		n := 0
		for n < len(s.queue) && batchable(s.queue[n].Type) {
			n++
		}
		if n == 0 {
			n = 1
		}
		run = append(run[:0], s.queue[:n]...)
		clear(s.queue[:n])
		s.queue = s.queue[n:]
		s.mu.Unlock()
		if batchable(run[0].Type) {
			s.handleRun(run)
		} else {
			s.handle(&run[0])
		}
		clear(run)
	}
}

// batchable says whether frames of type t may be handled as part of a run
// (handleRun).
func batchable(t string) bool {
	return t == FrameSend || t == FrameDelivered || t == FrameRead
}

// handleRun handles a run of consecutive send, delivered and read frames.
// The sends go to the core together (service.SendMany), in their order:
// messages of one conversation get rising seqs in that order, they share
// group commits, and their acks (or errors) are written in that order,
// each as soon as it and those before it are known.
// Then the receipts, coalesced per kind and conversation: one raise to the
// highest seq of each, the same watermarks as one raise per frame (a
// watermark only rises), for one store write and at most one event.
// Receipts run after the sends of the run even if they came first: a
// receipt only reports how far the client got, so it may be late, and
// nothing a send does depends on one.
func (s *session) handleRun(run []ClientFrame) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var sends []*ClientFrame
	for i := range run {
		if run[i].Type == FrameSend {
			sends = append(sends, &run[i])
		}
	}
	if len(sends) > 0 {
		// Back-pressure: while delivery is behind, hold the sends
		// (and so their acks) until it catches up (backpressure.go).
		if d := s.g.press.hold(ctx); d > 0 {
			s.g.cfg.Metrics.SendsHeld(len(sends), d)
		}
	}
	if len(sends) == 1 {
		s.handle(sends[0])
	} else if len(sends) > 1 {
		reqs := make([]service.SendRequest, len(sends))
		for i, f := range sends {
			reqs[i] = sendRequest(f)
		}
		s.g.core.SendMany(ctx, &s.p, reqs, func(i int, r service.SendResult) {
			if r.Err != nil {
				s.writeError(sends[i].ID, r.Err)
				return
			}
			s.writeFrame(AckFrame{Type: FrameAck, ID: sends[i].ID, Message: r.Message})
		})
	}
	for i := range run {
		f := &run[i]
		if f.Type == FrameSend || f.Seq == nil {
			continue
		}
		// The highest seq of this kind and conversation, and every
		// frame it stands for (all of them hear of an error).
		ids := []string{f.ID}
		seq := *f.Seq
		for j := i + 1; j < len(run); j++ {
			g := &run[j]
			if g.Type == f.Type && g.ConversationID == f.ConversationID && g.Seq != nil {
				ids = append(ids, g.ID)
				seq = max(seq, *g.Seq)
				g.Seq = nil // taken
			}
		}
		var err error
		if f.Type == FrameDelivered {
			_, _, err = s.g.core.MarkDelivered(ctx, &s.p, f.ConversationID, seq)
		} else {
			_, err = s.g.core.MarkRead(ctx, &s.p, f.ConversationID, seq)
		}
		if err != nil {
			for _, id := range ids {
				s.writeError(id, err)
			}
		}
	}
}

func sendRequest(f *ClientFrame) service.SendRequest {
	req := service.SendRequest{ConversationID: f.ConversationID, ClientMsgID: f.ClientMsgID, Type: f.MessageType, Body: f.Body, TTLSeconds: f.TTLSeconds, Attachments: f.Attachments}
	if f.Envelope != nil {
		req.Envelope = f.Envelope.Envelope()
	}
	return req
}

// requestTimeout bounds one request's work in the core.
const requestTimeout = 30 * time.Second

func (s *session) handle(f *ClientFrame) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	c := s.g.core
	var err error
	switch f.Type {
	case FrameSend:
		var m *parley.Message
		m, _, err = c.Send(ctx, &s.p, sendRequest(f))
		if err == nil {
			s.writeFrame(AckFrame{Type: FrameAck, ID: f.ID, Message: m})
		}
	case FrameDelivered:
		_, _, err = c.MarkDelivered(ctx, &s.p, f.ConversationID, *f.Seq)
	case FrameRead:
		_, err = c.MarkRead(ctx, &s.p, f.ConversationID, *f.Seq)
	case FrameTyping:
		err = c.Typing(ctx, &s.p, f.ConversationID, f.State)
	case FrameSync:
		limit := 0
		if f.Limit != nil {
			limit = *f.Limit
		}
		var res *service.SyncResult
		if res, err = c.Sync(ctx, &s.p, f.Position, limit); err == nil {
			s.writeFrame(syncFrame(f.ID, res))
		}
	case FrameHistory:
		var msgs []parley.Message
		q := f.HistoryQuery()
		if msgs, err = c.History(ctx, &s.p, f.ConversationID, q); err == nil {
			msgs, cut := trimToBudget(msgs, q.Forwards())
			s.writeFrame(HistoryResultFrame{Type: FrameHistoryResult, ID: f.ID, ConversationID: f.ConversationID, Messages: msgs, Truncated: cut})
		}
	case FrameAuth:
		err = s.renew(ctx, f)
	}
	if err != nil {
		s.writeError(f.ID, err)
	}
}

// renew extends the connection's life with a fresh access token of the
// same session.
func (s *session) renew(ctx context.Context, f *ClientFrame) error {
	p, err := s.g.core.Authenticate(ctx, f.AccessToken)
	if err != nil {
		return err
	}
	if p.UserID != s.p.UserID || p.DeviceID != s.p.DeviceID || p.SessionID != s.p.SessionID {
		return parley.Errorf(parley.CodeUnauthorized, "the token belongs to another session")
	}
	if p.ExpiresAt.After(s.expiresAt()) {
		s.exp.Store(p.ExpiresAt.UnixNano())
	}
	s.writeFrame(AuthenticatedFrame{Type: FrameAuthenticated, ID: f.ID, TokenExpires: s.expiresAt().UTC()})
	return nil
}

// trimToBudget cuts an ascending page to ReplyBudget: paging forward it
// keeps the oldest messages, otherwise the newest, so the client can go on
// from the edge it received. It reports whether it cut.
func trimToBudget(msgs []parley.Message, forward bool) ([]parley.Message, bool) {
	total := 0
	for i := range msgs {
		j := i
		if !forward {
			j = len(msgs) - 1 - i
		}
		total += messageCost(&msgs[j])
		if total > ReplyBudget && i > 0 {
			if forward {
				return msgs[:j], true
			}
			return msgs[j+1:], true
		}
	}
	return msgs, false
}

func syncFrame(id string, res *service.SyncResult) SyncResultFrame {
	out := SyncResultFrame{Type: FrameSyncResult, ID: id, Position: res.Position, HasMore: res.HasMore, FullState: res.FullState, Conversations: make([]SyncConversation, len(res.Conversations))}
	for i := range res.Conversations {
		sc := &res.Conversations[i]
		c := SyncConversation{Removed: sc.Removed, Messages: sc.Messages, MoreMessages: sc.MoreMessages}
		if sc.Removed {
			c.Conversation = ConversationRef{ID: sc.View.ID}
		} else {
			conv := sc.View.Conversation
			c.Conversation = &conv
			c.ReadSeq, c.UnreadCount, c.MutedUntil = sc.View.ReadSeq, sc.View.UnreadCount, sc.View.MutedUntil
		}
		if c.Messages == nil {
			c.Messages = []parley.Message{}
		}
		out.Conversations[i] = c
	}
	return out
}

func (s *session) onClose() {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.queue = nil
	s.mu.Unlock()
	if !already {
		// Never inside an nbio callback that a hub write may have
		// triggered while holding the hub's lock.
		go s.g.hub.detach(s)
	}
}
