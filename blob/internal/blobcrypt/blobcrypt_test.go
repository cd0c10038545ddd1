package blobcrypt

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/seal"
)

func master(n byte) []byte { return bytes.Repeat([]byte{n}, 32) }

// TestKeyIDMatchesSeal: blobs name master keys as the message keyring
// does, so one key id means one master key everywhere.
func TestKeyIDMatchesSeal(t *testing.T) {
	for n := range byte(4) {
		kr, err := seal.NewKeyring([][]byte{master(n)})
		if err != nil {
			t.Fatal(err)
		}
		if got := KeyID(master(n)); got != kr.ActiveKeyID() {
			t.Fatalf("KeyID = %08x, seal's = %08x", got, kr.ActiveKeyID())
		}
	}
}

// TestSizes: CipherSize and PlainSize are inverses, and sizes no plaintext
// encrypts to are refused.
func TestSizes(t *testing.T) {
	for _, n := range []int64{0, 1, PayloadSize - 1, PayloadSize, PayloadSize + 1, 5*PayloadSize + 3, 1 << 40} {
		p, err := PlainSize(CipherSize(n))
		if err != nil || p != n {
			t.Fatalf("PlainSize(CipherSize(%d)) = %d, %v", n, p, err)
		}
	}
	for _, c := range []int64{-1, 1, 32, PackageSize + 32, CipherSize(1<<48) + 1} {
		if _, err := PlainSize(c); !errors.Is(err, parley.ErrBlobUnreadable) {
			t.Fatalf("PlainSize(%d) = %v", c, err)
		}
	}
}

