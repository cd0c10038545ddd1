package main

import (
	"context"
	"maps"
	"strings"

	"github.com/parleychat/parley"
)

// signingKeyPrefix names the token signing keys among the store's secrets.
const signingKeyPrefix = "signing-keys/"

// storeKeys is an auth.KeyStore on the store's secrets: every node of a
// cluster shares the signing keys (sealed under the master key), so a
// token one node issued verifies on every other, and a rotation by one
// node is the rotation of all.
type storeKeys struct {
	st parley.Store
	// seed is imported when the store holds no key yet: the keys of a
	// data directory from before keys moved into the store, so that the
	// tokens they signed stay valid.
	seed map[string][]byte
}

// UpdateKeys implements auth.KeyStore.
func (k *storeKeys) UpdateKeys(ctx context.Context, change func(map[string][]byte) (map[string][]byte, []string, error)) error {
	return k.st.UpdateSecrets(ctx, signingKeyPrefix, func(stored map[string][]byte) (map[string][]byte, []string, error) {
		current := make(map[string][]byte, len(stored))
		for name, data := range stored {
			current[strings.TrimPrefix(name, signingKeyPrefix)] = data
		}
		importing := len(current) == 0 && len(k.seed) > 0
		if importing {
			current = maps.Clone(k.seed)
		}
		put, drop, err := change(maps.Clone(current))
		if err != nil {
			return nil, nil, err
		}
		out := make(map[string][]byte, len(put))
		if importing {
			for kid, data := range current {
				out[signingKeyPrefix+kid] = data
			}
		}
		for kid, data := range put {
			out[signingKeyPrefix+kid] = data
		}
		var del []string
		for _, kid := range drop {
			delete(out, signingKeyPrefix+kid)
			del = append(del, signingKeyPrefix+kid)
		}
		return out, del, nil
	})
}
