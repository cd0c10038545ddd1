// Package blobtest is the contract suite of parley.BlobStore: every engine
// (blob/fsblob, blob/s3blob) runs it and must pass it unchanged.
//
// An engine's test calls Run with a Harness that makes empty storage places
// (a directory, a bucket), opens stores over them with given master keys,
// and alters stored bytes behind the store's back (to prove that damage is
// detected):
//
//	func TestContract(t *testing.T) {
//		blobtest.Run(t, blobtest.Harness{
//			NewPlace: func(tb testing.TB) string { return tb.TempDir() },
//			Open:     func(tb testing.TB, dir string, keys [][]byte) parley.BlobStore { ... },
//			Tamper:   func(tb testing.TB, dir, key string, edit func([]byte) []byte) { ... },
//		})
//	}
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// Harness adapts an engine to the suite.
type Harness struct {
	// NewPlace returns a new, empty place for objects (a directory, a
	// bucket) and arranges its removal with tb.Cleanup.
	NewPlace func(tb testing.TB) string
	// Open returns a store over place with masterKeys (32 bytes each, the
	// first seals). Two stores opened over one place share its objects.
	// Failing to open fails tb.
	Open func(tb testing.TB, place string, masterKeys [][]byte) parley.BlobStore
	// Tamper replaces the bytes stored for key in place (everything the
	// engine keeps in the object's body: a header if it has one, and the
	// encrypted packages) with what edit returns, bypassing the store.
	Tamper func(tb testing.TB, place, key string, edit func(stored []byte) []byte)
}

// Package geometry the suite aims at: a range "across a package boundary"
// must straddle 64 KiB.
const packageSize = 64 << 10

// Run runs every contract test, each as a subtest with its own place.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"PutGetSizes", testPutGetSizes},
		{"Ranges", testRanges},
		{"RangeErrors", testRangeErrors},
		{"ExactPackages", testExactPackages},
		{"Stat", testStat},
		{"Delete", testDelete},
		{"Overwrite", testOverwrite},
		{"FailedPutKeepsOld", testFailedPut},
		{"BadKeys", testBadKeys},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentSameKey", testConcurrentSameKey},
		{"List", testList},
		{"Large", testLarge},
		{"TamperedContent", testTamperedContent},
		{"TamperedHeader", testTamperedHeader},
		{"Truncated", testTruncated},
		{"Extended", testExtended},
		{"WrongMasterKey", testWrongMasterKey},
		{"Rotation", testRotation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			place := h.NewPlace(t)
			f := &fixture{h: h, place: place, ctx: t.Context(), key1: masterKey(1), key2: masterKey(2)}
			f.s = h.Open(t, place, [][]byte{f.key1})
			tt.fn(t, f)
		})
	}
}

type fixture struct {
	h          Harness
	place      string
	ctx        context.Context
	s          parley.BlobStore // over place with key1
	key1, key2 []byte
}

// masterKey returns a fixed 32-byte master key for n.
func masterKey(n byte) []byte { return bytes.Repeat([]byte{n}, 32) }

// data returns n deterministic pseudo-random bytes for seed.
func data(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 7}).Read(b)
	return b
}

func (f *fixture) put(tb testing.TB, s parley.BlobStore, key string, b []byte) parley.BlobInfo {
	tb.Helper()
	info, err := s.Put(f.ctx, key, bytes.NewReader(b))
	if err != nil {
		tb.Fatalf("Put %s (%d bytes): %v", key, len(b), err)
	}
	sum := sha256.Sum256(b)
	if info.Key != key || info.Size != int64(len(b)) || info.SHA256 != hex.EncodeToString(sum[:]) {
		tb.Fatalf("Put %s returned %+v, want size %d sha256 %x", key, info, len(b), sum)
	}
	return info
}

