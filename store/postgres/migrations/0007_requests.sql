-- 0007: message requests. A membership is accepted or a request not yet
-- accepted; every membership from before is accepted. A constant default
-- rewrites no row.
ALTER TABLE members ADD COLUMN accepted boolean NOT NULL DEFAULT true;
