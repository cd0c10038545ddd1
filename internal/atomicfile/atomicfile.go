// Package atomicfile replaces a file in one step: a crash leaves either
// the old file or the new one whole, never a part of either.
package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes data to a new file beside path (a hidden name in the same
// directory), with mode perm whatever the umask, syncs it and renames it
// over path. The file's content is durable when Write returns; the
// rename is as durable as the directory's next sync, which Write does
// not do. On an error nothing is left beside path and path is as it was.
// Safe for concurrent use: of writers of one path, the last to rename
// wins.
func Write(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is there
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
