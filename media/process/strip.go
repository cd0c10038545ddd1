package process

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// stripInfo is what a metadata stripper learnt while copying a file.
type stripInfo struct {
	// Orientation is the EXIF orientation, 1 to 8 (1 when there is none).
	Orientation int
	// Removed is true when the copy differs from the original: a metadata
	// block or bytes after the image's end were left out.
	Removed bool
	// Animated is true for a WebP with the animation flag.
	Animated bool
}

// errMalformed reports a file whose container structure is broken.
var errMalformed = errors.New("malformed container")

// maxMetadataRead bounds how much of a metadata block is read to find the
// orientation (a JPEG APP1 segment is at most 64 KiB anyway).
const maxMetadataRead = 1 << 16

// stripJPEG copies a JPEG from r to w without its APPn segments (EXIF, XMP,
// ICC profiles, IPTC, MPF, JFIF thumbnails) other than Adobe's APP14 (which
// says how to read the colours), without COM segments and without anything
// after EOI (phones append videos and depth maps there). The image data is
// copied byte for byte: no re-encoding, no quality loss. Memory: one 64 KiB
// segment at a time.
func stripJPEG(r *bufio.Reader, w io.Writer) (stripInfo, error) {
	info := stripInfo{Orientation: 1}
	var soi [2]byte
	if _, err := io.ReadFull(r, soi[:]); err != nil || soi != [2]byte{0xFF, 0xD8} {
		return info, fmt.Errorf("jpeg: no SOI: %w", errMalformed)
	}
	if _, err := w.Write(soi[:]); err != nil {
		return info, err
	}
	var seg [maxMetadataRead]byte
	marker := -1 // a marker already read by the scan copier
	for {
		if marker < 0 {
			b, err := r.ReadByte()
			if err != nil {
				return info, fmt.Errorf("jpeg: truncated: %w", errMalformed)
			}
			if b != 0xFF {
				return info, fmt.Errorf("jpeg: expected a marker: %w", errMalformed)
			}
			for b == 0xFF { // fill bytes
				if b, err = r.ReadByte(); err != nil {
					return info, fmt.Errorf("jpeg: truncated: %w", errMalformed)
				}
			}
			marker = int(b)
		}
		m := byte(marker)
		marker = -1
		switch {
		case m == 0xD9: // EOI
			if _, err := w.Write([]byte{0xFF, 0xD9}); err != nil {
				return info, err
			}
			if _, err := r.ReadByte(); err == nil {
				info.Removed = true
			}
			return info, nil
		case m >= 0xD0 && m <= 0xD7, m == 0x01: // standalone markers
			if _, err := w.Write([]byte{0xFF, m}); err != nil {
				return info, err
			}
			continue
		case m == 0x00:
			return info, fmt.Errorf("jpeg: stray 0xFF00: %w", errMalformed)
		}
		var lb [2]byte
		if _, err := io.ReadFull(r, lb[:]); err != nil {
			return info, fmt.Errorf("jpeg: truncated: %w", errMalformed)
		}
		n := int(binary.BigEndian.Uint16(lb[:])) - 2
		if n < 0 {
			return info, fmt.Errorf("jpeg: bad segment length: %w", errMalformed)
		}
		body := seg[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return info, fmt.Errorf("jpeg: truncated: %w", errMalformed)
		}
		if (m >= 0xE0 && m <= 0xEF) || m == 0xFE {
			if m == 0xE1 && bytes.HasPrefix(body, []byte("Exif\x00\x00")) && info.Orientation == 1 {
				info.Orientation = exifOrientation(body[6:])
			}
			if m == 0xEE && len(body) <= 12 && bytes.HasPrefix(body, []byte("Adobe")) {
				// keep: the colour transform flag, nothing about the author
			} else {
				info.Removed = true
				continue
			}
		}
		if _, err := w.Write([]byte{0xFF, m, lb[0], lb[1]}); err != nil {
			return info, err
		}
		if _, err := w.Write(body); err != nil {
			return info, err
		}
		if m == 0xDA { // SOS: entropy-coded data follows, up to the next marker
			next, err := copyScan(r, w)
			if err != nil {
				return info, err
			}
			marker = next
		}
	}
}

