-- 0003: push registrations, one per device at most (parley.Store.SetPush).
-- data is the registration as JSON, sealed with the store's Sealer (key
-- data_key), bound to the device id: a token is a capability to wake a
-- device.
CREATE TABLE push_registrations (
	device_id  text PRIMARY KEY REFERENCES devices (id),
	user_id    text NOT NULL,
	provider   text NOT NULL,
	data       bytea NOT NULL,
	data_key   bigint NOT NULL,
	updated_at bigint NOT NULL
);
CREATE INDEX push_registrations_user ON push_registrations (user_id);
