package client

import (
	"context"
	"strconv"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/e2ee"
)

// The connection loop's part of end-to-end encryption: it decrypts what
// it hands to the app, holds a conversation's messages while it fetches
// the device list of a sender it does not know (so a message is not shown
// undecryptable for want of a lookup), keeps the messages it could not
// decrypt to hand them again when their key comes, answers key requests,
// follows device_list frames, and seals sends before writing them.

// loopE2EE is the loop's e2ee state; run owns it.
type loopE2EE struct {
	undecrypted map[msgKey]*parley.Message // handed over undecryptable, newest kept
	fetching    map[string]bool            // user ids whose device list is being fetched
	tried       map[string]bool            // user/device ids fetched for and still unknown
	answered    map[string]time.Time       // key requests answered lately
}

type msgKey struct {
	conv string
	seq  int64
}

// Bounds on the loop's e2ee state.
const (
	maxUndecrypted = 2000
	maxTried       = 10000
)

func (r *realtime) e2() *loopE2EE {
	if r.e2ee.undecrypted == nil {
		r.e2ee = loopE2EE{undecrypted: map[msgKey]*parley.Message{}, fetching: map[string]bool{}, tried: map[string]bool{},
			answered: map[string]time.Time{}}
	}
	return &r.e2ee
}

// mustWait reports whether m, next in its conversation, has to wait for
// the device list of its sender (and starts fetching it).
func (r *realtime) mustWait(cs *convState, m *parley.Message) bool {
	if cs.waitDir {
		return true
	}
	if !r.c.senderUnknown(m) {
		return false
	}
	e := r.e2()
	if e.tried[m.SenderID+"/"+m.SenderDeviceID] {
		return false
	}
	cs.waitDir = true
	r.fetchDevices(m.SenderID)
	return true
}

// fetchDevices fetches a user's device list in the background; when it
// is in, waiting conversations go on and undecryptable messages of that
// user are tried again.
func (r *realtime) fetchDevices(userID string) {
	e := r.e2()
	if e.fetching[userID] {
		return
	}
	e.fetching[userID] = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := r.c.UserDevices(ctx, userID)
		cancel()
		if err != nil {
			r.c.log.Warn("parley: e2ee: fetching a user's devices", "user_id", userID, "err", err)
		}
		r.post(func() { r.devicesFetched(userID) })
	}()
}

func (r *realtime) devicesFetched(userID string) {
	e := r.e2()
	delete(e.fetching, userID)
	if len(e.tried) > maxTried {
		clear(e.tried)
	}
	for _, cs := range r.convs {
		if !cs.waitDir {
			continue
		}
		if m := cs.ahead[cs.heldUpto+1]; m != nil && m.SenderID == userID {
			e.tried[m.SenderID+"/"+m.SenderDeviceID] = true // known now, or never will be
		}
	}
	for _, cs := range r.convs {
		if cs.waitDir {
			cs.waitDir = false
			r.drainAhead(cs)
		}
	}
	r.retryUndecrypted(userID)
	r.pumpGaps()
	r.maybeSynced()
}

// decryptLive decrypts a message about to be handed over; an
// undecryptable one is kept for a later try, and its key asked for.
func (r *realtime) decryptLive(m *parley.Message) *Decryption {
	d := r.c.decrypt(m)
	if d == nil || d.Decrypted() {
		return d
	}
	e := r.e2()
	k := msgKey{m.ConversationID, m.Seq}
	if _, ok := e.undecrypted[k]; !ok && len(e.undecrypted) >= maxUndecrypted {
		for old := range e.undecrypted {
			delete(e.undecrypted, old)
			break
		}
	}
	e.undecrypted[k] = m
	if d.Reason == e2ee.ReasonNoKey {
		r.c.requestKeyAsync(m)
	}
	return d
}

// onRepeat handles a copy of a message already handed over: one that was
// undecryptable and now opens (the sender answered a key request) is
// handed again as changed. It reports whether it dealt with m.
func (r *realtime) onRepeat(m *parley.Message) bool {
	e := r.e2()
	k := msgKey{m.ConversationID, m.Seq}
	if _, ok := e.undecrypted[k]; !ok {
		return false
	}
	if m.Deleted || m.Type != parley.MessageEncrypted {
		delete(e.undecrypted, k)
		return false // the tombstone goes out as a change
	}
	d := r.c.decrypt(m)
	if !d.Decrypted() {
		e.undecrypted[k] = m // keep the newest copy
		r.stats.Duplicates.Add(1)
		return true
	}
	delete(e.undecrypted, k)
	r.emit(Event{Kind: EventMessageChanged, ConversationID: m.ConversationID, Message: m, E2EE: d})
	return true
}

// retryUndecrypted tries again the undecryptable messages of a sender
// whose device list was just fetched.
func (r *realtime) retryUndecrypted(userID string) {
	e := r.e2()
	for k, m := range e.undecrypted {
		if m.SenderID != userID {
			continue
		}
		c := *m
		if d := r.c.decrypt(&c); d.Decrypted() {
			delete(e.undecrypted, k)
			r.emit(Event{Kind: EventMessageChanged, ConversationID: c.ConversationID, Message: &c, E2EE: d})
		}
	}
}

