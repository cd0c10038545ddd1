package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley"
)

// AcceptConversation implements parley.Store in one write transaction.
func (s *Store) AcceptConversation(ctx context.Context, conversationID, userID string) (bool, error) {
	defer s.track("accept_conversation", time.Now())
	var changed bool
	err := s.write(ctx, true, func(t *txn) error {
		var accepted bool
		err := t.queryRow(`SELECT accepted FROM members WHERE conversation_id = $1 AND user_id = $2 FOR UPDATE`, conversationID, userID).Scan(&accepted)
		if noRows(err) {
			return parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
		}
		if err != nil {
			return s.internal("accept conversation", err)
		}
		changed = !accepted
		if accepted {
			return nil
		}
		if _, err := t.exec(`UPDATE members SET accepted = true, stamp = $1 WHERE conversation_id = $2 AND user_id = $3`,
			t.changeStamp(), conversationID, userID); err != nil {
			return s.internal("accept conversation", err)
		}
		return nil
	})
	return changed, err
}

// Strangers implements parley.Store with one query.
func (s *Store) Strangers(ctx context.Context, userID string, userIDs []string) ([]string, error) {
	defer s.track("strangers", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	if len(userIDs) > parley.MaxGroupMembersCap {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "at most %d users", parley.MaxGroupMembersCap)
	}
	if len(userIDs) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT x.id FROM unnest($2::text[]) WITH ORDINALITY AS x(id, n)
		WHERE NOT EXISTS (SELECT 1 FROM members me JOIN members o ON o.conversation_id = me.conversation_id
			WHERE me.user_id = $1 AND o.user_id = x.id AND me.accepted AND o.accepted)
		ORDER BY x.n`, userID, userIDs)
	if err != nil {
		return nil, s.internal("read strangers", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.internal("read strangers", err)
	}
	return ids, nil
}
