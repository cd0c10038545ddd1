package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley"
)

// SetPrivacy implements parley.Store.
func (s *Store) SetPrivacy(ctx context.Context, userID string, p parley.Privacy) error {
	defer s.track("set_privacy", time.Now())
	return s.setUserColumn(ctx, "presence_visibility", userID, string(p.Presence), func(t *txn) error {
		if _, err := t.exec(`UPDATE users SET receipts_visibility = $1 WHERE id = $2`, string(p.ReadReceipts), userID); err != nil {
			return s.internal("update user", err)
		}
		return nil
	})
}

// peersSQL selects the co-members of $1 (in the conversation $2 unless that
// is empty), each with its settings and whether it is a stranger to $1,
// keeping only the exceptional ones.
const peersSQL = `SELECT u.id, u.presence_visibility, u.receipts_visibility, false FROM users u
	WHERE u.id IN (SELECT o.user_id FROM members me JOIN members o ON o.conversation_id = me.conversation_id
		WHERE me.user_id = $1 AND o.user_id <> $1 AND ($2 = '' OR me.conversation_id = $2))
	AND (u.presence_visibility <> 'everyone' OR u.receipts_visibility <> 'everyone')`

// Peers implements parley.Store with one query.
func (s *Store) Peers(ctx context.Context, userID, conversationID string) ([]parley.Peer, error) {
	defer s.track("peers", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.pool.Query(ctx, peersSQL, userID, conversationID)
	if err != nil {
		return nil, s.internal("read peers", err)
	}
	peers, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (parley.Peer, error) {
		var p parley.Peer
		err := row.Scan(&p.UserID, &p.Privacy.Presence, &p.Privacy.ReadReceipts, &p.Stranger)
		return p, err
	})
	if err != nil {
		return nil, s.internal("read peers", err)
	}
	return peers, nil
}
