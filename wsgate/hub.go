package wsgate

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// hub is the node's index of live sessions: user -> sessions and
// conversation -> local members, with each conversation's live delivery
// state. Bus events arrive on one goroutine per subscription; the hub
// decides which local sessions get each and writes the frame, encoded
// once, to each of them.
//
// Order: new messages of a conversation go out in seq order on every
// connection. delivered is the last seq sent to this node's sessions; a
// message that arrives ahead of a missing predecessor is held for GapWait,
// then the gap is read from the store (a seq the store no longer returns
// expired or was purged and is skipped). Everything is under one mutex;
// nbio writes never block (they queue), so holding it while writing a
// few frames is cheap.
//
// Large conversations: a frame for a conversation with fanOutMin or more
// local members is not written under the mutex. Each recipient session
// holds it (session.put), which fixes its place in the session's order,
// and the sessions go on h.fan; unlock releases the mutex and then
// writes them over several goroutines (coalesce.go). Every path that
// sends to a conversation's members (sendTo, sendMessage, sendEncrypted)
// releases the mutex with unlock, never with mu.Unlock.
//
// Bursts: while a bus subscription has more events waiting (open > 0),
// the frames written to sessions are held per session and written when
// the burst ends, each session's in one write(2) (coalesce.go); otherwise
// they are written at once.
type hub struct {
	g     *Gateway
	mu    sync.Mutex
	users map[string]*userEntry
	convs map[convKey]*convEntry
	// fan lists the sessions holding a large fan-out's frame, for unlock
	// to write; nil unless one is pending. Under mu.
	fan *[]*session
	// open counts the subscriptions in a burst (changed under bmu);
	// dirty holds the sessions with frames held for it (session.out set).
	bmu   sync.Mutex
	open  atomic.Int32
	dirty []*session
	// dirtyBig says a large fan-out's frame is held in dirty: flush then
	// spreads the writes (writeOut), else it makes them one by one.
	dirtyBig bool
	// leaving holds the grace timers of users whose last session closed.
	leaving map[string]*time.Timer

	presenceMu   sync.Mutex
	presenceQ    []presenceNews
	presenceWake chan struct{}
	presenceStop chan struct{}
}

type userEntry struct {
	id       string
	sessions []*session
	convs    []*convEntry
	// attaching counts sessions between begin and finish; membership
	// events about the user are recorded in pending meanwhile.
	attaching int
	pending   []*service.Event
}

// convEntry is one conversation with local members. It is kept small
// (48 bytes, and a 16-byte key in hub.convs): a node holds one per
// conversation of every connected user, most of them direct
// conversations, so two members are kept inline and whatever is rare
// (more members, an open gap) lives in x.
type convEntry struct {
	id        convKey
	delivered int64
	m         [2]*userEntry // the first two local members; m[0] is set first
	x         *convExtra    // nil unless more than two members or a gap
}

// convExtra is the rarely needed part of a convEntry.
type convExtra struct {
	more     []*userEntry          // local members past the first two
	held     map[int64]heldMessage // nil while nothing is held
	failures int32                 // consecutive failed gap fills
	filling  bool
}

// all ranges over the conversation's local members.
func (c *convEntry) all(yield func(*userEntry) bool) {
	for _, u := range c.m {
		if u == nil || !yield(u) {
			return
		}
	}
	if c.x != nil {
		for _, u := range c.x.more {
			if !yield(u) {
				return
			}
		}
	}
}

// empty reports whether no local member is left.
func (c *convEntry) empty() bool { return c.m[0] == nil }

// add makes u a member unless it is one.
func (c *convEntry) add(u *userEntry) bool {
	for o := range c.all {
		if o == u {
			return false
		}
	}
	switch {
	case c.m[0] == nil:
		c.m[0] = u
	case c.m[1] == nil:
		c.m[1] = u
	default:
		c.ext().more = append(c.ext().more, u)
	}
	return true
}

// remove drops u, moving the last member into its place.
func (c *convEntry) remove(u *userEntry) {
	var last *userEntry
	switch {
	case c.x != nil && len(c.x.more) > 0:
		n := len(c.x.more) - 1
		last = c.x.more[n]
		c.x.more[n] = nil
		c.x.more = c.x.more[:n]
	case c.m[1] != nil:
		last, c.m[1] = c.m[1], nil
	default:
		last, c.m[0] = c.m[0], nil
	}
	if last != u {
		for i, o := range c.m {
			if o == u {
				c.m[i] = last
				break
			}
		}
		if c.x != nil {
			for i, o := range c.x.more {
				if o == u {
					c.x.more[i] = last
					break
				}
			}
		}
	}
	c.tidy()
}

// ext returns the extra part, making it.
func (c *convEntry) ext() *convExtra {
	if c.x == nil {
		c.x = &convExtra{}
	}
	return c.x
}

// tidy drops the extra part when it holds nothing.
func (c *convEntry) tidy() {
	if x := c.x; x != nil && len(x.more) == 0 && len(x.held) == 0 && !x.filling && x.failures == 0 {
		c.x = nil
	}
}

// holding is the number of messages held behind a gap.
func (c *convEntry) holding() int {
	if c.x == nil {
		return 0
	}
	return len(c.x.held)
}

// convKey is a conversation id (a UUID) in its 16 bytes.
type convKey [16]byte

// keyOf parses a conversation id; ok is false for anything but the
// canonical UUID form the store issues (such ids match no entry).
func keyOf(id string) (k convKey, ok bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return k, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if id[i] == '-' {
			i--
			continue
		}
		hi, ok1 := unhex(id[i])
		lo, ok2 := unhex(id[i+1])
		if !ok1 || !ok2 {
			return convKey{}, false
		}
		k[j] = hi<<4 | lo
		j++
	}
	return k, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// String is the canonical form of the id.