// read returns the bytes of a Get, or the first error of Get or reading.
func read(ctx context.Context, s parley.BlobStore, key string, offset, length int64) ([]byte, error) {
	r, err := s.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func (f *fixture) mustRead(tb testing.TB, s parley.BlobStore, key string, offset, length int64, want []byte) {
	tb.Helper()
	got, err := read(f.ctx, s, key, offset, length)
	if err != nil {
		tb.Fatalf("Get %s [%d,+%d): %v", key, offset, length, err)
	}
	if !bytes.Equal(got, want) {
		tb.Fatalf("Get %s [%d,+%d): %d bytes differ from the %d expected", key, offset, length, len(got), len(want))
	}
}

func wantErr(tb testing.TB, what string, err, target error) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

func testPutGetSizes(t *testing.T, f *fixture) {
	for i, n := range []int{0, 1, 100, packageSize - 1, packageSize, packageSize + 1, 3*packageSize + 7} {
		key := fmt.Sprintf("sizes/%d", n)
		b := data(uint64(i), n)
		f.put(t, f.s, key, b)
		f.mustRead(t, f.s, key, 0, -1, b)
		f.mustRead(t, f.s, key, 0, int64(n), b)
		info, err := f.s.Stat(f.ctx, key)
		if err != nil || info.Size != int64(n) || info.Key != key {
			t.Fatalf("Stat %s = %+v, %v; want size %d", key, info, err, n)
		}
	}
}

func testRanges(t *testing.T, f *fixture) {
	const size = 3*packageSize + 1000
	b := data(1, size)
	f.put(t, f.s, "r", b)
	for _, r := range []struct {
		name           string
		offset, length int64
	}{
		{"first byte", 0, 1},
		{"last byte", size - 1, 1},
		{"across a package boundary", packageSize - 10, 20},
		{"across two boundaries", packageSize - 1, packageSize + 2},
		{"one whole package", packageSize, packageSize},
		{"ends on a boundary", 10, packageSize - 10},
		{"starts on a boundary", 2 * packageSize, 5},
		{"middle to end", 100_000, -1},
		{"last package to end", 3 * packageSize, -1},
		{"tail with explicit length", size - 300, 300},
		{"empty inside", 5, 0},
		{"empty at the end", size, 0},
		{"to end from the end", size, -1},
	} {
		t.Run(r.name, func(t *testing.T) {
			end := int64(size)
			if r.length >= 0 {
				end = r.offset + r.length
			}
			f.mustRead(t, f.s, "r", r.offset, r.length, b[r.offset:end])
		})
	}
}

// testExactPackages: an object of whole packages has no partial last
// package, so a range at its very end starts past the last stored byte.
func testExactPackages(t *testing.T, f *fixture) {
	const size = 2 * packageSize
	b := data(20, size)
	f.put(t, f.s, "x", b)
	f.mustRead(t, f.s, "x", size, -1, nil)
	f.mustRead(t, f.s, "x", size, 0, nil)
	f.mustRead(t, f.s, "x", size-1, -1, b[size-1:])
	f.mustRead(t, f.s, "x", packageSize, -1, b[packageSize:])
	for _, r := range [][2]int64{{size, 1}, {size + 1, -1}, {size + packageSize, 1}} {
		_, err := f.s.Get(f.ctx, "x", r[0], r[1])
		wantErr(t, fmt.Sprintf("Get [%d,+%d) of %d bytes", r[0], r[1], size), err, parley.ErrBlobRange)
	}
}

func testRangeErrors(t *testing.T, f *fixture) {
	const size = packageSize + 5
	f.put(t, f.s, "r", data(2, size))
	for _, r := range [][2]int64{{size, 1}, {size - 1, 2}, {size + 1, -1}, {size + 1, 0}, {-1, 1}, {0, -2}, {0, size + 1}, {1 << 62, 1 << 62}, {1<<63 - 1, -1}, {1<<63 - 1, 1}, {0, 1<<63 - 1}} {
		_, err := f.s.Get(f.ctx, "r", r[0], r[1])
		wantErr(t, fmt.Sprintf("Get [%d,+%d) of %d bytes", r[0], r[1], size), err, parley.ErrBlobRange)
		if parley.ErrorCode(err) != parley.CodeInvalidRequest {
			t.Fatalf("range error code %q", parley.ErrorCode(err))
		}
	}
	_, err := f.s.Get(f.ctx, "missing", 0, -1)
	wantErr(t, "Get missing", err, parley.ErrBlobNotFound)
	if parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("not found code %q", parley.ErrorCode(err))
	}
	_, err = f.s.Get(f.ctx, "missing", 0, 0)
	wantErr(t, "Get missing, empty range", err, parley.ErrBlobNotFound)
}

