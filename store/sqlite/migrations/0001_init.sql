-- 0001: the initial schema.
--
-- Times are INTEGER Unix milliseconds (UTC). Every message-side table is keyed
-- by conversation_id first, so that a sharded engine can partition by it.

CREATE TABLE users (
	id            TEXT PRIMARY KEY,
	handle        TEXT NOT NULL UNIQUE,
	display_name  TEXT NOT NULL,
	role          TEXT NOT NULL,
	state         TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	created_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE devices (
	id           TEXT PRIMARY KEY,
	user_id      TEXT NOT NULL REFERENCES users (id),
	platform     TEXT NOT NULL,
	name         TEXT NOT NULL,
	session_id   TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	last_seen_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX devices_user ON devices (user_id, created_at);

-- refresh_tokens holds hashes of opaque refresh tokens. used_at is set when a
-- token is rotated; presenting it again revokes the device (reuse detection).
CREATE TABLE refresh_tokens (
	hash       TEXT PRIMARY KEY,
	user_id    TEXT NOT NULL,
	device_id  TEXT NOT NULL REFERENCES devices (id),
	session_id TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	used_at    INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX refresh_tokens_device ON refresh_tokens (device_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- conversations.direct_key is "<smaller user id>:<larger user id>" for a
-- direct conversation and NULL for a group: the pair is unique. last_seq only
-- grows; updated_at is the time of the last activity (creation or append).
CREATE TABLE conversations (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	title      TEXT NOT NULL,
	direct_key TEXT UNIQUE,
	last_seq   INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE members (
	conversation_id TEXT NOT NULL REFERENCES conversations (id),
	user_id         TEXT NOT NULL REFERENCES users (id),
	role            TEXT NOT NULL,
	read_seq        INTEGER NOT NULL DEFAULT 0,
	joined_at       INTEGER NOT NULL,
	PRIMARY KEY (conversation_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX members_user ON members (user_id);

-- messages: body is the sealed (encrypted) body, body_key the sealer's key
-- id. A tombstone (deleted = 1) has an empty body. client_msg_id is NULL when
-- the client gave none, so that it takes no part in idempotency.
CREATE TABLE messages (
	conversation_id  TEXT NOT NULL,
	seq              INTEGER NOT NULL,
	id               TEXT NOT NULL,
	sender_id        TEXT NOT NULL,
	sender_device_id TEXT NOT NULL,
	client_msg_id    TEXT,
	type             TEXT NOT NULL,
	body             BLOB NOT NULL,
	body_key         INTEGER NOT NULL,
	created_at       INTEGER NOT NULL,
	expires_at       INTEGER,
	edited_at        INTEGER,
	deleted          INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (conversation_id, seq)
) STRICT;
CREATE UNIQUE INDEX messages_client_msg ON messages (sender_id, client_msg_id);
CREATE INDEX messages_expires ON messages (expires_at) WHERE expires_at IS NOT NULL;

-- device_cursors: per device, the highest seq delivered in each conversation.
CREATE TABLE device_cursors (
	device_id       TEXT NOT NULL REFERENCES devices (id),
	conversation_id TEXT NOT NULL,
	delivered_seq   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (device_id, conversation_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX device_cursors_conversation ON device_cursors (conversation_id);
