// Package blobcrypt is the encryption at rest that the blob engines share:
// objects are DARE 2.0 streams (github.com/minio/sio: 64 KiB packages, each
// sealed with AES-256-GCM or ChaCha20-Poly1305 under a sequence number, the
// last one marked final), so a byte range decrypts only the packages that
// cover it, and reordering, dropping or truncating packages is detected.
//
// Each object has its own key: HKDF-SHA256 of the blob key (itself derived
// from a master key with its own label, like package seal's keys) with a
// random 32-byte salt, bound to the object's name. The key id of the
// master key and the salt form the Header, which the engine stores with the
// object (the filesystem engine before the packages, the S3 engine in the
// object's metadata). Altering the header gives a wrong key, so the packages
// fail to open: the header needs no tag of its own.
//
// Limit: DARE encrypts an empty plaintext to zero bytes, so an object whose
// packages are all removed reads as empty; keep the size from Put and
// compare where that matters.
package blobcrypt

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/minio/sio"

	"github.com/parleychat/parley"
)

// MasterKeySize is the length of a master key in bytes (as package seal's).
const MasterKeySize = 32

const (
	// blobKeyInfo derives the blob key from a master key: the same master
	// key, another key than seal's message and bus keys.
	blobKeyInfo = "parley media blob v1"
	// objectKeyInfo, followed by a zero byte and the object's name, derives
	// an object's key from the blob key and the object's salt.
	objectKeyInfo = "parley media object v1"
)

// Package geometry of DARE 2.0.
const (
	PayloadSize  = 1 << 16                   // plaintext bytes in a full package
	PackageSize  = 16 + PayloadSize + 16     // header + payload + tag
	packageExtra = PackageSize - PayloadSize // per-package overhead
)

// Header: magic "PBLB" || version (1) || key id (4, big-endian) || salt (32).
const (
	HeaderSize    = 4 + 1 + 4 + saltSize
	saltSize      = 32
	headerMagic   = "PBLB"
	headerVersion = 1
)

// Header is what an object needs besides its packages to be opened.
type Header struct {
	KeyID uint32
	Salt  [saltSize]byte
}

// Keys holds the blob keys derived from the master keys: the first seals,
// all of them open. Immutable and safe for concurrent use.
type Keys struct {
	activeID uint32
	keys     map[uint32][]byte
}

// NewKeys derives the blob keys from masterKeys (each MasterKeySize bytes,
// the first is the active one). It fails like seal.NewKeyring: no key, a
// key of the wrong length, or a repeated key.
func NewKeys(masterKeys [][]byte) (*Keys, error) {
	if len(masterKeys) == 0 {
		return nil, errors.New("blob: no master key")
	}
	k := &Keys{keys: make(map[uint32][]byte, len(masterKeys))}
	for i, master := range masterKeys {
		if len(master) != MasterKeySize {
			return nil, fmt.Errorf("blob: master key %d is %d bytes, want %d", i+1, len(master), MasterKeySize)
		}
		id := KeyID(master)
		if _, dup := k.keys[id]; dup {
			return nil, fmt.Errorf("blob: master key %d repeats an earlier key", i+1)
		}
		key, err := hkdf.Key(sha256.New, master, nil, blobKeyInfo, 32)
		if err != nil {
			return nil, fmt.Errorf("blob: derive key: %w", err)
		}
		k.keys[id] = key
		if i == 0 {
			k.activeID = id
		}
	}
	return k, nil
}