func testStat(t *testing.T, f *fixture) {
	_, err := f.s.Stat(f.ctx, "a/b")
	wantErr(t, "Stat missing", err, parley.ErrBlobNotFound)
	before := time.Now().Add(-2 * time.Second)
	f.put(t, f.s, "a/b", data(3, 12345))
	info, err := f.s.Stat(f.ctx, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "a/b" || info.Size != 12345 || info.SHA256 != "" {
		t.Fatalf("Stat = %+v", info)
	}
	if info.ModTime.Before(before) || info.ModTime.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("ModTime %v is not about now", info.ModTime)
	}
	_, err = f.s.Stat(f.ctx, "a")
	wantErr(t, "Stat of a key's parent", err, parley.ErrBlobNotFound)
}

func testDelete(t *testing.T, f *fixture) {
	f.put(t, f.s, "d/x/1", data(4, 100))
	f.put(t, f.s, "d/x/2", data(5, 100))
	if err := f.s.Delete(f.ctx, "d/x/1"); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.Get(f.ctx, "d/x/1", 0, -1)
	wantErr(t, "Get after Delete", err, parley.ErrBlobNotFound)
	_, err = f.s.Stat(f.ctx, "d/x/1")
	wantErr(t, "Stat after Delete", err, parley.ErrBlobNotFound)
	if err := f.s.Delete(f.ctx, "d/x/1"); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if err := f.s.Delete(f.ctx, "never/was"); err != nil {
		t.Fatalf("Delete of an absent key: %v", err)
	}
	f.mustRead(t, f.s, "d/x/2", 0, -1, data(5, 100))
	if got := f.keys(t, f.s, ""); !slices.Equal(got, []string{"d/x/2"}) {
		t.Fatalf("List after Delete = %v", got)
	}
	if err := f.s.Delete(f.ctx, "d/x/2"); err != nil {
		t.Fatal(err)
	}
	// The key can be used again, and so can its former parent as a key.
	f.put(t, f.s, "d/x/2", data(6, 10))
	f.mustRead(t, f.s, "d/x/2", 0, -1, data(6, 10))
	if err := f.s.Delete(f.ctx, "d/x/2"); err != nil {
		t.Fatal(err)
	}
	f.put(t, f.s, "d/x", data(7, 10))
	f.mustRead(t, f.s, "d/x", 0, -1, data(7, 10))
}

func testOverwrite(t *testing.T, f *fixture) {
	f.put(t, f.s, "o", data(8, 3*packageSize))
	f.put(t, f.s, "o", data(9, 10))
	f.mustRead(t, f.s, "o", 0, -1, data(9, 10))
	info, err := f.s.Stat(f.ctx, "o")
	if err != nil || info.Size != 10 {
		t.Fatalf("Stat after overwrite = %+v, %v", info, err)
	}
	if got := f.keys(t, f.s, ""); !slices.Equal(got, []string{"o"}) {
		t.Fatalf("List after overwrite = %v", got)
	}
}

// failingReader yields n bytes, then fails.
type failingReader struct {
	r   io.Reader
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF {
		return n, r.err
	}
	return n, err
}

