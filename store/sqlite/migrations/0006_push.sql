-- 0006: push registrations, one per device at most (parley.Store.SetPush).
-- data is the registration as JSON, sealed with the store's Sealer (key
-- data_key), bound to the device id: a token is a capability to wake a
-- device.
CREATE TABLE push_registrations (
	device_id  TEXT PRIMARY KEY REFERENCES devices (id),
	user_id    TEXT NOT NULL,
	provider   TEXT NOT NULL,
	data       BLOB NOT NULL,
	data_key   INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX push_registrations_user ON push_registrations (user_id);
