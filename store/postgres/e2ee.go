package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// The key directory and the keys of encrypted messages (see
// migrations/0011_e2ee.sql and docs/design/e2ee.md). Reads go to the
// primary: a client refetches a list right after a device_mismatch and
// must see what the append checked against.

const deviceKeyColumns = engine.DeviceKeyColumns

func scanDeviceKey(row pgx.Row) (*engine.DeviceKeyRow, error) {
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
		stored, err := scanDeviceKey(t.queryRow(`SELECT `+deviceKeyColumns+` FROM device_keys WHERE device_id = $1 FOR UPDATE`, k.DeviceID))
		if noRows(err) {
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
			if _, err := t.exec(`INSERT INTO device_keys (`+deviceKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
				ON CONFLICT (device_id) DO UPDATE SET suite = excluded.suite, key_id = excluded.key_id,
					public_key = excluded.public_key, key_signature = excluded.key_signature, updated_at = excluded.updated_at`,
				k.DeviceID, k.UserID, identity, k.Suite, k.KeyID, public, signature, ms); err != nil {
				return s.internal("set device keys", err)
			}
			err = t.queryRow(`UPDATE users SET device_list_version = device_list_version + 1 WHERE id = $1 RETURNING device_list_version`, k.UserID).Scan(&version)
		} else {
			err = t.queryRow(`SELECT device_list_version FROM users WHERE id = $1`, k.UserID).Scan(&version)
		}
		if err != nil {
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
	tx, err := s.pool.BeginTx(ctx, snapshot)
	if err != nil {
		return nil, s.internal("read device list", err)
	}
	defer tx.Rollback(ctx)
	l := &parley.DeviceList{UserID: userID, Devices: []parley.DeviceKeys{}}
	err = tx.QueryRow(ctx, `SELECT device_list_version FROM users WHERE id = $1`, userID).Scan(&l.Version)
	if noRows(err) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such user")
	}
	if err != nil {
		return nil, s.internal("read device list", err)
	}
	byUser, err := s.deviceLists(ctx, tx, `SELECT `+engine.ListedDeviceKeyColumns+` FROM device_keys k JOIN devices d ON d.id = k.device_id
		WHERE k.user_id = $1 ORDER BY d.created_at, k.device_id COLLATE "C"`, userID)
	if err != nil {
		return nil, err
	}
	l.Devices = append(l.Devices, byUser[userID]...)
	return l, nil
}

func (s *Store) deviceLists(ctx context.Context, q querier, query string, args ...any) (map[string][]parley.DeviceKeys, error) {
	rows, err := q.Query(ctx, query, args...)
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
	tx, err := s.pool.BeginTx(ctx, snapshot)
	if err != nil {
		return nil, s.internal("read device lists", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `SELECT u.id, u.device_list_version FROM members m JOIN users u ON u.id = m.user_id
		WHERE m.conversation_id = $1 ORDER BY u.id COLLATE "C"`, conversationID)
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
		WHERE m.conversation_id = $1 ORDER BY d.created_at, k.device_id COLLATE "C"`, conversationID)
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
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM members a JOIN members b ON b.conversation_id = a.conversation_id
		WHERE a.user_id = $1 AND b.user_id = $2)`, userID, otherID).Scan(&shared)
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
	rows, err := s.pool.Query(ctx, `SELECT seq, device_id, key_id, enc, sealed FROM message_keys
		WHERE conversation_id = $1 AND seq BETWEEN $2 AND $3 AND ($5 OR device_id = ANY($4::text[]))
		ORDER BY seq, device_id COLLATE "C"`, conversationID, fromSeq, toSeq, deviceIDs, deviceIDs == nil)
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

// appendEncrypted is an encrypted AppendMessage, run as a function of the
// writer's batch (the transaction holds the stamp lock: no other write
// lands between its checks and its insert). It does what the batched
// append path does for one message, plus the envelope's checks and the
// insert of its keys. Batched appends of the same batch run after the
// functions and see its seq.
func (s *Store) appendEncrypted(t *txn, a *appendJob, keys []engine.KeyRow) error {
	a.seq, a.original = 0, nil
	m := a.m
	var lastSeq int64
	var e2ee bool
	err := t.queryRow(`SELECT c.last_seq, c.e2ee FROM members m JOIN conversations c ON c.id = m.conversation_id
		WHERE m.conversation_id = $1 AND m.user_id = $2`, m.ConversationID, m.SenderID).Scan(&lastSeq, &e2ee)
	member := err == nil
	if err != nil && !noRows(err) {
		return s.internal("append message", err)
	}
	if a.clientMsgID != nil {
		o, err := scanSent(t.queryRow(`SELECT `+prefixed("m.", messageColumns)+`, m.purged FROM sent_messages s
			JOIN messages m ON m.conversation_id = s.conversation_id AND m.seq = s.seq
			WHERE s.sender_id = $1 AND s.client_msg_id = $2`, m.SenderID, *a.clientMsgID))
		if err != nil {
			return s.internal("append message", err)
		}
		if o != nil && (member || o.conversationID == m.ConversationID) {
			a.original = o
			return nil
		}
	}
	if !member {
		return parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	if err := engine.CheckE2EEType(m, e2ee); err != nil {
		return err
	}
	var senderKey int64
	err = t.queryRow(`SELECT key_id FROM device_keys WHERE device_id = $1 AND user_id = $2`, m.SenderDeviceID, m.SenderID).Scan(&senderKey)
	if noRows(err) {
		return engine.ErrNoSenderKeys()
	}
	if err != nil {
		return s.internal("check envelope", err)
	}
	rows, err := t.query(`SELECT k.user_id, k.device_id, k.key_id FROM members m JOIN device_keys k ON k.user_id = m.user_id
		WHERE m.conversation_id = $1 AND k.device_id <> $2`, m.ConversationID, m.SenderDeviceID)
	if err != nil {
		return s.internal("check envelope", err)
	}
	var want []parley.RecipientDevice
	for rows.Next() {
		var d parley.RecipientDevice
		if err := rows.Scan(&d.UserID, &d.DeviceID, &d.KeyID); err != nil {
			rows.Close()
			return s.internal("check envelope", err)
		}
		want = append(want, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.internal("check envelope", err)
	}
	if mm := parley.MatchDevices(m.Envelope.Keys, want); mm != nil {
		return mm
	}
	if len(m.Attachments) > 0 {
		media := map[string]*mediaAttachRow{}
		ids := make([]string, len(m.Attachments))
		for i, at := range m.Attachments {
			ids[i] = at.MediaID
		}
		rows, err := t.query(`SELECT id, uploader_id, conversation_id, state, conversation_seq, expires_at FROM media
			WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`, ids)
		if err != nil {
			return s.internal("attach media", err)
		}
		for rows.Next() {
			var id string
			var r mediaAttachRow
			if err := rows.Scan(&id, &r.uploaderID, &r.conversationID, &r.state, &r.conversationSeq, &r.expiresAt); err != nil {
				rows.Close()
				return s.internal("attach media", err)
			}
			media[id] = &r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s.internal("attach media", err)
		}
		if err := checkAttachments(m, media, map[string]bool{}); err != nil {
			return err
		}
	}
	seq := lastSeq + 1
	stamp := t.changeStamp()
	if _, err := t.exec(`INSERT INTO messages (`+messageColumns+`, stamp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		m.ConversationID, seq, m.ID, m.SenderID, m.SenderDeviceID, a.clientMsgID, string(m.Type), a.sealed, a.keyID,
		engine.Millis(m.CreatedAt), nullMillis(m.ExpiresAt), nullMillis(m.EditedAt), m.Deleted, m.Withheld, a.attachments, stamp); err != nil {
		return s.internal("append message", err)
	}
	if a.clientMsgID != nil {
		if _, err := t.exec(`INSERT INTO sent_messages (sender_id, client_msg_id, conversation_id, seq) VALUES ($1, $2, $3, $4)`,
			m.SenderID, *a.clientMsgID, m.ConversationID, seq); err != nil {
			return s.internal("append message", err)
		}
	}
	if _, err := t.exec(`UPDATE conversations SET last_seq = $1, updated_at = greatest(updated_at, $2), stamp = $3 WHERE id = $4`,
		seq, engine.Millis(m.CreatedAt), stamp, m.ConversationID); err != nil {
		return s.internal("append message", err)
	}
	for _, at := range m.Attachments {
		if _, err := t.exec(`UPDATE media SET conversation_seq = $1, expires_at = NULL WHERE id = $2`, seq, at.MediaID); err != nil {
			return s.internal("attach media", err)
		}
	}
	if err := insertMessageKeys(t, m.ConversationID, seq, keys); err != nil {
		return s.internal("append message keys", err)
	}
	a.seq = seq
	return nil
}

