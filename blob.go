package parley

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// BlobStore keeps media objects (uploaded files, thumbnails) by key. Every
// engine (blob/fsblob, the embedded default; blob/s3blob, for clusters)
// passes the contract suite in blob/blobtest. All methods are safe for
// concurrent use.
//
// Objects are written once from a stream and read back whole or by byte
// range; there is no append and no rename. Engines encrypt objects at rest
// under the master keys (the first one seals, all of them open) and bind
// each object to its key: bytes moved from one key to another do not open.
//
// Keys are checked with ValidBlobKey; a bad key is ErrBlobKey and changes
// nothing.
type BlobStore interface {
	// Put stores everything r yields under key, replacing any object there.
	// The new object becomes visible whole or not at all: readers see the
	// old object or the new one, never a mix, and a failed or cancelled Put
	// leaves the old one (or none). It returns the plaintext size and
	// SHA-256 of what it stored. r is read until io.EOF; a read error or
	// ctx ending aborts the Put with that error.
	Put(ctx context.Context, key string, r io.Reader) (BlobInfo, error)

	// Get returns length bytes of the object under key from byte offset
	// (length -1: up to the end). It costs what the range costs, not the
	// object: only the encrypted packages that cover the range are read.
	// ErrBlobNotFound if there is no such object, ErrBlobRange (before any
	// byte) if offset or offset+length lies beyond the end. The reader
	// fails with an error wrapping ErrBlobUnreadable when the stored bytes
	// do not authenticate (altered, truncated, moved from another key, or
	// sealed under a master key the store does not have); it may already
	// have returned earlier, authentic bytes. The caller closes the reader.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)

	// Stat returns the object's key, plaintext size and modification time
	// (SHA256 is empty: keep the one Put returned). ErrBlobNotFound if
	// there is none. It does not read or authenticate the content.
	Stat(ctx context.Context, key string) (BlobInfo, error)

	// Delete removes the object under key; an absent object is not an
	// error (deletes are repeated safely, as garbage collection does).
	Delete(ctx context.Context, key string) error

	// List calls fn with every object whose key starts with prefix ("" for
	// all), in no particular order, with Key, Size and ModTime set (Size
	// -1 if the stored object is damaged, so it can still be collected). An
	// error from fn stops the listing and List returns it. Objects put or
	// deleted during a listing may or may not be seen. A bad prefix (see
	// ValidBlobPrefix) is ErrBlobKey.
	List(ctx context.Context, prefix string, fn func(BlobInfo) error) error
}

// BlobInfo describes a stored object.
type BlobInfo struct {
	Key string
	// Size is the plaintext size in bytes.
	Size int64
	// ModTime is when the object was written (the engine's clock).
	ModTime time.Time
	// SHA256 is the hex SHA-256 of the plaintext; only Put sets it (the
	// engines do not store it: the media record keeps it, e.g. as ETag).
	SHA256 string
}

// Errors of BlobStore. ErrBlobNotFound, ErrBlobRange and ErrBlobKey are
// *Error values (a client may see their codes); ErrBlobUnreadable is
// internal: the server's data is damaged or its keys are wrong.
var (
	ErrBlobNotFound   = &Error{Code: CodeNotFound, Message: "no such blob"}
	ErrBlobRange      = &Error{Code: CodeInvalidRequest, Message: "range outside the blob"}
	ErrBlobKey        = &Error{Code: CodeInvalidRequest, Message: "invalid blob key"}
	ErrBlobUnreadable = errors.New("blob: stored object does not authenticate (altered, truncated, or sealed under another master key)")
)

// MaxBlobKeyLen is the longest blob key in bytes.
const MaxBlobKeyLen = 256

// ValidBlobKey reports whether key may name a blob, and why not: 1 to
// MaxBlobKeyLen bytes of segments separated by single '/', each segment
// made of ASCII letters, digits, '-', '_' and '.', not starting with '.'
// (so no "." or ".." and no hidden files) and not ending in ".blob" (the
// filesystem engine's suffix). Keys map to paths and object names directly:
// this is what keeps them from escaping the store. The error wraps
// ErrBlobKey.
func ValidBlobKey(key string) error {
	if key == "" || len(key) > MaxBlobKeyLen {
		return fmt.Errorf("%w: length %d (1 to %d bytes)", ErrBlobKey, len(key), MaxBlobKeyLen)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if err := validBlobSegment(seg, false); err != nil {
			return err
		}
	}
	return nil
}

