package process

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/bbrks/go-blurhash"
)

// gpsMarker is put into every metadata block the tests build; no output may
// contain it.
const gpsMarker = "GPS-SECRET-48.8584N"

// twoColour returns a w x h image whose left half is red and right half
// blue.
func twoColour(w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{255, 0, 0, 255}
			if x >= w/2 {
				c = color.RGBA{0, 0, 255, 255}
			}
			m.SetRGBA(x, y, c)
		}
	}
	return m
}

func encodeJPEG(tb testing.TB, m image.Image) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(tb testing.TB, m image.Image) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// exifTIFF builds a big- or little-endian TIFF structure as cameras write
// it: IFD0 with ImageDescription, Orientation and a GPSInfo pointer to a GPS
// IFD holding GPSLatitudeRef and a GPSAreaInformation string with gpsMarker.
func exifTIFF(order interface {
	binary.ByteOrder
	binary.AppendByteOrder
}, orientation int) []byte {
	var b []byte
	u16 := func(v int) { b = order.AppendUint16(b, uint16(v)) }
	u32 := func(v int) { b = order.AppendUint32(b, uint32(v)) }
	if order == binary.LittleEndian {
		b = append(b, "II"...)
	} else {
		b = append(b, "MM"...)
	}
	u16(42)
	u32(8)
	desc := "Holiday " + gpsMarker + "\x00"
	const ifd0Entries = 3
	ifd0End := 8 + 2 + ifd0Entries*12 + 4
	gpsIFD := ifd0End + len(desc)
	// IFD0
	u16(ifd0Entries)
	u16(0x010E) // ImageDescription
	u16(2)
	u32(len(desc))
	u32(ifd0End)
	u16(0x0112) // Orientation
	u16(3)
	u32(1)
	u16(orientation)
	u16(0)
	u16(0x8825) // GPSInfo
	u16(4)
	u32(1)
	u32(gpsIFD)
	u32(0) // no IFD1
	b = append(b, desc...)
	area := "ASCII\x00\x00\x00" + gpsMarker
	// GPS IFD
	u16(2)
	u16(0x0001) // GPSLatitudeRef
	u16(2)
	u32(2)
	b = append(b, 'N', 0, 0, 0)
	u16(0x001C) // GPSAreaInformation
	u16(7)
	u32(len(area))
	u32(gpsIFD + 2 + 2*12 + 4)
	u32(0)
	b = append(b, area...)
	return b
}

// jpegWithSegments inserts segments (marker, body) right after SOI.
func jpegWithSegments(plain []byte, segs ...[]byte) []byte {
	out := append([]byte{}, plain[:2]...)
	for _, s := range segs {
		out = append(out, s...)
	}
	return append(out, plain[2:]...)
}

func segment(marker byte, body []byte) []byte {
	s := []byte{0xFF, marker, 0, 0}
	binary.BigEndian.PutUint16(s[2:], uint16(len(body)+2))
	return append(s, body...)
}

// pngWithChunks inserts chunks right after IHDR (PNG's IHDR chunk is 25
// bytes after the 8-byte signature).
func pngWithChunks(plain []byte, chunks ...[]byte) []byte {
	out := append([]byte{}, plain[:33]...)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return append(out, plain[33:]...)
}

func pngChunk(typ string, data []byte) []byte {
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(c, typ...)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

func writeTemp(tb testing.TB, data []byte) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "upload")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func process(tb testing.TB, data []byte, declared string, lim Limits) *Result {
	tb.Helper()
	if lim.TempDir == "" {
		lim.TempDir = tb.TempDir()
	}
	res, err := Process(context.Background(), writeTemp(tb, data), declared, lim)
	if err != nil {
		tb.Fatalf("Process: %v", err)
	}
	tb.Cleanup(func() { res.Remove() })
	return res
}

func readCleaned(tb testing.TB, res *Result) []byte {
	tb.Helper()
	if res.CleanedPath == "" {
		tb.Fatal("no cleaned copy")
	}
	b, err := os.ReadFile(res.CleanedPath)
	if err != nil {
		tb.Fatal(err)
	}
	if int64(len(b)) != res.CleanedSize {
		tb.Fatalf("CleanedSize %d, file has %d bytes", res.CleanedSize, len(b))
	}
	return b
}

