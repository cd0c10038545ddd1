-- 0005: blocking (parley.Store.SetBlock, Blocks, Relations).
--
-- blocks holds who blocks whom, with since_seq, the last_seq of the direct
-- conversation between the two when the block began (0 if none): the
-- blocked user never sees the blocker's receipts pass it. blocks_blocked
-- answers "who blocks me".
CREATE TABLE blocks (
	blocker_id text NOT NULL,
	blocked_id text NOT NULL,
	created_at bigint NOT NULL,
	since_seq  bigint NOT NULL,
	PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id);

-- A message sent in a direct conversation by a user the other member
-- blocks: stored and numbered, shown only to its sender (parley.Message
-- Withheld). Not counted as unread. A constant default rewrites no row.
ALTER TABLE messages ADD COLUMN withheld boolean NOT NULL DEFAULT false;
