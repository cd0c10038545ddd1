package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// memberCountSQL is engine.MemberCountSQL with SQLite's parameters.
var memberCountSQL = strings.ReplaceAll(engine.MemberCountSQL, "$", "?")

// MemberCount implements parley.Store with one bounded read of the
// members' primary key.
func (s *Store) MemberCount(ctx context.Context, conversationID string, upTo int) (int, error) {
	defer s.track("member_count", time.Now())
	if s.closed.Load() {
		return 0, errClosed
	}
	var n int
	if err := s.readDB.QueryRowContext(ctx, memberCountSQL, conversationID, engine.CountLimit(upTo)).Scan(&n); err != nil {
		return 0, s.internal("count members", err)
	}
	return n, nil
}

// membersPageSQL reads a page of members from the primary key
// (conversation_id, user_id), so its cost follows the page.
const membersPageSQL = membersColumns + `WHERE conversation_id = ? AND user_id > ? ORDER BY user_id LIMIT ?`

// Members implements parley.Store: the page and the count from one
// snapshot.
func (s *Store) Members(ctx context.Context, conversationID string, q parley.MembersQuery) ([]parley.Member, int, error) {
	defer s.track("members", time.Now())
	if err := engine.CheckMembersQuery(q); err != nil {
		return nil, 0, err
	}
	if s.closed.Load() {
		return nil, 0, errClosed
	}
	tx, err := s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, s.internal("read members", err)
	}
	defer tx.Rollback()
	var id string
	err = tx.QueryRowContext(ctx, `SELECT id FROM conversations WHERE id = ?`, conversationID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	if err != nil {
		return nil, 0, s.internal("read members", err)
	}
	var count int
	if err := tx.QueryRowContext(ctx, memberCountSQL, conversationID, engine.CountLimit(0)).Scan(&count); err != nil {
		return nil, 0, s.internal("read members", err)
	}
	rows, err := tx.QueryContext(ctx, membersPageSQL, conversationID, q.After, q.Limit)
	if err != nil {
		return nil, 0, s.internal("read members", err)
	}
	byConv, err := scanMembers(rows)
	if err != nil {
		return nil, 0, s.internal("read members", err)
	}
	page := byConv[conversationID]
	if page == nil {
		page = []parley.Member{}
	}
	return page, count, nil
}