// KeyID names a master key without revealing it: the big-endian first four
// bytes of SHA-256("parley key id" || master key), the id package seal
// stores with its ciphertexts too.
func KeyID(master []byte) uint32 {
	h := sha256.New()
	h.Write([]byte("parley key id"))
	h.Write(master)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// ActiveKeyID returns the id of the key new objects are sealed with.
func (k *Keys) ActiveKeyID() uint32 { return k.activeID }

// NewHeader returns a header for a new object: the active key and a fresh
// random salt.
func (k *Keys) NewHeader() Header {
	h := Header{KeyID: k.activeID}
	rand.Read(h.Salt[:]) // never fails (crypto/rand)
	return h
}

// objectKey derives the key of the object name under h. ErrBlobUnreadable
// is in the error's chain when h names a key this store does not have.
func (k *Keys) objectKey(h Header, name string) ([]byte, error) {
	blobKey, ok := k.keys[h.KeyID]
	if !ok {
		return nil, fmt.Errorf("%w: master key %08x is not configured", parley.ErrBlobUnreadable, h.KeyID)
	}
	key, err := hkdf.Key(sha256.New, blobKey, h.Salt[:], objectKeyInfo+"\x00"+name, 32)
	if err != nil {
		return nil, fmt.Errorf("blob: derive key: %w", err)
	}
	return key, nil
}

// Encrypt returns a reader of src encrypted for the object name under h
// (the packages only: the engine stores h itself).
func (k *Keys) Encrypt(h Header, name string, src io.Reader) (io.Reader, error) {
	key, err := k.objectKey(h, name)
	if err != nil {
		return nil, err
	}
	return sio.EncryptReader(src, sio.Config{Key: key, MinVersion: sio.Version20, MaxVersion: sio.Version20})
}

// Decrypt returns a reader of the plaintext range sp was computed for,
// given src reading the ciphertext from sp.CipherStart to sp.CipherEnd of
// the object name sealed under h. Errors of authentication (from Decrypt or
// from reading) wrap parley.ErrBlobUnreadable; errors of src pass through.
func (k *Keys) Decrypt(h Header, name string, src io.Reader, sp Span) (io.Reader, error) {
	key, err := k.objectKey(h, name)
	if err != nil {
		return nil, err
	}
	if sp.Length == 0 {
		return strings.NewReader(""), nil
	}
	dec, err := sio.DecryptReader(src, sio.Config{Key: key, MinVersion: sio.Version20, MaxVersion: sio.Version20, SequenceNumber: sp.Seq})
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	r := &plainReader{src: dec}
	if sp.Skip > 0 {
		if _, err := io.CopyN(io.Discard, r, sp.Skip); err != nil {
			if err == io.EOF {
				err = fmt.Errorf("%w: shorter than its size", parley.ErrBlobUnreadable)
			}
			return nil, err
		}
	}
	if sp.ToEnd {
		// Read to the end of the stream, so DARE checks the final package.
		return r, nil
	}
	return io.LimitReader(r, sp.Length), nil
}

// plainReader marks DARE's errors as ErrBlobUnreadable.
type plainReader struct{ src io.Reader }

func (r *plainReader) Read(p []byte) (int, error) {
	n, err := r.src.Read(p)
	var se sio.Error
	if errors.As(err, &se) {
		err = fmt.Errorf("%w: %w", parley.ErrBlobUnreadable, err)
	}
	return n, err
}

// Span is the ciphertext that covers a plaintext range.
type Span struct {
	// CipherStart and CipherEnd delimit the packages to read, [start, end),
	// counted from the first package (add the engine's header, if any).
	CipherStart, CipherEnd int64
	// Seq is the sequence number of the first package.
	Seq uint32
	// Skip is how many plaintext bytes of the first package precede the
	// range.
	Skip int64
	// Length is the plaintext length of the range.
	Length int64
	// ToEnd says the range ends at the end of the object.
	ToEnd bool
}

// SpanOf returns the span of the plaintext range [offset, offset+length)
// (length -1: to the end) of an object of plainSize bytes, or an error
// wrapping parley.ErrBlobRange if the range is not inside the object.
func SpanOf(offset, length, plainSize int64) (Span, error) {
	if length == -1 && offset >= 0 && offset <= plainSize {
		length = plainSize - offset
	}
	if offset < 0 || length < 0 || offset > plainSize || length > plainSize-offset {
		return Span{}, fmt.Errorf("%w: offset %d length %d of %d bytes", parley.ErrBlobRange, offset, length, plainSize)
	}
	sp := Span{Length: length, ToEnd: offset+length == plainSize}
	if length == 0 {
		return sp, nil
	}
	first := offset / PayloadSize
	last := (offset + length - 1) / PayloadSize
	sp.Seq = uint32(first)
	sp.Skip = offset - first*PayloadSize
	sp.CipherStart = first * PackageSize
	sp.CipherEnd = min((last+1)*PackageSize, CipherSize(plainSize))
	return sp, nil
}

// MaxPlainSize is DARE 2.0's limit on an object (2^32 packages of
// 64 KiB); larger offsets need no request to be refused.
const MaxPlainSize = 1 << 48

// CipherSize returns the size of the packages of a plaintext of plainSize
// bytes (0 <= plainSize <= 2^48).
func CipherSize(plainSize int64) int64 {
	n := plainSize / PayloadSize * PackageSize
	if rest := plainSize % PayloadSize; rest > 0 {
		n += rest + packageExtra
	}
	return n
}

// PlainSize returns the plaintext size of cipherSize bytes of packages, or
// an error wrapping parley.ErrBlobUnreadable if no plaintext encrypts to
// that size (the object was truncated or extended).
func PlainSize(cipherSize int64) (int64, error) {
	if cipherSize < 0 || cipherSize > CipherSize(MaxPlainSize) {
		return 0, fmt.Errorf("%w: stored size %d out of range", parley.ErrBlobUnreadable, cipherSize)
	}
	n := cipherSize / PackageSize * PayloadSize
	if rest := cipherSize % PackageSize; rest > 0 {
		if rest <= packageExtra {
			return 0, fmt.Errorf("%w: stored size %d is not a whole number of packages", parley.ErrBlobUnreadable, cipherSize)
		}
		n += rest - packageExtra
	}
	return n, nil
}

// AppendBinary appends the binary header (HeaderSize bytes).
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, headerMagic...)
	b = append(b, headerVersion)
	b = binary.BigEndian.AppendUint32(b, h.KeyID)
	return append(b, h.Salt[:]...), nil
}

