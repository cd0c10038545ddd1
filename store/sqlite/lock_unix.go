//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// shmDMSByte is the offset in a WAL database's -shm file of the byte
// SQLite's unix VFS calls the DMS ("dead man switch") lock: every
// connection that uses the database holds a shared POSIX record lock on it
// for as long as it is open, and a connection that opens the -shm takes it
// exclusively first, if it can, to find out whether it is the only one.
// See https://sqlite.org/walformat.html ("the DMS") and unixLockSharedMemory
// in SQLite's os_unix.c: byte 120 + SQLITE_SHM_NLOCK (8).
const shmDMSByte = 128

// lockDatabase takes, on behalf of this process, the exclusive lock on the
// DMS byte of dbPath's -shm file (creating the file if needed), and returns
// a function that releases it and removes the file if lockDatabase created
// it. If any process has the database open, it fails with ErrInUse. While
// the lock is held, a connection that tries to open the database fails with
// SQLITE_BUSY (after its busy timeout) rather than using it.
//
// This is SQLite's own test of whether it is alone, so it sees every
// connection however idle: an open connection always holds the shared
// lock, in or out of a transaction. (BEGIN EXCLUSIVE would not do: in WAL
// mode it only excludes writers, and an idle server holds no write lock.)
// A database in WAL mode has a -shm file while it is open; Parley's always
// is in WAL mode.
func lockDatabase(dbPath string) (unlock func(), err error) {
	shm := dbPath + "-shm"
	created := false
	f, err := os.OpenFile(shm, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(shm, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		created = err == nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: lock %s: %w", dbPath, err)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart, Start: shmDMSByte, Len: 1}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		f.Close()
		if created {
			os.Remove(shm)
		}
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%w (%s)", ErrInUse, dbPath)
		}
		return nil, fmt.Errorf("sqlite: lock %s: %w", dbPath, err)
	}
	return func() {
		if created {
			os.Remove(shm)
		}
		f.Close() // releases the lock
	}, nil
}
