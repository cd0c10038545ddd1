-- 0004: mute and do-not-disturb (parley.Store.SetMute, SetDND). Each is
-- the time its mute ends, NULL if none; one that has passed is no mute,
-- so nothing needs to clear it. A member's mute goes with the membership.
-- Nullable columns without a default: adding them rewrites no row, and
-- nodes of the previous version keep working on the new schema.
ALTER TABLE members ADD COLUMN muted_until bigint;
ALTER TABLE users ADD COLUMN dnd_until bigint;
