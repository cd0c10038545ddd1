package wsgate

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

// Coalescing: several frames bound for one socket leave in one write(2).
//
// Under load the bus hands the hub events in bursts: the subscription
// already holds the next events when one is handled (parley.BatchSubscriber
// says so with each event). While a burst is open (hub.open > 0) a frame
// for a session on nbio's poller is not written at once: it is appended,
// framed by nbio's own websocket.Conn (appendFrame), to the session's out
// buffer, whoever writes it (the hub's fan-out, the ack of a send, a
// reply), and when the burst ends (an event comes with no other waiting,
// or maxBurst events were handled) every such session's buffer goes out
// in one Write on its nbio.Conn. When no burst is open (a lone event, an
// idle server) frames are written at once, one by one, as before: no
// timer, no added latency. A session's frames keep their order: once it
// holds frames every later frame joins them until they are written.
//
// A large fan-out (a conversation with fanOutMin or more local members)
// holds its frame the same way outside a burst: under h.mu each
// recipient's session takes the frame's framing (shared, not copied) and
// goes on the fan-out's list; once h.mu is released the list is written
// by up to GOMAXPROCS-1 goroutines (hub.unlock, writeOut); a burst's list
// is written the same way when it holds a large fan-out's frame, and
// otherwise one by one, as before. So one goroutine no longer makes every
// write(2) of a 10,000-member group under the hub's lock, while every
// session still gets its frames in the order the hub decided them.
//
// nbio.Conn.Write is non-blocking: what the socket does not take is
// queued by nbio and flushed on write readiness, and a queue past
// MaxWriteBuffer closes the connection (the slow-consumer rule, as for
// WriteMessage). In blocking mode (in-process TLS) nbio's send queue
// carries frame by frame and nothing is held here.

// maxBurst bounds the events whose frames are held before they are
// written: under steady load the held frames go out at least every
// maxBurst events (a few hundred microseconds of the hub's work).
const maxBurst = 64

// maxHeldBytes bounds one session's held frames; past it they are written
// at once (nbio's own write cache has the same bound).
const maxHeldBytes = 64 << 10

// outFrame is one frame's payload for one or more sessions, and nbio's
// framing of it, made on first need and shared by the sessions that hold
// it. It is used by one goroutine at a time.
type outFrame struct {
	data   []byte
	framed []byte
}

// frame returns f's framing, made on the first call. Its capacity is its
// length, so that an append to a slice of it copies instead of writing
// into what other sessions hold.
func (f *outFrame) frame(g *Gateway) []byte {
	if f.framed == nil {
		b := g.appendFrame(nil, f.data)
		f.framed = b[:len(b):len(b)]
	}
	return f.framed
}

var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// send writes f to s, or holds it while a burst is open or s holds
// frames already.
func (s *session) send(f *outFrame) { s.put(f, nil) }

// put is send for the hub's fan-out (caller holds h.mu). With fan set (a
// conversation with many local members, see hub.fanList) a frame that
// send would write at once is held too, and s is appended to *fan, for
// the caller to write once h.mu is released (hub.unlock), over several
// goroutines (writeOut). The held bytes are then f's framing itself,
// shared with the fan-out's other sessions, not a copy: s.shared says so,
// and a frame that joins them later (an ack) appends to a copy. (In a
// burst the frame goes to a pooled buffer, as any, since more are likely
// to join it.)
//
// Either way a session's frames keep their order: from the moment a
// frame is held, every later frame for the session, whoever writes it,
// joins it until the holder writes them together (release).
func (s *session) put(f *outFrame, fan *[]*session) {
	c := s.c()
	if c == nil {
		return
	}
	h := s.g.hub
	s.mu.Lock()
	if s.out == nil && (fan != nil || h.open.Load() > 0) && rawConn(c) != nil {
		held := false
		if h.open.Load() > 0 {
			h.bmu.Lock()
			if held = h.open.Load() > 0; held { // else the burst ended meanwhile
				h.dirty = append(h.dirty, s)
				h.dirtyBig = h.dirtyBig || fan != nil
			}
			h.bmu.Unlock()
		}
		if held {
			s.out = outBufs.Get().(*[]byte)
		} else if fan != nil {
			*fan = append(*fan, s)
			framed := f.frame(s.g)
			s.out, s.shared = &framed, true
			s.mu.Unlock()
			return
		}
	}
	if s.out != nil {
		*s.out = append(*s.out, f.frame(s.g)...)
		if len(*s.out) >= maxHeldBytes {
			s.writeHeld(c)
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	err := c.WriteMessage(websocket.TextMessage, f.data)
	if errors.Is(err, websocket.ErrMessageSendQuqueIsFull) {
		// In-process TLS runs nbio in blocking mode, where the write
		// queue is bounded in frames (sendQueueFrames), not by
		// MaxWriteBuffer: the same slow-consumer rule, applied here.
		s.g.cfg.Metrics.Closed("slow_consumer")
		_ = c.Close()
		return
	}
	s.wrote(err)
}

// wrote counts a write that found the connection's queue over
// MaxWriteBuffer: nbio has closed it (a slow consumer).
func (s *session) wrote(err error) {
	if errors.Is(err, nbio.ErrOverflow) {
		s.g.cfg.Metrics.Closed("slow_consumer")
	}
}

// writeHeld writes the held frames in one Write, keeping the buffer (the
// session stays in hub.dirty or its fan-out's list). Caller holds s.mu.
func (s *session) writeHeld(c wsConn) {
	if s.out == nil || len(*s.out) == 0 {
		return
	}
	if w := rawConn(c); w != nil {
		_, err := w.Write(*s.out)
		s.wrote(err)
	}
	if s.shared {
		*s.out = nil // the next frame must not go into the shared framing
	} else {
		*s.out = (*s.out)[:0]
	}
}

// release writes the held frames and gives the buffer back.
func (s *session) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return
	}
	if c := s.c(); c != nil {
		s.writeHeld(c)
	}
	if !s.shared && cap(*s.out) <= 4*maxHeldBytes {
		*s.out = (*s.out)[:0]
		outBufs.Put(s.out)
	}
	s.out, s.shared = nil, false
}

