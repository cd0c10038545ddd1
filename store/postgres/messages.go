package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// messageColumns are the columns scanMessageRow reads, in its order.
const messageColumns = `conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, type,
	body, body_key, created_at, expires_at, edited_at, deleted, withheld, attachments`

// notExpired is the condition for a message row visible at the time bound
// to parameter $n (written in by the caller).
func notExpired(n int) string {
	return fmt.Sprintf(`(NOT purged AND (expires_at IS NULL OR expires_at > $%d))`, n)
}

// messageRow is a message as stored: its body sealed.
type messageRow struct {
	conversationID, id, senderID, senderDeviceID, typ string
	clientMsgID                                       *string
	seq, bodyKey, created                             int64
	expires, edited                                   *int64
	body, attachments                                 []byte
	deleted, withheld                                 bool
	purged                                            bool // read only where selected
}

// fields returns the scan destinations of messageColumns.
func (r *messageRow) fields() []any {
	return []any{&r.conversationID, &r.seq, &r.id, &r.senderID, &r.senderDeviceID, &r.clientMsgID, &r.typ,
		&r.body, &r.bodyKey, &r.created, &r.expires, &r.edited, &r.deleted, &r.withheld, &r.attachments}
}

func scanMessageRow(row pgx.Row) (*messageRow, error) {
	var r messageRow
	if err := row.Scan(r.fields()...); err != nil {
		return nil, err
	}
	return &r, nil
}

