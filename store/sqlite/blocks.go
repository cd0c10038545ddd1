package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// SetBlock implements parley.Store in one write transaction.
func (s *Store) SetBlock(ctx context.Context, blockerID, blockedID string, blocked bool, now time.Time) error {
	defer s.track("set_block", time.Now())
	if blockerID == blockedID {
		return parley.Errorf(parley.CodeInvalidRequest, "you cannot block yourself")
	}
	return s.write(ctx, true, func(t *txn) error {
		if !blocked {
			if _, err := t.exec(`DELETE FROM blocks WHERE blocker_id = ? AND blocked_id = ?`, blockerID, blockedID); err != nil {
				return s.internal("unblock", err)
			}
			return nil
		}
		var one int
		err := t.queryRow(`SELECT 1 FROM users WHERE id = ?`, blockedID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeNotFound, "no such user")
		}
		if err != nil {
			return s.internal("block", err)
		}
		err = t.queryRow(`SELECT 1 FROM blocks WHERE blocker_id = ? AND blocked_id = ?`, blockerID, blockedID).Scan(&one)
		if err == nil {
			return nil // blocked already: keep the first record
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return s.internal("block", err)
		}
		var n int
		if err := t.queryRow(`SELECT count(*) FROM blocks WHERE blocker_id = ?`, blockerID).Scan(&n); err != nil {
			return s.internal("block", err)
		}
		if n >= parley.MaxBlocks {
			return parley.Errorf(parley.CodeLimitExceeded, "you block %d users already, the most allowed", parley.MaxBlocks)
		}
		var since int64
		err = t.queryRow(`SELECT last_seq FROM conversations WHERE direct_key = ?`, engine.DirectKey(blockerID, blockedID, false)).Scan(&since)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return s.internal("block", err)
		}
		if _, err := t.exec(`INSERT INTO blocks (blocker_id, blocked_id, created_at, since_seq) VALUES (?, ?, ?, ?)`,
			blockerID, blockedID, engine.Millis(now), since); err != nil {
			return s.internal("block", err)
		}
		return nil
	})
}

// Blocks implements parley.Store.
func (s *Store) Blocks(ctx context.Context, userID string) ([]parley.Block, error) {
	defer s.track("blocks", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT blocked_id, created_at FROM blocks WHERE blocker_id = ?
		ORDER BY created_at, blocked_id`, userID)
	if err != nil {
		return nil, s.internal("read blocks", err)
	}
	defer rows.Close()
	blocks := []parley.Block{}
	for rows.Next() {
		var b parley.Block
		var created int64
		if err := rows.Scan(&b.UserID, &created); err != nil {
			return nil, s.internal("read blocks", err)
		}
		b.CreatedAt = engine.FromMillis(created)
		blocks = append(blocks, b)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read blocks", err)
	}
	return blocks, nil
}

// relationsSQL lists the user's (?1) blocks and blockers among the
// members of a conversation (?2), and a row of kind 2 if the user's
// membership is an unaccepted request. Joins, not IN (SELECT ...): a user
// with no blocks then costs one probe of each blocks index, where the
// subqueries were built on every call (a send asks on every message).
const relationsSQL = `SELECT 0, b.blocked_id, b.since_seq FROM blocks b
		JOIN members m ON m.conversation_id = ?2 AND m.user_id = b.blocked_id
		WHERE b.blocker_id = ?1
	UNION ALL SELECT 1, b.blocker_id, b.since_seq FROM blocks b
		JOIN members m ON m.conversation_id = ?2 AND m.user_id = b.blocker_id
		WHERE b.blocked_id = ?1
	UNION ALL SELECT 2, '', 0 FROM members WHERE conversation_id = ?2 AND user_id = ?1 AND accepted = 0`

// Relations implements parley.Store with one query over blocks (and one
// for the conversation's kind, only if a block is listed: a send
// asks on every message).
func (s *Store) Relations(ctx context.Context, userID, conversationID string) (*parley.Relations, error) {
	defer s.track("relations", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	r := &parley.Relations{Blocks: map[string]int64{}, BlockedBy: map[string]int64{}}
	var rows *sql.Rows
	var err error
	if conversationID != "" {
		rows, err = s.rst.relations.QueryContext(ctx, userID, conversationID)
	} else {
		rows, err = s.readDB.QueryContext(ctx, `SELECT 0, blocked_id, since_seq FROM blocks WHERE blocker_id = ?1
		UNION ALL SELECT 1, blocker_id, since_seq FROM blocks WHERE blocked_id = ?1`, userID)
	}
	if err != nil {
		return nil, s.internal("read relations", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind int
		var id string
		var since int64
		if err := rows.Scan(&kind, &id, &since); err != nil {
			return nil, s.internal("read relations", err)
		}
		if kind == 2 {
			r.Pending = true
		} else if kind == 1 {
			r.BlockedBy[id] = since
		} else {
			r.Blocks[id] = since
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read relations", err)
	}
	if conversationID != "" && len(r.Blocks)+len(r.BlockedBy) > 0 {
		err := s.rst.conversationKind.QueryRowContext(ctx, conversationID).Scan(&r.Kind)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, s.internal("read relations", err)
		}
	}
	return r, nil
}
