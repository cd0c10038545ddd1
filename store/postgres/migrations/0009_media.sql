-- 0009: media records (parley.Media, docs/design/media.md). filename is
-- sealed with the store's Sealer (bound to "media:<id>"), filename_key its
-- key id; empty when there is none. tus_id is
-- the tus store's id of the upload when it differs from id (S3). expires_at is NULL once a message
-- references the media.
CREATE TABLE media (
	id                 text PRIMARY KEY,
	uploader_id        text NOT NULL,
	uploader_device_id text NOT NULL,
	conversation_id    text NOT NULL,
	state              text NOT NULL,
	encrypted          boolean NOT NULL,
	content_type       text NOT NULL,
	filename           bytea NOT NULL,
	filename_key       bigint NOT NULL,
	size               bigint NOT NULL,
	sha256             text NOT NULL,
	width              bigint NOT NULL,
	height             bigint NOT NULL,
	duration_ms        bigint NOT NULL,
	thumb_width        bigint NOT NULL,
	thumb_height       bigint NOT NULL,
	thumb_type         text NOT NULL,
	blurhash           text NOT NULL,
	fail_reason        text NOT NULL,
	declared_size      bigint NOT NULL,
	created_at         bigint NOT NULL,
	expires_at         bigint,
	conversation_seq   bigint NOT NULL,
	tus_id             text NOT NULL DEFAULT ''
);
CREATE INDEX media_uploader ON media (uploader_id, created_at);
CREATE INDEX media_expiry ON media (expires_at) WHERE expires_at IS NOT NULL;
