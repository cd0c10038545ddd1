package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

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
			VALUES ($1, $2, $3, $4, $5, $6)
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
		if _, err := t.exec(`DELETE FROM push_registrations WHERE device_id = $1`, deviceID); err != nil {
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
	err := s.pool.QueryRow(ctx, `SELECT data, data_key FROM push_registrations WHERE device_id = $1`, deviceID).Scan(&sealed, &keyID)
	if noRows(err) {
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

// ownDevice fails with CodeNotFound unless deviceID is a device of userID;
// a failure to check is an internal error of op.
func (s *Store) ownDevice(t *txn, userID, deviceID, op string) error {
	var one int
	err := t.queryRow(`SELECT 1 FROM devices WHERE id = $1 AND user_id = $2`, deviceID, userID).Scan(&one)
	if noRows(err) {
		return parley.Errorf(parley.CodeNotFound, "no such device")
	}
	if err != nil {
		return s.internal(op, err)
	}
	return nil
}

// The reads of push targets: the engine's (see engine.PushTargetsSQL),
// user and device ids in byte order whatever the database's collation,
// as the SQLite engine orders them. Both select pushTargetRow's columns
// in its order.
var (
	pushTargetsSQL = engine.PushTargetsSQL(` COLLATE "C"`)
	pushTargetSQL  = engine.PushTargetSQL
)

// pushTargetRow is a row of pushTargetsSQL or pushTargetSQL: a target
// with its registration sealed. Columns a left join found nothing for
// are NULL.
type pushTargetRow struct {
	userID, deviceID                                    *string
	data                                                []byte
	accepted                                            *bool
	dataKey, readSeq, deliveredSeq, lastSeq, muted, dnd *int64
}

func scanPushTarget(row pgx.Row) (*pushTargetRow, error) {
	var r pushTargetRow
	err := row.Scan(&r.userID, &r.deviceID, &r.data, &r.dataKey, &r.readSeq, &r.deliveredSeq, &r.lastSeq, &r.muted, &r.dnd, &r.accepted)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// openPushTarget opens the registration of r, whose target columns are
// all set, and returns the target.
func (s *Store) openPushTarget(r *pushTargetRow) (parley.PushTarget, error) {
	reg, err := engine.OpenPush(s.sealer, *r.deviceID, uint32(*r.dataKey), r.data)
	if err != nil {
		return parley.PushTarget{}, s.internal("open push registration", err)
	}
	return parley.PushTarget{
		UserID:       *r.userID,
		DeviceID:     *r.deviceID,
		Registration: reg,
		ReadSeq:      *r.readSeq,
		DeliveredSeq: *r.deliveredSeq,
		LastSeq:      *r.lastSeq,
		MutedUntil:   fromNullMillis(r.muted),
		DNDUntil:     fromNullMillis(r.dnd),
		Request:      r.accepted != nil && !*r.accepted,
	}, nil
}

// PushDevices implements parley.Store with one query, on the primary.
func (s *Store) PushDevices(ctx context.Context, each func(userID, deviceID string) error) error {
	defer s.track("push_devices", time.Now())
	if s.closed.Load() {
		return errClosed
	}
	rows, err := s.pool.Query(ctx, `SELECT user_id, device_id FROM push_registrations`)
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

// PushTargets implements parley.Store with one query, on the primary.
func (s *Store) PushTargets(ctx context.Context, conversationID, exceptUserID string) ([]parley.PushTarget, error) {
	defer s.track("push_targets", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	f, err := engine.NewFanOut[*pushTargetRow]([]parley.PushFanOutRequest{{ConversationID: conversationID, ExceptUserID: exceptUserID}})
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, pushTargetsSQL, conversationID, exceptUserID)
	if err != nil {
		return nil, s.internal("read push targets", err)
	}
	if err := s.takePushTargets(rows, f, 0); err != nil {
		return nil, err
	}
	return f.Targets(s.openPushTarget)
}

// takePushTargets hands f the rows of pushTargetsSQL for its request i,
// and closes them.
func (s *Store) takePushTargets(rows pgx.Rows, f *engine.FanOut[*pushTargetRow], i int) error {
	defer rows.Close()
	for rows.Next() {
		r, err := scanPushTarget(rows)
		if err != nil {
			return s.internal("read push targets", err)
		}
		f.Row(i, r, r.deviceID != nil)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.internal("read push targets", err)
	}
	return nil
}

// PushTarget implements parley.Store with one query, on the primary.
func (s *Store) PushTarget(ctx context.Context, conversationID, deviceID string) (*parley.PushTarget, error) {
	defer s.track("push_target", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	r, err := scanPushTarget(s.pool.QueryRow(ctx, pushTargetSQL, conversationID, deviceID))
	if noRows(err) {
		return nil, parley.Errorf(parley.CodeNotFound, "no push registration")
	}
	if err != nil {
		return nil, s.internal("read push target", err)
	}
	if r.lastSeq == nil {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	target, err := s.openPushTarget(r)
	if err != nil {
		return nil, err
	}
	return &target, nil
}

// PushFanOut implements parley.Store on the primary: the requests'
// PushTargets queries in one batch (one round trip), then Unread's for
// each distinct user and conversation among their targets in another.
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
	b := &pgx.Batch{}
	for _, req := range reqs {
		b.Queue(pushTargetsSQL, req.ConversationID, req.ExceptUserID)
	}
	br := s.pool.SendBatch(ctx, b)
	for i := range reqs {
		rows, err := br.Query()
		if err == nil {
			err = s.takePushTargets(rows, f, i)
		} else {
			err = s.internal("read push targets", err)
		}
		if err != nil {
			br.Close()
			return nil, err
		}
	}
	if err := br.Close(); err != nil {
		return nil, s.internal("read push targets", err)
	}

	keys := f.Unread(func(r *pushTargetRow) string { return *r.userID })
	if len(keys) > 0 {
		b = &pgx.Batch{}
		for _, k := range keys {
			b.Queue(unreadSQL, engine.Millis(now), k.UserID, k.ConversationID)
		}
		br = s.pool.SendBatch(ctx, b)
		for _, k := range keys {
			var conv, total int64
			if err := br.QueryRow().Scan(&total, &conv); err != nil {
				br.Close()
				return nil, s.internal("read unread counts", err)
			}
			f.SetUnread(k, conv, total)
		}
		if err := br.Close(); err != nil {
			return nil, s.internal("read unread counts", err)
		}
	}
	return f.Answers(s.openPushTarget)
}
