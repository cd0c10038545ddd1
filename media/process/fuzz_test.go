package process

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"testing"
)

// fuzzSeeds are small valid and hostile files of every processed format.
func fuzzSeeds(f *testing.F) [][]byte {
	plainJPEG := encodeJPEG(f, twoColour(16, 8))
	plainPNG := encodePNG(f, twoColour(16, 8))
	seeds := [][]byte{
		plainJPEG,
		jpegWithSegments(plainJPEG, segment(0xE1, append([]byte("Exif\x00\x00"), exifTIFF(binary.BigEndian, 6)...)), segment(0xFE, []byte("c"))),
		plainPNG,
		pngWithChunks(plainPNG, pngChunk("eXIf", exifTIFF(binary.LittleEndian, 3)), pngChunk("tEXt", []byte("a\x00b"))),
		[]byte("GIF89a\x02\x00\x02\x00\x80\x00\x00\xff\x00\x00\x00\x00\xff!\xfe\x01x\x00,\x00\x00\x00\x00\x02\x00\x02\x00\x00\x02\x02D\x01\x00;"),
		[]byte("RIFF\x1a\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00EXIF\x00\x00\x00\x00"),
		[]byte("GIF89a\xff\xff\xff\xff\x00\x00\x00;"),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	return seeds
}

func FuzzExifOrientation(f *testing.F) {
	for o := 1; o <= 8; o++ {
		f.Add(exifTIFF(binary.BigEndian, o))
		f.Add(exifTIFF(binary.LittleEndian, o))
	}
	f.Fuzz(func(t *testing.T, tiff []byte) {
		if o := exifOrientation(tiff); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
	})
}

// countingWriter counts what a stripper writes.
type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

// FuzzStrip: no stripper panics, and none writes more than it read (so a
// hostile file cannot make its cleaned copy grow).
func FuzzStrip(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for name, strip := range map[string]func(io.Writer) (stripInfo, error){
			"jpeg": func(w io.Writer) (stripInfo, error) { return stripJPEG(bufio.NewReader(bytes.NewReader(data)), w) },
			"png":  func(w io.Writer) (stripInfo, error) { return stripPNG(bufio.NewReader(bytes.NewReader(data)), w) },
			"gif":  func(w io.Writer) (stripInfo, error) { return stripGIF(bufio.NewReader(bytes.NewReader(data)), w) },
			"webp": func(w io.Writer) (stripInfo, error) {
				return stripWebP(bytes.NewReader(data), int64(len(data)), w)
			},
		} {
			var w countingWriter
			info, err := strip(&w)
			if err == nil && w.n > len(data) {
				t.Fatalf("%s: wrote %d bytes from %d", name, w.n, len(data))
			}
			if info.Orientation < 1 || info.Orientation > 8 {
				t.Fatalf("%s: orientation %d", name, info.Orientation)
			}
		}
	})
}

// FuzzProcess: Process never panics on any bytes, keeps to its pixel limit
// and thumbnail size, and leaves no temporary file behind.
func FuzzProcess(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := dir + "/in"
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := t.TempDir()
		lim := Limits{MaxPixels: 1 << 20, TempDir: tmp, FFmpegPath: "/nonexistent", FFprobePath: "/nonexistent"}
		res, err := Process(context.Background(), path, "", lim)
		if err != nil {
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				t.Fatalf("error %v left %d files", err, len(entries))
			}
			return
		}
		if int64(res.Width)*int64(res.Height) > lim.MaxPixels {
			t.Fatalf("processed %dx%d", res.Width, res.Height)
		}
		if res.ThumbWidth > DefaultMaxThumbSide || res.ThumbHeight > DefaultMaxThumbSide {
			t.Fatalf("thumbnail %dx%d", res.ThumbWidth, res.ThumbHeight)
		}
		if (res.Thumbnail == nil) != (res.Blurhash == "") {
			t.Fatal("thumbnail without blurhash or the reverse")
		}
		if err := res.Remove(); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
			t.Fatalf("%d files left", len(entries))
		}
	})
}
