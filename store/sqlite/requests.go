package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/parleychat/parley"
)

// AcceptConversation implements parley.Store in one write transaction.
func (s *Store) AcceptConversation(ctx context.Context, conversationID, userID string) (bool, error) {
	defer s.track("accept_conversation", time.Now())
	var changed bool
	err := s.write(ctx, true, func(t *txn) error {
		var accepted bool
		err := t.queryRow(`SELECT accepted FROM members WHERE conversation_id = ? AND user_id = ?`, conversationID, userID).Scan(&accepted)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
		}
		if err != nil {
			return s.internal("accept conversation", err)
		}
		changed = !accepted
		if accepted {
			return nil
		}
		if _, err := t.exec(`UPDATE members SET accepted = 1, stamp = ? WHERE conversation_id = ? AND user_id = ?`,
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
	list, err := json.Marshal(userIDs)
	if err != nil {
		return nil, s.internal("read strangers", err)
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT x.value FROM json_each(?2) x
		WHERE NOT EXISTS (SELECT 1 FROM members me JOIN members o ON o.conversation_id = me.conversation_id
			WHERE me.user_id = ?1 AND o.user_id = x.value AND me.accepted = 1 AND o.accepted = 1)
		ORDER BY x.key`, userID, string(list))
	if err != nil {
		return nil, s.internal("read strangers", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.internal("read strangers", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read strangers", err)
	}
	return ids, nil
}