func testFailedPut(t *testing.T, f *fixture) {
	old := data(10, 1000)
	f.put(t, f.s, "k", old)
	boom := errors.New("client went away")
	_, err := f.s.Put(f.ctx, "k", &failingReader{r: bytes.NewReader(data(11, 2*packageSize+3)), err: boom})
	wantErr(t, "Put from a failing reader", err, boom)
	f.mustRead(t, f.s, "k", 0, -1, old)

	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	_, err = f.s.Put(ctx, "k", bytes.NewReader(data(12, 10)))
	wantErr(t, "Put with an ended context", err, context.Canceled)
	f.mustRead(t, f.s, "k", 0, -1, old)

	_, err = f.s.Put(f.ctx, "new", &failingReader{r: bytes.NewReader(data(13, 10)), err: boom})
	wantErr(t, "Put of a new key from a failing reader", err, boom)
	_, err = f.s.Stat(f.ctx, "new")
	wantErr(t, "Stat after a failed Put", err, parley.ErrBlobNotFound)
	if got := f.keys(t, f.s, ""); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("List after failed Puts = %v (a temporary file shows?)", got)
	}
}

// BadKeys are keys every engine refuses with ErrBlobKey.
var BadKeys = []string{
	"", "/", "/abs", "a/", "a//b", ".", "..", "../x", "a/../b", "a/./b", "./a", ".hidden", "a/.tmp-1",
	"a b", "a\\b", "a\x00b", "a:b", "é", "a?b", "a%2fb", "x.blob", "d.blob/x", string(bytes.Repeat([]byte{'a'}, parley.MaxBlobKeyLen+1)),
}

func testBadKeys(t *testing.T, f *fixture) {
	for _, key := range BadKeys {
		_, err := f.s.Put(f.ctx, key, bytes.NewReader([]byte("x")))
		wantErr(t, fmt.Sprintf("Put %q", key), err, parley.ErrBlobKey)
		_, err = f.s.Get(f.ctx, key, 0, -1)
		wantErr(t, fmt.Sprintf("Get %q", key), err, parley.ErrBlobKey)
		_, err = f.s.Stat(f.ctx, key)
		wantErr(t, fmt.Sprintf("Stat %q", key), err, parley.ErrBlobKey)
		err = f.s.Delete(f.ctx, key)
		wantErr(t, fmt.Sprintf("Delete %q", key), err, parley.ErrBlobKey)
	}
	for _, prefix := range []string{"/", "../", "a//", ".x", "a b", "x.blob/"} {
		err := f.s.List(f.ctx, prefix, func(parley.BlobInfo) error { return nil })
		wantErr(t, fmt.Sprintf("List %q", prefix), err, parley.ErrBlobKey)
	}
	if got := f.keys(t, f.s, ""); len(got) != 0 {
		t.Fatalf("bad keys stored something: %v", got)
	}
	long := string(bytes.Repeat([]byte{'a'}, parley.MaxBlobKeyLen))
	f.put(t, f.s, long[:100]+"/"+long[:parley.MaxBlobKeyLen-101], []byte("longest key"))
}

