package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// The key directory and the keys of encrypted messages (see
// migrations/0014_e2ee.sql and docs/design/e2ee.md).

const deviceKeyColumns = engine.DeviceKeyColumns

func scanDeviceKey(row scanner) (*engine.DeviceKeyRow, error) {
	var r engine.DeviceKeyRow
	if err := row.Scan(r.Fields()...); err != nil {
		return nil, err
	}
	return &r, nil
}

// SetDeviceKeys implements parley.Store.
func (s *Store) SetDeviceKeys(ctx context.Context, k *parley.DeviceKeys, now time.Time) (int64, bool, error) {
	defer s.track("set_device_keys", time.Now())
	identity, public, signature, err := engine.DecodeDeviceKeys(k)
	if err != nil {
		return 0, false, err
	}
	var version int64
	var changed bool
	err = s.write(ctx, true, func(t *txn) error {
		version, changed = 0, false
		if err := s.ownDevice(t, k.UserID, k.DeviceID, "set device keys"); err != nil {
			return err
		}
		stored, err := scanDeviceKey(t.queryRow(`SELECT `+deviceKeyColumns+` FROM device_keys WHERE device_id = ?`, k.DeviceID))
		if errors.Is(err, sql.ErrNoRows) {
			stored, err = nil, nil
		}
		if err != nil {
			return s.internal("set device keys", err)
		}
		if changed, err = engine.DeviceKeysChange(stored, k, identity, public, signature); err != nil {
			return err
		}
		if changed {
			ms := engine.Millis(now)
			if _, err := t.exec(`INSERT INTO device_keys (`+deviceKeyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (device_id) DO UPDATE SET suite = excluded.suite, key_id = excluded.key_id,
					public_key = excluded.public_key, key_signature = excluded.key_signature, updated_at = excluded.updated_at`,
				k.DeviceID, k.UserID, identity, k.Suite, k.KeyID, public, signature, ms, ms); err != nil {
				return s.internal("set device keys", err)
			}
			if _, err := t.exec(`UPDATE users SET device_list_version = device_list_version + 1 WHERE id = ?`, k.UserID); err != nil {
				return s.internal("set device keys", err)
			}
		}
		if err := t.queryRow(`SELECT device_list_version FROM users WHERE id = ?`, k.UserID).Scan(&version); err != nil {
			return s.internal("set device keys", err)
		}
		return nil
	})
	return version, changed, err
}

// DeviceList implements parley.Store.
func (s *Store) DeviceList(ctx context.Context, userID string) (*parley.DeviceList, error) {
	defer s.track("device_list", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	tx, err := s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.internal("read device list", err)
	}
	defer tx.Rollback()
	l := &parley.DeviceList{UserID: userID, Devices: []parley.DeviceKeys{}}
	err = tx.QueryRowContext(ctx, `SELECT device_list_version FROM users WHERE id = ?`, userID).Scan(&l.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such user")
	}
	if err != nil {
		return nil, s.internal("read device list", err)
	}
	lists, err := s.deviceLists(ctx, tx, `SELECT `+engine.ListedDeviceKeyColumns+` FROM device_keys k JOIN devices d ON d.id = k.device_id
		WHERE k.user_id = ? ORDER BY d.created_at, k.device_id`, userID)
	if err != nil {
		return nil, err
	}
	l.Devices = append(l.Devices, lists[userID]...)
	return l, nil
}

// deviceLists reads device_keys rows (query selects deviceKeyColumns) by
// user id.
func (s *Store) deviceLists(ctx context.Context, tx *sql.Tx, query string, args ...any) (map[string][]parley.DeviceKeys, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.internal("read device keys", err)
	}
	defer rows.Close()
	out := map[string][]parley.DeviceKeys{}
	for rows.Next() {
		var r engine.DeviceKeyRow
		if err := rows.Scan(r.ListedFields()...); err != nil {
			return nil, s.internal("read device keys", err)
		}
		out[r.UserID] = append(out[r.UserID], r.DeviceKeys())
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read device keys", err)
	}
	return out, nil
}

// ConversationDeviceLists implements parley.Store.
func (s *Store) ConversationDeviceLists(ctx context.Context, conversationID string) ([]parley.DeviceList, error) {
	defer s.track("conversation_device_lists", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	tx, err := s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.internal("read device lists", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT u.id, u.device_list_version FROM members m JOIN users u ON u.id = m.user_id
		WHERE m.conversation_id = ? ORDER BY u.id`, conversationID)
	if err != nil {
		return nil, s.internal("read device lists", err)
	}
	var lists []parley.DeviceList
	for rows.Next() {
		l := parley.DeviceList{Devices: []parley.DeviceKeys{}}
		if err := rows.Scan(&l.UserID, &l.Version); err != nil {
			rows.Close()
			return nil, s.internal("read device lists", err)
		}
		lists = append(lists, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.internal("read device lists", err)
	}
	if len(lists) == 0 {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	byUser, err := s.deviceLists(ctx, tx, `SELECT `+engine.ListedDeviceKeyColumns+` FROM members m
		JOIN device_keys k ON k.user_id = m.user_id JOIN devices d ON d.id = k.device_id
		WHERE m.conversation_id = ? ORDER BY d.created_at, k.device_id`, conversationID)
	if err != nil {
		return nil, err
	}
	for i := range lists {
		lists[i].Devices = append(lists[i].Devices, byUser[lists[i].UserID]...)
	}
	return lists, nil
}

// SharesConversation implements parley.Store.
func (s *Store) SharesConversation(ctx context.Context, userID, otherID string) (bool, error) {
	defer s.track("shares_conversation", time.Now())
	if s.closed.Load() {
		return false, errClosed
	}
	var shared bool
	err := s.readDB.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM members a JOIN members b ON b.conversation_id = a.conversation_id
		WHERE a.user_id = ? AND b.user_id = ?)`, userID, otherID).Scan(&shared)
	if err != nil {
		return false, s.internal("shares conversation", err)
	}
	return shared, nil
}

// MessageKeys implements parley.Store.
func (s *Store) MessageKeys(ctx context.Context, conversationID string, fromSeq, toSeq int64, deviceIDs []string) ([]parley.MessageKey, error) {
	defer s.track("message_keys", time.Now())
	if len(deviceIDs) > 1000 {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "at most 1000 devices")
	}
	if deviceIDs != nil && len(deviceIDs) == 0 || toSeq < fromSeq {
		return nil, nil
	}
	if s.closed.Load() {
		return nil, errClosed
	}
	all := deviceIDs == nil
	list, err := json.Marshal(deviceIDs)
	if err != nil {
		return nil, s.internal("read message keys", err)
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT seq, device_id, key_id, enc, sealed FROM message_keys
		WHERE conversation_id = ? AND seq BETWEEN ? AND ? AND (? OR device_id IN (SELECT value FROM json_each(?)))
		ORDER BY seq, device_id`, conversationID, fromSeq, toSeq, all, string(list))
	if err != nil {
		return nil, s.internal("read message keys", err)
	}
	defer rows.Close()
	var keys []parley.MessageKey
	for rows.Next() {
		var seq, keyID int64
		var deviceID string
		var enc, sealed []byte
		if err := rows.Scan(&seq, &deviceID, &keyID, &enc, &sealed); err != nil {
			return nil, s.internal("read message keys", err)
		}
		keys = append(keys, engine.MessageKey(conversationID, seq, deviceID, keyID, enc, sealed))
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read message keys", err)
	}
	return keys, nil
}

// matchEnvelope checks, in the append's transaction, that m's sending
// device has keys and that m's envelope covers exactly the current keyed
// devices of the conversation's current members but the sending device.
func (s *Store) matchEnvelope(t *txn, m *parley.Message) error {
	var senderKey int64
	err := t.queryRow(`SELECT key_id FROM device_keys WHERE device_id = ? AND user_id = ?`, m.SenderDeviceID, m.SenderID).Scan(&senderKey)
	if errors.Is(err, sql.ErrNoRows) {
		return engine.ErrNoSenderKeys()
	}
	if err != nil {
		return s.internal("check envelope", err)
	}
	want, err := recipients(t, m.ConversationID, m.SenderDeviceID)
	if err != nil {
		return s.internal("check envelope", err)
	}
	if mm := parley.MatchDevices(m.Envelope.Keys, want); mm != nil {
		return mm
	}
	return nil
}

// recipients lists the current keyed devices of the conversation's
// current members but exceptDevice.
func recipients(t *txn, conversationID, exceptDevice string) ([]parley.RecipientDevice, error) {
	rows, err := t.query(`SELECT k.user_id, k.device_id, k.key_id FROM members m JOIN device_keys k ON k.user_id = m.user_id
		WHERE m.conversation_id = ? AND k.device_id <> ?`, conversationID, exceptDevice)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []parley.RecipientDevice
	for rows.Next() {
		var d parley.RecipientDevice
		if err := rows.Scan(&d.UserID, &d.DeviceID, &d.KeyID); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// insertMessageKeys stores the keys of a message (replacing a device's
// existing one).
func insertMessageKeys(t *txn, conversationID string, seq int64, keys []engine.KeyRow) error {
	for _, k := range keys {
		if _, err := t.exec(`INSERT INTO message_keys (conversation_id, seq, device_id, key_id, enc, sealed) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (conversation_id, seq, device_id) DO UPDATE SET key_id = excluded.key_id, enc = excluded.enc, sealed = excluded.sealed`,
			conversationID, seq, k.DeviceID, k.KeyID, k.Enc, k.Sealed); err != nil {
			return err
		}
	}
	return nil
}

// SetMessageKeys implements parley.Store.
func (s *Store) SetMessageKeys(ctx context.Context, conversationID string, seq int64, senderUserID string, keys []parley.EnvelopeKey, now time.Time) (*parley.Message, error) {
	defer s.track("set_message_keys", time.Now())
	rowsIn, err := engine.KeyRows(keys)
	if err != nil {
		return nil, err
	}
	var result *parley.Message
	err = s.write(ctx, true, func(t *txn) error {
		result = nil
		r, err := scanMessageRow(t.queryRow(`SELECT `+messageColumns+` FROM messages WHERE conversation_id = ? AND seq = ? AND `+notExpired,
			conversationID, seq, engine.Millis(now)))
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeNotFound, "no such message")
		}
		if err != nil {
			return s.internal("set message keys", err)
		}
		if r.deleted {
			return parley.Errorf(parley.CodeNotFound, "no such message")
		}
		if r.senderID != senderUserID || r.typ != string(parley.MessageEncrypted) {
			return parley.Errorf(parley.CodeForbidden, "only the sender of an encrypted message may add keys to it")
		}
		q, err := t.query(`SELECT k.user_id, k.device_id, k.key_id, d.created_at, m.joined_at
			FROM members m JOIN device_keys k ON k.user_id = m.user_id JOIN devices d ON d.id = k.device_id
			WHERE m.conversation_id = ?`, conversationID)
		if err != nil {
			return s.internal("set message keys", err)
		}
		var all []engine.KeyRecipient
		for q.Next() {
			var k engine.KeyRecipient
			if err := q.Scan(&k.UserID, &k.DeviceID, &k.KeyID, &k.DeviceCreated, &k.Joined); err != nil {
				q.Close()
				return s.internal("set message keys", err)
			}
			all = append(all, k)
		}
		q.Close()
		if err := q.Err(); err != nil {
			return s.internal("set message keys", err)
		}
		if mm := engine.MatchAddedKeys(keys, all, r.created); mm != nil {
			return mm
		}
		if err := insertMessageKeys(t, conversationID, seq, rowsIn); err != nil {
			return s.internal("set message keys", err)
		}
		m, err := s.open(r)
		if err != nil {
			return err
		}
		result = &m
		return nil
	})
	return result, err
}

// TakeDeviceListNews implements parley.Store.
func (s *Store) TakeDeviceListNews(ctx context.Context, limit int) ([]string, error) {
	defer s.track("take_device_list_news", time.Now())
	if limit < 1 || limit > 1000 {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to 1000")
	}
	var ids []string
	err := s.write(ctx, true, func(t *txn) error {
		ids = nil
		rows, err := t.query(`DELETE FROM device_list_news WHERE user_id IN (SELECT user_id FROM device_list_news LIMIT ?) RETURNING user_id`, limit)
		if err != nil {
			return s.internal("take device list news", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return s.internal("take device list news", err)
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			return s.internal("take device list news", err)
		}
		return nil
	})
	return ids, err
}