// copyScan copies entropy-coded data (with its stuffed 0xFF00 bytes and RSTn
// markers) and returns the marker that ends it, consumed but not written.
func copyScan(r *bufio.Reader, w io.Writer) (int, error) {
	pair := []byte{0xFF, 0}
	for {
		chunk, err := r.ReadSlice(0xFF)
		if errors.Is(err, bufio.ErrBufferFull) {
			if _, err := w.Write(chunk); err != nil {
				return 0, err
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("jpeg: truncated scan: %w", errMalformed)
		}
		// chunk ends in 0xFF; what follows says whether it is data. chunk
		// is only valid until the next read, so it is written first.
		if _, err := w.Write(chunk[:len(chunk)-1]); err != nil {
			return 0, err
		}
		b, err := r.ReadByte()
		for err == nil && b == 0xFF { // fill bytes before a marker
			b, err = r.ReadByte()
		}
		if err != nil {
			return 0, fmt.Errorf("jpeg: truncated scan: %w", errMalformed)
		}
		if b == 0x00 || (b >= 0xD0 && b <= 0xD7) {
			pair[1] = b
			if _, err := w.Write(pair); err != nil {
				return 0, err
			}
			continue
		}
		return int(b), nil
	}
}

// pngKeep lists the PNG chunks that stripPNG keeps: the critical ones, those
// that say how to show the pixels (transparency, gamma, colour space,
// background, pixel aspect) and APNG's animation chunks. Every other chunk
// goes: tEXt, zTXt, iTXt (XMP lives there), eXIf, tIME, iCCP (an ICC
// profile names the device and may carry free text), and private ones.
var pngKeep = map[string]bool{
	"IHDR": true, "PLTE": true, "IDAT": true, "IEND": true,
	"tRNS": true, "gAMA": true, "cHRM": true, "sRGB": true, "sBIT": true,
	"bKGD": true, "pHYs": true, "hIST": true, "cICP": true, "mDCv": true, "cLLi": true,
	"acTL": true, "fcTL": true, "fdAT": true,
}

// maxPNGChunk bounds one chunk's declared length (the format allows 2^31-1).
const maxPNGChunk = 1 << 31

// stripPNG copies a PNG from r to w keeping only the chunks in pngKeep and
// nothing after IEND; chunk data is copied as it is (CRCs included), so the
// pixels are untouched. It reads an eXIf chunk's orientation.
func stripPNG(r *bufio.Reader, w io.Writer) (stripInfo, error) {
	info := stripInfo{Orientation: 1}
	var sig [8]byte
	if _, err := io.ReadFull(r, sig[:]); err != nil || string(sig[:]) != "\x89PNG\r\n\x1a\n" {
		return info, fmt.Errorf("png: bad signature: %w", errMalformed)
	}
	if _, err := w.Write(sig[:]); err != nil {
		return info, err
	}
	var head [8]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return info, fmt.Errorf("png: truncated: %w", errMalformed)
		}
		n := int64(binary.BigEndian.Uint32(head[:4]))
		if n >= maxPNGChunk {
			return info, fmt.Errorf("png: bad chunk length: %w", errMalformed)
		}
		typ := string(head[4:8])
		if !pngKeep[typ] {
			info.Removed = true
			if typ == "eXIf" && info.Orientation == 1 {
				buf := make([]byte, min(n, maxMetadataRead))
				if _, err := io.ReadFull(r, buf); err != nil {
					return info, fmt.Errorf("png: truncated: %w", errMalformed)
				}
				info.Orientation = exifOrientation(buf)
				n -= int64(len(buf))
			}
			if _, err := io.CopyN(io.Discard, r, n+4); err != nil {
				return info, fmt.Errorf("png: truncated: %w", errMalformed)
			}
			continue
		}
		if _, err := w.Write(head[:]); err != nil {
			return info, err
		}
		if _, err := io.CopyN(w, r, n+4); err != nil {
			if errors.Is(err, io.EOF) {
				return info, fmt.Errorf("png: truncated: %w", errMalformed)
			}
			return info, err
		}
		if typ == "IEND" {
			if _, err := r.ReadByte(); err == nil {
				info.Removed = true
			}
			return info, nil
		}
	}
}

