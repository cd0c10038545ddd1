package postgres

import (
	"context"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
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

// peersSQL selects the co-members of $1 (only members of the conversation
// $2 unless that is empty), each with its settings and, over every
// conversation the two share, whether both accepted one (a contact),
// whether $1 accepted one and whether the peer did, keeping only the
// exceptional ones.
const peersSQL = `SELECT o.user_id, u.presence_visibility, u.receipts_visibility,
		bool_or(me.accepted AND o.accepted), bool_or(me.accepted), bool_or(o.accepted)
	FROM members me JOIN members o ON o.conversation_id = me.conversation_id AND o.user_id <> me.user_id
	JOIN users u ON u.id = o.user_id
	WHERE me.user_id = $1 AND ($2 = '' OR o.user_id IN (SELECT user_id FROM members WHERE conversation_id = $2))
	GROUP BY o.user_id, u.presence_visibility, u.receipts_visibility
	HAVING u.presence_visibility <> 'everyone' OR u.receipts_visibility <> 'everyone' OR NOT bool_or(me.accepted AND o.accepted)`

// Peers implements parley.Store with one query.
func (s *Store) Peers(ctx context.Context, userID, conversationID string) ([]parley.Peer, error) {
	defer s.track("peers", time.Now())
	return s.readPeers(ctx, peersSQL, userID, conversationID)
}

// ContactPeers implements parley.Store with one query.
func (s *Store) ContactPeers(ctx context.Context, userID string, maxMembers int) ([]parley.Peer, error) {
	defer s.track("contact_peers", time.Now())
	return s.readPeers(ctx, engine.ContactPeersSQL, userID, int64(max(maxMembers, 0)))
}

// readPeers runs query, a peers query (see engine.Peers), with args.
func (s *Store) readPeers(ctx context.Context, query string, args ...any) ([]parley.Peer, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, s.internal("read peers", err)
	}
	defer rows.Close()
	var peers engine.Peers
	for rows.Next() {
		var id, presence, receipts string
		var contact, mine, theirs bool
		if err := rows.Scan(&id, &presence, &receipts, &contact, &mine, &theirs); err != nil {
			return nil, s.internal("read peers", err)
		}
		peers.Row(id, parley.Visibility(presence), parley.Visibility(receipts), contact, mine, theirs)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read peers", err)
	}
	return peers.List(), nil
}
