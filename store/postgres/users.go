package postgres

import (
	"context"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

const userColumns = `id, handle, display_name, role, state, password_hash, created_at`

// CreateUser inserts u. It sets an empty Role or State to
// parley.SystemRoleUser or parley.UserActive, and CreatedAt to the
// precision it is stored with (milliseconds, UTC). CodeConflict if the handle
// (or the id) is taken.
func (s *Store) CreateUser(ctx context.Context, u *parley.User) error {
	defer s.track("create_user", time.Now())
	if err := engine.PrepareUser(u); err != nil {
		return err
	}
	return s.write(ctx, true, func(t *txn) error {
		_, err := t.exec(`INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			u.ID, u.Handle, u.DisplayName, string(u.Role), string(u.State), u.PasswordHash, engine.Millis(u.CreatedAt))
		if isUniqueViolation(err) {
			return parley.Errorf(parley.CodeConflict, "the handle %q is taken", u.Handle)
		}
		if err != nil {
			return s.internal("create user", err)
		}
		return nil
	})
}

// User returns the user with the given id; CodeNotFound if none.
func (s *Store) User(ctx context.Context, id string) (*parley.User, error) {
	defer s.track("user", time.Now())
	return s.userWhere(ctx, "id", id)
}

// UserByHandle returns the user with the given normalized handle;
// CodeNotFound if none.
func (s *Store) UserByHandle(ctx context.Context, handle string) (*parley.User, error) {
	defer s.track("user_by_handle", time.Now())
	return s.userWhere(ctx, "handle", handle)
}

// userWhere reads the user whose column (a constant) equals value.
func (s *Store) userWhere(ctx context.Context, column, value string) (*parley.User, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	row := s.pool.QueryRow(ctx, `SELECT `+userColumns+`, dnd_until, presence_visibility, receipts_visibility FROM users WHERE `+column+` = $1`, value)
	var u parley.User
	var created int64
	var dnd *int64
	err := row.Scan(&u.ID, &u.Handle, &u.DisplayName, &u.Role, &u.State, &u.PasswordHash, &created, &dnd, &u.Privacy.Presence, &u.Privacy.ReadReceipts)
	if noRows(err) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such user")
	}
	if err != nil {
		return nil, s.internal("read user", err)
	}
	u.CreatedAt = engine.FromMillis(created)
	u.DNDUntil = fromNullMillis(dnd)
	return &u, nil
}

// SetUserRole sets a user's system role; CodeNotFound if no such user.
func (s *Store) SetUserRole(ctx context.Context, userID string, role parley.SystemRole) error {
	defer s.track("set_user_role", time.Now())
	return s.setUserColumn(ctx, "role", userID, string(role), nil)
}

// SetDND implements parley.Store: the zero time stores NULL.
func (s *Store) SetDND(ctx context.Context, userID string, until time.Time) error {
	defer s.track("set_dnd", time.Now())
	return s.setUserColumn(ctx, "dnd_until", userID, nullMillis(until), nil)
}

// SetUserState sets a user's state; suspending also deletes the user's
// devices in the same transaction. CodeNotFound if no such user.
func (s *Store) SetUserState(ctx context.Context, userID string, state parley.UserState) error {
	defer s.track("set_user_state", time.Now())
	return s.setUserColumn(ctx, "state", userID, string(state), func(t *txn) error {
		if state != parley.UserSuspended {
			return nil
		}
		_, err := s.deleteDevices(t, userID)
		return err
	})
}

// setUserColumn sets column (a constant) of a user to value, then runs then
// (if not nil) in the same transaction.
func (s *Store) setUserColumn(ctx context.Context, column, userID string, value any, then func(t *txn) error) error {
	return s.write(ctx, true, func(t *txn) error {
		n, err := t.exec(`UPDATE users SET `+column+` = $1 WHERE id = $2`, value, userID)
		if err != nil {
			return s.internal("update user", err)
		}
		if n == 0 {
			return parley.Errorf(parley.CodeNotFound, "no such user")
		}
		if then != nil {
			return then(t)
		}
		return nil
	})
}