// ParseHeader reads a binary header from the first HeaderSize bytes of b;
// an error wraps parley.ErrBlobUnreadable.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize || string(b[:4]) != headerMagic || b[4] != headerVersion {
		return Header{}, fmt.Errorf("%w: not a sealed blob header", parley.ErrBlobUnreadable)
	}
	var h Header
	h.KeyID = binary.BigEndian.Uint32(b[5:9])
	copy(h.Salt[:], b[9:HeaderSize])
	return h, nil
}

// String returns the text form of the header, for object metadata:
// "1.<key id, 8 hex digits>.<salt, unpadded base64url>".
func (h Header) String() string {
	return fmt.Sprintf("%d.%08x.%s", headerVersion, h.KeyID, base64.RawURLEncoding.EncodeToString(h.Salt[:]))
}

// ParseHeaderText reads the text form of a header; an error wraps
// parley.ErrBlobUnreadable.
func ParseHeaderText(s string) (Header, error) {
	bad := fmt.Errorf("%w: bad sealed blob header %.80q", parley.ErrBlobUnreadable, s)
	version, rest, ok1 := strings.Cut(s, ".")
	keyID, salt, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || version != strconv.Itoa(headerVersion) || len(keyID) != 8 {
		return Header{}, bad
	}
	if strings.Trim(keyID, "0123456789abcdef") != "" { // one form only: lowercase
		return Header{}, bad
	}
	id, err := strconv.ParseUint(keyID, 16, 32)
	if err != nil {
		return Header{}, bad
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(salt)
	// The decoder skips '\r' and '\n': compare the canonical form.
	if err != nil || len(raw) != saltSize || base64.RawURLEncoding.EncodeToString(raw) != salt {
		return Header{}, bad
	}
	h := Header{KeyID: uint32(id)}
	copy(h.Salt[:], raw)
	return h, nil
}

// SourceReader wraps what a Put reads for both engines: it counts the
// bytes (N), stops when Ctx ends, and remembers the source's own error
// (ReadErr), so that Put can return it unwrapped.
type SourceReader struct {
	Ctx     context.Context
	Src     io.Reader
	N       int64
	ReadErr error
}

func (r *SourceReader) Read(p []byte) (int, error) {
	if err := r.Ctx.Err(); err != nil {
		r.ReadErr = err
		return 0, err
	}
	n, err := r.Src.Read(p)
	r.N += int64(n)
	if err != nil && err != io.EOF {
		r.ReadErr = err
	}
	return n, err
}
