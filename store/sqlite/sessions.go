package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

const deviceColumns = `id, user_id, platform, name, session_id, created_at, last_seen_at`

// CreateSession inserts the device d and the first refresh token t of its
// session in one transaction. Empty UserID, DeviceID or SessionID of t are
// filled from d; a zero d.LastSeenAt becomes d.CreatedAt. CodeNotFound if
// the user does not exist; CodeSuspended if the user is not active;
// CodeLimitExceeded if maxDevices > 0 and the user has that many devices
// with a refresh token unexpired at d.CreatedAt already; CodeConflict if the device id or token hash is taken.
func (s *Store) CreateSession(ctx context.Context, d *parley.Device, t *parley.RefreshToken, maxDevices int) error {
	defer s.track("create_session", time.Now())
	if err := engine.PrepareSession(d, t); err != nil {
		return err
	}
	return s.write(ctx, true, func(tx *txn) error {
		// Checked in the transaction, so a suspension committed while the
		// caller was hashing the password cannot be outlived by a new device.
		var state string
		err := tx.queryRow(`SELECT state FROM users WHERE id = ?`, d.UserID).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeNotFound, "no such user")
		}
		if err != nil {
			return s.internal("create session", err)
		}
		if state != string(parley.UserActive) {
			return parley.Errorf(parley.CodeSuspended, "this account is suspended")
		}
		// Counted in the write transaction: writes are serialized, so
		// logins racing each other cannot pass the cap together. Only
		// devices with a refresh token unexpired at the login count: a
		// session that ran out can never be used again (its access
		// tokens die before its refresh token), so it must not hold a
		// place until the purge deletes it.
		if maxDevices > 0 {
			var n int
			if err := tx.queryRow(`SELECT count(*) FROM devices d WHERE d.user_id = ?
				AND EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.device_id = d.id AND r.expires_at > ?)`,
				d.UserID, engine.Millis(d.CreatedAt)).Scan(&n); err != nil {
				return s.internal("create session", err)
			}
			if n >= maxDevices {
				return engine.TooManyDevices(maxDevices)
			}
		}
		_, err = tx.exec(`INSERT INTO devices (`+deviceColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			d.ID, d.UserID, string(d.Platform), d.Name, d.SessionID, engine.Millis(d.CreatedAt), engine.Millis(d.LastSeenAt))
		if isUniqueViolation(err) {
			return parley.Errorf(parley.CodeConflict, "the device exists already")
		}
		if err != nil {
			return s.internal("create session", err)
		}
		if err := insertRefreshToken(tx, t); err != nil {
			if isClientError(err) {
				return err
			}
			return s.internal("create session", err)
		}
		return nil
	})
}

