package e2ee

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// Attachment files are encrypted with ChaCha20-Poly1305 in the STREAM
// construction (as age does it), so that a file of any size is
// encrypted and decrypted in constant memory and a truncated, reordered
// or extended blob is refused:
//
//   - the key is 32 random bytes, fresh for each file (a thumbnail has its
//     own), carried in the message content;
//   - the plaintext is cut into chunks of FileChunkSize (64 KiB) bytes;
//     the last chunk holds the rest, 1 to 65536 bytes, and is empty only
//     when the whole file is (an empty file is one empty chunk);
//   - chunk i (from 0) is sealed with nonce = i as 11 bytes big-endian ||
//     one flag byte, 0x01 for the last chunk and 0x00 for the others, and
//     empty associated data;
//   - the blob is the sealed chunks one after another, each 16 bytes
//     longer than its plaintext, with no header.
//
// A reader knows the last chunk by the end of the blob: a full-size
// sealed chunk followed by more bytes is not the last.

// FileChunkSize is the plaintext size of every chunk but the last.
const FileChunkSize = 64 << 10

const sealedChunkSize = FileChunkSize + TagSize

// maxFileChunks bounds the counter (11 bytes would allow 2^88; no file
// comes near 2^63 bytes).
const maxFileChunks = 1 << 47

// NewFileKey returns a fresh 32-byte file key.
func NewFileKey() ([]byte, error) {
	k := make([]byte, ContentKeySize)
	_, err := rand.Read(k)
	return k, err
}

// EncryptedFileSize is the size of the blob of a plaintext of size bytes.
func EncryptedFileSize(size int64) int64 {
	return size + TagSize*fileChunks(size)
}

// fileChunks is the number of chunks of a plaintext of size bytes.
func fileChunks(size int64) int64 {
	if size == 0 {
		return 1
	}
	return (size + FileChunkSize - 1) / FileChunkSize
}

// PlainFileSize is the plaintext size of a blob of encSize bytes, or an
// error when no plaintext encrypts to that size.
func PlainFileSize(encSize int64) (int64, error) {
	if encSize < TagSize {
		return 0, errors.New("e2ee: encrypted file too short")
	}
	full := encSize / sealedChunkSize
	rest := encSize % sealedChunkSize
	switch {
	case rest == 0:
		return full * FileChunkSize, nil
	case rest < TagSize || (rest == TagSize && full > 0):
		return 0, errors.New("e2ee: encrypted file size is impossible")
	}
	return full*FileChunkSize + rest - TagSize, nil
}

func chunkNonce(nonce *[NonceSize]byte, i int64, last bool) {
	clear(nonce[:])
	binary.BigEndian.PutUint64(nonce[3:11], uint64(i))
	if last {
		nonce[11] = 1
	}
}

// FileEncrypter reads the encrypted blob of a plaintext of known size,
// and seeks in it (an upload resumes at any offset): chunk i depends only
// on plaintext chunk i, which it reads again from the source.
type FileEncrypter struct {
	aead   cipher.AEAD
	src    io.ReadSeeker
	size   int64 // plaintext
	total  int64 // blob
	pos    int64 // in the blob
	chunk  int64 // index of the sealed chunk in buf, -1 for none
	buf    []byte
	nonce  [NonceSize]byte
	loaded []byte
}

// NewFileEncrypter encrypts size bytes of src (from its start) with key.
func NewFileEncrypter(key []byte, src io.ReadSeeker, size int64) (*FileEncrypter, error) {
	if size < 0 || fileChunks(size) > maxFileChunks {
		return nil, errors.New("e2ee: bad file size")
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	return &FileEncrypter{aead: aead, src: src, size: size, total: EncryptedFileSize(size), chunk: -1,
		buf: make([]byte, 0, sealedChunkSize)}, nil
}

// Size is the blob's size.
func (e *FileEncrypter) Size() int64 { return e.total }

// Read implements io.Reader.
func (e *FileEncrypter) Read(p []byte) (int, error) {
	if e.pos >= e.total {
		return 0, io.EOF
	}
	i := e.pos / sealedChunkSize
	if i != e.chunk {
		if err := e.load(i); err != nil {
			return 0, err
		}
	}
	n := copy(p, e.loaded[e.pos-i*sealedChunkSize:])
	e.pos += int64(n)
	return n, nil
}

func (e *FileEncrypter) load(i int64) error {
	e.chunk = -1
	start := i * FileChunkSize
	n := min(int64(FileChunkSize), e.size-start)
	if _, err := e.src.Seek(start, io.SeekStart); err != nil {
		return err
	}
	plain := e.buf[:n]
	if _, err := io.ReadFull(e.src, plain); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("e2ee: the file got shorter while being encrypted")
		}
		return err
	}
	chunkNonce(&e.nonce, i, i == fileChunks(e.size)-1)
	e.loaded = e.aead.Seal(plain[:0], e.nonce[:], plain, nil)
	e.chunk = i
	return nil
}