// scanSent reads a message row followed by purged; nil if there is none.
func scanSent(row pgx.Row) (*messageRow, error) {
	var r messageRow
	err := row.Scan(append(r.fields(), &r.purged)...)
	if noRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// insertMessageKeys stores keys of a message, replacing a device's
// existing one.
func insertMessageKeys(t *txn, conversationID string, seq int64, keys []engine.KeyRow) error {
	if len(keys) == 0 {
		return nil
	}
	devices := make([]string, len(keys))
	keyIDs := make([]int64, len(keys))
	encs := make([][]byte, len(keys))
	sealed := make([][]byte, len(keys))
	for i, k := range keys {
		devices[i], keyIDs[i], encs[i], sealed[i] = k.DeviceID, k.KeyID, k.Enc, k.Sealed
	}
	_, err := t.exec(`INSERT INTO message_keys (conversation_id, seq, device_id, key_id, enc, sealed)
		SELECT $1, $2, u.* FROM unnest($3::text[], $4::bigint[], $5::bytea[], $6::bytea[]) AS u
		ON CONFLICT (conversation_id, seq, device_id) DO UPDATE SET key_id = excluded.key_id, enc = excluded.enc, sealed = excluded.sealed`,
		conversationID, seq, devices, keyIDs, encs, sealed)
	return err
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
		r, err := scanMessageRow(t.queryRow(`SELECT `+messageColumns+` FROM messages WHERE conversation_id = $1 AND seq = $2 AND `+notExpired(3),
			conversationID, seq, engine.Millis(now)))
		if noRows(err) {
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
			WHERE m.conversation_id = $1`, conversationID)
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
		rows, err := t.query(`DELETE FROM device_list_news WHERE user_id IN (SELECT user_id FROM device_list_news LIMIT $1) RETURNING user_id`, limit)
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