// assertClean fails when out holds any trace of the metadata the tests put
// in.
func assertClean(tb testing.TB, out []byte) {
	tb.Helper()
	for _, bad := range []string{gpsMarker, "Exif\x00\x00", "eXIf", "tEXt", "iTXt", "XMP", "ICC_PROFILE", "trailer"} {
		if bytes.Contains(out, []byte(bad)) {
			tb.Errorf("output still contains %q", bad)
		}
	}
	// The GPSInfo tag in either byte order.
	if bytes.Contains(out, []byte{0x88, 0x25, 0x00, 0x04}) || bytes.Contains(out, []byte{0x25, 0x88, 0x04, 0x00}) {
		tb.Error("output still contains a GPSInfo IFD entry")
	}
}

func sameImage(tb testing.TB, a, b image.Image) {
	tb.Helper()
	if a.Bounds() != b.Bounds() {
		tb.Fatalf("bounds %v and %v", a.Bounds(), b.Bounds())
	}
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if color.NRGBAModel.Convert(a.At(x, y)) != color.NRGBAModel.Convert(b.At(x, y)) {
				tb.Fatalf("pixels differ at %d,%d", x, y)
			}
		}
	}
}

// near reports whether c is within 40 of want in each channel.
func near(c color.Color, want color.RGBA) bool {
	r, g, b, _ := c.RGBA()
	d := func(a uint32, w uint8) bool { return int(a>>8)-int(w) < 40 && int(w)-int(a>>8) < 40 }
	return d(r, want.R) && d(g, want.G) && d(b, want.B)
}

var (
	red  = color.RGBA{255, 0, 0, 255}
	blue = color.RGBA{0, 0, 255, 255}
)

func TestJPEGWithGPSIsStrippedLosslessly(t *testing.T) {
	// Large and noisy enough that the scan spans many refills of the
	// reader's buffer, with stuffed 0xFF00 bytes across their edges.
	plain := encodeJPEG(t, photo(1200, 900))
	for _, order := range []interface {
		binary.ByteOrder
		binary.AppendByteOrder
	}{binary.BigEndian, binary.LittleEndian} {
		in := jpegWithSegments(plain,
			segment(0xE0, []byte("JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x00\x00")),
			segment(0xE1, append([]byte("Exif\x00\x00"), exifTIFF(order, 1)...)),
			segment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>XMP "+gpsMarker+"</x:xmpmeta>")),
			segment(0xE2, []byte("ICC_PROFILE\x00\x01\x01 device "+gpsMarker)),
			segment(0xFE, []byte("comment "+gpsMarker)),
		)
		in = append(in, "trailer: a phone's motion video "+gpsMarker...)
		res := process(t, in, "image/jpeg", Limits{})
		if res.ContentType != "image/jpeg" || res.Width != 1200 || res.Height != 900 {
			t.Fatalf("got %s %dx%d", res.ContentType, res.Width, res.Height)
		}
		out := readCleaned(t, res)
		assertClean(t, out)
		orig, err := jpeg.Decode(bytes.NewReader(plain))
		if err != nil {
			t.Fatal(err)
		}
		got, err := jpeg.Decode(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("cleaned JPEG does not decode: %v", err)
		}
		sameImage(t, orig, got) // the scan was copied, not re-encoded
		if !bytes.Equal(out, plain) {
			t.Error("cleaned JPEG is not exactly the original without its segments")
		}
	}
}

func TestJPEGWithoutMetadataIsKept(t *testing.T) {
	res := process(t, encodeJPEG(t, twoColour(40, 30)), "image/jpeg", Limits{})
	if res.CleanedPath != "" {
		t.Fatal("a JPEG without metadata was copied")
	}
	if res.Thumbnail == nil || res.ThumbWidth != 40 || res.ThumbHeight != 30 {
		t.Fatalf("thumbnail %dx%d, want 40x30 (never upscaled)", res.ThumbWidth, res.ThumbHeight)
	}
}

