-- 0004: change stamps for sync (see parley.Store.Sync).
--
-- A stamp is a store-wide counter that the writer raises once per committed
-- transaction that changes something a member could see; every row changed
-- in that transaction gets its value. sync_stamp holds the last stamp used,
-- written in the same transaction, so opening the store reads one row.
--
-- Rows from before this migration read as stamp 1 (the column default, which
-- SQLite applies without rewriting a row); every write from now on sets the
-- stamp explicitly, starting at 2. So a sync from 0 sees them all and a sync
-- from any position this binary issued sees none of them as new.
ALTER TABLE conversations ADD COLUMN stamp INTEGER NOT NULL DEFAULT 1;
ALTER TABLE members ADD COLUMN stamp INTEGER NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN stamp INTEGER NOT NULL DEFAULT 1;

-- The newest change among a conversation's members is one index seek.
CREATE INDEX members_stamp ON members (conversation_id, stamp);

-- messages.stamp is that of the message's insert or of its last edit or
-- delete, which also sets changed. Appends need no index of stamps: a
-- message's insert stamp grows with its seq, so the messages created since
-- a position are the newest seqs, read from the primary key down to the
-- first one stamped at or below it. Only changed messages, which can be
-- anywhere in the history, are indexed by stamp; an index of every message
-- cost the append path a random index write per message (see sync.go).
ALTER TABLE messages ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_changed ON messages (conversation_id, stamp) WHERE changed = 1;
-- Retention (PurgeHistory) takes the oldest messages not yet purged.
CREATE INDEX messages_created ON messages (created_at) WHERE purged = 0;

-- A membership that ended (removed, left, or the conversation deleted), so
-- that sync can report it; deleted when the user is added again.
CREATE TABLE membership_tombstones (
	user_id         TEXT NOT NULL,
	conversation_id TEXT NOT NULL,
	stamp           INTEGER NOT NULL,
	PRIMARY KEY (user_id, conversation_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX membership_tombstones_stamp ON membership_tombstones (user_id, stamp);

CREATE TABLE sync_stamp (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	stamp INTEGER NOT NULL
) STRICT;
INSERT INTO sync_stamp (id, stamp) VALUES (1, 1);
