package sqlite

import (
	"context"
	"strings"
	"time"

	"github.com/parleychat/parley/store/internal/engine"
)

// contactsSQL is engine.ContactsSQL with SQLite's numbered parameters.
var contactsSQL = strings.ReplaceAll(engine.ContactsSQL, "$", "?")

// Contacts implements parley.Store: the members of the user's
// conversations of at most maxMembers members.
func (s *Store) Contacts(ctx context.Context, userID string, maxMembers int) ([]string, error) {
	defer s.track("contacts", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.readDB.QueryContext(ctx, contactsSQL, userID, max(maxMembers, 0))
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
