package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

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
			if _, err := t.exec(`DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2`, blockerID, blockedID); err != nil {
				return s.internal("unblock", err)
			}
			return nil
		}
		var one int
		err := t.queryRow(`SELECT 1 FROM users WHERE id = $1`, blockedID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return parley.Errorf(parley.CodeNotFound, "no such user")
		}
		if err != nil {
			return s.internal("block", err)
		}
		err = t.queryRow(`SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2`, blockerID, blockedID).Scan(&one)
		if err == nil {
			return nil // blocked already: keep the first record
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return s.internal("block", err)
		}
		var n int
		if err := t.queryRow(`SELECT count(*) FROM blocks WHERE blocker_id = $1`, blockerID).Scan(&n); err != nil {
			return s.internal("block", err)
		}
		if n >= parley.MaxBlocks {
			return parley.Errorf(parley.CodeLimitExceeded, "you block %d users already, the most allowed", parley.MaxBlocks)
		}
		var since int64
		err = t.queryRow(`SELECT last_seq FROM conversations WHERE direct_key = $1`, engine.DirectKey(blockerID, blockedID, false)).Scan(&since)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return s.internal("block", err)
		}
		if _, err := t.exec(`INSERT INTO blocks (blocker_id, blocked_id, created_at, since_seq) VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING`, blockerID, blockedID, engine.Millis(now), since); err != nil {
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
	rows, err := s.pool.Query(ctx, `SELECT blocked_id, created_at FROM blocks WHERE blocker_id = $1
		ORDER BY created_at, blocked_id`, userID)
	if err != nil {
		return nil, s.internal("read blocks", err)
	}
	blocks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (parley.Block, error) {
		var b parley.Block
		var created int64
		err := row.Scan(&b.UserID, &created)
		b.CreatedAt = engine.FromMillis(created)
		return b, err
	})
	if err != nil {
		return nil, s.internal("read blocks", err)
	}
	if blocks == nil {
		blocks = []parley.Block{}
	}
	return blocks, nil
}

// Relations implements parley.Store with one query over blocks (and one
// for the conversation's kind, only if a block is listed: a send
// asks on every message).
func (s *Store) Relations(ctx context.Context, userID, conversationID string) (*parley.Relations, error) {
	defer s.track("relations", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	r := &parley.Relations{Blocks: map[string]int64{}, BlockedBy: map[string]int64{}}
	query := `SELECT 0, blocked_id, since_seq FROM blocks WHERE blocker_id = $1
		UNION ALL SELECT 1, blocker_id, since_seq FROM blocks WHERE blocked_id = $1`
	args := []any{userID}
	if conversationID != "" {
		query = `SELECT 0, blocked_id, since_seq FROM blocks WHERE blocker_id = $1
				AND blocked_id IN (SELECT user_id FROM members WHERE conversation_id = $2)
			UNION ALL SELECT 1, blocker_id, since_seq FROM blocks WHERE blocked_id = $1
				AND blocker_id IN (SELECT user_id FROM members WHERE conversation_id = $2)
			UNION ALL SELECT 2, '', 0 FROM members WHERE conversation_id = $2 AND user_id = $1 AND NOT accepted`
		args = append(args, conversationID)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, s.internal("read relations", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind int32
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
		err := s.pool.QueryRow(ctx, `SELECT kind FROM conversations WHERE id = $1`, conversationID).Scan(&r.Kind)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, s.internal("read relations", err)
		}
	}
	return r, nil
}