// ValidBlobPrefix reports whether prefix may select blobs in List: "" (all)
// or the start of a valid key: segments as in ValidBlobKey, of which the
// last may be empty (after a trailing '/') or unfinished. The error wraps
// ErrBlobKey.
func ValidBlobPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > MaxBlobKeyLen {
		return fmt.Errorf("%w: prefix length %d (at most %d bytes)", ErrBlobKey, len(prefix), MaxBlobKeyLen)
	}
	segs := strings.Split(prefix, "/")
	for i, seg := range segs {
		if err := validBlobSegment(seg, i == len(segs)-1); err != nil {
			return err
		}
	}
	return nil
}

// validBlobSegment checks one segment of a key; the last segment of a
// prefix may be empty or an unfinished ".blob".
func validBlobSegment(seg string, lastOfPrefix bool) error {
	if seg == "" {
		if lastOfPrefix {
			return nil
		}
		return fmt.Errorf("%w: empty segment (leading, trailing or doubled '/')", ErrBlobKey)
	}
	if seg[0] == '.' {
		return fmt.Errorf("%w: segment %q starts with '.'", ErrBlobKey, seg)
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: byte %#02x not allowed (letters, digits, '-', '_', '.', '/')", ErrBlobKey, c)
		}
	}
	if !lastOfPrefix && strings.HasSuffix(seg, ".blob") {
		return fmt.Errorf("%w: segment %q ends in \".blob\"", ErrBlobKey, seg)
	}
	return nil
}

// BlobFile reads one stored object as an io.ReadSeekCloser, for
// http.ServeContent (Range requests, 206): Seek only moves the position,
// and the first Read after a Seek opens a Get from there to the end, which
// an engine reads lazily (the filesystem) or streams (S3: the connection
// is closed when the caller stops early). Errors of Get surface from Read.
// Not safe for concurrent use; Close releases the open Get.
type BlobFile struct {
	ctx   context.Context
	store BlobStore
	key   string
	size  int64
	pos   int64
	r     io.ReadCloser // open Get, positioned at rpos
	rpos  int64
}

// NewBlobFile returns a BlobFile over the object key of size bytes (the
// size the caller recorded at Put, or from Stat).
func NewBlobFile(ctx context.Context, store BlobStore, key string, size int64) *BlobFile {
	return &BlobFile{ctx: ctx, store: store, key: key, size: size}
}

// Seek implements io.Seeker. A position past the end is allowed (Read
// then returns io.EOF); a negative one is an error.
func (f *BlobFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.pos
	case io.SeekEnd:
		offset += f.size
	default:
		return f.pos, errors.New("blob: bad whence")
	}
	if offset < 0 {
		return f.pos, errors.New("blob: negative position")
	}
	f.pos = offset
	return offset, nil
}

// Read implements io.Reader.
func (f *BlobFile) Read(p []byte) (int, error) {
	if f.pos >= f.size {
		return 0, io.EOF
	}
	if f.r != nil && f.rpos != f.pos {
		f.r.Close()
		f.r = nil
	}
	if f.r == nil {
		r, err := f.store.Get(f.ctx, f.key, f.pos, -1)
		if err != nil {
			return 0, err
		}
		f.r, f.rpos = r, f.pos
	}
	n, err := f.r.Read(p)
	f.pos += int64(n)
	f.rpos = f.pos
	if err == io.EOF && f.pos < f.size {
		err = io.ErrUnexpectedEOF // the object is shorter than its recorded size
	}
	return n, err
}

// Close releases the open Get, if any.
func (f *BlobFile) Close() error {
	if f.r == nil {
		return nil
	}
	err := f.r.Close()
	f.r = nil
	return err
}
