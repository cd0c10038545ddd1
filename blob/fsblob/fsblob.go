// Package fsblob is the embedded parley.BlobStore: one file per object
// under a directory (by default blobs/ in the data directory), encrypted at
// rest under the master keys (package blobcrypt: DARE 2.0 packages of
// 64 KiB under a per-object key, so a byte range decrypts only the packages
// it covers).
//
// The object under key "a/b" is the file a/b.blob below the root: the
// key's segments are directories, which ValidBlobKey keeps inside the root
// (no "..", no absolute paths, no hidden names). A file is a header
// (blobcrypt.HeaderSize bytes: key id and salt) followed by the packages.
// Put writes a hidden temporary file in the object's directory, syncs it,
// renames it over the object and syncs the directory, so an object is
// whole or absent after a crash; a crash can leave a temporary file
// (".tmp-*"), which List ignores and SweepTemp removes.
//
// Limits: one machine (a cluster shares objects through blob/s3blob); file
// names follow keys, so the filesystem's limits on directory size apply to
// the layout the caller chooses (spread keys over a few prefix levels).
package fsblob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/blob/internal/blobcrypt"
)

// fileSuffix ends every object's file name; ValidBlobKey refuses segments
// with it, so a directory never has an object's name.
const fileSuffix = ".blob"

// tempPrefix starts the name of a file being written.
const tempPrefix = ".tmp-"

// Store is a parley.BlobStore over a directory. Safe for concurrent use.
type Store struct {
	root string
	keys *blobcrypt.Keys
}

var _ parley.BlobStore = (*Store)(nil)

// Open returns a Store over the directory root, creating it (mode 0700) if
// needed, with the given master keys (32 bytes each; the first seals, all
// of them open). It fails on bad keys or when root cannot be created.
func Open(root string, masterKeys [][]byte) (*Store, error) {
	keys, err := blobcrypt.NewKeys(masterKeys)
	if err != nil {
		return nil, err
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	return &Store{root: root, keys: keys}, nil
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

// path returns the file of key, or ErrBlobKey.
func (s *Store) path(key string) (string, error) {
	if err := parley.ValidBlobKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)+fileSuffix), nil
}

// Put implements parley.BlobStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (parley.BlobInfo, error) {
	path, err := s.path(key)
	if err != nil {
		return parley.BlobInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return parley.BlobInfo{}, err
	}
	dir := filepath.Dir(path)
	f, err := s.createTemp(dir)
	if err != nil {
		return parley.BlobInfo{}, err
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()

	h := s.keys.NewHeader()
	header, _ := h.AppendBinary(nil)
	if _, err := f.Write(header); err != nil {
		return parley.BlobInfo{}, fmt.Errorf("fsblob: write: %w", err)
	}
	digest := sha256.New()
	counted := &blobcrypt.SourceReader{Ctx: ctx, Src: io.TeeReader(r, digest)}
	enc, err := s.keys.Encrypt(h, key, counted)
	if err != nil {
		return parley.BlobInfo{}, err
	}
	if _, err := io.CopyBuffer(f, enc, make([]byte, blobcrypt.PackageSize)); err != nil {
		if counted.ReadErr != nil {
			return parley.BlobInfo{}, counted.ReadErr // the source's error, as is
		}
		return parley.BlobInfo{}, fmt.Errorf("fsblob: write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return parley.BlobInfo{}, fmt.Errorf("fsblob: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return parley.BlobInfo{}, fmt.Errorf("fsblob: close: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return parley.BlobInfo{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return parley.BlobInfo{}, fmt.Errorf("fsblob: rename: %w", err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return parley.BlobInfo{}, err
	}
	info := parley.BlobInfo{Key: key, Size: counted.N, ModTime: time.Now(), SHA256: hex.EncodeToString(digest.Sum(nil))}
	if st, err := os.Stat(path); err == nil {
		info.ModTime = st.ModTime()
	}
	return info, nil
}

// createTemp creates a temporary file in dir, creating dir first; it
// retries when a concurrent Delete removes the directory in between.
func (s *Store) createTemp(dir string) (*os.File, error) {
	var err error
	for range 5 {
		if err = os.MkdirAll(dir, 0o700); err != nil {
			continue
		}
		var f *os.File
		if f, err = os.CreateTemp(dir, tempPrefix+"*"); err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	return nil, fmt.Errorf("fsblob: create: %w", err)
}

// syncDir makes a rename or remove in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsblob: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsblob: sync dir: %w", err)
	}
	return nil
}

// Get implements parley.BlobStore.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	path, err := s.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, notFound(key, err)
	}
	r, err := s.open(f, key, offset, length)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func (s *Store) open(f *os.File, key string, offset, length int64) (io.ReadCloser, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	plainSize, err := plainSize(st.Size())
	if err != nil {
		return nil, err
	}
	sp, err := blobcrypt.SpanOf(offset, length, plainSize)
	if err != nil {
		return nil, err
	}
	var hdr [blobcrypt.HeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("%w: header: %w", parley.ErrBlobUnreadable, err)
	}
	h, err := blobcrypt.ParseHeader(hdr[:])
	if err != nil {
		return nil, err
	}
	src := io.NewSectionReader(f, blobcrypt.HeaderSize+sp.CipherStart, sp.CipherEnd-sp.CipherStart)
	plain, err := s.keys.Decrypt(h, key, src, sp)
	if err != nil {
		return nil, err
	}
	return &readCloser{Reader: plain, Closer: f}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// plainSize returns the plaintext size of an object file of fileSize bytes.
func plainSize(fileSize int64) (int64, error) {
	if fileSize < blobcrypt.HeaderSize {
		return 0, fmt.Errorf("%w: file of %d bytes has no header", parley.ErrBlobUnreadable, fileSize)
	}
	return blobcrypt.PlainSize(fileSize - blobcrypt.HeaderSize)
}

func notFound(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("%w: %s", parley.ErrBlobNotFound, key)
	}
	return fmt.Errorf("fsblob: %w", err)
}