func (k convKey) String() string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 36)
	for i, x := range k {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[x>>4], digits[x&15])
	}
	return string(b)
}

// conv returns the entry of a conversation id, or nil. Caller holds h.mu.
func (h *hub) conv(id string) *convEntry {
	k, ok := keyOf(id)
	if !ok {
		return nil
	}
	return h.convs[k]
}

type heldMessage struct {
	msg   *parley.Message
	frame []byte
}

type presenceNews struct {
	userID   string
	online   bool
	lastSeen time.Time
	// list asks for the online contacts of the user to be written to
	// this new session (listOnline; runPresence lists a user's new
	// sessions of one batch together).
	list *session
	// attempt counts retries of news that failed (the directory or the
	// store was unreachable).
	attempt int
}

// Retries of presence news that failed: doubling from presenceRetryFirst,
// up to presenceRetries attempts (about two minutes in all).
const (
	presenceRetryFirst = time.Second
	presenceRetries    = 7
)

// maxHeld bounds the messages held per conversation while a gap is open;
// past it the gap is filled at once, and if the store cannot be read the
// gap is given up (see fill).
const maxHeld = 256

// maxFillFailures is how many failed store reads a gap gets before it is
// given up.
const maxFillFailures = 5

func newHub(g *Gateway) *hub {
	return &hub{g: g, users: map[string]*userEntry{}, convs: map[convKey]*convEntry{}, leaving: map[string]*time.Timer{},
		presenceWake: make(chan struct{}, 1), presenceStop: make(chan struct{})}
}

// A session joins in two steps so that no membership change is lost
// between the snapshot of the user's conversations and live delivery:
// begin registers the user's interest (membership events about the user
// are recorded from then on), the caller reads the snapshot (last_seq of
// each conversation) without holding the hub, and finish links the
// snapshot, replays the recorded membership events on top of it, and only
// then adds the session and sends "ready". A message of a conversation not
// yet linked is not sent live, but a sync sent after "ready" returns it;
// clients drop duplicates by (conversation, seq).

// begin registers a session's user as attaching.
func (h *hub) begin(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.users[s.p.UserID]
	if u == nil {
		u = &userEntry{id: s.p.UserID}
		h.users[u.id] = u
	}
	u.attaching++
	s.user = u
}

// finish completes an attach with the snapshot seqs (nil after a failed
// read: the session is dropped).
func (h *hub) finish(s *session, seqs map[string]int64) {
	h.mu.Lock()
	u := s.user
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if u.convs == nil {
		u.convs = make([]*convEntry, 0, len(seqs))
	}
	for id, seq := range seqs {
		h.link(u, id, seq)
	}
	for _, e := range u.pending {
		h.applyMembership(u, e)
	}
	u.attaching--
	if u.attaching == 0 {
		u.pending = nil
	}
	if closed || seqs == nil {
		s.user = nil
		h.dropIfIdle(u)
		h.mu.Unlock()
		h.g.sessions.Add(-1)
		return
	}
	replaced := h.replaceOldest(u, s.p.DeviceID)
	if n := h.g.cfg.MaxConnsPerUser; len(u.sessions) >= n {
		// Over the user's cap (and its device is not at its own cap,
		// or a connection would have been replaced): refuse the newest.
		s.user = nil
		h.mu.Unlock()
		h.g.sessions.Add(-1)
		h.g.cfg.Metrics.Closed("too_many_connections")
		s.writeError("", tooManyConnections(n))
		s.closeWith(CloseTooManyConnections, "too many connections for this user")
		return
	}
	first := len(u.sessions) == 0
	u.sessions = append(u.sessions, s) // oldest first: see replaceOldest
	// Back within the grace period: no offline was published, so stop
	// the timer; announce online all the same, for sessions of contacts
	// that attached meanwhile and did not list this user as online.
	if t, ok := h.leaving[u.id]; ok {
		t.Stop()
		delete(h.leaving, u.id)
	}
	announce := first
	s.writeFrame(ReadyFrame{Type: FrameReady, UserID: s.p.UserID, DeviceID: s.p.DeviceID, PingInterval: int(h.g.cfg.PingInterval / time.Second),
		TokenExpires: s.expiresAt().UTC(), MaxFrameBytes: h.g.cfg.MaxFrame})
	h.mu.Unlock()
	for _, o := range replaced {
		h.g.cfg.Metrics.Closed("replaced")
		o.closeWith(CloseReplaced, "replaced by a newer connection of this device")
	}
	if announce {
		h.queuePresence(presenceNews{userID: u.id, online: true})
	}
	// The online contacts whose presence the user may see (the core
	// applies the privacy rules), from the directory or, without one,
	// from this node's sessions.
	h.queuePresence(presenceNews{userID: u.id, list: s})
	s.ready()
}

// applyMembership applies a recorded membership event to u. Caller holds
// h.mu.
func (h *hub) applyMembership(u *userEntry, e *service.Event) {
	switch e.Action {
	case service.ActionCreated, service.ActionMemberAdded:
		h.link(u, e.Conversation.ID, e.Conversation.LastSeq)
	case service.ActionMemberRemoved, service.ActionDeleted:
		if c := h.conv(e.ConversationID); c != nil {
			h.unlink(u, c)
		}
	}
}

// dropIfIdle forgets a user with no session and no attach in progress,
// unlinking it from its conversations. Caller holds h.mu.
func (h *hub) dropIfIdle(u *userEntry) bool {
	if len(u.sessions) > 0 || u.attaching > 0 {
		return false
	}
	for len(u.convs) > 0 {
		h.unlink(u, u.convs[len(u.convs)-1])
	}
	delete(h.users, u.id)
	return true
}

