package sqlite

import (
	"context"
	"time"
)

// LastSeqs implements parley.Store: one query, one snapshot.
func (s *Store) LastSeqs(ctx context.Context, userID string) (map[string]int64, error) {
	defer s.track("last_seqs", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.rst.lastSeqs.QueryContext(ctx, userID)
	if err != nil {
		return nil, s.internal("read last seqs", err)
	}
	defer rows.Close()
	seqs := map[string]int64{}
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			return nil, s.internal("read last seqs", err)
		}
		seqs[id] = seq
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read last seqs", err)
	}
	return seqs, nil
}