func TestJPEGOrientationIsApplied(t *testing.T) {
	// Stored 200x100, left red, right blue; orientation 6 shows it turned
	// 90 degrees clockwise: 100x200, red on top, blue below.
	in := jpegWithSegments(encodeJPEG(t, twoColour(200, 100)),
		segment(0xE1, append([]byte("Exif\x00\x00"), exifTIFF(binary.BigEndian, 6)...)))
	res := process(t, in, "image/jpeg", Limits{})
	if res.Width != 100 || res.Height != 200 {
		t.Fatalf("size %dx%d, want 100x200", res.Width, res.Height)
	}
	out := readCleaned(t, res)
	assertClean(t, out)
	m, err := jpeg.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if m.Bounds().Dx() != 100 || m.Bounds().Dy() != 200 {
		t.Fatalf("cleaned is %v", m.Bounds())
	}
	if !near(m.At(50, 20), red) || !near(m.At(50, 180), blue) {
		t.Fatalf("cleaned not upright: top %v bottom %v", m.At(50, 20), m.At(50, 180))
	}
	th, err := jpeg.Decode(bytes.NewReader(res.Thumbnail))
	if err != nil {
		t.Fatal(err)
	}
	if res.ThumbWidth != 100 || res.ThumbHeight != 200 || !near(th.At(50, 10), red) || !near(th.At(50, 190), blue) {
		t.Fatalf("thumbnail %dx%d not upright", res.ThumbWidth, res.ThumbHeight)
	}
}

func TestPNGWithGPSIsStripped(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 30, 20))
	for i := range src.Pix {
		src.Pix[i] = byte(i * 7)
	}
	plain := encodePNG(t, src)
	in := pngWithChunks(plain,
		pngChunk("eXIf", exifTIFF(binary.LittleEndian, 1)),
		pngChunk("tEXt", []byte("Comment\x00"+gpsMarker)),
		pngChunk("iTXt", []byte("XML:com.adobe.xmp\x00\x00\x00\x00\x00<x:xmpmeta>"+gpsMarker+"</x:xmpmeta>")),
		pngChunk("iCCP", []byte("device\x00\x00"+gpsMarker)),
		pngChunk("tIME", []byte{0x07, 0xE9, 1, 2, 3, 4, 5}),
	)
	in = append(in, "trailer "+gpsMarker...)
	res := process(t, in, "image/png", Limits{})
	out := readCleaned(t, res)
	assertClean(t, out)
	if !bytes.Equal(out, plain) {
		t.Error("cleaned PNG is not exactly the original without the added chunks")
	}
	got, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, src, got)
	if res.ThumbnailType != "image/png" {
		t.Errorf("a translucent image's thumbnail is %s, want image/png", res.ThumbnailType)
	}
}

func TestPNGOrientationIsApplied(t *testing.T) {
	// Orientation 8 (turned 90 degrees anticlockwise to show): stored 60x40
	// left red right blue shows 40x60 with blue on top.
	in := pngWithChunks(encodePNG(t, twoColour(60, 40)), pngChunk("eXIf", exifTIFF(binary.BigEndian, 8)))
	res := process(t, in, "image/png", Limits{})
	out := readCleaned(t, res)
	assertClean(t, out)
	m, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if res.Width != 40 || res.Height != 60 || m.Bounds() != image.Rect(0, 0, 40, 60) {
		t.Fatalf("size %dx%d, cleaned %v", res.Width, res.Height, m.Bounds())
	}
	if !near(m.At(20, 5), blue) || !near(m.At(20, 55), red) {
		t.Fatal("cleaned PNG not upright")
	}
}

