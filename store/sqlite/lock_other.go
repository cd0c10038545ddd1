//go:build !unix

package sqlite

import (
	"errors"
	"fmt"
)

// lockDatabase is implemented on Unix systems only, where SQLite marks an
// open database with a POSIX record lock (see lock_unix.go). Elsewhere
// Restore refuses rather than replace a database a server may be using.
func lockDatabase(dbPath string) (unlock func(), err error) {
	return nil, fmt.Errorf("sqlite: restore of %s: %w: cannot tell on this system whether another process has the database open", dbPath, errors.ErrUnsupported)
}
