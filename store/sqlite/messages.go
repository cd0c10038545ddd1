package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// messageColumns are the columns scanMessageRow reads, in its order.
const messageColumns = `conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, type,
	body, body_key, created_at, expires_at, edited_at, deleted, withheld, attachments`

// notExpired is the condition for a message row visible at the time bound
// to its parameter.
const notExpired = `(purged = 0 AND (expires_at IS NULL OR expires_at > ?))`

// appendSavepoint says whether an append runs in its own savepoint. It
// needs none: it fails with a client error only before it writes, and its
// duplicate check is the INSERT's ON CONFLICT, which writes nothing. With
// savepoints BenchmarkAppendMessage ran 10-15% slower (7.1k against 8.3k
// msgs/s, medians of three interleaved runs).
const appendSavepoint = false

// messageRow is a message as stored: its body sealed.
type messageRow struct {
	conversationID, id, senderID, senderDeviceID, typ string
	clientMsgID                                       sql.NullString
	seq, bodyKey, created                             int64
	expires, edited                                   sql.NullInt64
	body, attachments                                 []byte
	deleted, withheld                                 bool
	purged                                            bool // read only by sentBefore
}

func scanMessageRow(row scanner) (*messageRow, error) {
	var r messageRow
	err := row.Scan(&r.conversationID, &r.seq, &r.id, &r.senderID, &r.senderDeviceID, &r.clientMsgID, &r.typ,
		&r.body, &r.bodyKey, &r.created, &r.expires, &r.edited, &r.deleted, &r.withheld, &r.attachments)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// open decrypts r's body and returns the message. A tombstone has an empty
// body and is not decrypted.
func (s *Store) open(r *messageRow) (parley.Message, error) {
	m := parley.Message{
		ID:             r.id,
		ConversationID: r.conversationID,
		Seq:            r.seq,
		SenderID:       r.senderID,
		SenderDeviceID: r.senderDeviceID,
		ClientMsgID:    r.clientMsgID.String,
		Type:           parley.MessageType(r.typ),
		CreatedAt:      engine.FromMillis(r.created),
		ExpiresAt:      fromNullMillis(r.expires),
		EditedAt:       fromNullMillis(r.edited),
		Deleted:        r.deleted,
		Withheld:       r.withheld,
	}
	if !r.deleted {
		body, err := s.sealer.Open(uint32(r.bodyKey), r.body, []byte(r.id))
		if err != nil {
			return parley.Message{}, s.internal("open message body", err)
		}
		m.Body = string(body)
		if m.Attachments, err = engine.OpenAttachments(s.sealer, r.id, r.attachments); err != nil {
			return parley.Message{}, s.internal("open message attachments", err)
		}
		if err := engine.OpenEnvelope(&m); err != nil {
			return parley.Message{}, s.internal("open message envelope", err)
		}
	}
	return m, nil
}

// seal encrypts the body of the message with the given id, unless it is a
// tombstone, which keeps an empty body.
func (s *Store) seal(id, body string, deleted bool) (keyID uint32, sealed []byte, err error) {
	if deleted {
		return 0, []byte{}, nil
	}
	keyID, sealed, err = s.sealer.Seal([]byte(body), []byte(id))
	if err != nil {
		return 0, nil, s.internal("seal message body", err)
	}
	return keyID, sealed, nil
}

// AppendMessage commits m with m.Seq = last_seq+1 of its conversation and
// returns once the commit is durable (fsync'd). An empty ID is filled with
// parley.NewID(), a zero CreatedAt with the current time; times are set to
// their stored precision. The body is sealed in the caller's goroutine,
// bound to the message id, before the write is queued. An empty ClientMsgID
// takes no part in idempotency. Otherwise, if SenderID already sent
// ClientMsgID, nothing is written and the original is returned with
// created=false (CodeConflict if it is in another conversation), even if
// the two arrive in the same batch. CodeConversationNotFound if the
// conversation is gone or the sender is not a member at commit.
func (s *Store) AppendMessage(ctx context.Context, m *parley.Message) (*parley.Message, bool, error) {
	defer s.track("append_message", time.Now())
	a, err := s.prepareAppend(m)
	if err != nil {
		return nil, false, err
	}
	if err := s.write(ctx, a.job.savepoint, a.job.fn); err != nil {
		return nil, false, err
	}
	return s.appendResult(a)
}

// AppendMessages implements parley.Store: the appends are queued for
// the writer together, in order (see writeAll).
func (s *Store) AppendMessages(ctx context.Context, ms []*parley.Message, each func(int, parley.AppendResult)) []parley.AppendResult {
	defer s.track("append_messages", time.Now())
	out := engine.NewAppendResults(len(ms), each)
	apps := make([]*pendingAppend, 0, len(ms))
	jobs := make([]*job, 0, len(ms))
	for i, m := range ms {
		a, err := s.prepareAppend(m)
		if err != nil {
			out.Set(i, parley.AppendResult{Err: err})
			continue
		}
		a.i = i
		apps, jobs = append(apps, a), append(jobs, a.job)
	}
	s.writeAll(ctx, jobs, func(k int, err error) {
		a := apps[k]
		if err != nil {
			out.Set(a.i, parley.AppendResult{Err: err})
			return
		}
		var r parley.AppendResult
		r.Message, r.Created, r.Err = s.appendResult(a)
		out.Set(a.i, r)
	})
	return out.Out
}

// pendingAppend is one append prepared for the writer: its job, and what
// the job found, for result.
type pendingAppend struct {
	m        *parley.Message
	job      *job
	original *messageRow // a retried client_msg_id's message
	seq      int64
	i        int // the index in AppendMessages' input
}

// prepareAppend checks and seals m in the caller's goroutine and makes
// the writer job that appends it.
func (s *Store) prepareAppend(m *parley.Message) (*pendingAppend, error) {
	if err := engine.PrepareMessage(m); err != nil {
		return nil, err
	}
	stored := m.Body
	var keyRows []engine.KeyRow
	if m.Envelope != nil {
		var err error
		if stored, err = engine.EnvelopeBody(m.Envelope); err != nil {
			return nil, s.internal("encode envelope", err)
		}
		if keyRows, err = engine.KeyRows(m.Envelope.Keys); err != nil {
			return nil, err
		}
	}
	keyID, sealed, err := s.seal(m.ID, stored, m.Deleted)
	if err != nil {
		return nil, err
	}
	sealedAttachments, err := engine.SealAttachments(s.sealer, m.ID, m.Attachments)
	if err != nil {
		return nil, s.internal("seal message attachments", err)
	}
	var attachments any // NULL if none
	if sealedAttachments != nil {
		attachments = sealedAttachments
	}
	var clientMsgID any // NULL if empty
	if m.ClientMsgID != "" {
		clientMsgID = m.ClientMsgID
	}
	pa := &pendingAppend{m: m}
	var (
		// The arguments of the hot statements, converted and boxed here
		// rather than on the writer goroutine.
		convID   any = m.ConversationID
		senderID any = m.SenderID
		msgID    any = m.ID
		deviceID any = m.SenderDeviceID
		typ      any = string(m.Type)
		body     any = sealed
		bodyKey  any = int64(keyID)
		created  any = engine.Millis(m.CreatedAt)
		expires      = nullMillis(m.ExpiresAt)
		edited       = nullMillis(m.EditedAt)
		deleted  any = m.Deleted
		withheld any = m.Withheld
	)
	// An append with attachments marks its media in the same transaction
	// and fails (with nothing written) if one cannot be attached: that
	// failure comes after the insert, so it needs its savepoint.
	fn := func(t *txn) error {
		pa.original, pa.seq = nil, 0
		h := &s.hot
		lastSeq, e2ee, found, err := h.lastSeq(convID, senderID)
		if err != nil {
			return s.internal("append message", err)
		}
		if !found {
			if clientMsgID != nil {
				// A retry of a message sent here before the sender left gets
				// the original; anything else is not for a non-member to know.
				pa.original, err = s.sentBefore(t, m.SenderID, clientMsgID)
				if err != nil || pa.original != nil && pa.original.conversationID == m.ConversationID {
					return err
				}
				pa.original = nil
			}
			return parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
		}
		if err := engine.CheckE2EEType(m, e2ee); err != nil {
			return err
		}
		if m.Envelope != nil {
			// A retry of a stored message gets it back whatever
			// changed since; only a new one is checked.
			if clientMsgID != nil {
				if pa.original, err = s.sentBefore(t, m.SenderID, clientMsgID); err != nil || pa.original != nil {
					return err
				}
			}
			if err := s.matchEnvelope(t, m); err != nil {
				return err
			}
		}
		// The arguments as the driver takes them (database/sql would
		// convert them to these).
		a := &h.args
		next := lastSeq + 1
		a[0].Value = convID
		a[1].Value = next
		a[2].Value = msgID
		a[3].Value = senderID
		a[4].Value = deviceID
		a[5].Value = clientMsgID
		a[6].Value = typ
		a[7].Value = body
		a[8].Value = bodyKey
		a[9].Value = created
		a[10].Value = expires
		a[11].Value = edited
		a[12].Value = deleted
		a[13].Value = withheld
		a[14].Value = attachments
		a[15].Value = t.changeStampArg()
		n, err := h.exec(h.insertMessage, 16)
		if err != nil {
			return s.internal("append message", err)
		}
		if n == 0 {
			// A duplicate: nothing was written.
			pa.original, err = s.sentBefore(t, m.SenderID, clientMsgID)
			if err == nil && pa.original == nil {
				err = fmt.Errorf("sqlite: append message: conflict without a message")
			}
			return err
		}
		a[0].Value = next
		a[1].Value = created
		a[2].Value = t.changeStampArg()
		a[3].Value = convID
		if _, err := h.exec(h.setLastSeq, 4); err != nil {
			return s.internal("append message", err)
		}
		for i := range m.Attachments {
			if err := s.attachMedia(t, m, next, m.Attachments[i].MediaID); err != nil {
				return err
			}
		}
		if err := insertMessageKeys(t, m.ConversationID, next, keyRows); err != nil {
			return s.internal("append message keys", err)
		}
		pa.seq = next
		return nil
	}
	// An append with attachments marks its media in the same transaction
	// and fails (with nothing written) if one cannot be attached: that
	// failure comes after the insert, so it needs its savepoint.
	pa.job = &job{fn: fn, savepoint: appendSavepoint || len(m.Attachments) > 0}
	return pa, nil
}

// appendResult is the outcome of an append whose job has committed.
func (s *Store) appendResult(a *pendingAppend) (*parley.Message, bool, error) {
	m, original := a.m, a.original
	if original != nil {
		if original.conversationID != m.ConversationID {
			return nil, false, parley.Errorf(parley.CodeConflict, "client_msg_id %q was used in another conversation", m.ClientMsgID)
		}
		if original.purged || original.expires.Valid && original.expires.Int64 <= engine.Millis(m.CreatedAt) {
			return nil, false, parley.Errorf(parley.CodeConflict, "client_msg_id %q was used by a message that has expired", m.ClientMsgID)
		}
		msg, err := s.open(original)
		if err != nil {
			return nil, false, err
		}
		return &msg, false, nil
	}
	m.Seq = a.seq
	return m, true, nil
}

// sentBefore returns the message senderID sent with clientMsgID, or nil.
func (s *Store) sentBefore(t *txn, senderID string, clientMsgID any) (*messageRow, error) {
	var r messageRow
	err := t.stmt(s.wst.messageByClientID).QueryRowContext(bg, senderID, clientMsgID).Scan(
		&r.conversationID, &r.seq, &r.id, &r.senderID, &r.senderDeviceID, &r.clientMsgID, &r.typ,
		&r.body, &r.bodyKey, &r.created, &r.expires, &r.edited, &r.deleted, &r.withheld, &r.attachments, &r.purged)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, s.internal("append message", err)
	}
	return &r, nil
}

