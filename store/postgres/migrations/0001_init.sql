-- 0001: the initial schema of the PostgreSQL engine. It holds what the
-- SQLite engine's migrations 0001-0004 hold, with these differences:
--
-- * Idempotency is a table of its own, sent_messages, keyed by
--   (sender_id, client_msg_id), instead of a unique index on messages. A
--   table distributed by conversation_id (Citus) cannot enforce a unique
--   key that does not contain conversation_id; sent_messages is
--   distributed by sender_id instead (docs/adr/0002-postgres-sharding.md).
-- * Booleans are boolean.
--
-- Times are bigint Unix milliseconds (UTC), as in SQLite, so that both
-- engines convert them the same way. Every message-side table has
-- conversation_id first in its primary key.

CREATE TABLE users (
	id            text PRIMARY KEY,
	handle        text NOT NULL UNIQUE,
	display_name  text NOT NULL,
	role          text NOT NULL,
	state         text NOT NULL,
	password_hash text NOT NULL,
	created_at    bigint NOT NULL
);

CREATE TABLE devices (
	id           text PRIMARY KEY,
	user_id      text NOT NULL REFERENCES users (id),
	platform     text NOT NULL,
	name         text NOT NULL,
	session_id   text NOT NULL,
	created_at   bigint NOT NULL,
	last_seen_at bigint NOT NULL
);
CREATE INDEX devices_user ON devices (user_id, created_at);

-- refresh_tokens holds hashes of opaque refresh tokens. used_at is set when
-- a token is rotated; presenting it again revokes the device.
CREATE TABLE refresh_tokens (
	hash       text PRIMARY KEY,
	user_id    text NOT NULL,
	device_id  text NOT NULL REFERENCES devices (id),
	session_id text NOT NULL,
	created_at bigint NOT NULL,
	expires_at bigint NOT NULL,
	used_at    bigint
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (device_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- conversations.direct_key is "<smaller user id>:<larger user id>" for a
-- direct conversation and NULL for a group. last_seq only grows; stamp is
-- the change stamp of the conversation row (see sync_stamp).
CREATE TABLE conversations (
	id         text PRIMARY KEY,
	kind       text NOT NULL,
	title      text NOT NULL,
	direct_key text UNIQUE,
	last_seq   bigint NOT NULL DEFAULT 0,
	created_at bigint NOT NULL,
	updated_at bigint NOT NULL,
	stamp      bigint NOT NULL
);

CREATE TABLE members (
	conversation_id text NOT NULL REFERENCES conversations (id),
	user_id         text NOT NULL REFERENCES users (id),
	role            text NOT NULL,
	read_seq        bigint NOT NULL DEFAULT 0,
	delivered_seq   bigint NOT NULL DEFAULT 0,
	joined_at       bigint NOT NULL,
	stamp           bigint NOT NULL,
	PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_user ON members (user_id);
CREATE INDEX members_stamp ON members (conversation_id, stamp);

-- messages: body is the sealed body, body_key the sealer's key id. A
-- tombstone (deleted) has an empty body; a purged message keeps a bodiless
-- row for parley.IdempotencyHorizon. stamp is that of the insert or of the
-- last edit or delete, which also sets changed (see the SQLite engine's
-- migration 0004 for why only changed messages are indexed by stamp).
CREATE TABLE messages (
	conversation_id  text NOT NULL,
	seq              bigint NOT NULL,
	id               text NOT NULL,
	sender_id        text NOT NULL,
	sender_device_id text NOT NULL,
	client_msg_id    text,
	type             text NOT NULL,
	body             bytea NOT NULL,
	body_key         bigint NOT NULL,
	created_at       bigint NOT NULL,
	expires_at       bigint,
	edited_at        bigint,
	deleted          boolean NOT NULL DEFAULT false,
	purged           boolean NOT NULL DEFAULT false,
	changed          boolean NOT NULL DEFAULT false,
	stamp            bigint NOT NULL,
	PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX messages_unpurged ON messages (expires_at) WHERE expires_at IS NOT NULL AND NOT purged;
CREATE INDEX messages_expires ON messages (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX messages_changed ON messages (conversation_id, stamp) WHERE changed;
CREATE INDEX messages_created ON messages (created_at) WHERE NOT purged;

-- sent_messages: which message a sender's client_msg_id names, for
-- idempotent sends across every node. Deleted with its message.
CREATE TABLE sent_messages (
	sender_id       text NOT NULL,
	client_msg_id   text NOT NULL,
	conversation_id text NOT NULL,
	seq             bigint NOT NULL,
	PRIMARY KEY (sender_id, client_msg_id)
);

-- device_cursors: per device, the highest seq delivered in each
-- conversation.
CREATE TABLE device_cursors (
	device_id       text NOT NULL REFERENCES devices (id),
	conversation_id text NOT NULL,
	delivered_seq   bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (device_id, conversation_id)
);
CREATE INDEX device_cursors_conversation ON device_cursors (conversation_id);

-- A membership that ended, so that sync can report it; deleted when the
-- user is added again.
CREATE TABLE membership_tombstones (
	user_id         text NOT NULL,
	conversation_id text NOT NULL,
	stamp           bigint NOT NULL,
	PRIMARY KEY (user_id, conversation_id)
);
CREATE INDEX membership_tombstones_stamp ON membership_tombstones (user_id, stamp);

-- sync_stamp is the store-wide change stamp. Every write transaction
-- raises it first (UPDATE ... RETURNING), which also takes the row's lock:
-- write transactions of every node run one after another, so stamps commit
-- in their order and a snapshot that sees stamp W sees every row stamped W
-- or lower (see store.go).
CREATE TABLE sync_stamp (
	id    integer PRIMARY KEY CHECK (id = 1),
	stamp bigint NOT NULL
);
INSERT INTO sync_stamp (id, stamp) VALUES (1, 1);
