package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/store/internal/engine"
)

// Contacts implements parley.Store: the members of the user's
// conversations of at most maxMembers members.
func (s *Store) Contacts(ctx context.Context, userID string, maxMembers int) ([]string, error) {
	defer s.track("contacts", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.pool.Query(ctx, engine.ContactsSQL, userID, int64(max(maxMembers, 0)))
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