// insertRefreshToken stores t, unused. A taken hash is CodeConflict.
func insertRefreshToken(tx *txn, t *parley.RefreshToken) error {
	_, err := tx.exec(`INSERT INTO refresh_tokens (hash, user_id, device_id, session_id, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		t.Hash, t.UserID, t.DeviceID, t.SessionID, engine.Millis(t.CreatedAt), engine.Millis(t.ExpiresAt))
	if isUniqueViolation(err) {
		return parley.Errorf(parley.CodeConflict, "the refresh token exists already")
	}
	return err
}

// RotateRefreshToken uses up the token whose hash is oldHash, stores next
// with the old token's user, device and session (and CreatedAt now if
// zero), sets the device's LastSeenAt to now, and returns the device, all in
// one transaction. CodeUnauthorized if the token is unknown, expired at now,
// or its device is gone or has moved on to another session. If the token was
// used already, the device and all its tokens and cursors are deleted (and
// that stays committed) and the error is a *parley.RefreshReuseError.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash string, next *parley.RefreshToken, now time.Time) (*parley.Device, error) {
	defer s.track("rotate_refresh_token", time.Now())
	if next.CreatedAt.IsZero() {
		next.CreatedAt = now
	}
	next.CreatedAt = engine.NormalTime(next.CreatedAt)
	next.ExpiresAt = engine.NormalTime(next.ExpiresAt)
	// An unknown token is refused from a reader, without a write job:
	// guessing tokens must not cost the writer anything.
	if s.closed.Load() {
		return nil, errClosed
	}
	var one int
	err := s.readDB.QueryRowContext(ctx, `SELECT 1 FROM refresh_tokens WHERE hash = ?`, oldHash).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, parley.Errorf(parley.CodeUnauthorized, "unknown refresh token")
	}
	if err != nil {
		return nil, s.internal("rotate refresh token", err)
	}
	var (
		dev      *parley.Device
		reuseErr error
	)
	err = s.write(ctx, true, func(tx *txn) error {
		dev, reuseErr = nil, nil
		var (
			userID, deviceID, sessionID string
			expires                     int64
			used                        sql.NullInt64
		)
		err := tx.queryRow(`SELECT user_id, device_id, session_id, expires_at, used_at FROM refresh_tokens WHERE hash = ?`, oldHash).
			Scan(&userID, &deviceID, &sessionID, &expires, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeUnauthorized, "unknown refresh token")
		}
		if err != nil {
			return s.internal("rotate refresh token", err)
		}
		if used.Valid {
			// Theft or a replay: revoke the family. The deletion must commit,
			// so the job succeeds and the caller returns the error.
			if _, err := deleteDevice(tx, deviceID); err != nil {
				return s.internal("revoke session", err)
			}
			s.log.Warn("sqlite: refresh token reuse; session revoked", "user", userID, "device", deviceID)
			reuseErr = &parley.RefreshReuseError{UserID: userID, DeviceID: deviceID}
			return nil
		}
		if expires <= engine.Millis(now) {
			return parley.Errorf(parley.CodeUnauthorized, "the refresh token has expired")
		}
		d, err := scanDevice(tx.queryRow(`SELECT `+deviceColumns+` FROM devices WHERE id = ?`, deviceID))
		if errors.Is(err, sql.ErrNoRows) || err == nil && d.SessionID != sessionID {
			return parley.Errorf(parley.CodeUnauthorized, "the session has ended")
		}
		if err != nil {
			return s.internal("rotate refresh token", err)
		}
		if _, err := tx.exec(`UPDATE refresh_tokens SET used_at = ? WHERE hash = ?`, engine.Millis(now), oldHash); err != nil {
			return s.internal("rotate refresh token", err)
		}
		next.UserID, next.DeviceID, next.SessionID = userID, deviceID, sessionID
		if err := insertRefreshToken(tx, next); err != nil {
			if isClientError(err) {
				return err
			}
			return s.internal("rotate refresh token", err)
		}
		d.LastSeenAt = engine.NormalTime(now)
		if _, err := tx.exec(`UPDATE devices SET last_seen_at = ? WHERE id = ?`, engine.Millis(now), deviceID); err != nil {
			return s.internal("rotate refresh token", err)
		}
		dev = d
		return nil
	})
	if err != nil {
		return nil, err
	}
	if reuseErr != nil {
		return nil, reuseErr
	}
	return dev, nil
}

// Device returns a device by id; CodeNotFound if none.
func (s *Store) Device(ctx context.Context, id string) (*parley.Device, error) {
	defer s.track("device", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	d, err := scanDevice(s.rst.device.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such device")
	}
	if err != nil {
		return nil, s.internal("read device", err)
	}
	return d, nil
}

// Devices lists a user's devices, oldest first (an unknown user has none).
func (s *Store) Devices(ctx context.Context, userID string) ([]parley.Device, error) {
	defer s.track("devices", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = ? ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, s.internal("list devices", err)
	}
	defer rows.Close()
	devices := []parley.Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, s.internal("list devices", err)
		}
		devices = append(devices, *d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("list devices", err)
	}
	return devices, nil
}

// DeleteDevice deletes a device of userID with its refresh tokens and
// delivery cursors; CodeNotFound if userID has no such device.
func (s *Store) DeleteDevice(ctx context.Context, userID, deviceID string) error {
	defer s.track("delete_device", time.Now())
	return s.write(ctx, true, func(tx *txn) error {
		if err := s.ownDevice(tx, userID, deviceID, "delete device"); err != nil {
			return err
		}
		if _, err := deleteDevice(tx, deviceID); err != nil {
			return s.internal("delete device", err)
		}
		return nil
	})
}

// DeleteDevices deletes every device of userID, with their tokens and
// cursors, and returns how many devices it deleted.
func (s *Store) DeleteDevices(ctx context.Context, userID string) (int, error) {
	defer s.track("delete_devices", time.Now())
	var n int
	err := s.write(ctx, true, func(tx *txn) error {
		var err error
		n, err = s.deleteDevices(tx, userID)
		return err
	})
	return n, err
}

// deleteDevices deletes every device of userID with its tokens and cursors
// in tx and returns how many.
func (s *Store) deleteDevices(tx *txn, userID string) (int, error) {
	rows, err := tx.query(`SELECT id FROM devices WHERE user_id = ?`, userID)
	if err != nil {
		return 0, s.internal("delete devices", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, s.internal("delete devices", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, s.internal("delete devices", err)
	}
	n := 0
	for _, id := range ids {
		deleted, err := deleteDevice(tx, id)
		if err != nil {
			return 0, s.internal("delete devices", err)
		}
		if deleted {
			n++
		}
	}
	return n, nil
}

// purgeRefreshTokens deletes the refresh tokens expired at now, then
// every device it left with none (and, as deleteDevice does, that
// device's push registration and delivery cursors). Such a session has
// ended for good: it cannot refresh, and its access tokens expired before
// its last refresh token did. Only the devices whose tokens go now are
// looked at, so the purge does not scan every device each time, unless
// sweep is set: then every device is (the first purge of a process does
// it, for devices whose tokens were deleted by an older version or
// another path).
func purgeRefreshTokens(tx *txn, now int64, sweep bool) error {
	rows, err := tx.query(`DELETE FROM refresh_tokens WHERE expires_at <= ? RETURNING device_id`, now)
	if err != nil {
		return err
	}
	var touched []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		touched = append(touched, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if sweep {
		dead, err := tx.query(`SELECT id FROM devices d WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.device_id = d.id)`)
		if err != nil {
			return err
		}
		for dead.Next() {
			var id string
			if err := dead.Scan(&id); err != nil {
				dead.Close()
				return err
			}
			touched = append(touched, id)
		}
		dead.Close()
		if err := dead.Err(); err != nil {
			return err
		}
	}
	slices.Sort(touched)
	for _, id := range slices.Compact(touched) {
		var live bool
		if err := tx.queryRow(`SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE device_id = ?)`, id).Scan(&live); err != nil {
			return err
		}
		if live {
			continue
		}
		if _, err := deleteDevice(tx, id); err != nil {
			return err
		}
	}
	return nil
}

// deleteDevice deletes a device with its refresh tokens, push
// registration and delivery cursors, and reports whether the device existed.
func deleteDevice(tx *txn, deviceID string) (bool, error) {
	if _, err := tx.exec(`DELETE FROM push_registrations WHERE device_id = ?`, deviceID); err != nil {
		return false, err
	}
	if _, err := tx.exec(`DELETE FROM refresh_tokens WHERE device_id = ?`, deviceID); err != nil {
		return false, err
	}
	if _, err := tx.exec(`DELETE FROM device_cursors WHERE device_id = ?`, deviceID); err != nil {
		return false, err
	}
	res, err := tx.exec(`DELETE FROM devices WHERE id = ?`, deviceID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func scanDevice(row scanner) (*parley.Device, error) {
	var d parley.Device
	var created, seen int64
	if err := row.Scan(&d.ID, &d.UserID, &d.Platform, &d.Name, &d.SessionID, &created, &seen); err != nil {
		return nil, err
	}
	d.CreatedAt, d.LastSeenAt = engine.FromMillis(created), engine.FromMillis(seen)
	return &d, nil
}
