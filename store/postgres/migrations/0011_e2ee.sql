-- 0011: end-to-end encryption (docs/design/e2ee.md); as the SQLite
-- engine's 0014_e2ee.sql. conversations.e2ee is set at creation and never
-- changes; an e2ee direct conversation's direct_key ends in ":e2ee".
-- device_keys holds the published keys of a device; a user's
-- device_list_version rises at every change of the user's keyed devices:
-- a publish or rotation (written by the store) and the deletion of a
-- keyed device by any path (the trigger, in the same transaction).
-- message_keys holds the content key of each encrypted message sealed to
-- each recipient device.
ALTER TABLE conversations ADD COLUMN e2ee boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN device_list_version bigint NOT NULL DEFAULT 0;

CREATE TABLE device_keys (
	device_id     text PRIMARY KEY,
	user_id       text NOT NULL,
	identity_key  bytea NOT NULL,
	suite         text NOT NULL,
	key_id        bigint NOT NULL,
	public_key    bytea NOT NULL,
	key_signature bytea NOT NULL,
	created_at    bigint NOT NULL,
	updated_at    bigint NOT NULL
);
CREATE INDEX device_keys_user ON device_keys (user_id);

CREATE TABLE message_keys (
	conversation_id text NOT NULL,
	seq             bigint NOT NULL,
	device_id       text NOT NULL,
	key_id          bigint NOT NULL,
	enc             bytea NOT NULL,
	sealed          bytea NOT NULL,
	PRIMARY KEY (conversation_id, seq, device_id)
);
CREATE INDEX message_keys_device ON message_keys (device_id);

-- device_list_news names the users whose keyed devices were deleted
-- since the core last took the news (Store.TakeDeviceListNews).
CREATE TABLE device_list_news (
	user_id text PRIMARY KEY
);

CREATE FUNCTION device_keys_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM device_keys WHERE device_id = OLD.id;
	IF FOUND THEN
		DELETE FROM message_keys WHERE device_id = OLD.id;
		UPDATE users SET device_list_version = device_list_version + 1 WHERE id = OLD.user_id;
		INSERT INTO device_list_news (user_id) VALUES (OLD.user_id) ON CONFLICT DO NOTHING;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER device_keys_deleted AFTER DELETE ON devices
	FOR EACH ROW EXECUTE FUNCTION device_keys_deleted();
