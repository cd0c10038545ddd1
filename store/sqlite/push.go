package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// SetPush implements parley.Store. The registration is sealed in the
// caller's goroutine, bound to the device.
func (s *Store) SetPush(ctx context.Context, userID, deviceID string, r *parley.PushRegistration) error {
	defer s.track("set_push", time.Now())
	keyID, sealed, err := engine.SealPush(s.sealer, deviceID, r)
	if err != nil {
		return s.internal("seal push registration", err)
	}
	return s.write(ctx, true, func(t *txn) error {
		if err := s.ownDevice(t, userID, deviceID, "push registration"); err != nil {
			return err
		}
		if _, err := t.exec(`INSERT INTO push_registrations (device_id, user_id, provider, data, data_key, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (device_id) DO UPDATE SET provider = excluded.provider, data = excluded.data,
				data_key = excluded.data_key, updated_at = excluded.updated_at`,
			deviceID, userID, string(r.Provider), sealed, int64(keyID), engine.Millis(r.UpdatedAt)); err != nil {
			return s.internal("set push registration", err)
		}
		return nil
	})
}

// DeletePush implements parley.Store.
func (s *Store) DeletePush(ctx context.Context, userID, deviceID string) error {
	defer s.track("delete_push", time.Now())
	return s.write(ctx, true, func(t *txn) error {
		if err := s.ownDevice(t, userID, deviceID, "push registration"); err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM push_registrations WHERE device_id = ?`, deviceID); err != nil {
			return s.internal("delete push registration", err)
		}
		return nil
	})
}

// Push implements parley.Store.
func (s *Store) Push(ctx context.Context, deviceID string) (*parley.PushRegistration, error) {
	defer s.track("push", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	var sealed []byte
	var keyID int64
	err := s.readDB.QueryRowContext(ctx, `SELECT data, data_key FROM push_registrations WHERE device_id = ?`, deviceID).Scan(&sealed, &keyID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, parley.Errorf(parley.CodeNotFound, "no push registration")
	}
	if err != nil {
		return nil, s.internal("read push registration", err)
	}
	r, err := engine.OpenPush(s.sealer, deviceID, uint32(keyID), sealed)
	if err != nil {
		return nil, s.internal("open push registration", err)
	}
	return r, nil
}

// PushDevices implements parley.Store on a reader connection.
func (s *Store) PushDevices(ctx context.Context, each func(userID, deviceID string) error) error {
	defer s.track("push_devices", time.Now())
	if s.closed.Load() {
		return errClosed
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT user_id, device_id FROM push_registrations`)
	if err != nil {
		return s.internal("list push devices", err)
	}
	defer rows.Close()
	for rows.Next() {
		var userID, deviceID string
		if err := rows.Scan(&userID, &deviceID); err != nil {
			return s.internal("list push devices", err)
		}
		if err := each(userID, deviceID); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.internal("list push devices", err)
	}
	return nil
}

// ownDevice fails with CodeNotFound unless deviceID is a device of userID;
// a failure to check is an internal error of op.
func (s *Store) ownDevice(t *txn, userID, deviceID, op string) error {
	var one int
	err := t.queryRow(`SELECT 1 FROM devices WHERE id = ? AND user_id = ?`, deviceID, userID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return parley.Errorf(parley.CodeNotFound, "no such device")
	}
	if err != nil {
		return s.internal(op, err)
	}
	return nil
}

// The reads of push targets (prepared at Open, readerStatements): the
// engine's, with SQLite's numbered parameters. Both select
// pushTargetRow's columns in its order.
var (
	pushTargetsSQL = strings.ReplaceAll(engine.PushTargetsSQL(""), "$", "?")
	pushTargetSQL  = strings.ReplaceAll(engine.PushTargetSQL, "$", "?")
)

// pushTargetRow is a row of pushTargetsSQL or pushTargetSQL: a target
// with its registration sealed. Columns a left join found nothing for
// are NULL.
type pushTargetRow struct {
	userID, deviceID                                    sql.NullString
	data                                                []byte
	accepted                                            sql.NullBool
	dataKey, readSeq, deliveredSeq, lastSeq, muted, dnd sql.NullInt64
}

func scanPushTarget(row scanner) (*pushTargetRow, error) {
	var r pushTargetRow
	err := row.Scan(&r.userID, &r.deviceID, &r.data, &r.dataKey, &r.readSeq, &r.deliveredSeq, &r.lastSeq, &r.muted, &r.dnd, &r.accepted)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// openPushTarget opens the registration of r and returns the target.
func (s *Store) openPushTarget(r *pushTargetRow) (parley.PushTarget, error) {
	reg, err := engine.OpenPush(s.sealer, r.deviceID.String, uint32(r.dataKey.Int64), r.data)
	if err != nil {
		return parley.PushTarget{}, s.internal("open push registration", err)
	}
	return parley.PushTarget{
		UserID:       r.userID.String,
		DeviceID:     r.deviceID.String,
		Registration: reg,
		ReadSeq:      r.readSeq.Int64,
		DeliveredSeq: r.deliveredSeq.Int64,
		LastSeq:      r.lastSeq.Int64,
		MutedUntil:   fromNullMillis(r.muted),
		DNDUntil:     fromNullMillis(r.dnd),
		Request:      r.accepted.Valid && !r.accepted.Bool,
	}, nil
}

// PushTargets implements parley.Store with one query.
func (s *Store) PushTargets(ctx context.Context, conversationID, exceptUserID string) ([]parley.PushTarget, error) {
	defer s.track("push_targets", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	f, err := engine.NewFanOut[*pushTargetRow]([]parley.PushFanOutRequest{{ConversationID: conversationID, ExceptUserID: exceptUserID}})
	if err != nil {
		return nil, err
	}
	if err := s.readPushTargets(ctx, s.rst.pushTargets, f, 0); err != nil {
		return nil, err
	}
	return f.Targets(s.openPushTarget)
}

// readPushTargets runs st, pushTargetsSQL's statement (on a transaction
// or not), for request i of f and hands f the rows.
func (s *Store) readPushTargets(ctx context.Context, st *sql.Stmt, f *engine.FanOut[*pushTargetRow], i int) error {
	req := f.Request(i)
	rows, err := st.QueryContext(ctx, req.ConversationID, req.ExceptUserID)
	if err != nil {
		return s.internal("read push targets", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanPushTarget(rows)
		if err != nil {
			return s.internal("read push targets", err)
		}
		f.Row(i, r, r.deviceID.Valid)
	}
	if err := rows.Err(); err != nil {
		return s.internal("read push targets", err)
	}
	return nil
}

// PushTarget implements parley.Store with one query.
func (s *Store) PushTarget(ctx context.Context, conversationID, deviceID string) (*parley.PushTarget, error) {
	defer s.track("push_target", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	r, err := scanPushTarget(s.rst.pushTarget.QueryRowContext(ctx, conversationID, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, parley.Errorf(parley.CodeNotFound, "no push registration")
	}
	if err != nil {
		return nil, s.internal("read push target", err)
	}
	if !r.lastSeq.Valid {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	target, err := s.openPushTarget(r)
	if err != nil {
		return nil, err
	}
	return &target, nil
}

// PushFanOut implements parley.Store: the requests' PushTargets queries,
// then Unread's for each distinct user and conversation among their
// targets, in one read transaction. One snapshot for the batch also
// spares the page reads: a reader's page cache is dropped whenever a
// read transaction starts after a commit, and the role reads while
// messages commit.
func (s *Store) PushFanOut(ctx context.Context, reqs []parley.PushFanOutRequest, now time.Time) ([]parley.PushFanOut, error) {
	defer s.track("push_fan_out", time.Now())
	f, err := engine.NewFanOut[*pushTargetRow](reqs)
	if err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, errClosed
	}
	if len(reqs) == 0 {
		return f.Answers(s.openPushTarget)
	}
	tx, err := s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.internal("read push targets", err)
	}
	defer tx.Rollback()
	targetsStmt, unreadStmt := tx.StmtContext(ctx, s.rst.pushTargets), tx.StmtContext(ctx, s.rst.unread)
	for i := range reqs {
		if err := s.readPushTargets(ctx, targetsStmt, f, i); err != nil {
			return nil, err
		}
	}
	for _, k := range f.Unread(func(r *pushTargetRow) string { return r.userID.String }) {
		var conv, total int64
		if err := unreadStmt.QueryRowContext(ctx, engine.Millis(now), k.UserID, k.ConversationID).Scan(&total, &conv); err != nil {
			return nil, s.internal("read unread counts", err)
		}
		f.SetUnread(k, conv, total)
	}
	return f.Answers(s.openPushTarget)
}
