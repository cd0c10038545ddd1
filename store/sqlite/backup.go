package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Backups and restores.
//
// A backup is one self-contained SQLite file written by VACUUM INTO: a
// consistent snapshot taken in one read transaction, which in WAL mode
// neither blocks the writer nor waits for it. It holds every table,
// including the sealed secrets (the token signing keys); it does not hold
// the master key, so reading its message bodies and keys needs the key that
// sealed them.
//
// A restore installs such a file as the database of a data directory that
// no process has open. It must not run in a process that has the database
// open itself: POSIX record locks belong to a process, so it could not see
// that process's connections, and closing its own descriptor of the -shm
// file would drop that process's locks on it.

// ErrInUse is returned by Restore when another process has the database
// open (a running server, or a command such as `parleyd admin`).
var ErrInUse = errors.New("sqlite: the database is open in another process")

// BackupInfo describes a backup file.
type BackupInfo struct {
	Bytes         int64 // size of the file
	SchemaVersion int   // PRAGMA user_version: the migrations applied
	// ChangeStamp is the store's change stamp at the snapshot (0 for a
	// schema from before change stamps). Clients that synced after it hold
	// a higher one; see parley.Store.Sync.
	ChangeStamp   int64
	Users         int64
	Conversations int64
	Messages      int64 // including expired and purged rows not yet deleted
	Secrets       int64 // sealed secrets: the token signing keys
}