// localOnline returns those of ids with a live session here.
func (h *hub) localOnline(ids []string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var online []string
	for _, id := range ids {
		if u := h.users[id]; u != nil && len(u.sessions) > 0 {
			online = append(online, id)
		}
	}
	return online
}

// link makes u a local member of conversation id, creating its entry with
// delivered = lastSeq if it is new here. Caller holds h.mu.
func (h *hub) link(u *userEntry, id string, lastSeq int64) {
	k, ok := keyOf(id)
	if !ok {
		return
	}
	c := h.convs[k]
	if c == nil {
		c = &convEntry{id: k, delivered: lastSeq}
		h.convs[k] = c
	}
	if c.add(u) {
		u.convs = append(u.convs, c)
	}
}

// unlink removes u from conversation c, dropping c when no local member
// is left. Caller holds h.mu.
func (h *hub) unlink(u *userEntry, c *convEntry) {
	c.remove(u)
	u.convs = removePtr(u.convs, c)
	if c.empty() {
		delete(h.convs, c.id)
	}
}

func removePtr[T any](s []*T, x *T) []*T {
	for i, v := range s {
		if v == x {
			last := len(s) - 1
			s[i] = s[last]
			s[last] = nil
			return s[:last]
		}
	}
	return s
}

// detach unregisters a closed session; the user's last one starts the
// presence grace period.
func (h *hub) detach(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := s.user
	if u == nil || !slices.Contains(u.sessions, s) {
		return // never finished attaching (finish cleans up)
	}
	s.user = nil
	h.g.sessions.Add(-1)
	u.sessions = slices.DeleteFunc(u.sessions, func(o *session) bool { return o == s }) // keeps the order
	if len(u.sessions) > 0 {
		return
	}
	h.dropIfIdle(u)
	id := u.id
	lastSeen := h.g.core.Now() // when the last connection closed
	var t *time.Timer
	t = time.AfterFunc(h.g.cfg.PresenceGrace, func() {
		h.mu.Lock()
		mine := h.leaving[id] == t
		if mine {
			delete(h.leaving, id)
		}
		back := h.users[id] != nil && len(h.users[id].sessions) > 0
		if mine && !back {
			h.queuePresence(presenceNews{userID: id, lastSeen: lastSeen})
		}
		h.mu.Unlock()
	})
	h.leaving[id] = t
}

// replaceOldest makes room for one more connection of deviceID: while
// the device has MaxConnsPerDevice live sessions, its oldest is taken out
// of the hub (as detach would) and returned, for the caller to close
// after releasing h.mu. Caller holds h.mu.
func (h *hub) replaceOldest(u *userEntry, deviceID string) []*session {
	var out []*session
	for h.g.cfg.MaxConnsPerDevice > 0 && h.deviceConns(u, deviceID) >= h.g.cfg.MaxConnsPerDevice {
		i := slices.IndexFunc(u.sessions, func(o *session) bool { return o.p.DeviceID == deviceID })
		o := u.sessions[i]
		u.sessions = slices.Delete(u.sessions, i, i+1)
		o.user = nil
		h.g.sessions.Add(-1)
		out = append(out, o)
	}
	return out
}

// deviceConns counts the live sessions of deviceID. Caller holds h.mu.
func (h *hub) deviceConns(u *userEntry, deviceID string) int {
	n := 0
	for _, o := range u.sessions {
		if o.p.DeviceID == deviceID {
			n++
		}
	}
	return n
}

