package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// querier is what reads need: a *sql.DB, or a *sql.Tx of a reader or of the
// writer.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// CreateConversation inserts c with its members. Empty member roles become
// MemberRoleMember, zero JoinedAt becomes c.CreatedAt, LastSeq and ReadSeq
// start at 0, times are set to their stored precision. A direct
// conversation must have exactly two different members; if that pair has one
// already, it is returned with created=false and nothing is written.
// CodeNotFound if a member user does not exist, CodeConflict if the id is
// taken, CodeInvalidRequest for a bad kind, role or member list.
func (s *Store) CreateConversation(ctx context.Context, c *parley.Conversation) (*parley.Conversation, bool, error) {
	defer s.track("create_conversation", time.Now())
	if err := engine.PrepareConversation(c); err != nil {
		return nil, false, err
	}
	var key any // NULL for groups
	if c.Kind == parley.KindDirect {
		key = engine.DirectKey(c.Members[0].UserID, c.Members[1].UserID, c.E2EE)
	}
	var existing *parley.Conversation
	err := s.write(ctx, true, func(t *txn) error {
		existing = nil
		if key != nil {
			var id string
			err := t.queryRow(`SELECT id FROM conversations WHERE direct_key = ?`, key).Scan(&id)
			if err == nil {
				existing, err = loadConversation(bg, t.tx, id)
				if err != nil {
					return s.internal("create conversation", err)
				}
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return s.internal("create conversation", err)
			}
		}
		created := engine.Millis(c.CreatedAt)
		_, err := t.exec(`INSERT INTO conversations (id, kind, title, direct_key, last_seq, created_at, updated_at, stamp, e2ee)
			VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)`, c.ID, string(c.Kind), c.Title, key, created, created, t.changeStamp(), c.E2EE)
		if isUniqueViolation(err) {
			return parley.Errorf(parley.CodeConflict, "the conversation exists already")
		}
		if err != nil {
			return s.internal("create conversation", err)
		}
		for _, m := range c.Members {
			if err := insertMember(t, c.ID, m); err != nil {
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
// does not exist, CodeConflict if already a member.
func insertMember(t *txn, conversationID string, m parley.Member) error {
	res, err := t.exec(`INSERT INTO members (conversation_id, user_id, role, read_seq, joined_at, stamp, accepted)
		SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE id = ? AND state = 'active')`,
		conversationID, m.UserID, string(m.Role), m.ReadSeq, engine.Millis(m.JoinedAt), t.changeStamp(), !m.Request, m.UserID)
	if isUniqueViolation(err) {
		return parley.Errorf(parley.CodeConflict, "already a member")
	}
	if err != nil {
		return fmt.Errorf("sqlite: insert member: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: insert member: %w", err)
	} else if n == 0 {
		return parley.Errorf(parley.CodeNotFound, "no such user: %s", m.UserID)
	}
	if _, err := t.exec(`DELETE FROM membership_tombstones WHERE user_id = ? AND conversation_id = ?`, m.UserID, conversationID); err != nil {
		return fmt.Errorf("sqlite: insert member: %w", err)
	}
	return nil
}

// Conversation returns a conversation with its members, the earliest to
// join first; CodeConversationNotFound if none.
func (s *Store) Conversation(ctx context.Context, id string) (*parley.Conversation, error) {
	defer s.track("conversation", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	tx, err := s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.internal("read conversation", err)
	}
	defer tx.Rollback()
	c, err := loadConversation(ctx, tx, id)
	if err != nil {
		if isClientError(err) {
			return nil, err
		}
		return nil, s.internal("read conversation", err)
	}
	return c, nil
}

// loadConversation reads a conversation and its members in q.
func loadConversation(ctx context.Context, q querier, id string) (*parley.Conversation, error) {
	var c parley.Conversation
	var created int64
	err := q.QueryRowContext(ctx, `SELECT id, kind, title, last_seq, created_at, e2ee FROM conversations WHERE id = ?`, id).
		Scan(&c.ID, &c.Kind, &c.Title, &c.LastSeq, &created, &c.E2EE)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	if err != nil {
		return nil, err
	}
	c.CreatedAt = engine.FromMillis(created)
	members, err := loadMembers(ctx, q, `WHERE conversation_id = ?`, id)
	if err != nil {
		return nil, err
	}
	c.Members = members[id]
	if c.Members == nil {
		c.Members = []parley.Member{}
	}
	return &c, nil
}

// loadMembers reads the members of the conversations that where (a
// constant filter on members, as table m) selects, by conversation id.
func loadMembers(ctx context.Context, q querier, where string, args ...any) (map[string][]parley.Member, error) {
	rows, err := q.QueryContext(ctx, membersColumns+where+membersOrder, args...)
	if err != nil {
		return nil, err
	}
	return scanMembers(rows)
}

// scanMembers reads rows of membersColumns into members by conversation
// id, and closes rows.
func scanMembers(rows *sql.Rows) (map[string][]parley.Member, error) {
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
// write job, inside its own savepoint, so a failing change leaves nothing.
func (s *Store) ChangeMembers(ctx context.Context, conversationID string, decide func(c *parley.Conversation) (parley.MemberChange, error)) (*parley.Conversation, error) {
	defer s.track("change_members", time.Now())
	var result *parley.Conversation
	err := s.write(ctx, true, func(t *txn) error {
		result = nil
		c, err := loadConversation(bg, t.tx, conversationID)
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
			if _, err := t.exec(`UPDATE conversations SET stamp = ? WHERE id = ?`, t.changeStamp(), conversationID); err != nil {
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
			if err := insertMember(t, conversationID, m); err != nil {
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
	if _, err := t.exec(`DELETE FROM members WHERE conversation_id = ? AND user_id = ?`, c.ID, userID); err != nil {
		return s.internal("remove member", err)
	}
	if _, err := t.exec(`INSERT INTO membership_tombstones (user_id, conversation_id, stamp) VALUES (?, ?, ?)
		ON CONFLICT (user_id, conversation_id) DO UPDATE SET stamp = excluded.stamp`, userID, c.ID, t.changeStamp()); err != nil {
		return s.internal("remove member", err)
	}
	if _, err := t.exec(`DELETE FROM device_cursors WHERE conversation_id = ? AND device_id IN (SELECT id FROM devices WHERE user_id = ?)`, c.ID, userID); err != nil {
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
	if _, err := t.exec(`UPDATE members SET role = ?, stamp = ? WHERE conversation_id = ? AND user_id = ?`,
		string(role), t.changeStamp(), c.ID, userID); err != nil {
		return s.internal("set member role", err)
	}
	m.Role = role
	return nil
}

// deleteConversation deletes a conversation with its members, messages and
// delivery cursors, leaving a tombstone for each member. It runs in one
// write, so a conversation with a very long history holds up other writes
// while it is deleted.
func (s *Store) deleteConversation(t *txn, id string) error {
	if _, err := t.exec(`INSERT INTO membership_tombstones (user_id, conversation_id, stamp)
		SELECT user_id, conversation_id, ? FROM members WHERE conversation_id = ?
		ON CONFLICT (user_id, conversation_id) DO UPDATE SET stamp = excluded.stamp`, t.changeStamp(), id); err != nil {
		return s.internal("delete conversation", err)
	}
	for _, table := range []string{"messages", "message_keys", "device_cursors", "members"} {
		if _, err := t.exec(`DELETE FROM `+table+` WHERE conversation_id = ?`, id); err != nil {
			return s.internal("delete conversation", err)
		}
	}
	if _, err := t.exec(`DELETE FROM conversations WHERE id = ?`, id); err != nil {
		return s.internal("delete conversation", err)
	}
	return nil
}

// MarkRead implements parley.Store; it writes nothing when read_seq would
// not rise.
func (s *Store) MarkRead(ctx context.Context, conversationID, userID string, seq int64) (parley.Watermark, error) {
	defer s.track("mark_read", time.Now())
	var w parley.Watermark
	err := s.write(ctx, false, func(t *txn) error {
		w = parley.Watermark{}
		var lastSeq int64
		err := t.stmt(s.wst.readState).QueryRowContext(bg, conversationID, userID).Scan(&w.Seq, &lastSeq)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
		}
		if err != nil {
			return s.internal("mark read", err)
		}
		if target := min(seq, lastSeq); target > w.Seq {
			if _, err := t.stmt(s.wst.setReadSeq).ExecContext(bg, target, t.changeStamp(), conversationID, userID); err != nil {
				return s.internal("mark read", err)
			}
			w = parley.Watermark{Seq: target, Raised: true}
		}
		return nil
	})
	return w, err
}

// SetMute implements parley.Store: it sets the member's muted_until (NULL
// for the zero time) and raises the member's stamp, as MarkRead does.
func (s *Store) SetMute(ctx context.Context, conversationID, userID string, until time.Time) error {
	defer s.track("set_mute", time.Now())
	return s.write(ctx, false, func(t *txn) error {
		// One statement: when it fails with a client error it has
		// written nothing, so the job needs no savepoint (see writer.go).
		res, err := t.exec(`UPDATE members SET muted_until = ?, stamp = ? WHERE conversation_id = ? AND user_id = ?`,
			nullMillis(until), t.changeStamp(), conversationID, userID)
		if err != nil {
			return s.internal("set mute", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return s.internal("set mute", err)
		} else if n == 0 {
			return parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
		}
		return nil
	})
}

// MarkDelivered implements parley.Store. It writes nothing when neither
// watermark would rise.
func (s *Store) MarkDelivered(ctx context.Context, conversationID, userID, deviceID string, seq int64) (device, user parley.Watermark, err error) {
	defer s.track("mark_delivered", time.Now())
	err = s.write(ctx, false, func(t *txn) error {
		device, user = parley.Watermark{}, parley.Watermark{}
		var lastSeq int64
		err := t.queryRow(`SELECT m.delivered_seq, c.last_seq FROM members m JOIN conversations c ON c.id = m.conversation_id
			WHERE m.conversation_id = ? AND m.user_id = ?`, conversationID, userID).Scan(&user.Seq, &lastSeq)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
		}
		if err != nil {
			return s.internal("mark delivered", err)
		}
		var owner string
		var cursor sql.NullInt64
		err = t.queryRow(`SELECT d.user_id, dc.delivered_seq FROM devices d
			LEFT JOIN device_cursors dc ON dc.device_id = d.id AND dc.conversation_id = ?
			WHERE d.id = ?`, conversationID, deviceID).Scan(&owner, &cursor)
		if errors.Is(err, sql.ErrNoRows) || err == nil && owner != userID {
			return parley.Errorf(parley.CodeNotFound, "no such device")
		}
		if err != nil {
			return s.internal("mark delivered", err)
		}
		device.Seq = cursor.Int64
		target := min(seq, lastSeq)
		// Both checks are done; from here on the job only writes, so it
		// needs no savepoint (see writer.go).
		if target > device.Seq {
			if _, err := t.exec(`INSERT INTO device_cursors (device_id, conversation_id, delivered_seq) VALUES (?, ?, ?)
				ON CONFLICT (device_id, conversation_id) DO UPDATE SET delivered_seq = excluded.delivered_seq`,
				deviceID, conversationID, target); err != nil {
				return s.internal("mark delivered", err)
			}
			device = parley.Watermark{Seq: target, Raised: true}
		}
		if target > user.Seq {
			if _, err := t.exec(`UPDATE members SET delivered_seq = ?, stamp = ? WHERE conversation_id = ? AND user_id = ?`,
				target, t.changeStamp(), conversationID, userID); err != nil {
				return s.internal("mark delivered", err)
			}
			user = parley.Watermark{Seq: target, Raised: true}
		}
		return nil
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
	err := s.readDB.QueryRowContext(ctx, `SELECT role, read_seq, delivered_seq, joined_at, accepted FROM members WHERE conversation_id = ? AND user_id = ?`,
		conversationID, userID).Scan(&m.Role, &m.ReadSeq, &m.DeliveredSeq, &joined, &accepted)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	if err != nil {
		return nil, s.internal("read member", err)
	}
	m.JoinedAt = engine.FromMillis(joined)
	m.Request = !accepted
	return &m, nil
}
