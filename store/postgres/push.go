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

// The reads of push targets; both select pushTargetRow's columns in its
// order.
//
// pushTargetsSQL lists the targets of a conversation ($1) but for one
// user ($2): each registered device of every other member, by user id
// and device id (in byte order, whatever the database's collation, as
// the SQLite engine orders them). The conversation row is joined to them
// from the left, so a conversation without targets is one row of NULL
// targets and a missing one is no row.
//
// pushTargetSQL is one device's ($2) target in a conversation ($1): no
// row if the device has no registration, NULL member columns if its user
// is not a member.
const (
	pushTargetsSQL = `
SELECT t.user_id, t.device_id, t.data, t.data_key, t.read_seq, t.delivered_seq, c.last_seq, t.muted_until, t.dnd_until, t.accepted
FROM conversations c
LEFT JOIN (
	SELECT m.user_id, p.device_id, p.data, p.data_key, m.read_seq, coalesce(dc.delivered_seq, 0) AS delivered_seq,
		m.muted_until, u.dnd_until, m.accepted
	FROM members m
	JOIN users u ON u.id = m.user_id
	JOIN push_registrations p ON p.user_id = m.user_id
	LEFT JOIN device_cursors dc ON dc.device_id = p.device_id AND dc.conversation_id = m.conversation_id
	WHERE m.conversation_id = $1 AND m.user_id <> $2
) t ON true
WHERE c.id = $1
ORDER BY t.user_id COLLATE "C", t.device_id COLLATE "C"`
	pushTargetSQL = `
SELECT p.user_id, p.device_id, p.data, p.data_key, m.read_seq, coalesce(dc.delivered_seq, 0), c.last_seq, m.muted_until, u.dnd_until, m.accepted
FROM push_registrations p
JOIN users u ON u.id = p.user_id
LEFT JOIN members m ON m.conversation_id = $1 AND m.user_id = p.user_id
LEFT JOIN conversations c ON c.id = m.conversation_id
LEFT JOIN device_cursors dc ON dc.device_id = p.device_id AND dc.conversation_id = $1
WHERE p.device_id = $2`
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
	rows, err := s.pool.Query(ctx, pushTargetsSQL, conversationID, exceptUserID)
	if err != nil {
		return nil, s.internal("read push targets", err)
	}
	var sealed []*pushTargetRow
	found := false // the conversation's row came
	for rows.Next() {
		r, err := scanPushTarget(rows)
		if err != nil {
			rows.Close()
			return nil, s.internal("read push targets", err)
		}
		found = true
		if r.deviceID != nil {
			sealed = append(sealed, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.internal("read push targets", err)
	}
	if !found {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	targets := make([]parley.PushTarget, len(sealed))
	for i, r := range sealed {
		if targets[i], err = s.openPushTarget(r); err != nil {
			return nil, err
		}
	}
	return targets, nil
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
	if len(reqs) > parley.MaxPushFanOut {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "at most %d push fan-outs at once", parley.MaxPushFanOut)
	}
	if s.closed.Load() {
		return nil, errClosed
	}
	out := make([]parley.PushFanOut, len(reqs))
	if len(reqs) == 0 {
		return out, nil
	}
	b := &pgx.Batch{}
	for _, req := range reqs {
		b.Queue(pushTargetsSQL, req.ConversationID, req.ExceptUserID)
	}
	sealed := make([][]*pushTargetRow, len(reqs))
	br := s.pool.SendBatch(ctx, b)
	for i := range reqs {
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return nil, s.internal("read push targets", err)
		}
		for rows.Next() {
			r, err := scanPushTarget(rows)
			if err != nil {
				rows.Close()
				br.Close()
				return nil, s.internal("read push targets", err)
			}
			out[i].Found = true
			if r.deviceID != nil {
				sealed[i] = append(sealed[i], r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			br.Close()
			return nil, s.internal("read push targets", err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, s.internal("read push targets", err)
	}

	type pair struct{ user, conv string }
	var pairs []pair
	counts := map[pair][2]int64{} // conv, total
	b = &pgx.Batch{}
	for i, rs := range sealed {
		users := 0
		for _, r := range rs {
			k := pair{*r.userID, reqs[i].ConversationID}
			if _, ok := counts[k]; ok {
				continue
			}
			if users++; users > parley.PushFanOutCounted {
				break // targets are ordered by user: the rest are others'
			}
			counts[k] = [2]int64{}
			pairs = append(pairs, k)
			b.Queue(unreadSQL, engine.Millis(now), k.user, k.conv)
		}
	}
	if len(pairs) > 0 {
		br = s.pool.SendBatch(ctx, b)
		for _, k := range pairs {
			var conv, total int64
			if err := br.QueryRow().Scan(&total, &conv); err != nil {
				br.Close()
				return nil, s.internal("read unread counts", err)
			}
			counts[k] = [2]int64{conv, total}
		}
		if err := br.Close(); err != nil {
			return nil, s.internal("read unread counts", err)
		}
	}
	for i, rs := range sealed {
		out[i].Targets = make([]parley.PushTarget, len(rs))
		for j, r := range rs {
			t, err := s.openPushTarget(r)
			if err != nil {
				return nil, err
			}
			c, ok := counts[pair{t.UserID, reqs[i].ConversationID}]
			t.Unread, t.Badge, t.Counted = c[0], c[1], ok
			out[i].Targets[j] = t
		}
	}
	return out, nil
}
