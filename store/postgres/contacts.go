package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Contacts implements parley.Store with one join on members.
func (s *Store) Contacts(ctx context.Context, userID string) ([]string, error) {
	defer s.track("contacts", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT o.user_id FROM members me
		JOIN members o ON o.conversation_id = me.conversation_id
		WHERE me.user_id = $1 AND o.user_id <> $1`, userID)
	if err != nil {
		return nil, s.internal("read contacts", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.internal("read contacts", err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}