// admit reports whether a new connection of p would be refused now:
// its user is at MaxConnsPerUser and its device is not at
// MaxConnsPerDevice (which would replace one instead). finish decides
// for good; this is the cheap early refusal at the handshake.
//
// It also points p's strings at equal ones the hub already holds (the
// user entry's id, another session's device and session ids, the role's
// constant), so the sockets of one device keep one copy of each instead
// of the copies decoded from each token (about 160 bytes a connection).
func (h *hub) admit(p *parley.Principal) bool {
	switch p.Role {
	case parley.SystemRoleUser:
		p.Role = parley.SystemRoleUser
	case parley.SystemRoleAdmin:
		p.Role = parley.SystemRoleAdmin
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.users[p.UserID]
	if u == nil {
		return false
	}
	p.UserID = u.id
	for _, o := range u.sessions {
		if o.p.DeviceID == p.DeviceID {
			p.DeviceID = o.p.DeviceID
			if o.p.SessionID == p.SessionID {
				p.SessionID = o.p.SessionID
			}
			break
		}
	}
	return len(u.sessions) >= h.g.cfg.MaxConnsPerUser && h.deviceConns(u, p.DeviceID) < h.g.cfg.MaxConnsPerDevice
}

func tooManyConnections(n int) error {
	return parley.Errorf(parley.CodeLimitExceeded, "this user has %d connections open on this server, the most allowed; close one (or log out a device)", n)
}

// fanOutMin is the number of local members from which a conversation's
// frames are written after h.mu is released, by several goroutines
// (unlock), rather than one by one under it. Below it, as in every
// direct conversation and small group, frames are written at once.
const fanOutMin = 128

var fanLists = sync.Pool{New: func() any { return new([]*session) }}

// fanList returns the list on which the sessions of c hold a frame for
// unlock to write, or nil if c has fewer than fanOutMin local members
// (its frames are written at once). Caller holds h.mu.
func (h *hub) fanList(c *convEntry) *[]*session {
	if c.x == nil || len(c.m)+len(c.x.more) < fanOutMin {
		return nil
	}
	if h.fan == nil {
		h.fan = fanLists.Get().(*[]*session)
	}
	return h.fan
}

// unlock releases h.mu, then writes the frames that a fan-out to a large
// conversation held meanwhile (fanList), spread over up to GOMAXPROCS-1
// goroutines (writeOut), and returns when they are written. A bus
// handler so takes its next event only after its writes, as when it
// wrote under the lock, and its lag (backpressure.go) counts them.
func (h *hub) unlock() {
	fan := h.fan
	h.fan = nil
	h.mu.Unlock()
	if fan == nil {
		return
	}
	writeOut(*fan)
	clear(*fan)
	*fan = (*fan)[:0]
	fanLists.Put(fan)
}

// allSessions snapshots every live session, appended to out[:0] (pass the
// previous snapshot to reuse its memory; nil for a new one).
func (h *hub) allSessions(out []*session) []*session {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(out)
	out = out[:0]
	for _, u := range h.users {
		out = append(out, u.sessions...)
	}
	return out
}

// sendTo writes data to every session of the conversation's local members
// except those of user skip (if set) and of the users in hide. Caller
// holds h.mu and releases it with unlock.
func (h *hub) sendTo(c *convEntry, data []byte, skip string, hide ...string) {
	f := &outFrame{data: data}
	fan := h.fanList(c)
	for u := range c.all {
		if u.id == skip || slices.Contains(hide, u.id) {
			continue
		}
		for _, s := range u.sessions {
			s.put(f, fan)
		}
	}
}

// sendMessage writes a message frame (data, the encoding of m) to the
// conversation's local members. A withheld message goes only to its
// sender's sessions, encoded without the mark: nobody else ever gets it
// live (they see its tombstone by sync or history). An encrypted message
// (data its frame without a key, or nil) goes to each device with its
// own key (see sendEncrypted). Caller holds h.mu and releases it with
// unlock.
func (h *hub) sendMessage(c *convEntry, m *parley.Message, data []byte) {
	if m.Envelope != nil {
		h.sendEncrypted(c, m, data, "")
		return
	}
	if !m.Withheld {
		h.sendTo(c, data, "")
		return
	}
	clean := *m
	clean.Withheld = false
	own, err := Encode(MessageFrame{Type: FrameMessage, Message: &clean})
	if err != nil {
		return
	}
	f := &outFrame{data: own}
	for u := range c.all {
		if u.id != m.SenderID {
			continue
		}
		for _, s := range u.sessions {
			s.send(f)
		}
	}
}

// sendEncrypted writes an encrypted message to the local sessions, each
// device's frame with only that device's key (m.Envelope.Keys holds those
// this node has); with onlyDevice set, only to that device's sessions. A
// withheld message goes only to its sender's sessions. base is the
// frame without any key (encryptedBase, encoded before h.mu was taken;
// nil: encoded here); a device's frame is base with its key spliced in,
// so the hub lock covers one small encoding per local recipient device.
// Caller holds h.mu and releases it with unlock.
func (h *hub) sendEncrypted(c *convEntry, m *parley.Message, base []byte, onlyDevice string) {
	if base == nil {
		var err error
		if base, err = encryptedBase(m); err != nil {
			return
		}
	}
	keys := m.Envelope.Keys
	var byDevice map[string]*parley.EnvelopeKey // for many keys; few are searched
	if len(keys) > 8 {
		byDevice = make(map[string]*parley.EnvelopeKey, len(keys))
		for i := range keys {
			byDevice[keys[i].DeviceID] = &keys[i]
		}
	}
	keyOf := func(device string) *parley.EnvelopeKey {
		if byDevice != nil {
			return byDevice[device]
		}
		for i := range keys {
			if keys[i].DeviceID == device {
				return &keys[i]
			}
		}
		return nil
	}
	var fan *[]*session
	if onlyDevice == "" && !m.Withheld {
		fan = h.fanList(c)
	}
	var frames map[string]*outFrame // by device id
	for u := range c.all {
		if m.Withheld && u.id != m.SenderID {
			continue
		}
		for _, s := range u.sessions {
			device := s.p.DeviceID
			if onlyDevice != "" && device != onlyDevice {
				continue
			}
			f, ok := frames[device]
			if !ok {
				f = &outFrame{data: withKey(base, keyOf(device))}
				if frames == nil {
					frames = map[string]*outFrame{}
				}
				frames[device] = f
			}
			s.put(f, fan)
		}
	}
}

// encryptedBase encodes the message frame of an encrypted message
// without any key (and without the withheld mark, which only its sender
// ever gets live).
func encryptedBase(m *parley.Message) ([]byte, error) {
	clean := *m
	clean.Withheld = false
	clean.Envelope = m.Envelope.Common()
	return Encode(MessageFrame{Type: FrameMessage, Message: &clean})
}

// withKey returns the frame base (from encryptedBase) with key added to
// its envelope; base itself if key is nil. The envelope is the message's
// last field, so base ends with the envelope's, the message's and the
// frame's closing braces; the key goes before them.
func withKey(base []byte, key *parley.EnvelopeKey) []byte {
	if key == nil || !bytes.HasSuffix(base, []byte("}}}")) {
		return base
	}
	out := make([]byte, 0, len(base)+len(key.DeviceID)+len(key.Enc)+len(key.Sealed)+64)
	out = append(out, base[:len(base)-3]...)
	out = append(out, `,"key":`...)
	out = appendKey(out, key)
	return append(out, "}}}"...)
}

// appendKey appends the JSON of k, as Encode writes it. Its strings are
// an id and base64url (checked on the way in), which JSON never escapes;
// anything else goes through the encoder.
func appendKey(b []byte, k *parley.EnvelopeKey) []byte {
	if !plainJSON(k.DeviceID) || !plainJSON(k.Enc) || !plainJSON(k.Sealed) {
		data, err := Encode(k)
		if err != nil {
			return append(b, "null"...)
		}
		return append(b, data...)
	}
	b = append(b, `{"device_id":"`...)
	b = append(b, k.DeviceID...)
	b = append(b, `","key_id":`...)
	b = strconv.AppendInt(b, k.KeyID, 10)
	b = append(b, `,"enc":"`...)
	b = append(b, k.Enc...)
	b = append(b, `","sealed":"`...)
	b = append(b, k.Sealed...)
	return append(b, `"}`...)
}

// plainJSON reports whether s is made of letters, digits, '-' and '_'
// only: its JSON string is s in quotes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// onEvent handles one bus event (on the subscription's goroutine).
func (h *hub) onEvent(_ string, data []byte) {
	var e *service.Event
	if h.g.local != nil {
		e = h.g.local.TakePublished(data) // this node's own: no decoding
	}
	if e == nil {
		e = new(service.Event)
		if err := json.Unmarshal(data, e); err != nil {
			h.g.log.Warn("undecodable bus event", "err", err)
			return
		}
	}
	if e.Message != nil && e.Message.Envelope != nil {
		e.Message.Envelope.Keys = e.Keys // never encoded with the message
	}
	if e.ConversationID != "" || e.Kind == service.EventBlock {
		h.g.core.ObserveEvent(e) // the history and relations caches
	}
	switch e.Kind {
	case service.EventMessage:
		h.onMessage(e)
	case service.EventMessageChanged:
		h.onMessageChanged(e)
	case service.EventReceipt:
		frame := ReceiptFrame{Type: FrameReceipt, ConversationID: e.ConversationID, UserID: e.UserID, DeviceID: e.DeviceID, Kind: e.Receipt, Seq: e.Seq}
		if e.Private {
			h.toUser(e.ConversationID, e.UserID, frame)
		} else {
			h.broadcast(e.ConversationID, "", e.Hide, frame)
		}
	case service.EventTyping:
		frame := TypingFrame{Type: FrameTyping, ConversationID: e.ConversationID, UserID: e.UserID, State: e.State}
		if e.State == "start" {
			frame.ExpiresIn = TypingExpiresIn
		}
		h.broadcast(e.ConversationID, e.UserID, e.Hide, frame)
	case service.EventConversation:
		h.onConversation(e)
	case service.EventPresence:
		h.onPresence(e)
	case service.EventRevoked:
		h.onRevoked(e)
	case service.EventBlock:
		h.onBlock(e)
	case service.EventDeviceList:
		h.onDeviceList(e)
	case service.EventKeyRequest:
		h.onKeyRequest(e)
	case service.EventMessageKey:
		h.onMessageKey(e)
	}
}

// onDeviceList tells the user's own sessions and the local members of
// the user's conversations that the user's device list changed.
func (h *hub) onDeviceList(e *service.Event) {
	data, err := Encode(DeviceListFrame{Type: FrameDeviceList, UserID: e.UserID, Version: e.Seq})
	if err != nil {
		return
	}
	f := &outFrame{data: data}
	h.mu.Lock()
	defer h.unlock()
	seen := map[*userEntry]bool{}
	send := func(u *userEntry, fan *[]*session) {
		if u == nil || seen[u] {
			return
		}
		seen[u] = true
		for _, s := range u.sessions {
			s.put(f, fan)
		}
	}
	send(h.users[e.UserID], nil)
	for _, id := range e.Conversations {
		if c := h.conv(id); c != nil {
			fan := h.fanList(c)
			for u := range c.all {
				send(u, fan)
			}
		}
	}
}

// onKeyRequest tells the sender's sessions that a device asks for a
// message's key again.
func (h *hub) onKeyRequest(e *service.Event) {
	if len(e.Users) != 1 {
		return
	}
	data, err := Encode(KeyRequestFrame{Type: FrameKeyRequest, ConversationID: e.ConversationID, Seq: e.Seq, UserID: e.Users[0], DeviceID: e.DeviceID})
	if err != nil {
		return
	}
	f := &outFrame{data: data}
	h.mu.Lock()
	defer h.mu.Unlock()
	if u := h.users[e.UserID]; u != nil {
		for _, s := range u.sessions {
			s.send(f)
		}
	}
}

// onMessageKey sends an encrypted message again to each local device
// that was just given a key for it, with that key.
func (h *hub) onMessageKey(e *service.Event) {
	m := e.Message
	if m == nil || m.Envelope == nil {
		return
	}
	h.mu.Lock()
	defer h.unlock()
	c := h.conv(m.ConversationID)
	if c == nil || m.Seq > c.delivered {
		return // not out yet here: it goes out in order, and sync has the key
	}
	for _, k := range e.Keys {
		h.sendEncrypted(c, m, nil, k.DeviceID)
	}
}

// TypingExpiresIn is how many seconds a typing start lasts unless
// refreshed.
const TypingExpiresIn = 6

func (h *hub) broadcast(conversationID, skipUser string, hide []string, frame any) {
	data, err := Encode(frame)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.unlock()
	if c := h.conv(conversationID); c != nil {
		h.sendTo(c, data, skipUser, hide...)
	}
}

// toUser sends frame to the sessions of one local member of a
// conversation.
func (h *hub) toUser(conversationID, userID string, frame any) {
	data, err := Encode(frame)
	if err != nil {
		return
	}
	f := &outFrame{data: data}
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.conv(conversationID); c != nil {
		for u := range c.all {
			if u.id == userID {
				for _, s := range u.sessions {
					s.send(f)
				}
			}
		}
	}
}

// onBlock tells the blocker's sessions that one of them blocked or
// unblocked a user.
func (h *hub) onBlock(e *service.Event) {
	if len(e.Users) != 1 {
		return
	}
	data, err := Encode(BlockFrame{Type: FrameBlock, UserID: e.Users[0], Blocked: e.State == "blocked"})
	if err != nil {
		return
	}
	f := &outFrame{data: data}
	h.mu.Lock()
	defer h.mu.Unlock()
	if u := h.users[e.UserID]; u != nil {
		for _, s := range u.sessions {
			s.send(f)
		}
	}
}

// messageFrame encodes the message frame of a message event, once for
// every local session; ok is false for an event without a message.
func messageFrame(e *service.Event) (m *parley.Message, data []byte, ok bool) {
	if e.Message == nil {
		return nil, nil, false
	}
	if e.Message.Envelope != nil {
		data, err := encryptedBase(e.Message) // keys go in per device (sendEncrypted)
		return e.Message, data, err == nil
	}
	data, err := Encode(MessageFrame{Type: FrameMessage, Message: e.Message})
	return e.Message, data, err == nil
}

func (h *hub) onMessage(e *service.Event) {
	m, data, ok := messageFrame(e)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.unlock()
	c := h.conv(m.ConversationID)
	if c == nil || m.Seq <= c.delivered {
		return
	}
	if c.x != nil {
		if _, ok := c.x.held[m.Seq]; ok {
			return // held already, possibly in a newer (edited) version
		}
	}
	if m.Seq == c.delivered+1 && c.holding() == 0 {
		h.deliver(c, m, data)
		return
	}
	h.hold(c, m, data)
}

// hold keeps a message that arrived ahead of its predecessor and arranges
// for the gap to be filled. Caller holds h.mu.
func (h *hub) hold(c *convEntry, m *parley.Message, data []byte) {
	x := c.ext()
	if x.held == nil {
		x.held = map[int64]heldMessage{}
	}
	x.held[m.Seq] = heldMessage{msg: m, frame: data}
	h.release(c)
	if x.held != nil && !x.filling {
		x.filling = true
		wait := h.g.cfg.GapWait
		if len(x.held) >= maxHeld {
			wait = 0
		}
		time.AfterFunc(wait, func() { h.fill(c) })
	}
}

// deliver sends a message in order, unless it expired meanwhile. Caller
// holds h.mu.
func (h *hub) deliver(c *convEntry, m *parley.Message, data []byte) {
	c.delivered = m.Seq
	if !m.ExpiresAt.IsZero() && !m.ExpiresAt.After(h.g.core.Now()) {
		return
	}
	h.sendMessage(c, m, data)
}

// release sends held messages that are next in order. Caller holds h.mu.
func (h *hub) release(c *convEntry) {
	x := c.x
	if x == nil {
		return
	}
	for {
		hm, ok := x.held[c.delivered+1]
		if !ok {
			break
		}
		delete(x.held, hm.msg.Seq)
		h.deliver(c, hm.msg, hm.frame)
	}
	for seq := range x.held {
		if seq <= c.delivered {
			delete(x.held, seq)
		}
	}
	if len(x.held) == 0 {
		x.held = nil
	}
	c.tidy()
}

// fill reads a conversation's gap from the store and delivers it with
// what was held behind it.
//
// While a fill is pending c.x.filling is set, so c.x stays.
func (h *hub) fill(c *convEntry) {
	h.mu.Lock()
	x := c.x
	if h.convs[c.id] != c || len(x.held) == 0 {
		x.filling = false
		c.tidy()
		h.mu.Unlock()
		return
	}
	from := c.delivered
	var upto int64
	for seq := range x.held {
		upto = max(upto, seq)
	}
	var devices []string // the local devices, for the keys of encrypted messages
	for u := range c.all {
		for _, s := range u.sessions {
			if !slices.Contains(devices, s.p.DeviceID) {
				devices = append(devices, s.p.DeviceID)
			}
		}
	}
	h.mu.Unlock()
	h.g.cfg.Metrics.GapFilled()

	var got []parley.Message
	var err error
	for after := from; after < upto; {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var page []parley.Message
		page, err = h.g.core.LiveMessages(ctx, c.id.String(), after, parley.MaxHistoryLimit)
		cancel()
		if err != nil {
			break
		}
		got = append(got, page...)
		if len(page) < parley.MaxHistoryLimit {
			break
		}
		after = page[len(page)-1].Seq
	}
	if err == nil {
		err = h.fillKeys(c.id.String(), got, devices)
	}

	h.mu.Lock()
	defer h.unlock()
	x.filling = false
	if h.convs[c.id] != c {
		return
	}
	if err != nil {
		x.failures++
		h.g.log.Warn("fill live delivery gap", "conversation_id", c.id.String(), "err", err, "attempt", x.failures)
		if x.failures < maxFillFailures && len(x.held) < maxHeld {
			// Try again soon; the held messages wait.
			x.filling = true
			time.AfterFunc(time.Second, func() { h.fill(c) })
			return
		}
		// Give up on the gap rather than stall the conversation: send
		// what is held, in order; clients see the hole in the seqs and
		// fill it with history or sync.
		got = nil
	}
	x.failures = 0
	for i := range got {
		m := &got[i]
		if m.Seq <= c.delivered || m.Seq > upto {
			continue
		}
		if hm, ok := x.held[m.Seq]; ok {
			delete(x.held, m.Seq)
			h.deliver(c, hm.msg, hm.frame)
			continue
		}
		var data []byte
		if m.Envelope != nil {
			data, err = encryptedBase(m)
		} else {
			data, err = Encode(MessageFrame{Type: FrameMessage, Message: m})
		}
		if err != nil {
			continue
		}
		h.deliver(c, m, data)
	}
	// Every seq up to upto that the store did not return expired or was
	// purged: it will never come.
	if c.delivered < upto {
		c.delivered = upto
	}
	h.release(c) // drops c.x only if nothing is held
	if len(x.held) > 0 {
		x.filling = true
		time.AfterFunc(h.g.cfg.GapWait, func() { h.fill(c) })
	}
}

// fillKeys sets the Keys of the encrypted messages among msgs, read from
// the store to fill a gap, to the stored keys of the given devices.
func (h *hub) fillKeys(conversationID string, msgs []parley.Message, devices []string) error {
	var from, to int64
	for i := range msgs {
		if msgs[i].Envelope != nil {
			if from == 0 {
				from = msgs[i].Seq
			}
			to = msgs[i].Seq
		}
	}
	if from == 0 || len(devices) == 0 {
		return nil
	}
	if len(devices) > 1000 {
		devices = nil // every device: fewer rows than a list that long would save
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := h.g.core.LiveKeys(ctx, conversationID, from, to, devices)
	if err != nil {
		return err
	}
	bySeq := map[int64][]parley.EnvelopeKey{}
	for _, k := range keys {
		bySeq[k.Seq] = append(bySeq[k.Seq], k.EnvelopeKey)
	}
	for i := range msgs {
		if e := msgs[i].Envelope; e != nil {
			e.Keys = bySeq[msgs[i].Seq]
		}
	}
	return nil
}

// onMessageChanged forwards an edit or delete to sessions that already
// have the message; one not yet delivered here is held in its edited
// version and goes out, once, when its turn comes.
func (h *hub) onMessageChanged(e *service.Event) {
	m, data, ok := messageFrame(e)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.unlock()
	c := h.conv(m.ConversationID)
	if c == nil {
		return
	}
	if m.Seq <= c.delivered {
		h.sendMessage(c, m, data)
		return
	}
	// The edit overtook the message itself: hold the edited version in
	// its place; it goes out in order (or a gap fill reads it).
	h.hold(c, m, data)
}

func (h *hub) onConversation(e *service.Event) {
	conv := e.Conversation
	var shown any = conv
	if conv == nil { // deleted
		conv = &parley.Conversation{ID: e.ConversationID}
		e.Conversation = conv
		shown = ConversationRef{ID: e.ConversationID}
	}
	frame := ConversationFrame{Type: FrameConversation, Action: e.Action, Conversation: shown, UserIDs: e.Users, Members: e.Members, ByUserID: e.UserID}
	if conv.MembersPaged && e.Action == service.ActionCreated {
		frame.UserIDs = nil // every member: the frame names none (docs/protocol.md)
	}
	data, err := Encode(frame)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.unlock()
	for _, id := range e.Users {
		if u := h.users[id]; u != nil && u.attaching > 0 {
			u.pending = append(u.pending, e)
		}
	}
	switch e.Action {
	case service.ActionCreated, service.ActionMemberAdded:
		for _, id := range e.Users {
			if u := h.users[id]; u != nil {
				h.link(u, conv.ID, conv.LastSeq)
			}
		}
		if c := h.conv(conv.ID); c != nil {
			h.sendTo(c, data, "", e.Hide...)
		}
	case service.ActionMemberRemoved:
		c := h.conv(conv.ID)
		if c == nil {
			return
		}
		h.sendTo(c, data, "")
		for _, id := range e.Users {
			if u := h.users[id]; u != nil {
				h.unlink(u, c)
			}
		}
	case service.ActionDeleted:
		c := h.conv(conv.ID)
		if c == nil {
			return
		}
		h.sendTo(c, data, "")
		for !c.empty() {
			h.unlink(c.m[0], c)
		}
	default: // role_changed and whatever comes later
		if c := h.conv(conv.ID); c != nil {
			h.sendTo(c, data, "")
		}
	}
}

// onPresence tells local users who share a conversation with the user.
func (h *hub) onPresence(e *service.Event) {
	frame := PresenceFrame{Type: FramePresence, UserID: e.UserID, State: e.State}
	if !e.LastSeen.IsZero() {
		t := e.LastSeen
		frame.LastSeen = &t
	}
	data, err := Encode(frame)
	if err != nil {
		return
	}
	f := &outFrame{data: data}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(e.Users) > 0 { // an audience named user by user
		for _, id := range e.Users {
			if u := h.users[id]; u != nil && id != e.UserID {
				for _, s := range u.sessions {
					s.send(f)
				}
			}
		}
		return
	}
	seen := map[*userEntry]bool{}
	for _, id := range e.Conversations {
		c := h.conv(id)
		if c == nil {
			continue
		}
		for u := range c.all {
			if u.id == e.UserID || seen[u] || slices.Contains(e.Hide, u.id) {
				continue
			}
			seen[u] = true
			for _, s := range u.sessions {
				s.send(f)
			}
		}
	}
}

// onRevoked closes the live sessions of ended devices.
func (h *hub) onRevoked(e *service.Event) {
	h.mu.Lock()
	var doomed []*session
	if u := h.users[e.UserID]; u != nil {
		for _, s := range u.sessions {
			if e.DeviceID == "" || s.p.DeviceID == e.DeviceID {
				doomed = append(doomed, s)
			}
		}
	}
	h.mu.Unlock()
	for _, s := range doomed {
		h.g.cfg.Metrics.Closed("revoked")
		s.closeWith(CloseRevoked, "session ended")
	}
}

// queuePresence hands presence news to the one goroutine that publishes
// it, so a user's online and offline reach the bus in the order decided.
func (h *hub) queuePresence(n presenceNews) {
	h.presenceMu.Lock()
	h.presenceQ = append(h.presenceQ, n)
	h.presenceMu.Unlock()
	select {
	case h.presenceWake <- struct{}{}:
	default:
	}
}

func (h *hub) presenceLoop() {
	defer h.g.wg.Done()
	for {
		select {
		case <-h.presenceStop:
			return
		case <-h.presenceWake:
		}
		for {
			h.presenceMu.Lock()
			q := h.presenceQ
			h.presenceQ = nil
			h.presenceMu.Unlock()
			if len(q) == 0 {
				break
			}
			h.runPresence(q)
		}
	}
}

// runPresence does what a batch of presence news asks, in order, except
// that the new sessions of one user waiting in the batch are listed
// together, where the first of them was queued: one read of the user's
// online contacts and one encoding of each frame instead of one per
// session (a reconnect storm, or a user's several sockets, queue many).
// What a session is told is read when the batch runs, as it would be for
// each alone.
func (h *hub) runPresence(q []presenceNews) {
	var lists map[string][]*session // user -> new sessions, in queue order
	for _, n := range q {
		if n.list != nil {
			if lists == nil {
				lists = make(map[string][]*session)
			}
			lists[n.userID] = append(lists[n.userID], n.list)
		}
	}
	for _, n := range q {
		if n.list == nil {
			h.publishPresence(n)
			continue
		}
		if ss, ok := lists[n.userID]; ok {
			delete(lists, n.userID) // the others of the batch are listed now
			h.listOnline(n.userID, ss)
		}
	}
}

// listOnline writes to each of a user's new sessions the user's online
// contacts whose presence the user may see (the core applies the privacy
// rules), from the directory or, without one, from this node's sessions.
func (h *hub) listOnline(userID string, sessions []*session) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	contacts, err := h.g.core.Contacts(ctx, userID)
	if err != nil {
		h.g.log.Warn("list online contacts", "user_id", userID, "err", err)
		return
	}
	var online []string
	if d := h.g.cfg.Directory; d != nil {
		online = d.Online(contacts)
	} else {
		online = h.localOnline(contacts)
	}
	sort.Strings(online)
	for _, id := range online {
		data, err := Encode(PresenceFrame{Type: FramePresence, UserID: id, State: "online"})
		if err != nil {
			h.g.log.Error("encode frame", "err", err)
			return
		}
		f := &outFrame{data: data}
		for _, s := range sessions {
			s.send(f)
		}
	}
}

// publishPresence publishes a change of a user's presence (with a
// Directory, only if the user came online on the first node, or left the
// last).
func (h *hub) publishPresence(n presenceNews) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := h.g.cfg.Directory
	if d != nil {
		var change bool
		var err error
		if n.online {
			change, err = d.Join(ctx, n.userID)
		} else {
			change, err = d.Leave(ctx, n.userID)
		}
		if err != nil {
			h.g.log.Warn("presence directory", "user_id", n.userID, "online", n.online, "err", err)
			h.retryPresence(n)
			return
		}
		if !change {
			return // still online on another node, or was already
		}
	}
	if err := h.g.core.Presence(ctx, n.userID, n.online, n.lastSeen); err != nil {
		h.g.log.Warn("publish presence", "user_id", n.userID, "err", err)
		h.retryPresence(n)
	}
}

