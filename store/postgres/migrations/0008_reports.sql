-- 0008: reports of messages and users, for admins (parley.Report). content
-- is sealed with the store's Sealer (bound to "report:<id>"), content_key
-- its key id; empty when there is none.
CREATE TABLE reports (
	id              text PRIMARY KEY,
	reporter_id     text NOT NULL,
	user_id         text NOT NULL,
	conversation_id text NOT NULL,
	seq             bigint NOT NULL,
	message_id      text NOT NULL,
	reason          text NOT NULL,
	comment         text NOT NULL,
	content         bytea NOT NULL,
	content_key     bigint NOT NULL,
	content_source  text NOT NULL,
	state           text NOT NULL,
	created_at      bigint NOT NULL,
	resolved_at     bigint,
	resolved_by     text NOT NULL DEFAULT '',
	resolution      text NOT NULL DEFAULT ''
);
CREATE INDEX reports_state ON reports (state, id);
