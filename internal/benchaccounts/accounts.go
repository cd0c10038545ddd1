// Package benchaccounts is the file of load-test accounts that `parleyd
// admin bench-accounts` writes and `parley bench --accounts` reads: for
// each account its handle, user and device ids and the device's refresh
// token. The bench exchanges each refresh token for an access token (the
// ordinary POST /v1/auth/refresh, a SHA-256 and one store write) instead of
// registering and logging in, which costs two argon2id hashes per user.
//
// A refresh token is a credential: the file is created with mode 0600 and
// never overwritten in place (Write refuses an existing file; Replace
// writes a new file and renames it over the old one). Refresh tokens
// rotate on use, so the bench writes the new ones back (Replace) before it
// uses the sessions; presenting a used token revokes that device.
package benchaccounts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/atomicfile"
)

// Version is the file format's version.
const Version = 1

// MaxAccounts caps the accounts of one file (and of one run of `parleyd
// admin bench-accounts`).
const MaxAccounts = 100_000

// MaxFileBytes bounds what Read reads: 100,000 accounts of about 200
// bytes each, with room to spare.
const MaxFileBytes = 64 << 20

// maxTokenLen is the longest refresh token the server accepts
// (service.Refresh).
const maxTokenLen = 128

// Account is one load-test account with a logged-in device.
type Account struct {
	Handle       string `json:"handle"`
	UserID       string `json:"user_id"`
	DeviceID     string `json:"device_id"`
	RefreshToken string `json:"refresh_token"`
}

// File is the whole file.
type File struct {
	Version int `json:"version"`
	// Prefix is the handles' common prefix (handles are PREFIX_0,
	// PREFIX_1, ...).
	Prefix   string    `json:"prefix"`
	Accounts []Account `json:"accounts"`
}

// Decode parses a file strictly: the version, at most MaxAccounts
// accounts, each with a valid handle, well-formed ids and a refresh token
// of at most 128 bytes, no handle or device twice, and nothing after the
// object.
func Decode(data []byte) (*File, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("accounts file: larger than %d bytes", MaxFileBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("accounts file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("accounts file: data after the object")
	}
	if f.Version != Version {
		return nil, fmt.Errorf("accounts file: version %d, want %d", f.Version, Version)
	}
	if len(f.Accounts) == 0 || len(f.Accounts) > MaxAccounts {
		return nil, fmt.Errorf("accounts file: %d accounts, want 1 to %d", len(f.Accounts), MaxAccounts)
	}
	handles := make(map[string]bool, len(f.Accounts))
	devices := make(map[string]bool, len(f.Accounts))
	for i, a := range f.Accounts {
		h, err := parley.NormalizeHandle(a.Handle)
		if err != nil || h != a.Handle {
			return nil, fmt.Errorf("accounts file: account %d: handle %q is not a normalized handle", i, a.Handle)
		}
		if !parley.ValidID(a.UserID) || !parley.ValidID(a.DeviceID) {
			return nil, fmt.Errorf("accounts file: account %d (%s): malformed user or device id", i, a.Handle)
		}
		if a.RefreshToken == "" || len(a.RefreshToken) > maxTokenLen {
			return nil, fmt.Errorf("accounts file: account %d (%s): refresh token missing or longer than %d bytes", i, a.Handle, maxTokenLen)
		}
		if handles[a.Handle] || devices[a.DeviceID] {
			return nil, fmt.Errorf("accounts file: account %d: handle %s or its device appears twice", i, a.Handle)
		}
		handles[a.Handle], devices[a.DeviceID] = true, true
	}
	return &f, nil
}

// Read reads and decodes the file at path.
func Read(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	return Decode(data)
}

func encode(f *File) ([]byte, error) {
	if f.Version == 0 {
		f.Version = Version
	}
	data, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Write creates path with mode 0600 and writes f to it. It refuses a path
// that exists: a file of live credentials is never replaced by accident.
func Write(path string, f *File) error {
	data, err := encode(f)
	if err != nil {
		return err
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// Replace writes f to a new file (mode 0600) beside path, syncs it and
// renames it over path, so that a crash leaves either the old file or
// the new one whole.
func Replace(path string, f *File) error {
	data, err := encode(f)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}

// Lock takes an exclusive lock on path + ".lock" (created if missing,
// mode 0600), waiting for another holder, and returns its release. Two
// benches given the same file take turns, so neither presents a token
// the other has used up (which would revoke the device).
func Lock(path string) (unlock func(), err error) {
	fh, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		fh.Close()
		return nil, fmt.Errorf("locking %s.lock: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(fh.Fd()), syscall.LOCK_UN)
		fh.Close()
	}, nil
}