func TestGIFKeepsFramesDropsComments(t *testing.T) {
	pal := color.Palette{red, blue}
	g := &gif.GIF{LoopCount: 0}
	for i := range 2 {
		f := image.NewPaletted(image.Rect(0, 0, 40, 20), pal)
		for j := range f.Pix {
			f.Pix[j] = uint8(i)
		}
		g.Image = append(g.Image, f)
		g.Delay = append(g.Delay, 10)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	plain := b.Bytes()
	// Insert a comment and an XMP application extension before the first
	// image descriptor (after header, screen descriptor and colour table,
	// and Go's NETSCAPE2.0 block).
	at := bytes.Index(plain, []byte{0x21, 0xF9})
	comment := append([]byte{0x21, 0xFE, byte(len(gpsMarker))}, gpsMarker...)
	comment = append(comment, 0)
	xmp := append([]byte{0x21, 0xFF, 11}, "XMP DataXMP"...)
	xmp = append(xmp, byte(len(gpsMarker)))
	xmp = append(xmp, gpsMarker...)
	xmp = append(xmp, 0)
	in := append(append(append(append([]byte{}, plain[:at]...), comment...), xmp...), plain[at:]...)
	res := process(t, in, "image/gif", Limits{})
	out := readCleaned(t, res)
	assertClean(t, out)
	if !bytes.Equal(out, plain) {
		t.Error("cleaned GIF is not the original without the added blocks")
	}
	all, err := gif.DecodeAll(bytes.NewReader(out))
	if err != nil || len(all.Image) != 2 {
		t.Fatalf("cleaned GIF: %v, %d frames", err, len(all.Image))
	}
	th, err := jpeg.Decode(bytes.NewReader(res.Thumbnail))
	if err != nil || !near(th.At(20, 10), red) {
		t.Fatalf("thumbnail is not the first frame: %v", err)
	}
}

func TestDecompressionBombsAreRefusedBeforeDecoding(t *testing.T) {
	// A PNG header for 100000 x 100000 pixels with a few bytes of data.
	ihdr := binary.BigEndian.AppendUint32(nil, 100000)
	ihdr = binary.BigEndian.AppendUint32(ihdr, 100000)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	pngBomb := append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
	pngBomb = append(pngBomb, pngChunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})...)
	pngBomb = append(pngBomb, pngChunk("IEND", nil)...)

	// A JPEG whose SOF0 claims 60000 x 60000.
	plain := encodeJPEG(t, twoColour(16, 16))
	jpegBomb := append([]byte{}, plain...)
	sof := bytes.Index(jpegBomb, []byte{0xFF, 0xC0})
	binary.BigEndian.PutUint16(jpegBomb[sof+5:], 60000)
	binary.BigEndian.PutUint16(jpegBomb[sof+7:], 60000)

	// A GIF of 65535 x 65535 (the format's largest).
	gifBomb := []byte("GIF89a\xff\xff\xff\xff\x00\x00\x00;")

	for name, data := range map[string][]byte{"png": pngBomb, "jpeg": jpegBomb, "gif": gifBomb} {
		t.Run(name, func(t *testing.T) {
			p := writeTemp(t, data)
			var before, after runtimeMem
			before.read()
			_, err := Process(context.Background(), p, "", Limits{TempDir: t.TempDir()})
			after.read()
			var le *LimitError
			if !errors.Is(err, ErrTooLarge) || !errors.As(err, &le) || int64(le.Width)*int64(le.Height) <= DefaultMaxPixels {
				t.Fatalf("err = %v, want a *LimitError", err)
			}
			if alloc := after.totalAlloc - before.totalAlloc; alloc > 4<<20 {
				t.Fatalf("refusing the bomb allocated %d bytes", alloc)
			}
			entries, _ := os.ReadDir(filepath.Dir(p))
			if len(entries) != 1 {
				t.Fatalf("Process left files: %v", entries)
			}
		})
	}
}

func TestInvalidImage(t *testing.T) {
	plain := encodeJPEG(t, twoColour(64, 64))
	_, err := Process(context.Background(), writeTemp(t, plain[:len(plain)/2]), "", Limits{TempDir: t.TempDir()})
	if !errors.Is(err, ErrInvalidImage) {
		t.Fatalf("truncated JPEG: err = %v", err)
	}
}

func TestLyingTypesAreNotTrusted(t *testing.T) {
	html := []byte("<!DOCTYPE html><html><script>alert(1)</script></html>")
	res := process(t, html, "image/jpeg", Limits{})
	if res.ContentType != OctetStream || res.Thumbnail != nil || res.CleanedPath != "" {
		t.Fatalf("HTML declared as JPEG: %+v", res)
	}
	res = process(t, encodePNG(t, twoColour(8, 8)), "image/jpeg", Limits{})
	if res.ContentType != "image/png" || res.Thumbnail == nil {
		t.Fatalf("PNG declared as JPEG: %s", res.ContentType)
	}
	res = process(t, []byte("%PDF-1.7\n"), "image/png", Limits{})
	if res.ContentType != OctetStream {
		t.Fatalf("PDF declared as PNG: %s", res.ContentType)
	}
	res = process(t, []byte("%PDF-1.7\n"), "application/pdf", Limits{})
	if res.ContentType != "application/pdf" || res.Kind() != "file" {
		t.Fatalf("PDF: %s %s", res.ContentType, res.Kind())
	}
}

