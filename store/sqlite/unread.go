package sqlite

import (
	"context"
	"time"

	"github.com/parleychat/parley/store/internal/engine"
)

// unreadSQL sums the unread counts (unreadCount) of the member ?2 at the
// time ?1: over all the user's memberships (members_user), and of the
// conversation ?3 alone. Each membership's count is one range of the
// messages' primary key, as in viewQuery.
const unreadSQL = `
SELECT coalesce(sum(n), 0), coalesce(sum(CASE WHEN id = ?3 THEN n END), 0)
FROM (SELECT me.conversation_id AS id, ` + unreadCount + ` AS n FROM members me WHERE me.user_id = ?2)`

// Unread implements parley.Store with one query.
func (s *Store) Unread(ctx context.Context, userID, conversationID string, now time.Time) (conv, total int64, err error) {
	defer s.track("unread", time.Now())
	if s.closed.Load() {
		return 0, 0, errClosed
	}
	if err := s.rst.unread.QueryRowContext(ctx, engine.Millis(now), userID, conversationID).Scan(&total, &conv); err != nil {
		return 0, 0, s.internal("read unread counts", err)
	}
	return conv, total, nil
}
