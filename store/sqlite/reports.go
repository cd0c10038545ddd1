package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

const reportColumns = `id, reporter_id, user_id, conversation_id, seq, message_id, reason, comment,
	content, content_key, content_source, state, created_at, resolved_at, resolved_by, resolution`

// reportAD binds a report's sealed content to the report.
func reportAD(id string) []byte { return []byte("report:" + id) }

// CreateReport implements parley.Store.
func (s *Store) CreateReport(ctx context.Context, r *parley.Report) error {
	defer s.track("create_report", time.Now())
	content, key := []byte{}, uint32(0)
	if r.Content != "" {
		var err error
		if key, content, err = s.sealer.Seal([]byte(r.Content), reportAD(r.ID)); err != nil {
			return s.internal("seal report", err)
		}
	}
	r.State = parley.ReportOpen
	r.CreatedAt = engine.NormalTime(r.CreatedAt)
	return s.write(ctx, true, func(t *txn) error {
		_, err := t.exec(`INSERT INTO reports (`+reportColumns+`) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, NULL, '', '')`,
			r.ID, r.ReporterID, r.UserID, r.ConversationID, r.Seq, r.MessageID, string(r.Reason), r.Comment,
			content, int64(key), r.ContentSource, r.State, engine.Millis(r.CreatedAt))
		if err != nil {
			return s.internal("create report", err)
		}
		return nil
	})
}

// scanReport reads a row of reportColumns and opens its content.
func (s *Store) scanReport(row interface{ Scan(...any) error }) (parley.Report, error) {
	var r parley.Report
	var content []byte
	var key, created int64
	var resolved sql.NullInt64
	err := row.Scan(&r.ID, &r.ReporterID, &r.UserID, &r.ConversationID, &r.Seq, &r.MessageID, &r.Reason, &r.Comment,
		&content, &key, &r.ContentSource, &r.State, &created, &resolved, &r.ResolvedBy, &r.Resolution)
	if err != nil {
		return r, err
	}
	r.CreatedAt = engine.FromMillis(created)
	r.ResolvedAt = fromNullMillis(resolved)
	if len(content) > 0 {
		plain, err := s.sealer.Open(uint32(key), content, reportAD(r.ID))
		if err != nil {
			return r, s.internal("open report", err)
		}
		r.Content = string(plain)
	}
	return r, nil
}

// Reports implements parley.Store.
func (s *Store) Reports(ctx context.Context, q parley.ReportQuery) ([]parley.Report, error) {
	defer s.track("reports", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	if q.Limit < 1 || q.Limit > parley.MaxReportsPage {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to %d", parley.MaxReportsPage)
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT `+reportColumns+` FROM reports
		WHERE (?1 = '' OR state = ?1) AND (?2 = '' OR id < ?2) ORDER BY id DESC LIMIT ?3`, q.State, q.BeforeID, q.Limit)
	if err != nil {
		return nil, s.internal("read reports", err)
	}
	defer rows.Close()
	out := []parley.Report{}
	for rows.Next() {
		r, err := s.scanReport(rows)
		if err != nil {
			return nil, s.internal("read reports", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read reports", err)
	}
	return out, nil
}

// ResolveReport implements parley.Store.
func (s *Store) ResolveReport(ctx context.Context, id, byUserID, resolution string, now time.Time) (*parley.Report, error) {
	defer s.track("resolve_report", time.Now())
	var out parley.Report
	err := s.write(ctx, true, func(t *txn) error {
		n, err := rowsAffected(t.exec(`UPDATE reports SET state = ?1, resolved_at = ?2, resolved_by = ?3, resolution = ?4 WHERE id = ?5`,
			parley.ReportResolved, engine.Millis(now), byUserID, resolution, id))
		if err != nil {
			return s.internal("resolve report", err)
		}
		if n == 0 {
			return parley.Errorf(parley.CodeNotFound, "no such report")
		}
		out, err = s.scanReport(t.queryRow(`SELECT `+reportColumns+` FROM reports WHERE id = ?1`, id))
		return err
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// rowsAffected is the number of rows an exec changed.
func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