// open decrypts r's body and returns the message; a tombstone's empty
// body is not decrypted.
func (s *Store) open(r *messageRow) (parley.Message, error) {
	m := parley.Message{
		ID:             r.id,
		ConversationID: r.conversationID,
		Seq:            r.seq,
		SenderID:       r.senderID,
		SenderDeviceID: r.senderDeviceID,
		Type:           parley.MessageType(r.typ),
		CreatedAt:      engine.FromMillis(r.created),
		ExpiresAt:      fromNullMillis(r.expires),
		EditedAt:       fromNullMillis(r.edited),
		Deleted:        r.deleted,
		Withheld:       r.withheld,
	}
	if r.clientMsgID != nil {
		m.ClientMsgID = *r.clientMsgID
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
// tombstone.
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

// appendJob is one AppendMessage in the writer: its input, sealed, and its
// result (seq, or the original of a retried client_msg_id).
type appendJob struct {
	m           *parley.Message
	clientMsgID *string // nil: no idempotency
	keyID       int64
	sealed      []byte
	attachments []byte // engine.SealAttachments; nil for none

	seq      int64
	original *messageRow
}

// AppendMessage commits m with m.Seq = last_seq+1 of its conversation and
// returns once the commit is durable. An empty ID is filled with
// parley.NewID(), a zero CreatedAt with the current time; times are set to
// their stored precision. The body is sealed in the caller's goroutine. A
// retried ClientMsgID returns the original with created=false
// (CodeConflict if that is in another conversation, or expired or
// purged), across every node sharing the database.
// CodeConversationNotFound if the conversation is gone or the sender is
// not a member at commit.
func (s *Store) AppendMessage(ctx context.Context, m *parley.Message) (*parley.Message, bool, error) {
	defer s.track("append_message", time.Now())
	j, err := s.prepareAppend(m)
	if err != nil {
		return nil, false, err
	}
	if err := s.submit(ctx, j); err != nil {
		return nil, false, err
	}
	return s.appendResult(m, j.appended)
}

// AppendMessages implements parley.Store: the appends are queued for
// the writer together, in order (see submitAll).
func (s *Store) AppendMessages(ctx context.Context, ms []*parley.Message, each func(int, parley.AppendResult)) []parley.AppendResult {
	defer s.track("append_messages", time.Now())
	out := engine.NewAppendResults(len(ms), each)
	jobs := make([]*job, 0, len(ms))
	idx := make([]int, 0, len(ms))
	for i, m := range ms {
		j, err := s.prepareAppend(m)
		if err != nil {
			out.Set(i, parley.AppendResult{Err: err})
			continue
		}
		jobs, idx = append(jobs, j), append(idx, i)
	}
	s.submitAll(ctx, jobs, func(k int, err error) {
		i := idx[k]
		if err != nil {
			out.Set(i, parley.AppendResult{Err: err})
			return
		}
		var r parley.AppendResult
		r.Message, r.Created, r.Err = s.appendResult(ms[i], jobs[k].appended)
		out.Set(i, r)
	})
	return out.Out
}

// prepareAppend checks and seals m in the caller's goroutine and makes
// the writer job that appends it.
func (s *Store) prepareAppend(m *parley.Message) (*job, error) {
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
	attachments, err := engine.SealAttachments(s.sealer, m.ID, m.Attachments)
	if err != nil {
		return nil, s.internal("seal message attachments", err)
	}
	a := &appendJob{m: m, keyID: int64(keyID), sealed: sealed, attachments: attachments}
	if m.ClientMsgID != "" {
		id := m.ClientMsgID
		a.clientMsgID = &id
	}
	j := &job{app: a}
	if m.Envelope != nil {
		// Encrypted appends check the envelope against the device
		// lists; they run one by one as functions of the batch.
		j = &job{fn: func(t *txn) error { return s.appendEncrypted(t, a, keyRows) }, savepoint: true}
	}
	j.appended = a
	return j, nil
}

// appendResult is the outcome of the append of m (its job a) once it has
// committed.
func (s *Store) appendResult(m *parley.Message, a *appendJob) (*parley.Message, bool, error) {
	if o := a.original; o != nil {
		if o.conversationID != m.ConversationID {
			return nil, false, parley.Errorf(parley.CodeConflict, "client_msg_id %q was used in another conversation", m.ClientMsgID)
		}
		if o.purged || o.expires != nil && *o.expires <= engine.Millis(m.CreatedAt) {
			return nil, false, parley.Errorf(parley.CodeConflict, "client_msg_id %q was used by a message that has expired", m.ClientMsgID)
		}
		msg, err := s.open(o)
		if err != nil {
			return nil, false, err
		}
		return &msg, false, nil
	}
	m.Seq = a.seq
	return m, true, nil
}

// appendRounds splits the appends of a batch into rounds with no two
// appends of one client_msg_id in a round: the second of two in one batch
// goes in a later round, and finds the first.
func appendRounds(jobs []*job) [][]*job {
	var rounds [][]*job
	for len(jobs) > 0 {
		seen := make(map[sentKey]bool, len(jobs))
		round, later := make([]*job, 0, len(jobs)), []*job(nil)
		for _, j := range jobs {
			j.app.seq, j.app.original = 0, nil
			if a := j.app; a.clientMsgID != nil {
				k := sentKey{a.m.SenderID, *a.clientMsgID}
				if seen[k] {
					later = append(later, j)
					continue
				}
				seen[k] = true
			}
			round = append(round, j)
		}
		rounds = append(rounds, round)
		jobs = later
	}
	return rounds
}

// sentKey names a message by its sender's client_msg_id.
type sentKey struct{ sender, clientMsgID string }

// appendRound is one round of appends between its two statements' worth
// of round trips: what queueReads learns, for queueWrites.
type appendRound struct {
	jobs    []*job
	convs   []string
	member  []bool
	lastSeq map[string]int64
	sent    map[sentKey]*messageRow
	media   map[string]*mediaAttachRow // the attachments' media, locked
	e2ee    map[string]bool            // the e2ee conversations among convs
}

// mediaAttachRow is what an append checks of a media it attaches.
type mediaAttachRow struct {
	uploaderID, conversationID, state string
	conversationSeq                   int64
	expiresAt                         *int64
}

// queueAppendReads queues on b the reads of a round of appends (no two
// with the same client_msg_id): which senders are members, each
// conversation's last_seq, and the messages their client_msg_ids named
// before. The transaction holds the stamp lock, so nothing changes
// between these reads and the writes queueAppendWrites queues after them.
func queueAppendReads(b *pgx.Batch, jobs []*job) *appendRound {
	n := len(jobs)
	r := &appendRound{
		jobs:    jobs,
		convs:   make([]string, n),
		member:  make([]bool, n),
		lastSeq: make(map[string]int64),
		sent:    make(map[sentKey]*messageRow),
		media:   make(map[string]*mediaAttachRow),
		e2ee:    make(map[string]bool),
	}
	var mediaIDs []string
	for _, j := range jobs {
		for _, at := range j.app.m.Attachments {
			mediaIDs = append(mediaIDs, at.MediaID)
		}
	}
	if len(mediaIDs) > 0 {
		// Locked until the commit: processing or the garbage collector
		// cannot change them between this check and the attach.
		b.Queue(`SELECT id, uploader_id, conversation_id, state, conversation_seq, expires_at FROM media
			WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`, mediaIDs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var m mediaAttachRow
				if err := rows.Scan(&id, &m.uploaderID, &m.conversationID, &m.state, &m.conversationSeq, &m.expiresAt); err != nil {
					return err
				}
				r.media[id] = &m
			}
			return rows.Err()
		})
	}
	senders := make([]string, n)
	var sentSenders, sentIDs []string
	for i, j := range jobs {
		r.convs[i], senders[i] = j.app.m.ConversationID, j.app.m.SenderID
		if id := j.app.clientMsgID; id != nil {
			sentSenders, sentIDs = append(sentSenders, j.app.m.SenderID), append(sentIDs, *id)
		}
	}
	// Each lookup is a LATERAL subquery fenced with OFFSET 0, so that it
	// stays an index probe per element: joined to the unnested arrays
	// directly, it was planned (from a new table's statistics, kept in the
	// cached plan) as a hash join over a sequential scan of the whole
	// table, 10 ms a batch and growing.
	b.Queue(`SELECT a.i, c.last_seq, c.e2ee
		FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS a(conv, sender, i)
		CROSS JOIN LATERAL (SELECT 1 FROM members m WHERE m.conversation_id = a.conv AND m.user_id = a.sender OFFSET 0) m
		CROSS JOIN LATERAL (SELECT last_seq, e2ee FROM conversations c WHERE c.id = a.conv OFFSET 0) c`, r.convs, senders).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var i, seq int64
			var e2ee bool
			if err := rows.Scan(&i, &seq, &e2ee); err != nil {
				return err
			}
			r.member[i-1] = true
			r.lastSeq[r.convs[i-1]] = seq
			if e2ee {
				r.e2ee[r.convs[i-1]] = true
			}
		}
		return rows.Err()
	})
	if len(sentSenders) > 0 {
		b.Queue(`SELECT `+prefixed("m.", messageColumns)+`, m.purged
			FROM unnest($1::text[], $2::text[]) AS a(sender, cmid)
			CROSS JOIN LATERAL (SELECT conversation_id, seq FROM sent_messages s
				WHERE s.sender_id = a.sender AND s.client_msg_id = a.cmid OFFSET 0) s
			CROSS JOIN LATERAL (SELECT * FROM messages m
				WHERE m.conversation_id = s.conversation_id AND m.seq = s.seq OFFSET 0) m`, sentSenders, sentIDs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var row messageRow
				if err := rows.Scan(append(row.fields(), &row.purged)...); err != nil {
					return err
				}
				if row.clientMsgID != nil {
					r.sent[sentKey{row.senderID, *row.clientMsgID}] = &row
				}
			}
			return rows.Err()
		})
	}
	return r
}