// flush writes what every session holds, and with end closes one burst.
func (h *hub) flush(end bool) {
	h.bmu.Lock()
	dirty, big := h.dirty, h.dirtyBig
	h.dirty, h.dirtyBig = nil, false
	if end && h.open.Load() > 0 { // Shutdown may have closed every burst
		h.open.Add(-1)
	}
	h.bmu.Unlock()
	if big { // a large fan-out's frame among them: spread, as unlock does
		writeOut(dirty)
		return
	}
	for _, s := range dirty {
		s.release()
	}
}

// fanOutShare is the fewest sessions worth a writer goroutine of their
// own: about 0.5 ms of write(2)s, against a few microseconds to start
// and join one.
const fanOutShare = 64

// writeOut writes what each of sessions holds and gives its buffer back.
// Fewer than 2*fanOutShare sessions it writes itself, one by one, as
// before; more are cut into contiguous shares of at least fanOutShare,
// at most GOMAXPROCS-1 of them (a core is left to nbio's pollers, the
// bus and the store, and on a 2-core node the caller writes alone),
// written beside each other, the first by the caller. It returns when
// every share is written. A session is on one list at a
// time (the one its put registered it on), so no two writers ever take
// the same connection, and a session's frames keep their order (put).
func writeOut(sessions []*session) {
	k := min(runtime.GOMAXPROCS(0)-1, len(sessions)/fanOutShare)
	if k <= 1 {
		for _, s := range sessions {
			s.release()
		}
		return
	}
	per := (len(sessions) + k - 1) / k
	var wg sync.WaitGroup
	for from := per; from < len(sessions); from += per {
		share := sessions[from:min(from+per, len(sessions))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, s := range share {
				s.release()
			}
		}()
	}
	for _, s := range sessions[:per] {
		s.release()
	}
	wg.Wait()
}

// batchHandler returns the handler of one batch subscription: it opens a
// burst when more events wait, and writes the held frames when none does,
// or every maxBurst events. After each event w follows the subscription's
// backlog (backpressure.go).
func (h *hub) batchHandler(w *lagWatch) func(subject string, data []byte, more bool) {
	held := false // this subscription counts in h.open
	n := 0
	return func(subject string, data []byte, more bool) {
		if more && !held {
			h.bmu.Lock()
			h.open.Add(1)
			h.bmu.Unlock()
			held = true
		}
		if data != nil { // nil: an event the bus dropped, ending a burst
			h.onEvent(subject, data)
		}
		w.observe(more)
		if !held {
			return
		}
		if n++; more && n < maxBurst {
			return
		}
		n = 0
		if !more {
			held = false
		}
		h.flush(!more)
	}
}

// endBursts closes every burst and writes what is held: after the
// subscriptions are closed, no event may come to end one.
func (h *hub) endBursts() {
	h.bmu.Lock()
	h.open.Store(0)
	h.bmu.Unlock()
	h.flush(false)
}

// rawWriter is implemented by test connections that take whole frames.
type rawWriter interface {
	raw() io.Writer
}

// rawConn returns the connection's nbio.Conn, which takes whole frames in
// one Write, for a connection on nbio's poller; nil in blocking mode (the
// in-process TLS), where every frame must go through nbio's send queue.
func rawConn(c wsConn) io.Writer {
	switch c := c.(type) {
	case *websocket.Conn:
		if c.IsBlockingMod() || c.IsAsyncWrite() {
			return nil
		}
		if nc, ok := c.UnderlayerConn().(*nbio.Conn); ok {
			return nc
		}
	case rawWriter:
		return c.raw()
	}
	return nil
}

// frameSink is the net.Conn of the websocket.Conn that frames for
// appendFrame: nbio's writeFrame calls only Write.
type frameSink struct {
	net.Conn // nil: never called
	buf      []byte
}

func (s *frameSink) Write(b []byte) (int, error) {
	s.buf = append(s.buf, b...)
	return len(b), nil
}

// framer is a websocket.Conn over a frameSink: nbio's framing (header,
// fragmentation past MaxWebsocketFramePayloadSize), written to memory.
type framer struct {
	ws   *websocket.Conn
	sink frameSink
}

// appendFrame appends the text frame of data, as nbio writes it, to dst.
func (g *Gateway) appendFrame(dst, data []byte) []byte {
	f, _ := g.framers.Get().(*framer)
	if f == nil {
		f = &framer{}
		u := websocket.NewUpgrader()
		u.Engine = g.engine
		f.ws = websocket.NewServerConn(u, &f.sink, "", false, false)
	}
	f.sink.buf = dst
	_ = f.ws.WriteMessage(websocket.TextMessage, data) // the sink never fails
	dst = f.sink.buf
	f.sink.buf = nil
	g.framers.Put(f)
	return dst
}