func TestThumbnailAndBlurhash(t *testing.T) {
	res := process(t, encodeJPEG(t, twoColour(1280, 640)), "", Limits{})
	if res.ThumbWidth != 320 || res.ThumbHeight != 160 || res.ThumbnailType != "image/jpeg" {
		t.Fatalf("thumbnail %dx%d %s", res.ThumbWidth, res.ThumbHeight, res.ThumbnailType)
	}
	th, err := jpeg.Decode(bytes.NewReader(res.Thumbnail))
	if err != nil || th.Bounds() != image.Rect(0, 0, 320, 160) {
		t.Fatalf("thumbnail: %v", err)
	}
	if !near(th.At(40, 80), red) || !near(th.At(280, 80), blue) {
		t.Fatal("thumbnail does not look like the image")
	}
	if len(res.Blurhash) != 6+2*(blurhashX*blurhashY-1) || res.Blurhash[0] != 'L' {
		t.Fatalf("blurhash %q is not 4x3", res.Blurhash)
	}
	// Decoded, the blurhash is reddish on the left and bluish on the right.
	m, err := blurhash.Decode(res.Blurhash, 32, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	lr, _, lb, _ := m.At(2, 8).RGBA()
	rr, _, rb, _ := m.At(29, 8).RGBA()
	if lr <= lb || rb <= rr {
		t.Fatalf("blurhash %q: left %v right %v", res.Blurhash, m.At(2, 8), m.At(29, 8))
	}
	if res.Kind() != "image" {
		t.Fatal(res.Kind())
	}
}

func TestThumbSize(t *testing.T) {
	for _, c := range []struct{ w, h, tw, th int }{
		{4000, 3000, 320, 240}, {3000, 4000, 240, 320}, {320, 100, 320, 100},
		{100, 50, 100, 50}, {50000, 1, 320, 1}, {1, 50000, 1, 320}, {641, 321, 320, 160},
	} {
		if tw, th := thumbSize(c.w, c.h, 320); tw != c.tw || th != c.th {
			t.Errorf("thumbSize(%d, %d) = %d, %d; want %d, %d", c.w, c.h, tw, th, c.tw, c.th)
		}
	}
}

func TestOrientPlane(t *testing.T) {
	// Stored 3x2:  a b c / d e f.
	src := []byte("abcdef")
	want := map[int]string{
		1: "abcdef", 2: "cbafed", 3: "fedcba", 4: "defabc",
		5: "adbecf", 6: "daebfc", 7: "fcebda", 8: "cfbead",
	}
	for o := 2; o <= 8; o++ {
		dw, dh := orientedSize(3, 2, o)
		dst := make([]byte, dw*dh)
		orientPlane(dst, dw, src, 3, 3, 2, 1, o)
		if string(dst) != want[o] {
			t.Errorf("orientation %d: %s, want %s", o, dst, want[o])
		}
	}
	// The decoders' layouts agree with the plane rotation.
	ycc := image.NewYCbCr(image.Rect(0, 0, 3, 2), image.YCbCrSubsampleRatio422)
	copy(ycc.Y, src)
	if got := orient(ycc, 6).(*image.YCbCr); string(got.Y) != want[6] || got.SubsampleRatio != image.YCbCrSubsampleRatio440 {
		t.Errorf("YCbCr orientation 6: %s %v", got.Y, got.SubsampleRatio)
	}
	rgba := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for i, c := range src {
		rgba.Pix[i*4] = c
	}
	got := orient(rgba, 8).(*image.NRGBA)
	for i := range 6 {
		if got.Pix[i*4] != want[8][i] {
			t.Fatalf("NRGBA orientation 8: pixel %d is %c", i, got.Pix[i*4])
		}
	}
}

func TestExifOrientation(t *testing.T) {
	for o := 1; o <= 8; o++ {
		if got := exifOrientation(exifTIFF(binary.BigEndian, o)); got != o {
			t.Errorf("MM %d: got %d", o, got)
		}
		if got := exifOrientation(exifTIFF(binary.LittleEndian, o)); got != o {
			t.Errorf("II %d: got %d", o, got)
		}
	}
	bad := exifTIFF(binary.BigEndian, 9)
	if got := exifOrientation(bad); got != 1 {
		t.Errorf("orientation 9: got %d", got)
	}
	for _, b := range [][]byte{nil, []byte("MM"), []byte("MM\x00\x2a\xff\xff\xff\xff"), []byte("XX\x00\x2a\x00\x00\x00\x08")} {
		if got := exifOrientation(b); got != 1 {
			t.Errorf("%q: got %d", b, got)
		}
	}
}

func TestSniff(t *testing.T) {
	ftyp := func(brand string, compat ...string) []byte {
		b := []byte{0, 0, 0, byte(16 + 4*len(compat))}
		b = append(b, "ftyp"+brand+"\x00\x00\x02\x00"...)
		for _, c := range compat {
			b = append(b, c...)
		}
		return append(b, "\x00\x00\x00\x08free"...)
	}
	for _, c := range []struct {
		head []byte
		want string
	}{
		{ftyp("isom", "isom", "avc1"), "video/mp4"},
		{ftyp("mp42"), "video/mp4"},
		{ftyp("qt  ", "qt  "), "video/quicktime"},
		{ftyp("heic", "mif1", "heic"), "image/heic"},
		{ftyp("avif", "mif1"), "image/avif"},
		{ftyp("M4A ", "M4A "), "audio/mp4"},
		{ftyp("3gp4"), "video/3gpp"},
		{[]byte("\x1A\x45\xDF\xA3\x9f\x42\x86\x81\x01\x42\x82\x84webm"), "video/webm"},
		{[]byte("\x1A\x45\xDF\xA3\x9f\x42\x86\x81\x01\x42\x82\x88matroska"), "video/x-matroska"},
		{[]byte("RIFF\x00\x00\x00\x00WEBPVP8 "), "image/webp"},
		{[]byte("\xFF\xD8\xFF\xE0"), "image/jpeg"},
		// SVG is text to the sniffer; Classify keeps it away from image/.
		{[]byte("<svg xmlns='http://www.w3.org/2000/svg'>"), "text/plain; charset=utf-8"},
	} {
		if got := Sniff(c.head); got != c.want {
			t.Errorf("Sniff(%q) = %q, want %q", c.head, got, c.want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct{ sniffed, declared, want string }{
		{"image/jpeg", "image/jpeg", "image/jpeg"},
		{"image/png", "image/jpeg", "image/png"},
		{"text/html; charset=utf-8", "image/jpeg", OctetStream},
		{"text/html; charset=utf-8", "text/html", OctetStream},
		{"text/xml; charset=utf-8", "image/svg+xml", OctetStream},
		{"text/plain; charset=utf-8", "image/svg+xml", OctetStream},
		{"application/pdf", "image/png", OctetStream},
		{"application/pdf", "", "application/pdf"},
		{"video/mp4", "video/quicktime", "video/mp4"},
		{"video/mp4", "image/gif", OctetStream},
		{"application/ogg", "audio/ogg", "application/ogg"},
		{"text/plain; charset=utf-8", "application/json", "text/plain; charset=utf-8"},
		{OctetStream, "image/png", OctetStream},
		{"image/jpeg", "not a type", "image/jpeg"},
	} {
		if got := Classify(c.sniffed, c.declared); got != c.want {
			t.Errorf("Classify(%q, %q) = %q, want %q", c.sniffed, c.declared, got, c.want)
		}
	}
}

func TestContextEnded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Process(ctx, writeTemp(t, encodeJPEG(t, twoColour(8, 8))), "", Limits{TempDir: t.TempDir()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestNotARegularFile(t *testing.T) {
	if _, err := Process(context.Background(), t.TempDir(), "", Limits{}); err == nil || !strings.Contains(err.Error(), "regular") {
		t.Fatalf("err = %v", err)
	}
}

// TestStripJPEGAcrossBufferEdges: the scan copier must not lose bytes when
// an 0xFF falls at the end of the reader's buffer (small buffers make that
// happen often).
func TestStripJPEGAcrossBufferEdges(t *testing.T) {
	plain := encodeJPEG(t, photo(300, 200))
	in := jpegWithSegments(plain, segment(0xE1, append([]byte("Exif\x00\x00"), exifTIFF(binary.BigEndian, 1)...)))
	for _, size := range []int{16, 17, 31, 4096} {
		var out bytes.Buffer
		info, err := stripJPEG(bufio.NewReaderSize(bytes.NewReader(in), size), &out)
		if err != nil || !info.Removed {
			t.Fatalf("buffer %d: %v", size, err)
		}
		if !bytes.Equal(out.Bytes(), plain) {
			t.Fatalf("buffer %d: output differs from the original without EXIF", size)
		}
	}
}

// runtimeMem is a snapshot of the allocator's counters.
type runtimeMem struct{ totalAlloc, heapInuse uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.totalAlloc, m.heapInuse = s.TotalAlloc, s.HeapInuse
}
