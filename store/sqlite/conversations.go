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
)

// querier is what reads need: a *sql.DB, or a *sql.Tx of a reader or of the
// writer.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// directKey is the unique key of the direct conversation between two users:
// their ids in order, joined.
func directKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + ":" + b
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
	if err := prepareConversation(c); err != nil {
		return nil, false, err
	}
	var key any // NULL for groups
	if c.Kind == parley.KindDirect {
		key = directKey(c.Members[0].UserID, c.Members[1].UserID)
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
		created := millis(c.CreatedAt)
		_, err := t.exec(`INSERT INTO conversations (id, kind, title, direct_key, last_seq, created_at, updated_at)
			VALUES (?, ?, ?, ?, 0, ?, ?)`, c.ID, string(c.Kind), c.Title, key, created, created)
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

// prepareConversation checks c and sets its defaults and precision.
func prepareConversation(c *parley.Conversation) error {
	if c.ID == "" {
		return parley.Errorf(parley.CodeInvalidRequest, "a conversation needs an id")
	}
	switch c.Kind {
	case parley.KindDirect:
		if len(c.Members) != 2 || c.Members[0].UserID == c.Members[1].UserID {
			return parley.Errorf(parley.CodeInvalidRequest, "a direct conversation has exactly two different members")
		}
	case parley.KindGroup:
		if len(c.Members) > parley.MaxGroupMembers {
			return parley.Errorf(parley.CodeInvalidRequest, "a group has at most %d members", parley.MaxGroupMembers)
		}
	default:
		return parley.Errorf(parley.CodeInvalidRequest, "unknown conversation kind %q", c.Kind)
	}
	c.CreatedAt = normalTime(c.CreatedAt)
	c.LastSeq = 0
	seen := make(map[string]bool, len(c.Members))
	for i := range c.Members {
		m := &c.Members[i]
		if seen[m.UserID] {
			return parley.Errorf(parley.CodeInvalidRequest, "user %s is listed twice", m.UserID)
		}
		seen[m.UserID] = true
		if m.Role == "" {
			m.Role = parley.MemberRoleMember
		}
		if !m.Role.Valid() {
			return parley.Errorf(parley.CodeInvalidRequest, "unknown member role %q", m.Role)
		}
		if m.JoinedAt.IsZero() {
			m.JoinedAt = c.CreatedAt
		}
		m.JoinedAt = normalTime(m.JoinedAt)
		m.ReadSeq = 0
	}
	return nil
}

// insertMember adds m to a conversation that exists. CodeNotFound if the
// user does not exist, CodeConflict if already a member.
func insertMember(t *txn, conversationID string, m parley.Member) error {
	res, err := t.exec(`INSERT INTO members (conversation_id, user_id, role, read_seq, joined_at)
		SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE id = ?)`,
		conversationID, m.UserID, string(m.Role), m.ReadSeq, millis(m.JoinedAt), m.UserID)
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
	err := q.QueryRowContext(ctx, `SELECT id, kind, title, last_seq, created_at FROM conversations WHERE id = ?`, id).
		Scan(&c.ID, &c.Kind, &c.Title, &c.LastSeq, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	if err != nil {
		return nil, err
	}
	c.CreatedAt = fromMillis(created)
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
	rows, err := q.QueryContext(ctx, `SELECT conversation_id, user_id, role, read_seq, joined_at FROM members `+where+
		` ORDER BY conversation_id, joined_at, user_id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	members := make(map[string][]parley.Member)
	for rows.Next() {
		var conversationID string
		var m parley.Member
		var joined int64
		if err := rows.Scan(&conversationID, &m.UserID, &m.Role, &m.ReadSeq, &joined); err != nil {
			return nil, err
		}
		m.JoinedAt = fromMillis(joined)
		members[conversationID] = append(members[conversationID], m)
	}
	return members, rows.Err()
}

// AddMember adds m to a conversation. An empty role becomes
// MemberRoleMember, a zero JoinedAt the current time; ReadSeq is clamped to
// 0..last_seq. CodeConflict if already a member, CodeNotFound if the user
// does not exist, CodeConversationNotFound if the conversation does not.
func (s *Store) AddMember(ctx context.Context, conversationID string, m parley.Member) error {
	defer s.track("add_member", time.Now())
	if m.Role == "" {
		m.Role = parley.MemberRoleMember
	}
	if !m.Role.Valid() {
		return parley.Errorf(parley.CodeInvalidRequest, "unknown member role %q", m.Role)
	}
	if m.JoinedAt.IsZero() {
		m.JoinedAt = time.Now()
	}
	return s.write(ctx, true, func(t *txn) error {
		var lastSeq int64
		err := t.queryRow(`SELECT last_seq FROM conversations WHERE id = ?`, conversationID).Scan(&lastSeq)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
		}
		if err != nil {
			return s.internal("add member", err)
		}
		m := m
		m.ReadSeq = min(max(m.ReadSeq, 0), lastSeq)
		return insertMember(t, conversationID, m)
	})
}

// RemoveMember removes a member; CodeNotFound if not a member.
func (s *Store) RemoveMember(ctx context.Context, conversationID, userID string) error {
	defer s.track("remove_member", time.Now())
	return s.write(ctx, true, func(t *txn) error {
		res, err := t.exec(`DELETE FROM members WHERE conversation_id = ? AND user_id = ?`, conversationID, userID)
		if err != nil {
			return s.internal("remove member", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return s.internal("remove member", err)
		} else if n == 0 {
			return parley.Errorf(parley.CodeNotFound, "not a member")
		}
		return nil
	})
}

// SetMemberRoles sets the roles of the given members in one transaction;
// if one is not a member (CodeNotFound) or a role is unknown
// (CodeInvalidRequest), nothing changes.
func (s *Store) SetMemberRoles(ctx context.Context, conversationID string, roles map[string]parley.MemberRole) error {
	defer s.track("set_member_roles", time.Now())
	for _, r := range roles {
		if !r.Valid() {
			return parley.Errorf(parley.CodeInvalidRequest, "unknown member role %q", r)
		}
	}
	users := slices.Sorted(maps.Keys(roles))
	return s.write(ctx, true, func(t *txn) error {
		for _, userID := range users {
			res, err := t.exec(`UPDATE members SET role = ? WHERE conversation_id = ? AND user_id = ?`,
				string(roles[userID]), conversationID, userID)
			if err != nil {
				return s.internal("set member roles", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return s.internal("set member roles", err)
			} else if n == 0 {
				return parley.Errorf(parley.CodeNotFound, "user %s is not a member", userID)
			}
		}
		return nil
	})
}

// DeleteConversation deletes a conversation with its members, messages and
// delivery cursors; CodeConversationNotFound if none. It runs in one write,
// so a conversation with a very long history holds up other writes while it
// is deleted.
func (s *Store) DeleteConversation(ctx context.Context, id string) error {
	defer s.track("delete_conversation", time.Now())
	return s.write(ctx, true, func(t *txn) error {
		var one int
		err := t.queryRow(`SELECT 1 FROM conversations WHERE id = ?`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
		}
		if err != nil {
			return s.internal("delete conversation", err)
		}
		for _, table := range []string{"messages", "device_cursors", "members"} {
			if _, err := t.exec(`DELETE FROM `+table+` WHERE conversation_id = ?`, id); err != nil {
				return s.internal("delete conversation", err)
			}
		}
		if _, err := t.exec(`DELETE FROM conversations WHERE id = ?`, id); err != nil {
			return s.internal("delete conversation", err)
		}
		return nil
	})
}

// MarkRead raises userID's read_seq to min(seq, last_seq) if that is higher
// and returns the resulting read_seq; it never lowers it and writes nothing
// when it would not rise. CodeConversationNotFound if userID is not a
// member.
func (s *Store) MarkRead(ctx context.Context, conversationID, userID string, seq int64) (int64, error) {
	defer s.track("mark_read", time.Now())
	var readSeq int64
	err := s.write(ctx, false, func(t *txn) error {
		var lastSeq int64
		err := t.stmt(s.wst.readState).QueryRowContext(bg, conversationID, userID).Scan(&readSeq, &lastSeq)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
		}
		if err != nil {
			return s.internal("mark read", err)
		}
		if target := min(seq, lastSeq); target > readSeq {
			if _, err := t.stmt(s.wst.setReadSeq).ExecContext(bg, target, conversationID, userID); err != nil {
				return s.internal("mark read", err)
			}
			readSeq = target
		}
		return nil
	})
	return readSeq, err
}