// webpKeep lists the WebP chunks stripWebP keeps; EXIF, XMP, ICCP and
// unknown chunks go.
var webpKeep = map[string]bool{
	"VP8 ": true, "VP8L": true, "VP8X": true, "ALPH": true, "ANIM": true, "ANMF": true,
}

// VP8X flag bits.
const (
	vp8xAnimation = 0x02
	vp8xXMP       = 0x04
	vp8xEXIF      = 0x08
	vp8xICC       = 0x20
)

// stripWebP copies a WebP (a RIFF file of size bytes in r) to w without its
// EXIF, XMP, ICCP and unknown chunks, clearing their flags in VP8X and
// fixing the RIFF size; image chunks are copied as they are. It does not
// apply an EXIF orientation (WebP encoders write the pixels upright).
func stripWebP(r io.ReaderAt, size int64, w io.Writer) (stripInfo, error) {
	info := stripInfo{Orientation: 1}
	var hdr [12]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil || string(hdr[:4]) != "RIFF" || string(hdr[8:12]) != "WEBP" {
		return info, fmt.Errorf("webp: bad header: %w", errMalformed)
	}
	end := min(int64(binary.LittleEndian.Uint32(hdr[4:8]))+8, size)
	if end < size {
		info.Removed = true // bytes after the RIFF chunk
	}
	type chunk struct{ off, n int64 } // header offset, padded data length
	var kept []chunk
	var total int64 = 4 // "WEBP"
	for off := int64(12); off < end; {
		var ch [8]byte
		if off+8 > end {
			return info, fmt.Errorf("webp: truncated: %w", errMalformed)
		}
		if _, err := r.ReadAt(ch[:], off); err != nil {
			return info, fmt.Errorf("webp: truncated: %w", errMalformed)
		}
		n := int64(binary.LittleEndian.Uint32(ch[4:8]))
		n += n & 1
		if off+8+n > end {
			return info, fmt.Errorf("webp: truncated: %w", errMalformed)
		}
		if webpKeep[string(ch[:4])] {
			kept = append(kept, chunk{off, n})
			total += 8 + n
		} else {
			info.Removed = true
		}
		if len(kept) > 1<<20 {
			return info, fmt.Errorf("webp: too many chunks: %w", errMalformed)
		}
		off += 8 + n
	}
	if total > 1<<32-1 {
		return info, fmt.Errorf("webp: too large: %w", errMalformed)
	}
	binary.LittleEndian.PutUint32(hdr[4:8], uint32(total))
	if _, err := w.Write(hdr[:]); err != nil {
		return info, err
	}
	for _, c := range kept {
		var ch [8]byte
		if _, err := r.ReadAt(ch[:], c.off); err != nil {
			return info, err
		}
		if string(ch[:4]) == "VP8X" && c.n >= 4 {
			var flags [4]byte
			if _, err := r.ReadAt(flags[:], c.off+8); err != nil {
				return info, err
			}
			info.Animated = flags[0]&vp8xAnimation != 0
			if flags[0]&(vp8xXMP|vp8xEXIF|vp8xICC) != 0 {
				flags[0] &^= vp8xXMP | vp8xEXIF | vp8xICC
				info.Removed = true
			}
			if _, err := w.Write(ch[:]); err != nil {
				return info, err
			}
			if _, err := w.Write(flags[:]); err != nil {
				return info, err
			}
			if _, err := io.Copy(w, io.NewSectionReader(r, c.off+12, c.n-4)); err != nil {
				return info, err
			}
			continue
		}
		if _, err := io.Copy(w, io.NewSectionReader(r, c.off, 8+c.n)); err != nil {
			return info, err
		}
	}
	return info, nil
}

