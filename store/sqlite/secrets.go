package sqlite

import (
	"context"
	"time"

	"github.com/parleychat/parley/store/internal/engine"
)

// UpdateSecrets implements parley.Store in one write job with its own
// savepoint.
func (s *Store) UpdateSecrets(ctx context.Context, prefix string, change func(current map[string][]byte) (put map[string][]byte, del []string, err error)) error {
	defer s.track("update_secrets", time.Now())
	return s.write(ctx, true, func(t *txn) error {
		rows, err := t.query(`SELECT name, value, value_key FROM secrets WHERE substr(name, 1, length(?1)) = ?1`, prefix)
		if err != nil {
			return s.internal("read secrets", err)
		}
		current := map[string][]byte{}
		for rows.Next() {
			var name string
			var sealed []byte
			var key int64
			if err := rows.Scan(&name, &sealed, &key); err != nil {
				rows.Close()
				return s.internal("read secrets", err)
			}
			value, err := s.sealer.Open(uint32(key), sealed, engine.SecretAD(name))
			if err != nil {
				rows.Close()
				return s.internal("open secret "+name, err)
			}
			current[name] = value
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s.internal("read secrets", err)
		}
		put, del, err := change(current)
		if err != nil {
			return err
		}
		if err := engine.CheckSecretNames(prefix, put, del); err != nil {
			return err
		}
		for name, value := range put {
			key, sealed, err := s.sealer.Seal(value, engine.SecretAD(name))
			if err != nil {
				return s.internal("seal secret", err)
			}
			if _, err := t.exec(`INSERT INTO secrets (name, value, value_key) VALUES (?, ?, ?)
				ON CONFLICT (name) DO UPDATE SET value = excluded.value, value_key = excluded.value_key`, name, sealed, int64(key)); err != nil {
				return s.internal("write secret", err)
			}
		}
		for _, name := range del {
			if _, err := t.exec(`DELETE FROM secrets WHERE name = ?`, name); err != nil {
				return s.internal("delete secret", err)
			}
		}
		return nil
	})
}