// Backup writes a consistent snapshot of the database at dbPath to dst,
// replacing dst atomically if it exists, and returns what it holds. It may
// run while a Store, in this or another process, writes to the database: it
// reads through a read-only connection of its own, in one read transaction
// (VACUUM INTO), so it needs no Sealer, applies no migration, and never
// writes to dbPath. The WAL cannot restart while it reads, so it grows
// with the writes made meanwhile and shrinks at the next restart after.
//
// The snapshot is written to a temporary file beside dst (mode 0600: it
// holds password and token hashes), checked, synced, and renamed over dst;
// dst's directory is synced after the rename. Canceling ctx interrupts the
// copy and removes the temporary file.
func Backup(ctx context.Context, dbPath, dst string) (*BackupInfo, error) {
	dbPath, err := filepath.Abs(dbPath)
	if err != nil {
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	dst, err = filepath.Abs(dst)
	if err != nil {
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	if _, err := os.Stat(dbPath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sqlite: backup: there is no database at %s", dbPath)
		}
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	if isDatabaseFile(dbPath, dst) {
		return nil, fmt.Errorf("sqlite: backup: %s is the database itself; write the backup elsewhere", dst)
	}

	// VACUUM INTO writes into a file that does not exist or is empty; an
	// empty temporary file reserves the name.
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	done := false
	defer func() {
		if !done {
			os.Remove(tmpPath)
		}
	}()

	// The store's readers are query_only, which refuses VACUUM INTO (it
	// writes a file, if not this one); mode=ro makes the source read-only
	// instead.
	src, err := sql.Open("sqlite", fileURI(dbPath, url.Values{
		"mode":          {"ro"},
		"_busy_timeout": {fmt.Sprint(busyTimeout.Milliseconds())},
	}))
	if err != nil {
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	src.SetMaxOpenConns(1)
	_, err = src.ExecContext(ctx, "VACUUM INTO ?", tmpPath)
	if cerr := src.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: backup of %s: %w", dbPath, err)
	}

	// Checking the copy reads it back: a backup never read is a hope.
	info, err := inspect(ctx, tmpPath, dst)
	if err != nil {
		return nil, err
	}
	if err := syncFile(tmpPath); err != nil {
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := os.Rename(tmpPath, dst); err != nil {
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	done = true
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	return info, nil
}

// Restore installs the backup src as the database at dbPath, whose
// directory must exist, and returns what it holds. It fails with ErrInUse
// if any process has dbPath open, and with an error wrapping
// fs.ErrExist if dbPath exists and replace is false. It refuses a src that
// is not a SQLite database, has no Parley schema, has a schema newer than
// this binary knows, fails PRAGMA integrity_check, or has a -wal file
// beside it (then it is not self-contained).
//
// src is copied to a temporary file beside dbPath, and that copy is what
// is checked, synced and renamed over dbPath. Before the rename the stale
// -wal and -journal of dbPath are removed (SQLite would apply them to the
// new file); the -shm goes after it. From the check to the end Restore
// holds the lock that keeps any SQLite connection from opening dbPath (see
// lockDatabase), so a server started meanwhile waits or fails rather than
// reading a half-installed database. If it is interrupted after removing
// the old -wal, the old database has lost the writes that were only in its
// WAL; the caller was replacing it anyway.
//
// Restore must not run in a process that has dbPath open (see above).
func Restore(ctx context.Context, src, dbPath string, replace bool) (*BackupInfo, error) {
	src, err := filepath.Abs(src)
	if err != nil {
		return nil, fmt.Errorf("sqlite: restore: %w", err)
	}
	dbPath, err = filepath.Abs(dbPath)
	if err != nil {
		return nil, fmt.Errorf("sqlite: restore: %w", err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("sqlite: restore: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("sqlite: restore: %s is not a regular file", src)
	}
	if isDatabaseFile(dbPath, src) {
		return nil, fmt.Errorf("sqlite: restore: %s is the database itself", src)
	}
	if wal, err := os.Stat(src + "-wal"); err == nil && wal.Size() > 0 {
		return nil, fmt.Errorf("sqlite: restore: %s has a write-ahead log beside it (%s-wal), so the file alone misses writes; make backups with `parleyd backup`", src, src)
	}

	unlock, err := lockDatabase(dbPath)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !replace {
		if _, err := os.Lstat(dbPath); err == nil {
			return nil, fmt.Errorf("sqlite: restore: %s: %w", dbPath, fs.ErrExist)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sqlite: restore: %w", err)
		}
	}

	dir := filepath.Dir(dbPath)
	tmpPath, err := copyToTemp(src, dir, "."+filepath.Base(dbPath)+".restore-*")
	if err != nil {
		return nil, fmt.Errorf("sqlite: restore: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.Remove(tmpPath)
		}
	}()
	info, err := inspect(ctx, tmpPath, src)
	if err != nil {
		return nil, err
	}
	for _, stale := range []string{dbPath + "-wal", dbPath + "-journal"} {
		if err := os.Remove(stale); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sqlite: restore: %w", err)
		}
	}
	if err := os.Rename(tmpPath, dbPath); err != nil {
		return nil, fmt.Errorf("sqlite: restore: %w", err)
	}
	done = true
	// The -shm indexes the WAL just removed; the first connection would
	// reset it anyway, as it does after a crash.
	if err := os.Remove(dbPath + "-shm"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sqlite: restore: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("sqlite: restore: %w", err)
	}
	return info, nil
}

// inspect checks that the file at path is a Parley database this binary
// can open, and describes it. name is the file the caller knows it as, for
// the messages. path must not change while inspect reads it: it is opened
// immutable, which takes no lock and ignores (and creates) no -wal or -shm.
func inspect(ctx context.Context, path, name string) (*BackupInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db, err := sql.Open("sqlite", fileURI(path, url.Values{"mode": {"ro"}, "immutable": {"1"}}))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", name, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	info := &BackupInfo{Bytes: fi.Size()}
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&info.SchemaVersion); err != nil {
		if isNotADatabase(err) {
			return nil, fmt.Errorf("sqlite: %s is not a SQLite database", name)
		}
		return nil, fmt.Errorf("sqlite: read %s: %w", name, err)
	}
	tables := map[string]bool{}
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table'`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read %s: %w", name, err)
	}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: read %s: %w", name, err)
		}
		tables[t] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read %s: %w", name, err)
	}
	if info.SchemaVersion < 1 || !tables["users"] || !tables["conversations"] || !tables["messages"] {
		return nil, fmt.Errorf("sqlite: %s is a SQLite database but not a Parley one (schema version %d, no Parley tables)", name, info.SchemaVersion)
	}
	latest, err := latestVersion()
	if err != nil {
		return nil, err
	}
	if info.SchemaVersion > latest {
		return nil, fmt.Errorf("sqlite: %s has schema version %d, newer than this binary's %d: use a parleyd at least as new as the one that wrote it", name, info.SchemaVersion, latest)
	}

	rows, err = db.QueryContext(ctx, "PRAGMA integrity_check(10)")
	if err != nil {
		return nil, fmt.Errorf("sqlite: integrity check of %s: %w", name, err)
	}
	var problems []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: integrity check of %s: %w", name, err)
		}
		for line := range strings.Lines(p) {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "***") {
				problems = append(problems, line) // "*** in database main ***" heads the list
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: integrity check of %s: %w", name, err)
	}
	if len(problems) != 1 || problems[0] != "ok" {
		return nil, fmt.Errorf("sqlite: %s is damaged: integrity check: %s", name, strings.Join(problems, "; "))
	}

	counts := []struct {
		table string
		n     *int64
		query string
	}{
		{"users", &info.Users, `SELECT count(*) FROM users`},
		{"conversations", &info.Conversations, `SELECT count(*) FROM conversations`},
		{"messages", &info.Messages, `SELECT count(*) FROM messages`},
		{"secrets", &info.Secrets, `SELECT count(*) FROM secrets`},
		{"sync_stamp", &info.ChangeStamp, `SELECT stamp FROM sync_stamp`},
	}
	for _, c := range counts {
		if !tables[c.table] {
			continue // an older schema; the server migrates it at start
		}
		if err := db.QueryRowContext(ctx, c.query).Scan(c.n); err != nil {
			return nil, fmt.Errorf("sqlite: read %s: %s: %w", name, c.table, err)
		}
	}
	return info, nil
}

// fileURI is the file: URI of the absolute path with the query q (see dsn).
func fileURI(path string, q url.Values) string {
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// isDatabaseFile reports whether path is the database at dbPath or one of
// its companion files, by name or, if it exists, by identity.
func isDatabaseFile(dbPath, path string) bool {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if path == dbPath+suffix {
			return true
		}
	}
	a, err := os.Stat(dbPath)
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// isNotADatabase reports whether err says the file is not SQLite's.
func isNotADatabase(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_NOTADB
}

// copyToTemp copies src into a new file (mode 0600) in dir, named by
// pattern as for os.CreateTemp, synced, and returns its path.
func copyToTemp(src, dir, pattern string) (path string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(out.Name())
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return "", err
	}
	if err := out.Sync(); err != nil {
		return "", err
	}
	return out.Name(), out.Close()
}

// syncFile makes the file at path durable.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

// syncDir makes the entries of dir (a rename, a new file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