// stripGIF copies a GIF from r to w without comment extensions and
// application extensions other than the looping ones (NETSCAPE2.0,
// ANIMEXTS1.0): XMP is stored as an application extension. Image data is
// copied as it is, every frame kept, nothing after the trailer.
func stripGIF(r *bufio.Reader, w io.Writer) (stripInfo, error) {
	info := stripInfo{Orientation: 1}
	var hdr [13]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil || (string(hdr[:6]) != "GIF87a" && string(hdr[:6]) != "GIF89a") {
		return info, fmt.Errorf("gif: bad header: %w", errMalformed)
	}
	if _, err := w.Write(hdr[:]); err != nil {
		return info, err
	}
	if hdr[10]&0x80 != 0 { // global colour table
		if _, err := io.CopyN(w, r, 3<<(hdr[10]&7+1)); err != nil {
			return info, fmt.Errorf("gif: truncated: %w", errMalformed)
		}
	}
	for {
		b, err := r.ReadByte()
		if err != nil {
			return info, fmt.Errorf("gif: truncated: %w", errMalformed)
		}
		switch b {
		case 0x3B: // trailer
			if _, err := w.Write([]byte{b}); err != nil {
				return info, err
			}
			if _, err := r.ReadByte(); err == nil {
				info.Removed = true
			}
			return info, nil
		case 0x21: // extension
			label, err := r.ReadByte()
			if err != nil {
				return info, fmt.Errorf("gif: truncated: %w", errMalformed)
			}
			keep := label != 0xFE
			var first []byte
			if label == 0xFF {
				n, err := r.ReadByte()
				if err != nil {
					return info, fmt.Errorf("gif: truncated: %w", errMalformed)
				}
				first = make([]byte, 1+int(n))
				first[0] = n
				if _, err := io.ReadFull(r, first[1:]); err != nil {
					return info, fmt.Errorf("gif: truncated: %w", errMalformed)
				}
				id := string(first[1:])
				keep = id == "NETSCAPE2.0" || id == "ANIMEXTS1.0"
			}
			out := w
			if !keep {
				out = io.Discard
				info.Removed = true
			}
			if _, err := out.Write(append([]byte{b, label}, first...)); err != nil {
				return info, err
			}
			if len(first) == 1 { // the application block was the terminator
				continue
			}
			if err := copySubBlocks(r, out); err != nil {
				return info, err
			}
		case 0x2C: // image descriptor
			var desc [9]byte
			if _, err := io.ReadFull(r, desc[:]); err != nil {
				return info, fmt.Errorf("gif: truncated: %w", errMalformed)
			}
			if _, err := w.Write(append([]byte{b}, desc[:]...)); err != nil {
				return info, err
			}
			if desc[8]&0x80 != 0 { // local colour table
				if _, err := io.CopyN(w, r, 3<<(desc[8]&7+1)); err != nil {
					return info, fmt.Errorf("gif: truncated: %w", errMalformed)
				}
			}
			lzw, err := r.ReadByte()
			if err != nil {
				return info, fmt.Errorf("gif: truncated: %w", errMalformed)
			}
			if _, err := w.Write([]byte{lzw}); err != nil {
				return info, err
			}
			if err := copySubBlocks(r, w); err != nil {
				return info, err
			}
		default:
			return info, fmt.Errorf("gif: unknown block 0x%02x: %w", b, errMalformed)
		}
	}
}

// copySubBlocks copies GIF data sub-blocks up to and including the empty
// block that ends them.
func copySubBlocks(r *bufio.Reader, w io.Writer) error {
	var buf [256]byte
	for {
		n, err := r.ReadByte()
		if err != nil {
			return fmt.Errorf("gif: truncated: %w", errMalformed)
		}
		buf[0] = n
		if _, err := io.ReadFull(r, buf[1:1+int(n)]); err != nil {
			return fmt.Errorf("gif: truncated: %w", errMalformed)
		}
		if _, err := w.Write(buf[:1+int(n)]); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}
