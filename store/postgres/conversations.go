package postgres

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// CreateConversation implements parley.Store as the SQLite engine does
// (see its documentation): defaults are filled, a direct pair that has a
// conversation gets that one back with created=false.
func (s *Store) CreateConversation(ctx context.Context, c *parley.Conversation) (*parley.Conversation, bool, error) {
	defer s.track("create_conversation", time.Now())
	if err := engine.PrepareConversation(c); err != nil {
		return nil, false, err
	}
	var key *string // NULL for groups
	if c.Kind == parley.KindDirect {
		k := engine.DirectKey(c.Members[0].UserID, c.Members[1].UserID, c.E2EE)
		key = &k
	}
	var existing *parley.Conversation
	err := s.write(ctx, true, func(t *txn) error {
		existing = nil
		if key != nil {
			var id string
			err := t.queryRow(`SELECT id FROM conversations WHERE direct_key = $1`, *key).Scan(&id)
			if err == nil {
				if existing, err = loadConversation(t.ctx, t.conn, id); err != nil {
					return s.internal("create conversation", err)
				}
				return nil
			}
			if !noRows(err) {
				return s.internal("create conversation", err)
			}
		}
		created := engine.Millis(c.CreatedAt)
		_, err := t.exec(`INSERT INTO conversations (id, kind, title, direct_key, last_seq, created_at, updated_at, stamp, e2ee)
			VALUES ($1, $2, $3, $4, 0, $5, $5, $6, $7)`, c.ID, string(c.Kind), c.Title, key, created, t.changeStamp(), c.E2EE)
		if isUniqueViolation(err) {
			return parley.Errorf(parley.CodeConflict, "the conversation exists already")
		}
		if err != nil {
			return s.internal("create conversation", err)
		}
		for _, m := range c.Members {
			if err := s.insertMember(t, c.ID, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if existing != nil {
		return existing, false, nil
	}
	return c, true, nil
}

// insertMember adds m to a conversation that exists, stamped, and deletes
// the user's tombstone of an earlier membership. CodeNotFound if the user
// does not exist or is not active, CodeConflict if already a member.
func (s *Store) insertMember(t *txn, conversationID string, m parley.Member) error {
	n, err := t.exec(`INSERT INTO members (conversation_id, user_id, role, read_seq, joined_at, stamp, accepted)
		SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM users WHERE id = $2 AND state = 'active')`,
		conversationID, m.UserID, string(m.Role), m.ReadSeq, engine.Millis(m.JoinedAt), t.changeStamp(), !m.Request)
	if isUniqueViolation(err) {
		return parley.Errorf(parley.CodeConflict, "already a member")
	}
	if err != nil {
		return s.internal("insert member", err)
	}
	if n == 0 {
		return parley.Errorf(parley.CodeNotFound, "no such user: %s", m.UserID)
	}
	if _, err := t.exec(`DELETE FROM membership_tombstones WHERE user_id = $1 AND conversation_id = $2`, m.UserID, conversationID); err != nil {
		return s.internal("insert member", err)
	}
	return nil
}

// Conversation returns a conversation with its members, the earliest to
// join first; CodeConversationNotFound if none. One snapshot, on the
// primary.
func (s *Store) Conversation(ctx context.Context, id string) (*parley.Conversation, error) {
	defer s.track("conversation", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	tx, err := s.pool.BeginTx(ctx, snapshot)
	if err != nil {
		return nil, s.internal("read conversation", err)
	}
	defer tx.Rollback(ctx)
	c, err := loadConversation(ctx, tx, id)
	if err != nil {
		if isClientError(err) {
			return nil, err
		}
		return nil, s.internal("read conversation", err)
	}
	return c, nil
}

// snapshot is a read-only transaction whose statements all see one
// snapshot.
var snapshot = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// loadConversation reads a conversation and its members in q.
func loadConversation(ctx context.Context, q querier, id string) (*parley.Conversation, error) {
	var c parley.Conversation
	var created int64
	err := q.QueryRow(ctx, `SELECT id, kind, title, last_seq, created_at, e2ee FROM conversations WHERE id = $1`, id).
		Scan(&c.ID, &c.Kind, &c.Title, &c.LastSeq, &created, &c.E2EE)
	if noRows(err) {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	if err != nil {
		return nil, err
	}
	c.CreatedAt = engine.FromMillis(created)
	rows, err := q.Query(ctx, membersColumns+`WHERE conversation_id = $1`+membersOrder, id)
	if err != nil {
		return nil, err
	}
	members, err := scanMembers(rows)
	if err != nil {
		return nil, err
	}
	c.Members = members[id]
	if c.Members == nil {
		c.Members = []parley.Member{}
	}
	return &c, nil
}

const (
	membersColumns = `SELECT conversation_id, user_id, role, read_seq, delivered_seq, joined_at, accepted FROM members `
	membersOrder   = ` ORDER BY conversation_id, joined_at, user_id`
)

// scanMembers reads rows of membersColumns into members by conversation
// id, and closes rows.
func scanMembers(rows pgx.Rows) (map[string][]parley.Member, error) {
	defer rows.Close()
	members := make(map[string][]parley.Member)
	for rows.Next() {
		var conversationID string
		var m parley.Member
		var joined int64
		var accepted bool
		if err := rows.Scan(&conversationID, &m.UserID, &m.Role, &m.ReadSeq, &m.DeliveredSeq, &joined, &accepted); err != nil {
			return nil, err
		}
		m.JoinedAt = engine.FromMillis(joined)
		m.Request = !accepted
		members[conversationID] = append(members[conversationID], m)
	}
	return members, rows.Err()
}

// ChangeMembers implements parley.Store: load, decide and apply in one
// write job inside its own savepoint, so a failing change leaves nothing.
func (s *Store) ChangeMembers(ctx context.Context, conversationID string, decide func(c *parley.Conversation) (parley.MemberChange, error)) (*parley.Conversation, error) {
	defer s.track("change_members", time.Now())
	var result *parley.Conversation
	err := s.write(ctx, true, func(t *txn) error {
		result = nil
		c, err := loadConversation(t.ctx, t.conn, conversationID)
		if err != nil {
			if isClientError(err) {
				return err
			}
			return s.internal("change members", err)
		}
		change, err := decide(c)
		if err != nil {
			return err
		}
		if len(change.Remove) > 0 || len(change.Roles) > 0 || len(change.Add) > 0 || change.Delete {
			if _, err := t.exec(`UPDATE conversations SET stamp = $1 WHERE id = $2`, t.changeStamp(), conversationID); err != nil {
				return s.internal("change members", err)
			}
		}
		if change.Delete {
			return s.deleteConversation(t, conversationID)
		}
		for _, userID := range change.Remove {
			if err := s.removeMember(t, c, userID); err != nil {
				return err
			}
		}
		for _, userID := range slices.Sorted(maps.Keys(change.Roles)) {
			if err := s.setRole(t, c, userID, change.Roles[userID]); err != nil {
				return err
			}
		}
		for _, m := range change.Add {
			if err := engine.PrepareAddedMember(&m, c.LastSeq); err != nil {
				return err
			}
			if err := s.insertMember(t, conversationID, m); err != nil {
				return err
			}
			c.Members = append(c.Members, m)
		}
		result = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

func (s *Store) removeMember(t *txn, c *parley.Conversation, userID string) error {
	i := slices.IndexFunc(c.Members, func(m parley.Member) bool { return m.UserID == userID })
	if i < 0 {
		return parley.Errorf(parley.CodeNotFound, "user %s is not a member", userID)
	}
	if _, err := t.exec(`DELETE FROM members WHERE conversation_id = $1 AND user_id = $2`, c.ID, userID); err != nil {
		return s.internal("remove member", err)
	}
	if _, err := t.exec(`INSERT INTO membership_tombstones (user_id, conversation_id, stamp) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, conversation_id) DO UPDATE SET stamp = excluded.stamp`, userID, c.ID, t.changeStamp()); err != nil {
		return s.internal("remove member", err)
	}
	if _, err := t.exec(`DELETE FROM device_cursors WHERE conversation_id = $1 AND device_id IN (SELECT id FROM devices WHERE user_id = $2)`, c.ID, userID); err != nil {
		return s.internal("remove member", err)
	}
	c.Members = slices.Delete(c.Members, i, i+1)
	return nil
}

func (s *Store) setRole(t *txn, c *parley.Conversation, userID string, role parley.MemberRole) error {
	if !role.Valid() {
		return parley.Errorf(parley.CodeInvalidRequest, "unknown member role %q", role)
	}
	m := c.MemberOf(userID)
	if m == nil {
		return parley.Errorf(parley.CodeNotFound, "user %s is not a member", userID)
	}
	if _, err := t.exec(`UPDATE members SET role = $1, stamp = $2 WHERE conversation_id = $3 AND user_id = $4`,
		string(role), t.changeStamp(), c.ID, userID); err != nil {
		return s.internal("set member role", err)
	}
	m.Role = role
	return nil
}

// deleteConversation deletes a conversation with its members, messages
// (and their client_msg_id records) and delivery cursors, leaving a
// tombstone for each member.
func (s *Store) deleteConversation(t *txn, id string) error {
	if _, err := t.exec(`INSERT INTO membership_tombstones (user_id, conversation_id, stamp)
		SELECT user_id, conversation_id, $1 FROM members WHERE conversation_id = $2
		ON CONFLICT (user_id, conversation_id) DO UPDATE SET stamp = excluded.stamp`, t.changeStamp(), id); err != nil {
		return s.internal("delete conversation", err)
	}
	if _, err := t.exec(`DELETE FROM sent_messages s USING messages m
		WHERE m.conversation_id = $1 AND m.client_msg_id IS NOT NULL
		AND s.sender_id = m.sender_id AND s.client_msg_id = m.client_msg_id`, id); err != nil {
		return s.internal("delete conversation", err)
	}
	for _, table := range []string{"messages", "message_keys", "device_cursors", "members"} {
		if _, err := t.exec(`DELETE FROM `+table+` WHERE conversation_id = $1`, id); err != nil {
			return s.internal("delete conversation", err)
		}
	}
	if _, err := t.exec(`DELETE FROM conversations WHERE id = $1`, id); err != nil {
		return s.internal("delete conversation", err)
	}
	return nil
}

// MarkRead implements parley.Store in one statement, pipelined with the
// batch's other receipts; it writes nothing when read_seq would not rise.
func (s *Store) MarkRead(ctx context.Context, conversationID, userID string, seq int64) (parley.Watermark, error) {
	defer s.track("mark_read", time.Now())
	var w parley.Watermark
	err := s.writeStmt(ctx, &stmtJob{
		sql: `WITH cur AS (
				SELECT m.read_seq, least($3::bigint, c.last_seq) AS target FROM members m JOIN conversations c ON c.id = m.conversation_id
				WHERE m.conversation_id = $1 AND m.user_id = $2),
			up AS (
				UPDATE members SET read_seq = cur.target, stamp = (SELECT stamp FROM sync_stamp) FROM cur
				WHERE conversation_id = $1 AND user_id = $2 AND cur.target > cur.read_seq
				RETURNING members.read_seq)
			SELECT (SELECT read_seq FROM cur), (SELECT read_seq FROM up)`,
		args: []any{conversationID, userID, seq},
		row: func(row pgx.Row) (error, error) {
			w = parley.Watermark{}
			var current, raised *int64
			if err := row.Scan(&current, &raised); err != nil {
				return nil, s.internal("mark read", err)
			}
			if current == nil {
				return parley.Errorf(parley.CodeConversationNotFound, "no such conversation"), nil
			}
			w.Seq = *current
			if raised != nil {
				w = parley.Watermark{Seq: *raised, Raised: true}
			}
			return nil, nil
		},
	})
	return w, err
}

// SetMute implements parley.Store in one statement, pipelined with the
// batch's receipts: it sets the member's muted_until (NULL for the zero
// time) and raises the member's stamp, as MarkRead does.
func (s *Store) SetMute(ctx context.Context, conversationID, userID string, until time.Time) error {
	defer s.track("set_mute", time.Now())
	return s.writeStmt(ctx, &stmtJob{
		sql: `WITH up AS (
				UPDATE members SET muted_until = $3::bigint, stamp = (SELECT stamp FROM sync_stamp)
				WHERE conversation_id = $1 AND user_id = $2
				RETURNING 1)
			SELECT count(*) FROM up`,
		args: []any{conversationID, userID, nullMillis(until)},
		row: func(row pgx.Row) (error, error) {
			var n int64
			if err := row.Scan(&n); err != nil {
				return nil, s.internal("set mute", err)
			}
			if n == 0 {
				return parley.Errorf(parley.CodeConversationNotFound, "no such conversation"), nil
			}
			return nil, nil
		},
	})
}

// MarkDelivered implements parley.Store in one statement, pipelined with
// the batch's other receipts; it writes nothing when neither watermark
// would rise.
func (s *Store) MarkDelivered(ctx context.Context, conversationID, userID, deviceID string, seq int64) (device, user parley.Watermark, err error) {
	defer s.track("mark_delivered", time.Now())
	// cur is the member's state (no row: not a member); dev the device's
	// owner and cursor (no row: no such device). The writes run only when
	// the device is the member's and the target is higher.
	err = s.writeStmt(ctx, &stmtJob{
		sql: `WITH cur AS (
				SELECT m.delivered_seq, least($4::bigint, c.last_seq) AS target FROM members m JOIN conversations c ON c.id = m.conversation_id
				WHERE m.conversation_id = $1 AND m.user_id = $2),
			dev AS (
				SELECT d.user_id, dc.delivered_seq FROM devices d
				LEFT JOIN device_cursors dc ON dc.device_id = d.id AND dc.conversation_id = $1
				WHERE d.id = $3),
			ok AS (
				SELECT cur.target, coalesce(dev.delivered_seq, 0) AS dseq, cur.delivered_seq AS useq
				FROM cur, dev WHERE dev.user_id = $2),
			upd AS (
				INSERT INTO device_cursors (device_id, conversation_id, delivered_seq)
				SELECT $3, $1, ok.target FROM ok WHERE ok.target > ok.dseq
				ON CONFLICT (device_id, conversation_id) DO UPDATE SET delivered_seq = excluded.delivered_seq
				RETURNING delivered_seq),
			upu AS (
				UPDATE members SET delivered_seq = ok.target, stamp = (SELECT stamp FROM sync_stamp) FROM ok
				WHERE conversation_id = $1 AND user_id = $2 AND ok.target > ok.useq
				RETURNING members.delivered_seq)
			SELECT (SELECT delivered_seq FROM cur), (SELECT user_id FROM dev), (SELECT delivered_seq FROM dev),
				(SELECT delivered_seq FROM upd), (SELECT delivered_seq FROM upu)`,
		args: []any{conversationID, userID, deviceID, seq},
		row: func(row pgx.Row) (error, error) {
			device, user = parley.Watermark{}, parley.Watermark{}
			var (
				owner                            *string
				member, cursor, dRaised, uRaised *int64
			)
			if err := row.Scan(&member, &owner, &cursor, &dRaised, &uRaised); err != nil {
				return nil, s.internal("mark delivered", err)
			}
			if member == nil {
				return parley.Errorf(parley.CodeConversationNotFound, "no such conversation"), nil
			}
			user.Seq = *member
			if owner == nil || *owner != userID {
				return parley.Errorf(parley.CodeNotFound, "no such device"), nil
			}
			if cursor != nil {
				device.Seq = *cursor
			}
			if dRaised != nil {
				device = parley.Watermark{Seq: *dRaised, Raised: true}
			}
			if uRaised != nil {
				user = parley.Watermark{Seq: *uRaised, Raised: true}
			}
			return nil, nil
		},
	})
	return device, user, err
}

// Member implements parley.Store with one primary-key lookup.
func (s *Store) Member(ctx context.Context, conversationID, userID string) (*parley.Member, error) {
	defer s.track("member", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	m := parley.Member{UserID: userID}
	var joined int64
	var accepted bool
	err := s.pool.QueryRow(ctx, `SELECT role, read_seq, delivered_seq, joined_at, accepted FROM members WHERE conversation_id = $1 AND user_id = $2`,
		conversationID, userID).Scan(&m.Role, &m.ReadSeq, &m.DeliveredSeq, &joined, &accepted)
	if noRows(err) {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	if err != nil {
		return nil, s.internal("read member", err)
	}
	m.JoinedAt = engine.FromMillis(joined)
	m.Request = !accepted
	return &m, nil
}
