-- 0012: media records (parley.Media, docs/design/media.md). filename is
-- sealed with the store's Sealer (bound to "media:<id>"), filename_key its
-- key id; empty when there is none. tus_id is
-- the tus store's id of the upload when it differs from id (S3). expires_at is NULL once a message
-- references the media.
CREATE TABLE media (
	id                 TEXT PRIMARY KEY,
	uploader_id        TEXT NOT NULL,
	uploader_device_id TEXT NOT NULL,
	conversation_id    TEXT NOT NULL,
	state              TEXT NOT NULL,
	encrypted          INTEGER NOT NULL,
	content_type       TEXT NOT NULL,
	filename           BLOB NOT NULL,
	filename_key       INTEGER NOT NULL,
	size               INTEGER NOT NULL,
	sha256             TEXT NOT NULL,
	width              INTEGER NOT NULL,
	height             INTEGER NOT NULL,
	duration_ms        INTEGER NOT NULL,
	thumb_width        INTEGER NOT NULL,
	thumb_height       INTEGER NOT NULL,
	thumb_type         TEXT NOT NULL,
	blurhash           TEXT NOT NULL,
	fail_reason        TEXT NOT NULL,
	declared_size      INTEGER NOT NULL,
	created_at         INTEGER NOT NULL,
	expires_at         INTEGER,
	conversation_seq   INTEGER NOT NULL,
	tus_id             TEXT NOT NULL DEFAULT ''
) STRICT, WITHOUT ROWID;
CREATE INDEX media_uploader ON media (uploader_id, created_at);
CREATE INDEX media_expiry ON media (expires_at) WHERE expires_at IS NOT NULL;