// queueAppendWrites decides each append of the round, in queue order,
// from what its reads found, and queues on b the writes of those that
// commit: the messages, their client_msg_id records, and last_seq.
func queueAppendWrites(b *pgx.Batch, stamp int64, r *appendRound) {
	var (
		ins                  insertColumns
		next                 = make(map[string]int64) // conversation -> next seq
		latest               = make(map[string]int64) // conversation -> newest created_at
		sentSenders, sentIDs []string
		sentConvs            []string
		sentSeqs             []int64
		attachIDs            []string
		attachSeqs           []int64
		attached             = make(map[string]bool) // media attached in this round
	)
	for i, j := range r.jobs {
		a := j.app
		var original *messageRow
		if a.clientMsgID != nil {
			original = r.sent[sentKey{a.m.SenderID, *a.clientMsgID}]
		}
		if !r.member[i] {
			// A retry of a message sent here before the sender left gets
			// the original; anything else is not for a non-member to know.
			if original != nil && original.conversationID == a.m.ConversationID {
				a.original = original
				continue
			}
			j.err = parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
			continue
		}
		if original != nil {
			a.original = original
			continue
		}
		if err := engine.CheckE2EEType(a.m, r.e2ee[a.m.ConversationID]); err != nil {
			j.err = err
			continue
		}
		if err := checkAttachments(a.m, r.media, attached); err != nil {
			j.err = err
			continue
		}
		conv := a.m.ConversationID
		seq, ok := next[conv]
		if !ok {
			seq = r.lastSeq[conv] + 1
		}
		next[conv] = seq + 1
		a.seq = seq
		for _, at := range a.m.Attachments {
			attached[at.MediaID] = true
			attachIDs, attachSeqs = append(attachIDs, at.MediaID), append(attachSeqs, seq)
		}
		latest[conv] = max(latest[conv], engine.Millis(a.m.CreatedAt))
		ins.add(a, seq)
		if a.clientMsgID != nil {
			sentSenders, sentIDs = append(sentSenders, a.m.SenderID), append(sentIDs, *a.clientMsgID)
			sentConvs, sentSeqs = append(sentConvs, conv), append(sentSeqs, seq)
		}
	}
	if len(ins.conv) == 0 {
		return
	}
	lastConvs := make([]string, 0, len(next))
	lastSeqs := make([]int64, 0, len(next))
	lastTimes := make([]int64, 0, len(next))
	for conv, seq := range next {
		lastConvs, lastSeqs, lastTimes = append(lastConvs, conv), append(lastSeqs, seq-1), append(lastTimes, latest[conv])
	}
	b.Queue(`INSERT INTO messages (`+messageColumns+`, stamp)
		SELECT u.*, $16::bigint FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
			$7::text[], $8::bytea[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::boolean[], $14::boolean[], $15::bytea[]) AS u`,
		ins.conv, ins.seq, ins.id, ins.sender, ins.device, ins.clientMsgID, ins.typ,
		ins.body, ins.bodyKey, ins.created, ins.expires, ins.edited, ins.deleted, ins.withheld, ins.attachments, stamp)
	if len(attachIDs) > 0 {
		b.Queue(`UPDATE media SET conversation_seq = u.seq, expires_at = NULL
			FROM unnest($1::text[], $2::bigint[]) AS u(id, seq) WHERE media.id = u.id`, attachIDs, attachSeqs)
	}
	if len(sentSenders) > 0 {
		b.Queue(`INSERT INTO sent_messages (sender_id, client_msg_id, conversation_id, seq)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])`,
			sentSenders, sentIDs, sentConvs, sentSeqs)
	}
	b.Queue(`UPDATE conversations c SET last_seq = a.last, updated_at = greatest(c.updated_at, a.t), stamp = $4
		FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS a(id, last, t) WHERE c.id = a.id`,
		lastConvs, lastSeqs, lastTimes, stamp)
}

