-- 0011: reports of messages and users, for admins (parley.Report). content
-- is sealed with the store's Sealer (bound to "report:<id>"), content_key
-- its key id; empty when there is none.
CREATE TABLE reports (
	id              TEXT PRIMARY KEY,
	reporter_id     TEXT NOT NULL,
	user_id         TEXT NOT NULL,
	conversation_id TEXT NOT NULL,
	seq             INTEGER NOT NULL,
	message_id      TEXT NOT NULL,
	reason          TEXT NOT NULL,
	comment         TEXT NOT NULL,
	content         BLOB NOT NULL,
	content_key     INTEGER NOT NULL,
	content_source  TEXT NOT NULL,
	state           TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	resolved_at     INTEGER,
	resolved_by     TEXT NOT NULL DEFAULT '',
	resolution      TEXT NOT NULL DEFAULT ''
) STRICT, WITHOUT ROWID;
CREATE INDEX reports_state ON reports (state, id);