// Message returns one message unless it has expired at now; CodeNotFound if
// there is none.
func (s *Store) Message(ctx context.Context, conversationID string, seq int64, now time.Time) (*parley.Message, error) {
	defer s.track("message", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	r, err := scanMessageRow(s.rst.message.QueryRowContext(ctx, conversationID, seq, engine.Millis(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such message")
	}
	if err != nil {
		return nil, s.internal("read message", err)
	}
	m, err := s.open(r)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// Messages returns a page of history in ascending seq order (see
// parley.HistoryQuery, Forward included), skipping messages expired at now.
// An unknown conversation has no messages. CodeInvalidRequest unless
// q.Limit is 1..parley.MaxHistoryLimit, Before and After are not negative
// and the query does not page both ways.
func (s *Store) Messages(ctx context.Context, conversationID string, q parley.HistoryQuery, now time.Time) ([]parley.Message, error) {
	defer s.track("messages", time.Now())
	if q.Limit < 1 || q.Limit > parley.MaxHistoryLimit {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to %d", parley.MaxHistoryLimit)
	}
	if q.Before < 0 || q.After < 0 || q.Before > 0 && q.Forwards() {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "set at most one of before and after, not negative")
	}
	if s.closed.Load() {
		return nil, errClosed
	}
	var (
		rows *sql.Rows
		err  error
	)
	switch {
	case q.Before > 0:
		rows, err = s.rst.messagesBefore.QueryContext(ctx, conversationID, q.Before, engine.Millis(now), q.Limit)
	case q.Forwards():
		rows, err = s.rst.messagesAfter.QueryContext(ctx, conversationID, q.After, engine.Millis(now), q.Limit)
	default:
		rows, err = s.rst.messagesNewest.QueryContext(ctx, conversationID, engine.Millis(now), q.Limit)
	}
	if err != nil {
		return nil, s.internal("read messages", err)
	}
	defer rows.Close()
	var sealed []*messageRow
	for rows.Next() {
		r, err := scanMessageRow(rows)
		if err != nil {
			return nil, s.internal("read messages", err)
		}
		sealed = append(sealed, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read messages", err)
	}
	rows.Close()
	if !q.Forwards() {
		slices.Reverse(sealed) // read newest first
	}
	msgs := make([]parley.Message, len(sealed))
	for i, r := range sealed {
		if msgs[i], err = s.open(r); err != nil {
			return nil, err
		}
	}
	return msgs, nil
}

// UpdateMessage implements parley.Store. The new body is sealed on the
// writer, bound to the stored id; edits are rare enough for that.
func (s *Store) UpdateMessage(ctx context.Context, conversationID string, seq int64, now time.Time, change func(m *parley.Message) error) (*parley.Message, error) {
	defer s.track("update_message", time.Now())
	var result *parley.Message
	err := s.write(ctx, true, func(t *txn) error {
		result = nil
		row := t.queryRow(`SELECT `+messageColumns+` FROM messages WHERE conversation_id = ? AND seq = ?
			AND purged = 0 AND (expires_at IS NULL OR expires_at > ?)`, conversationID, seq, engine.Millis(now))
		r, err := scanMessageRow(row)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeNotFound, "no such message")
		}
		if err != nil {
			return s.internal("update message", err)
		}
		m, err := s.open(r)
		if err != nil {
			return err
		}
		if err := change(&m); err != nil {
			return err
		}
		m.EditedAt = engine.NormalTime(m.EditedAt)
		if m.Deleted {
			m.Body, m.Envelope = "", nil
		}
		stored := m.Body
		if m.Envelope != nil {
			if stored, err = engine.EnvelopeBody(m.Envelope); err != nil {
				return s.internal("update message", err)
			}
		}
		keyID, sealed, err := s.seal(r.id, stored, m.Deleted)
		if err != nil {
			return err
		}
		if m.Deleted && m.Type == parley.MessageEncrypted {
			if _, err := t.exec(`DELETE FROM message_keys WHERE conversation_id = ? AND seq = ?`, conversationID, seq); err != nil {
				return s.internal("update message", err)
			}
		}
		if m.Deleted {
			m.Attachments = nil
		}
		attachments, err := engine.SealAttachments(s.sealer, r.id, m.Attachments)
		if err != nil {
			return s.internal("update message", err)
		}
		stamp := t.changeStamp()
		_, err = t.exec(`UPDATE messages SET body = ?, body_key = ?, edited_at = ?, deleted = ?, attachments = ?, stamp = ?, changed = 1
			WHERE conversation_id = ? AND seq = ?`,
			sealed, int64(keyID), nullMillis(m.EditedAt), m.Deleted, attachments, stamp, conversationID, seq)
		if err != nil {
			return s.internal("update message", err)
		}
		if _, err := t.exec(`UPDATE conversations SET stamp = ? WHERE id = ?`, stamp, conversationID); err != nil {
			return s.internal("update message", err)
		}
		result = &m
		return nil
	})
	return result, err
}

// PurgeExpired implements parley.Store: it blanks up to limit messages
// expired at now, soonest expired first, deletes the rows of messages
// expired more than parley.IdempotencyHorizon ago, every refresh token
// expired at now and the devices left without one (see
// purgeRefreshTokens), and returns how many messages it blanked. last_seq is
// untouched, so seqs are never reused. CodeInvalidRequest if limit < 1.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	defer s.track("purge_expired", time.Now())
	if limit < 1 {
		return 0, parley.Errorf(parley.CodeInvalidRequest, "limit must be at least 1")
	}
	var n int64
	sweep := !s.deviceSweep.Load()
	err := s.write(ctx, true, func(t *txn) error {
		// The media of the messages about to be purged go with them: the
		// media garbage collector deletes their blobs and records (see
		// parley.Store.ExpiredMedia).
		if _, err := t.exec(`UPDATE media SET state = 'deleted', expires_at = ?1
			WHERE conversation_seq > 0 AND (conversation_id, conversation_seq) IN (
				SELECT conversation_id, seq FROM messages
				WHERE expires_at IS NOT NULL AND purged = 0 AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2)`,
			engine.Millis(now), limit); err != nil {
			return s.internal("purge media", err)
		}
		if _, err := t.exec(`DELETE FROM message_keys WHERE (conversation_id, seq) IN (
				SELECT conversation_id, seq FROM messages
				WHERE expires_at IS NOT NULL AND purged = 0 AND expires_at <= ? ORDER BY expires_at LIMIT ?)`,
			engine.Millis(now), limit); err != nil {
			return s.internal("purge message keys", err)
		}
		res, err := t.exec(`UPDATE messages SET body = x'', attachments = NULL, purged = 1 WHERE (conversation_id, seq) IN (
				SELECT conversation_id, seq FROM messages
				WHERE expires_at IS NOT NULL AND purged = 0 AND expires_at <= ? ORDER BY expires_at LIMIT ?)`,
			engine.Millis(now), limit)
		if err != nil {
			return s.internal("purge messages", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return s.internal("purge messages", err)
		}
		if _, err := t.exec(`DELETE FROM messages WHERE (conversation_id, seq) IN (
				SELECT conversation_id, seq FROM messages
				WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?)`,
			engine.Millis(now.Add(-parley.IdempotencyHorizon)), limit); err != nil {
			return s.internal("purge messages", err)
		}
		if err := purgeRefreshTokens(t, engine.Millis(now), sweep); err != nil {
			return s.internal("purge refresh tokens", err)
		}
		return nil
	})
	if err == nil && sweep {
		s.deviceSweep.Store(true)
	}
	return int(n), err
}

// PurgeHistory implements parley.Store: it blanks up to limit messages
// created before the given time, oldest first, as PurgeExpired blanks
// expired ones. A purged message's expires_at is lowered to before, so
// that PurgeExpired deletes its row parley.IdempotencyHorizon after that,
// as it does an expired message's. Every read skips purged messages.
// CodeInvalidRequest if limit < 1.
func (s *Store) PurgeHistory(ctx context.Context, before time.Time, limit int) (int, error) {
	defer s.track("purge_history", time.Now())
	if limit < 1 {
		return 0, parley.Errorf(parley.CodeInvalidRequest, "limit must be at least 1")
	}
	var n int64
	err := s.write(ctx, true, func(t *txn) error {
		cutoff := engine.Millis(before)
		if _, err := t.exec(`UPDATE media SET state = 'deleted', expires_at = ?1
			WHERE conversation_seq > 0 AND (conversation_id, conversation_seq) IN (
				SELECT conversation_id, seq FROM messages INDEXED BY messages_created
				WHERE purged = 0 AND created_at < ?1 ORDER BY created_at LIMIT ?2)`,
			cutoff, limit); err != nil {
			return s.internal("purge media", err)
		}
		if _, err := t.exec(`DELETE FROM message_keys WHERE (conversation_id, seq) IN (
				SELECT conversation_id, seq FROM messages INDEXED BY messages_created
				WHERE purged = 0 AND created_at < ?1 ORDER BY created_at LIMIT ?2)`,
			cutoff, limit); err != nil {
			return s.internal("purge message keys", err)
		}
		res, err := t.exec(`UPDATE messages SET body = x'', attachments = NULL, purged = 1,
				expires_at = CASE WHEN expires_at IS NULL OR expires_at > ?1 THEN ?1 ELSE expires_at END
			WHERE (conversation_id, seq) IN (
				SELECT conversation_id, seq FROM messages INDEXED BY messages_created
				WHERE purged = 0 AND created_at < ?1 ORDER BY created_at LIMIT ?2)`,
			cutoff, limit)
		if err != nil {
			return s.internal("purge history", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return s.internal("purge history", err)
		}
		return nil
	})
	return int(n), err
}

// attachMedia marks mediaID as attached to m at seq (conversation_seq set,
// expires_at cleared) after engine.CheckAttach accepts it; the caller's
// write transaction makes the check and the mark one step with the
// message's insert.
func (s *Store) attachMedia(t *txn, m *parley.Message, seq int64, mediaID string) error {
	var uploader, conv, state string
	var convSeq int64
	var expires sql.NullInt64
	err := t.queryRow(`SELECT uploader_id, conversation_id, state, conversation_seq, expires_at FROM media WHERE id = ?`, mediaID).
		Scan(&uploader, &conv, &state, &convSeq, &expires)
	found := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return s.internal("attach media", err)
	}
	if err := engine.CheckAttach(m, mediaID, found, uploader, conv, parley.MediaState(state), convSeq, expires.Int64); err != nil {
		return err
	}
	if _, err := t.exec(`UPDATE media SET conversation_seq = ?, expires_at = NULL WHERE id = ?`, seq, mediaID); err != nil {
		return s.internal("attach media", err)
	}
	return nil
}
