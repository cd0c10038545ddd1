-- 0006: privacy settings (parley.Privacy): who sees the user's presence
-- and last seen, and the user's read watermark. A constant default
-- rewrites no row.
ALTER TABLE users ADD COLUMN presence_visibility text NOT NULL DEFAULT 'everyone';
ALTER TABLE users ADD COLUMN receipts_visibility text NOT NULL DEFAULT 'everyone';
