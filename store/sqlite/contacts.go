package sqlite

import (
	"context"
	"time"
)

// Contacts implements parley.Store with one join on members.
func (s *Store) Contacts(ctx context.Context, userID string) ([]string, error) {
	defer s.track("contacts", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT DISTINCT o.user_id FROM members me
		JOIN members o ON o.conversation_id = me.conversation_id
		WHERE me.user_id = ?1 AND o.user_id <> ?1`, userID)
	if err != nil {
		return nil, s.internal("read contacts", err)
	}
	defer rows.Close()
	ids := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.internal("read contacts", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read contacts", err)
	}
	return ids, nil
}
