-- 0014: end-to-end encryption (docs/design/e2ee.md).
--
-- conversations.e2ee is set at creation and never changes. A direct
-- conversation with e2ee has direct_key "<a>:<b>:e2ee", so the pair may
-- have one of each kind.
--
-- device_keys holds the published keys of a device (binary fields as
-- bytes); users.device_list_version rises at every change of a user's
-- keyed devices: a publish or rotation (written by the store), and the
-- deletion of a keyed device whatever deletes it (logout, removal,
-- revocation, suspension, expiry), which the trigger below does in the
-- same transaction.
--
-- message_keys holds, per encrypted message, the content key sealed to
-- each recipient device; an encrypted message's common part (suite,
-- ciphertext, signature) is its sealed body.
ALTER TABLE conversations ADD COLUMN e2ee INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN device_list_version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE device_keys (
	device_id     TEXT PRIMARY KEY,
	user_id       TEXT NOT NULL,
	identity_key  BLOB NOT NULL,
	suite         TEXT NOT NULL,
	key_id        INTEGER NOT NULL,
	public_key    BLOB NOT NULL,
	key_signature BLOB NOT NULL,
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX device_keys_user ON device_keys (user_id);

CREATE TABLE message_keys (
	conversation_id TEXT NOT NULL,
	seq             INTEGER NOT NULL,
	device_id       TEXT NOT NULL,
	key_id          INTEGER NOT NULL,
	enc             BLOB NOT NULL,
	sealed          BLOB NOT NULL,
	PRIMARY KEY (conversation_id, seq, device_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX message_keys_device ON message_keys (device_id);

-- device_list_news names the users whose keyed devices were deleted
-- since the core last took the news (Store.TakeDeviceListNews): it
-- announces them, which a deletion by the purge (an expired session)
-- could not do otherwise.
CREATE TABLE device_list_news (
	user_id TEXT PRIMARY KEY
) STRICT, WITHOUT ROWID;

CREATE TRIGGER device_keys_deleted AFTER DELETE ON devices
WHEN EXISTS (SELECT 1 FROM device_keys WHERE device_id = OLD.id)
BEGIN
	DELETE FROM device_keys WHERE device_id = OLD.id;
	DELETE FROM message_keys WHERE device_id = OLD.id;
	UPDATE users SET device_list_version = device_list_version + 1 WHERE id = OLD.user_id;
	INSERT OR IGNORE INTO device_list_news (user_id) VALUES (OLD.user_id);
END;
