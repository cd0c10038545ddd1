-- 0003: the member's delivered watermark, the highest seq any of the user's
-- devices has received (device_cursors holds each device's own). Raised
-- only upwards, so "the first device passed seq N" is one comparison.
ALTER TABLE members ADD COLUMN delivered_seq INTEGER NOT NULL DEFAULT 0;
