package postgres

import (
	"context"
	"time"

	"github.com/parleychat/parley/store/internal/engine"
)

// unreadSQL sums the unread counts (unreadCount) of the member $2 at the
// time $1: over all the user's memberships (members_user), and of the
// conversation $3 alone. Each membership's count is a subquery, one
// range of the messages' primary key, as in viewQuery: a join of members
// and messages lets the planner hash-join a scan of every message.
const unreadSQL = `
SELECT coalesce(sum(n), 0)::bigint, coalesce(sum(n) FILTER (WHERE id = $3), 0)::bigint
FROM (SELECT me.conversation_id AS id, ` + unreadCount + ` AS n FROM members me WHERE me.user_id = $2) per`

// Unread implements parley.Store with one query, on the primary.
func (s *Store) Unread(ctx context.Context, userID, conversationID string, now time.Time) (conv, total int64, err error) {
	defer s.track("unread", time.Now())
	if s.closed.Load() {
		return 0, 0, errClosed
	}
	if err := s.pool.QueryRow(ctx, unreadSQL, engine.Millis(now), userID, conversationID).Scan(&total, &conv); err != nil {
		return 0, 0, s.internal("read unread counts", err)
	}
	return conv, total, nil
}
