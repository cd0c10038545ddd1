-- 0002: purging an expired message keeps a bodiless row for
-- parley.IdempotencyHorizon, so a late retry of its client_msg_id is
-- recognized instead of stored as a new message.
ALTER TABLE messages ADD COLUMN purged INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_unpurged ON messages (expires_at) WHERE expires_at IS NOT NULL AND purged = 0;
