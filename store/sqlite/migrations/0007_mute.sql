-- 0007: mute and do-not-disturb (parley.Store.SetMute, SetDND). Each is
-- the time its mute ends, NULL if none; one that has passed is no mute,
-- so nothing needs to clear it. A member's mute goes with the membership.
ALTER TABLE members ADD COLUMN muted_until INTEGER;
ALTER TABLE users ADD COLUMN dnd_until INTEGER;