// retryPresence queues n again after a backoff, if it is still true then:
// an online while the user still has a session here, an offline while the
// user still has none (a retry must not undo a later change).
func (h *hub) retryPresence(n presenceNews) {
	if n.attempt >= presenceRetries {
		h.g.log.Error("presence news given up", "user_id", n.userID, "online", n.online)
		return
	}
	delay := presenceRetryFirst << n.attempt
	n.attempt++
	time.AfterFunc(delay, func() {
		select {
		case <-h.presenceStop:
			return
		default:
		}
		h.mu.Lock()
		u := h.users[n.userID]
		here := u != nil && len(u.sessions) > 0
		_, leaving := h.leaving[n.userID]
		h.mu.Unlock()
		if n.online != here || !n.online && leaving {
			return // overtaken by a later change, which has its own news
		}
		h.queuePresence(n)
	})
}

// keepaliveLoop refreshes the directory's records every Interval, apart
// from the presence news, so that a burst of news (a reconnect storm)
// cannot delay the refreshes past the records' TTL.
func (h *hub) keepaliveLoop() {
	defer h.g.wg.Done()
	t := time.NewTicker(h.g.cfg.Directory.Interval())
	defer t.Stop()
	for {
		select {
		case <-h.presenceStop:
			return
		case <-t.C:
			h.keepalive()
		}
	}
}

// keepalive refreshes the directory's records of the users with a live
// session here.
func (h *hub) keepalive() {
	h.mu.Lock()
	ids := make([]string, 0, len(h.users))
	for id, u := range h.users {
		if len(u.sessions) > 0 {
			ids = append(ids, id)
		}
	}
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), h.g.cfg.Directory.Interval())
	defer cancel()
	if err := h.g.cfg.Directory.Keepalive(ctx, ids); err != nil {
		h.g.log.Warn("presence keepalive", "users", len(ids), "err", err)
	}
}

func (h *hub) stopPresence() {
	h.mu.Lock()
	for id, t := range h.leaving {
		t.Stop()
		delete(h.leaving, id)
	}
	h.mu.Unlock()
	close(h.presenceStop)
}