// Stat implements parley.BlobStore.
func (s *Store) Stat(ctx context.Context, key string) (parley.BlobInfo, error) {
	path, err := s.path(key)
	if err != nil {
		return parley.BlobInfo{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return parley.BlobInfo{}, notFound(key, err)
	}
	if !st.Mode().IsRegular() {
		return parley.BlobInfo{}, fmt.Errorf("%w: %s", parley.ErrBlobNotFound, key)
	}
	size, err := plainSize(st.Size())
	if err != nil {
		return parley.BlobInfo{}, err
	}
	return parley.BlobInfo{Key: key, Size: size, ModTime: st.ModTime()}, nil
}

// Delete implements parley.BlobStore. It also removes the directories the
// object leaves empty, up to the root.
func (s *Store) Delete(ctx context.Context, key string) error {
	path, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("fsblob: %w", err)
	}
	dir := filepath.Dir(path)
	if err := syncDir(dir); err != nil {
		return err
	}
	for dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		if os.Remove(dir) != nil { // not empty (or in use by a Put): stop
			break
		}
		dir = filepath.Dir(dir)
	}
	return nil
}

// List implements parley.BlobStore. It walks only the directory the
// prefix's complete segments name.
func (s *Store) List(ctx context.Context, prefix string, fn func(parley.BlobInfo) error) error {
	if err := parley.ValidBlobPrefix(prefix); err != nil {
		return err
	}
	start := s.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // the prefix's directory, or one deleted meanwhile
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name := d.Name()
		if path != start && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() || !strings.HasSuffix(name, fileSuffix) {
			return nil
		}
		rel, err := filepath.Rel(s.root, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(strings.TrimSuffix(rel, fileSuffix))
		if !strings.HasPrefix(key, prefix) || parley.ValidBlobKey(key) != nil {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		size, err := plainSize(st.Size())
		if err != nil {
			size = -1 // damaged: still listed, so it can be collected
		}
		return fn(parley.BlobInfo{Key: key, Size: size, ModTime: st.ModTime()})
	})
	if err != nil {
		return err
	}
	return nil
}

// SweepTemp removes the temporary files older than olderThan that crashed
// Puts left behind, and returns how many it removed. Call it at start-up
// or now and then; a Put in progress is younger than any sane olderThan.
func (s *Store) SweepTemp(olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	err := filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		st, err := d.Info()
		if err != nil || st.ModTime().After(cutoff) {
			return nil
		}
		if os.Remove(path) == nil {
			removed++
		}
		return nil
	})
	return removed, err
}