// insertColumns are the new messages of a round, column by column, for
// one INSERT ... SELECT FROM unnest.
type insertColumns struct {
	conv, id, sender, device, typ []string
	clientMsgID                   []*string
	seq, bodyKey, created         []int64
	expires, edited               []*int64
	body, attachments             [][]byte
	deleted, withheld             []bool
}

func (c *insertColumns) add(a *appendJob, seq int64) {
	m := a.m
	c.conv = append(c.conv, m.ConversationID)
	c.seq = append(c.seq, seq)
	c.id = append(c.id, m.ID)
	c.sender = append(c.sender, m.SenderID)
	c.device = append(c.device, m.SenderDeviceID)
	c.clientMsgID = append(c.clientMsgID, a.clientMsgID)
	c.typ = append(c.typ, string(m.Type))
	c.body = append(c.body, a.sealed)
	c.bodyKey = append(c.bodyKey, a.keyID)
	c.created = append(c.created, engine.Millis(m.CreatedAt))
	c.expires = append(c.expires, nullMillis(m.ExpiresAt))
	c.edited = append(c.edited, nullMillis(m.EditedAt))
	c.deleted = append(c.deleted, m.Deleted)
	c.withheld = append(c.withheld, m.Withheld)
	c.attachments = append(c.attachments, a.attachments)
}

