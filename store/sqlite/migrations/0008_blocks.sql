-- 0008: blocking (parley.Store.SetBlock, Blocks, Relations).
--
-- blocks holds who blocks whom, with since_seq, the last_seq of the direct
-- conversation between the two when the block began (0 if none): the
-- blocked user never sees the blocker's receipts pass it. blocks_blocked
-- answers "who blocks me".
CREATE TABLE blocks (
	blocker_id TEXT NOT NULL,
	blocked_id TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	since_seq  INTEGER NOT NULL,
	PRIMARY KEY (blocker_id, blocked_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX blocks_blocked ON blocks (blocked_id);

-- A message sent in a direct conversation by a user the other member
-- blocks: stored and numbered, shown only to its sender (parley.Message
-- Withheld). Not counted as unread.
ALTER TABLE messages ADD COLUMN withheld INTEGER NOT NULL DEFAULT 0;
