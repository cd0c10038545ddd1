package postgres

import (
	"context"
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
		if err := ownDevice(t, userID, deviceID); err != nil {
			if isClientError(err) {
				return err
			}
			return s.internal("push registration", err)
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
		if err := ownDevice(t, userID, deviceID); err != nil {
			if isClientError(err) {
				return err
			}
			return s.internal("push registration", err)
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

// ownDevice fails with CodeNotFound unless deviceID is a device of userID.
func ownDevice(t *txn, userID, deviceID string) error {
	var one int
	err := t.queryRow(`SELECT 1 FROM devices WHERE id = $1 AND user_id = $2`, deviceID, userID).Scan(&one)
	if noRows(err) {
		return parley.Errorf(parley.CodeNotFound, "no such device")
	}
	return err
}