// Seek implements io.Seeker over the blob.
func (e *FileEncrypter) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += e.pos
	case io.SeekEnd:
		offset += e.total
	}
	if offset < 0 {
		return 0, errors.New("e2ee: seek before the start")
	}
	e.pos = offset
	return offset, nil
}

// EncryptFile writes the blob of src's bytes to dst and returns its size.
func EncryptFile(key []byte, dst io.Writer, src io.Reader) (int64, error) {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, sealedChunkSize+1)
	var nonce [NonceSize]byte
	var written int64
	have := 0 // bytes of the next chunk already read
	for i := int64(0); ; i++ {
		if i >= maxFileChunks {
			return written, errors.New("e2ee: file too large")
		}
		n, err := io.ReadFull(src, buf[have:FileChunkSize+1])
		have += n
		last := false
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			last = true
		case err != nil:
			return written, err
		}
		size := min(have, FileChunkSize)
		var extra byte
		if !last {
			extra = buf[FileChunkSize]
		}
		chunkNonce(&nonce, i, last)
		out := aead.Seal(buf[:0], nonce[:], buf[:size], nil)
		m, err := dst.Write(out)
		written += int64(m)
		if err != nil {
			return written, err
		}
		if last {
			return written, nil
		}
		buf[0], have = extra, 1
	}
}

// FileDecrypter reads the plaintext of a blob. It returns an error, and
// nothing more, as soon as a chunk does not open or the blob ends where a
// chunk cannot: a caller must not use a partial output as the file.
type FileDecrypter struct {
	aead     cipher.AEAD
	src      io.Reader
	buf      []byte
	out      []byte
	i        int64
	carry    byte
	hasCarry bool
	done     bool
	err      error
	nonce    [NonceSize]byte
}

// NewFileDecrypter decrypts the blob read from src with key.
func NewFileDecrypter(key []byte, src io.Reader) (*FileDecrypter, error) {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	return &FileDecrypter{aead: aead, src: src, buf: make([]byte, sealedChunkSize+1)}, nil
}

// ErrBadFile is a blob that does not decrypt with its key.
var ErrBadFile = errors.New("e2ee: the encrypted file does not decrypt (damaged, truncated or not this key's)")

// Read implements io.Reader.
func (d *FileDecrypter) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if d.done {
			return 0, io.EOF
		}
		d.err = d.next()
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

func (d *FileDecrypter) next() error {
	start := 0
	if d.hasCarry {
		d.buf[0], start = d.carry, 1
	}
	n, err := io.ReadFull(d.src, d.buf[start:])
	total := start + n
	last := false
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		last = true
	case err != nil:
		return err
	}
	if d.i >= maxFileChunks {
		return ErrBadFile
	}
	chunk := d.buf[:total]
	if !last {
		d.carry, d.hasCarry = d.buf[sealedChunkSize], true
		chunk = d.buf[:sealedChunkSize]
	}
	if len(chunk) < TagSize || (last && len(chunk) == TagSize && d.i > 0) {
		return ErrBadFile
	}
	chunkNonce(&d.nonce, d.i, last)
	out, err := d.aead.Open(chunk[:0], d.nonce[:], chunk, nil)
	if err != nil {
		return ErrBadFile
	}
	d.i++
	d.out = out
	d.done = last
	return nil
}

// DecryptFile writes the plaintext of the blob read from src to dst. On
// an error dst may hold a prefix of the file, which the caller discards.
func DecryptFile(key []byte, dst io.Writer, src io.Reader) (int64, error) {
	d, err := NewFileDecrypter(key, src)
	if err != nil {
		return 0, err
	}
	return io.Copy(dst, d)
}
