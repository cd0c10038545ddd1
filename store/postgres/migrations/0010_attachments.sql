-- 0010: attachments on messages (docs/design/media.md). attachments is the
-- message's attachment list as engine.SealAttachments stores it (key id,
-- then the JSON list sealed bound to the message id); NULL for none, and
-- on tombstones and purged messages. media_message finds the media of a
-- message (deletes and purges mark them deleted).
ALTER TABLE messages ADD COLUMN attachments bytea;
CREATE INDEX media_message ON media (conversation_id, conversation_seq) WHERE conversation_seq > 0;
