-- 0005: small named secrets the nodes share (parley.Store.UpdateSecrets):
-- the token signing keys. value is sealed with the store's Sealer under
-- the key value_key, bound to the name.
CREATE TABLE secrets (
	name      TEXT PRIMARY KEY,
	value     BLOB NOT NULL,
	value_key INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