// onDeviceList: a user's devices changed. Sends to conversations with
// them seal to the new list; the list itself is fetched, which announces
// what changed and may make held messages readable.
func (r *realtime) onDeviceList(f *InFrame) {
	if r.c.crypt.store == nil || f.UserID == "" {
		return
	}
	r.c.crypt.forgetRecipients("", f.UserID, f.DeviceListVersion)
	e := r.e2()
	for k := range e.tried {
		if len(k) > len(f.UserID) && k[:len(f.UserID)+1] == f.UserID+"/" {
			delete(e.tried, k)
		}
	}
	r.fetchDevices(f.UserID)
}

// onKeyRequest answers a device that asks for the key of a message this
// device sent, at most once a minute per message and device.
func (r *realtime) onKeyRequest(f *InFrame) {
	if r.c.crypt.store == nil || f.ConversationID == "" || f.Seq <= 0 || f.DeviceID == "" {
		return
	}
	e := r.e2()
	k := f.ConversationID + "/" + strconv.FormatInt(f.Seq, 10) + "/" + f.DeviceID
	now := time.Now()
	if last, ok := e.answered[k]; ok && now.Sub(last) < time.Minute {
		return
	}
	if len(e.answered) > maxTried {
		clear(e.answered)
	}
	e.answered[k] = now
	conv, seq, user, device := f.ConversationID, f.Seq, f.UserID, f.DeviceID
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.c.answerKeyRequest(ctx, conv, seq, user, device); err != nil {
			r.c.log.Info("parley: e2ee: answering a key request", "conversation_id", conv, "seq", seq, "err", err)
		}
	}()
}

// needsSeal reports whether p goes to an e2ee conversation and has no
// envelope (or one whose keys must be redone).
// A conversation not known to be e2ee or not (p.unknown) is asked about
// first: nothing goes out in plaintext to an e2ee conversation.
func (r *realtime) needsSeal(p *Pending) bool {
	if p.sealed != nil {
		return false
	}
	if p.encrypted || p.resealFrom != nil {
		return true
	}
	if p.unknown {
		if e, known := r.c.crypt.knownE2EE(p.ConversationID); known {
			p.encrypted, p.unknown = e, false
		}
	}
	return p.encrypted || p.unknown
}

// maxPrepareFailures bounds the attempts in a row to seal one send.
const maxPrepareFailures = 20

// prepare seals p in the background (fetching the devices), then pumps.
func (r *realtime) prepare(p *Pending) {
	p.preparing = true
	from := p.resealFrom
	// What the goroutine reads, copied here: the loop owns p.
	q := &Pending{ClientMsgID: p.ClientMsgID, ConversationID: p.ConversationID, Type: p.Type, Body: p.Body, TTL: p.TTL,
		Attachments: p.Attachments, E2EEAttachments: p.E2EEAttachments}
	unknown := p.unknown
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var s *sealed
		var err error
		plain := false
		if unknown && from == nil {
			var e bool
			if e, err = r.c.isE2EE(ctx, q.ConversationID); err == nil && !e {
				plain = true
			}
		}
		switch {
		case err != nil || plain:
		case from != nil:
			s, err = r.c.reseal(ctx, from)
		default:
			if err = r.c.resolveUploads(q, q.Attachments); err == nil {
				var content []byte
				if content, err = contentOf(q); err == nil {
					s, err = r.c.seal(ctx, q.ConversationID, q.ClientMsgID, content, q.E2EEAttachments, false)
				}
			}
		}
		r.post(func() {
			p.preparing = false
			if p.isDone() {
				return
			}
			if plain { // not an e2ee conversation: it goes as it is
				p.unknown = false
				r.pump()
				return
			}
			if err != nil {
				p.prepareFailures++
				if sealRetryable(err) && p.prepareFailures < maxPrepareFailures {
					p.retryAt = time.Now().Add(backoffFor(p.prepareFailures))
					r.c.log.Info("parley: e2ee: sealing a send", "conversation_id", p.ConversationID, "err", err)
				} else {
					r.finishSend(p, nil, err)
					r.emit(Event{Kind: EventSendFailed, ConversationID: p.ConversationID, Pending: p, Err: err})
				}
				r.pump()
				return
			}
			p.prepareFailures = 0
			p.sealed, p.resealFrom, p.encrypted, p.unknown = s, nil, true, false
			r.pump()
		})
	}()
}

// sendOverREST sends a sealed message whose frame is too large for the
// WebSocket over REST, with the same client_msg_id (docs/design/e2ee.md).
func (r *realtime) sendOverREST(p *Pending) {
	s := p.sealed
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		m, err := r.c.postEncrypted(ctx, p, s)
		f := &InFrame{Type: frameAck, Message: m}
		if err != nil {
			pe := &parley.Error{Code: parley.ErrorCode(err), Message: parley.ErrorMessage(err)}
			f = &InFrame{Type: frameError, Error: pe}
		}
		r.post(func() {
			p.inFlight = false
			if !p.isDone() {
				r.onSendResult(p, f)
			}
		})
	}()
}

// onE2EETick rotates keys when due (checked once a minute).
func (r *realtime) onE2EETick(now time.Time) {
	if !r.c.crypt.rotationDue(now) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.c.ensureKeys(ctx, false); err != nil {
			r.c.log.Warn("parley: e2ee: key rotation", "err", err)
		}
	}()
}
