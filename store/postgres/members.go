package postgres

import (
	"context"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// MemberCount implements parley.Store with one bounded read of the
// members' primary key.
func (s *Store) MemberCount(ctx context.Context, conversationID string, upTo int) (int, error) {
	defer s.track("member_count", time.Now())
	if s.closed.Load() {
		return 0, errClosed
	}
	var n int64
	if err := s.pool.QueryRow(ctx, engine.MemberCountSQL, conversationID, engine.CountLimit(upTo)).Scan(&n); err != nil {
		return 0, s.internal("count members", err)
	}
	return int(n), nil
}

// membersPageSQL reads a page of members from the primary key
// (conversation_id, user_id), so its cost follows the page.
const membersPageSQL = membersColumns + `WHERE conversation_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3`

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
	tx, err := s.pool.BeginTx(ctx, snapshot)
	if err != nil {
		return nil, 0, s.internal("read members", err)
	}
	defer tx.Rollback(ctx)
	var id string
	err = tx.QueryRow(ctx, `SELECT id FROM conversations WHERE id = $1`, conversationID).Scan(&id)
	if noRows(err) {
		return nil, 0, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	if err != nil {
		return nil, 0, s.internal("read members", err)
	}
	var count int64
	if err := tx.QueryRow(ctx, engine.MemberCountSQL, conversationID, engine.CountLimit(0)).Scan(&count); err != nil {
		return nil, 0, s.internal("read members", err)
	}
	rows, err := tx.Query(ctx, membersPageSQL, conversationID, q.After, q.Limit)
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
	return page, int(count), nil
}