// checkAttachments checks m's attachments against their locked media
// rows (engine.CheckAttach), counting those attached earlier in the same
// round as attached.
func checkAttachments(m *parley.Message, media map[string]*mediaAttachRow, attached map[string]bool) error {
	for _, at := range m.Attachments {
		row, found := media[at.MediaID]
		if !found {
			row = &mediaAttachRow{}
		}
		seq := row.conversationSeq
		if attached[at.MediaID] {
			seq = -1
		}
		var expires int64
		if row.expiresAt != nil {
			expires = *row.expiresAt
		}
		if err := engine.CheckAttach(m, at.MediaID, found, row.uploaderID, row.conversationID, parley.MediaState(row.state), seq, expires); err != nil {
			return err
		}
	}
	return nil
}

// prefixed returns the comma-separated columns with each name prefixed.
func prefixed(prefix, columns string) string {
	var out []byte
	field := true
	for i := 0; i < len(columns); i++ {
		c := columns[i]
		if field && c != ' ' && c != '\n' && c != '\t' {
			out = append(out, prefix...)
			field = false
		}
		if c == ',' {
			field = true
		}
		out = append(out, c)
	}
	return string(out)
}

// Message returns one message unless it has expired at now; CodeNotFound if
// there is none. It reads the primary: a message just acked must be found.
func (s *Store) Message(ctx context.Context, conversationID string, seq int64, now time.Time) (*parley.Message, error) {
	defer s.track("message", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	r, err := scanMessageRow(s.pool.QueryRow(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = $1 AND seq = $2 AND `+notExpired(3), conversationID, seq, engine.Millis(now)))
	if noRows(err) {
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
// parley.HistoryQuery), skipping messages expired at now.
//
// Pages before a seq (older history) read from the replica, if there is
// one and it holds the conversation up to that seq; the newest page and
// pages after a seq read from the primary, since they are what a client
// asks for right after a send or a live event and must hold it.
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
	const from = `SELECT ` + messageColumns + ` FROM messages WHERE conversation_id = $1 `
	var (
		db   querier = s.pool
		sql  string
		args = []any{conversationID, engine.Millis(now), q.Limit}
	)
	switch {
	case q.Before > 0:
		sql = from + `AND seq < $4 AND ` + notExpired(2) + ` ORDER BY seq DESC LIMIT $3`
		args = append(args, q.Before)
		db = s.replicaFor(ctx, conversationID, q.Before-1)
	case q.Forwards():
		sql = from + `AND seq > $4 AND ` + notExpired(2) + ` ORDER BY seq LIMIT $3`
		args = append(args, q.After)
	default:
		sql = from + `AND ` + notExpired(2) + ` ORDER BY seq DESC LIMIT $3`
	}
	rows, err := db.Query(ctx, sql, args...)
	if err != nil && db == querier(s.replica) && ctx.Err() == nil {
		s.replicaFailed(err)
		rows, err = s.pool.Query(ctx, sql, args...)
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
	if !q.Forwards() {
		slices.Reverse(sealed)
	}
	msgs := make([]parley.Message, len(sealed))
	for i, r := range sealed {
		if msgs[i], err = s.open(r); err != nil {
			return nil, err
		}
	}
	return msgs, nil
}

// replicaFor returns the replica if it holds conversationID up to seq
// (its last_seq there is at least seq), else the primary. Edits and
// deletes of older messages may still lag on the replica: history is
// eventually consistent for them, as the consistency rule in
// docs/operations.md says.
func (s *Store) replicaFor(ctx context.Context, conversationID string, seq int64) querier {
	if s.replica == nil {
		return s.pool
	}
	if !s.replicaUsable() {
		s.replicaMisses.Add(1)
		return s.pool
	}
	var last int64
	err := s.replica.QueryRow(ctx, `SELECT last_seq FROM conversations WHERE id = $1`, conversationID).Scan(&last)
	if err != nil && !noRows(err) && ctx.Err() == nil {
		s.replicaFailed(err)
	}
	if err != nil || last < seq {
		s.replicaMisses.Add(1)
		return s.pool
	}
	s.replicaReads.Add(1)
	return s.replica
}

// replicaPause is how long the replica is left alone after it failed a
// read: a replica that does not answer would otherwise cost every read a
// connect timeout before the primary answers it.
const replicaPause = 10 * time.Second

// replicaUsable reports whether there is a replica and it has not failed
// within replicaPause. Reads that skip it count as lagged (ReplicaReads).
func (s *Store) replicaUsable() bool {
	return s.replica != nil && time.Now().UnixNano() >= s.replicaDownUntil.Load()
}

// replicaFailed leaves the replica alone for replicaPause.
func (s *Store) replicaFailed(err error) {
	s.replicaDownUntil.Store(time.Now().Add(replicaPause).UnixNano())
	s.log.Warn("postgres: replica read failed; reading the primary for a while", "err", err, "pause", replicaPause)
}

// UpdateMessage implements parley.Store.
func (s *Store) UpdateMessage(ctx context.Context, conversationID string, seq int64, now time.Time, change func(m *parley.Message) error) (*parley.Message, error) {
	defer s.track("update_message", time.Now())
	var result *parley.Message
	err := s.write(ctx, true, func(t *txn) error {
		result = nil
		r, err := scanMessageRow(t.queryRow(`SELECT `+messageColumns+` FROM messages
			WHERE conversation_id = $1 AND seq = $2 AND `+notExpired(3), conversationID, seq, engine.Millis(now)))
		if noRows(err) {
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
			if _, err := t.exec(`DELETE FROM message_keys WHERE conversation_id = $1 AND seq = $2`, conversationID, seq); err != nil {
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
		if _, err := t.exec(`UPDATE messages SET body = $1, body_key = $2, edited_at = $3, deleted = $4, attachments = $5, stamp = $6, changed = true
			WHERE conversation_id = $7 AND seq = $8`,
			sealed, int64(keyID), nullMillis(m.EditedAt), m.Deleted, attachments, stamp, conversationID, seq); err != nil {
			return s.internal("update message", err)
		}
		if _, err := t.exec(`UPDATE conversations SET stamp = $1 WHERE id = $2`, stamp, conversationID); err != nil {
			return s.internal("update message", err)
		}
		result = &m
		return nil
	})
	return result, err
}

// PurgeExpired implements parley.Store: it blanks up to limit messages
// expired at now, soonest expired first, deletes the rows (and
// client_msg_id records) of messages expired more than
// parley.IdempotencyHorizon ago, every refresh token expired at now and
// the devices left without one (see purgeRefreshTokens), and returns how
// many messages it blanked.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	defer s.track("purge_expired", time.Now())
	if limit < 1 {
		return 0, parley.Errorf(parley.CodeInvalidRequest, "limit must be at least 1")
	}
	var n int64
	sweep := !s.deviceSweep.Load()
	err := s.write(ctx, true, func(t *txn) error {
		// The media of the messages about to be purged go with them (see
		// the SQLite engine).
		if _, err := t.exec(`UPDATE media SET state = 'deleted', expires_at = $1
			WHERE conversation_seq > 0 AND (conversation_id, conversation_seq) IN (
				SELECT conversation_id, seq FROM messages
				WHERE expires_at IS NOT NULL AND NOT purged AND expires_at <= $1 ORDER BY expires_at LIMIT $2)`,
			engine.Millis(now), limit); err != nil {
			return s.internal("purge media", err)
		}
		if _, err := t.exec(`DELETE FROM message_keys WHERE (conversation_id, seq) IN (
				SELECT conversation_id, seq FROM messages
				WHERE expires_at IS NOT NULL AND NOT purged AND expires_at <= $1 ORDER BY expires_at LIMIT $2)`,
			engine.Millis(now), limit); err != nil {
			return s.internal("purge message keys", err)
		}
		var err error
		n, err = t.exec(`UPDATE messages SET body = '', attachments = NULL, purged = true WHERE (conversation_id, seq) IN (
				SELECT conversation_id, seq FROM messages
				WHERE expires_at IS NOT NULL AND NOT purged AND expires_at <= $1 ORDER BY expires_at LIMIT $2)`,
			engine.Millis(now), limit)
		if err != nil {
			return s.internal("purge messages", err)
		}
		if _, err := t.exec(`WITH gone AS (
				DELETE FROM messages WHERE (conversation_id, seq) IN (
					SELECT conversation_id, seq FROM messages
					WHERE expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2)
				RETURNING sender_id, client_msg_id)
			DELETE FROM sent_messages s USING gone
			WHERE s.sender_id = gone.sender_id AND s.client_msg_id = gone.client_msg_id`,
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

// PurgeHistory implements parley.Store as the SQLite engine does: up to
// limit messages created before the given time, oldest first, are blanked
// and their expires_at lowered to it.
func (s *Store) PurgeHistory(ctx context.Context, before time.Time, limit int) (int, error) {
	defer s.track("purge_history", time.Now())
	if limit < 1 {
		return 0, parley.Errorf(parley.CodeInvalidRequest, "limit must be at least 1")
	}
	var n int64
	err := s.write(ctx, true, func(t *txn) error {
		if _, err := t.exec(`UPDATE media SET state = 'deleted', expires_at = $1
			WHERE conversation_seq > 0 AND (conversation_id, conversation_seq) IN (
				SELECT conversation_id, seq FROM messages
				WHERE NOT purged AND created_at < $1 ORDER BY created_at LIMIT $2)`,
			engine.Millis(before), limit); err != nil {
			return s.internal("purge media", err)
		}
		if _, err := t.exec(`DELETE FROM message_keys WHERE (conversation_id, seq) IN (
				SELECT conversation_id, seq FROM messages
				WHERE NOT purged AND created_at < $1 ORDER BY created_at LIMIT $2)`,
			engine.Millis(before), limit); err != nil {
			return s.internal("purge message keys", err)
		}
		var err error
		n, err = t.exec(`UPDATE messages SET body = '', attachments = NULL, purged = true,
				expires_at = CASE WHEN expires_at IS NULL OR expires_at > $1 THEN $1 ELSE expires_at END
			WHERE (conversation_id, seq) IN (
				SELECT conversation_id, seq FROM messages
				WHERE NOT purged AND created_at < $1 ORDER BY created_at LIMIT $2)`,
			engine.Millis(before), limit)
		if err != nil {
			return s.internal("purge history", err)
		}
		return nil
	})
	return int(n), err
}
