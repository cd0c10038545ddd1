-- 0009: privacy settings (parley.Privacy): who sees the user's presence
-- and last seen, and the user's read watermark.
ALTER TABLE users ADD COLUMN presence_visibility TEXT NOT NULL DEFAULT 'everyone';
ALTER TABLE users ADD COLUMN receipts_visibility TEXT NOT NULL DEFAULT 'everyone';
