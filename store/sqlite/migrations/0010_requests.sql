-- 0010: message requests. A membership is accepted (1) or a request not
-- yet accepted (0); every membership from before is accepted.
ALTER TABLE members ADD COLUMN accepted INTEGER NOT NULL DEFAULT 1;