func testConcurrentWriters(t *testing.T, f *fixture) {
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			b := data(uint64(100+i), 150_000+i)
			if _, err := f.s.Put(f.ctx, fmt.Sprintf("c/%d/obj", i), bytes.NewReader(b)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range writers {
		f.mustRead(t, f.s, fmt.Sprintf("c/%d/obj", i), 0, -1, data(uint64(100+i), 150_000+i))
	}
}

func testConcurrentSameKey(t *testing.T, f *fixture) {
	const writers = 4
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			if _, err := f.s.Put(f.ctx, "same", bytes.NewReader(data(uint64(200+i), 100_000))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := read(f.ctx, f.s, "same", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range writers {
		if bytes.Equal(got, data(uint64(200+i), 100_000)) {
			return
		}
	}
	t.Fatalf("concurrent Puts to one key left %d bytes that are none of them", len(got))
}

// keys lists the keys under prefix, sorted.
func (f *fixture) keys(tb testing.TB, s parley.BlobStore, prefix string) []string {
	tb.Helper()
	var keys []string
	err := s.List(f.ctx, prefix, func(info parley.BlobInfo) error {
		keys = append(keys, info.Key)
		return nil
	})
	if err != nil {
		tb.Fatalf("List %q: %v", prefix, err)
	}
	slices.Sort(keys)
	return keys
}

func testList(t *testing.T, f *fixture) {
	sizes := map[string]int{"u/1/a": 10, "u/1/b": packageSize + 1, "u/2/a": 0, "t/x": 5, "u10": 7, "u-1": 1}
	for key, n := range sizes {
		f.put(t, f.s, key, data(300, n))
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"t/x", "u-1", "u/1/a", "u/1/b", "u/2/a", "u10"}},
		{"u/", []string{"u/1/a", "u/1/b", "u/2/a"}},
		{"u/1/", []string{"u/1/a", "u/1/b"}},
		{"u/1", []string{"u/1/a", "u/1/b"}},
		{"u", []string{"u-1", "u/1/a", "u/1/b", "u/2/a", "u10"}},
		{"u1", []string{"u10"}},
		{"u/1/a", []string{"u/1/a"}},
		{"t/x/", nil},
		{"nope/", nil},
		{"nope/deeper/", nil},
	} {
		if got := f.keys(t, f.s, c.prefix); !slices.Equal(got, c.want) {
			t.Errorf("List %q = %v, want %v", c.prefix, got, c.want)
		}
	}
	before := time.Now().Add(-time.Minute)
	err := f.s.List(f.ctx, "", func(info parley.BlobInfo) error {
		if want := int64(sizes[info.Key]); info.Size != want {
			t.Errorf("List: %s has size %d, want %d", info.Key, info.Size, want)
		}
		if info.ModTime.Before(before) {
			t.Errorf("List: %s ModTime %v", info.Key, info.ModTime)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	calls := 0
	err = f.s.List(f.ctx, "", func(parley.BlobInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("List with fn failing: %v after %d calls, want stop after 1", err, calls)
	}
}

// stream is a reader of n pseudo-random bytes that it does not hold.
type stream struct {
	src *rand.ChaCha8
	n   int64
}

func (s *stream) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.n {
		p = p[:s.n]
	}
	s.src.Read(p)
	s.n -= int64(len(p))
	return len(p), nil
}

func testLarge(t *testing.T, f *fixture) {
	const size = 20 << 20
	want := sha256.New()
	io.Copy(want, &stream{src: rand.NewChaCha8([32]byte{42}), n: size})
	wantSum := hex.EncodeToString(want.Sum(nil))

	info, err := f.s.Put(f.ctx, "big", &stream{src: rand.NewChaCha8([32]byte{42}), n: size})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size || info.SHA256 != wantSum {
		t.Fatalf("Put = %+v, want size %d sha256 %s", info, size, wantSum)
	}
	r, err := f.s.Get(f.ctx, "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, r)
	r.Close()
	if err != nil || n != size || hex.EncodeToString(got.Sum(nil)) != wantSum {
		t.Fatalf("Get whole: %d bytes, err %v, sha256 %x; want %s", n, err, got.Sum(nil), wantSum)
	}
	// A range near the end: the same bytes as the stream's.
	tail := make([]byte, size)
	(&stream{src: rand.NewChaCha8([32]byte{42}), n: size}).Read(tail)
	f.mustRead(t, f.s, "big", size-packageSize-17, packageSize+9, tail[size-packageSize-17:size-8])
}

// flipAt returns an edit that flips one bit at offset (from the end if
// negative).
func flipAt(offset int) func([]byte) []byte {
	return func(b []byte) []byte {
		i := offset
		if i < 0 {
			i += len(b)
		}
		b[i] ^= 0x01
		return b
	}
}

func wantUnreadable(tb testing.TB, f *fixture, s parley.BlobStore, key string, offset, length int64) {
	tb.Helper()
	_, err := read(f.ctx, s, key, offset, length)
	wantErr(tb, fmt.Sprintf("Get %s [%d,+%d)", key, offset, length), err, parley.ErrBlobUnreadable)
	if parley.ErrorCode(err) != parley.CodeInternal {
		tb.Fatalf("unreadable blob's error has code %q, want internal", parley.ErrorCode(err))
	}
}

func testTamperedContent(t *testing.T, f *fixture) {
	b := data(400, 4*packageSize)
	f.put(t, f.s, "t", b)
	var stored int
	f.h.Tamper(t, f.place, "t", func(s []byte) []byte {
		stored = len(s)
		return flipAt(len(s) - packageSize - packageSize/2)(s) // inside the third package
	})
	if stored <= len(b) {
		t.Fatalf("stored %d bytes for %d of plaintext: not encrypted?", stored, len(b))
	}
	wantUnreadable(t, f, f.s, "t", 0, -1)
	wantUnreadable(t, f, f.s, "t", 2*packageSize+100, 10)
	// The packages that are intact still read: a range reads only its own.
	f.mustRead(t, f.s, "t", 0, packageSize, b[:packageSize])
	f.mustRead(t, f.s, "t", 3*packageSize, -1, b[3*packageSize:])
}

func testTamperedHeader(t *testing.T, f *fixture) {
	f.put(t, f.s, "h", data(401, 1000))
	f.h.Tamper(t, f.place, "h", flipAt(0))
	wantUnreadable(t, f, f.s, "h", 0, -1)
	wantUnreadable(t, f, f.s, "h", 0, 1)

	f.put(t, f.s, "h2", data(402, 1000))
	f.h.Tamper(t, f.place, "h2", flipAt(20))
	wantUnreadable(t, f, f.s, "h2", 0, -1)
}

func testTruncated(t *testing.T, f *fixture) {
	b := data(403, 3*packageSize)
	f.put(t, f.s, "tr", b)
	// Drop the final package whole: sizes still add up, but the last
	// package left is not marked final.
	f.h.Tamper(t, f.place, "tr", func(s []byte) []byte { return s[:len(s)-(packageSize+32)] })
	wantUnreadable(t, f, f.s, "tr", 0, -1)
	wantUnreadable(t, f, f.s, "tr", packageSize, -1)

	f.put(t, f.s, "tr2", b)
	f.h.Tamper(t, f.place, "tr2", func(s []byte) []byte { return s[:len(s)-100] })
	wantUnreadable(t, f, f.s, "tr2", 0, -1)
	wantUnreadable(t, f, f.s, "tr2", 2*packageSize, 10)
}

func testExtended(t *testing.T, f *fixture) {
	b := data(404, packageSize+10)
	f.put(t, f.s, "ex", b)
	var extra []byte
	f.h.Tamper(t, f.place, "ex", func(s []byte) []byte {
		extra = append(extra, s[len(s)-(10+32):]...) // a copy of the final package
		return append(s, extra...)
	})
	wantUnreadable(t, f, f.s, "ex", 0, -1)
}

func testWrongMasterKey(t *testing.T, f *fixture) {
	b := data(500, packageSize+1)
	f.put(t, f.s, "w", b)
	other := f.h.Open(t, f.place, [][]byte{f.key2})
	wantUnreadable(t, f, other, "w", 0, -1)
	wantUnreadable(t, f, other, "w", 5, 1)
	info, err := other.Stat(f.ctx, "w")
	if err != nil || info.Size != int64(len(b)) {
		t.Fatalf("Stat under another key = %+v, %v (Stat does not need the key)", info, err)
	}
	f.mustRead(t, f.s, "w", 0, -1, b)
}

func testRotation(t *testing.T, f *fixture) {
	old := data(600, 2*packageSize+5)
	f.put(t, f.s, "old", old)

	rotated := f.h.Open(t, f.place, [][]byte{f.key2, f.key1})
	f.mustRead(t, f.s, "old", 0, -1, old)
	f.mustRead(t, rotated, "old", 0, -1, old)
	f.mustRead(t, rotated, "old", packageSize-1, 3, old[packageSize-1:packageSize+2])
	fresh := data(601, packageSize+9)
	f.put(t, rotated, "new", fresh)
	f.mustRead(t, rotated, "new", 0, -1, fresh)

	// The new object is sealed under key 2: a node with key 1 only cannot
	// read it, one with key 2 only can, and cannot read the old one.
	wantUnreadable(t, f, f.s, "new", 0, -1)
	only2 := f.h.Open(t, f.place, [][]byte{f.key2})
	f.mustRead(t, only2, "new", 0, -1, fresh)
	wantUnreadable(t, f, only2, "old", 0, -1)
}