// TestSpanOf checks the package arithmetic against the packages a range
// touches, for every small range of objects around package boundaries.
func TestSpanOf(t *testing.T) {
	const P = PayloadSize
	for _, size := range []int64{0, 1, P - 1, P, P + 1, 3 * P, 3*P + 7} {
		points := []int64{0, 1, P - 1, P, P + 1, 2*P - 1, 2 * P, 3 * P, size - 1, size, size + 1}
		for _, off := range points {
			for _, end := range points {
				length := end - off
				if length == -1 { // means "to the end": checked below
					continue
				}
				sp, err := SpanOf(off, length, size)
				inside := off >= 0 && length >= 0 && end <= size
				if !inside {
					if !errors.Is(err, parley.ErrBlobRange) {
						t.Fatalf("SpanOf(%d,%d,%d) = %+v, %v; want ErrBlobRange", off, length, size, sp, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("SpanOf(%d,%d,%d): %v", off, length, size, err)
				}
				if sp.Length != length || sp.ToEnd != (end == size) {
					t.Fatalf("SpanOf(%d,%d,%d) = %+v", off, length, size, sp)
				}
				if length == 0 {
					continue
				}
				first, last := off/P, (end-1)/P
				if sp.Seq != uint32(first) || sp.Skip != off-first*P || sp.CipherStart != first*PackageSize ||
					sp.CipherEnd != min((last+1)*PackageSize, CipherSize(size)) {
					t.Fatalf("SpanOf(%d,%d,%d) = %+v", off, length, size, sp)
				}
			}
		}
		sp, err := SpanOf(0, -1, size)
		if err != nil || sp.Length != size || !sp.ToEnd {
			t.Fatalf("SpanOf(0,-1,%d) = %+v, %v", size, sp, err)
		}
	}
}

func TestHeaderForms(t *testing.T) {
	k, _ := NewKeys([][]byte{master(1)})
	h := k.NewHeader()
	b, _ := h.AppendBinary(nil)
	if len(b) != HeaderSize {
		t.Fatalf("binary header of %d bytes", len(b))
	}
	if got, err := ParseHeader(b); err != nil || got != h {
		t.Fatalf("ParseHeader = %+v, %v", got, err)
	}
	if got, err := ParseHeaderText(h.String()); err != nil || got != h {
		t.Fatalf("ParseHeaderText(%q) = %+v, %v", h.String(), got, err)
	}
	for _, s := range []string{"", "1", "1.0000000g.AAAA", "2." + h.String()[2:], h.String() + "A", h.String()[:len(h.String())-1], "1.01020304." + string(bytes.Repeat([]byte{'A'}, 43)) + "="} {
		if _, err := ParseHeaderText(s); !errors.Is(err, parley.ErrBlobUnreadable) {
			t.Errorf("ParseHeaderText(%q) = %v", s, err)
		}
	}
	if h2 := k.NewHeader(); h2.Salt == h.Salt {
		t.Fatal("two headers with one salt")
	}
}

// TestBoundToName: an object's packages open under its own name only.
func TestBoundToName(t *testing.T) {
	k, _ := NewKeys([][]byte{master(1)})
	h := k.NewHeader()
	plain := bytes.Repeat([]byte("x"), 1000)
	enc, err := k.Encrypt(h, "a", bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := io.ReadAll(enc)
	sp, _ := SpanOf(0, -1, int64(len(plain)))
	for name, wantOK := range map[string]bool{"a": true, "b": false, "a\x00": false} {
		r, err := k.Decrypt(h, name, bytes.NewReader(sealed), sp)
		if err == nil {
			_, err = io.ReadAll(r)
		}
		if (err == nil) != wantOK || (!wantOK && !errors.Is(err, parley.ErrBlobUnreadable)) {
			t.Errorf("open as %q: %v", name, err)
		}
	}
}

// FuzzParseHeaderText: the metadata field comes from the bucket; any text
// either fails cleanly or round-trips.
func FuzzParseHeaderText(f *testing.F) {
	k, _ := NewKeys([][]byte{master(1)})
	f.Add(k.NewHeader().String())
	f.Add("1.00000000.")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHeaderText(s)
		if err != nil {
			if !errors.Is(err, parley.ErrBlobUnreadable) {
				t.Fatalf("error %v not ErrBlobUnreadable", err)
			}
			return
		}
		if h.String() != s {
			t.Fatalf("%q parses but formats as %q", s, h.String())
		}
	})
}

// FuzzOpenTampered: whatever happens to an object's stored packages (bytes
// changed, cut or added), a range read returns the original bytes or fails
// with ErrBlobUnreadable; never other bytes, never a panic.
func FuzzOpenTampered(f *testing.F) {
	k, _ := NewKeys([][]byte{master(1)})
	h := k.NewHeader()
	plain := make([]byte, 2*PayloadSize+999)
	for i := range plain {
		plain[i] = byte(i * 7)
	}
	enc, _ := k.Encrypt(h, "obj", bytes.NewReader(plain))
	sealed, _ := io.ReadAll(enc)
	f.Add(uint32(0), byte(1), uint32(0), uint32(0), uint32(10), false)
	f.Add(uint32(PackageSize+5), byte(0x80), uint32(0), uint32(PayloadSize), uint32(20), false)
	f.Add(uint32(0), byte(0), uint32(PackageSize+32), uint32(0), uint32(0), true)
	f.Fuzz(func(t *testing.T, at uint32, xor byte, cut uint32, offset, length uint32, toEnd bool) {
		stored := bytes.Clone(sealed)
		if len(stored) > 0 {
			stored[int(at)%len(stored)] ^= xor
		}
		switch c := int(cut) % (len(stored) + 64); {
		case c < len(stored)/2:
			stored = stored[:len(stored)-c]
		default:
			stored = append(stored, stored[:c-len(stored)/2]...)
		}
		size, err := PlainSize(int64(len(stored)))
		if err != nil {
			return // refused by size alone
		}
		off := int64(offset) % (size + 1)
		n := int64(length) % (size - off + 1)
		if toEnd {
			n = -1
		}
		sp, err := SpanOf(off, n, size)
		if err != nil {
			t.Fatalf("SpanOf(%d,%d,%d): %v", off, n, size, err)
		}
		r, err := k.Decrypt(h, "obj", bytes.NewReader(stored[sp.CipherStart:sp.CipherEnd]), sp)
		var got []byte
		if err == nil {
			got, err = io.ReadAll(r)
		}
		if err != nil {
			if !errors.Is(err, parley.ErrBlobUnreadable) {
				t.Fatalf("error %v is not ErrBlobUnreadable", err)
			}
			return
		}
		end := off + sp.Length
		if end > int64(len(plain)) || !bytes.Equal(got, plain[off:end]) {
			t.Fatalf("range [%d,+%d) of a tampered object read %d bytes that are not the original's", off, sp.Length, len(got))
		}
	})
}
