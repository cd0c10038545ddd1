package process

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	xdraw "golang.org/x/image/draw"
)

// photo returns a w x h 4:2:0 image with gradients and noise, so that its
// JPEG is about as large as a camera's.
func photo(w, h int) *image.YCbCr {
	m := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	seed := uint32(1)
	for y := range h {
		row := m.Y[y*m.YStride : y*m.YStride+w]
		for x := range row {
			seed = seed*1664525 + 1013904223
			row[x] = uint8((x*255/w+y*255/h)/2) + uint8(seed>>28)
		}
	}
	for i := range m.Cb {
		m.Cb[i] = uint8(100 + i%56)
		m.Cr[i] = uint8(150 - i%40)
	}
	return m
}

// writePhotoJPEG writes a w x h photo as a JPEG file, with an EXIF
// orientation segment when orientation > 1, and returns its path.
func writePhotoJPEG(tb testing.TB, w, h, orientation int) string {
	tb.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, photo(w, h), &jpeg.Options{Quality: 90}); err != nil {
		tb.Fatal(err)
	}
	data := b.Bytes()
	if orientation > 1 {
		data = jpegWithSegments(data, segment(0xE1, append([]byte("Exif\x00\x00"), exifTIFF(binary.BigEndian, orientation)...)))
	}
	p := filepath.Join(tb.TempDir(), "photo.jpg")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// BenchmarkThumbnail12MP: Process on a 4000 x 3000 JPEG without metadata
// (decode, thumbnail, blurhash; no cleaned copy).
func BenchmarkThumbnail12MP(b *testing.B) {
	p := writePhotoJPEG(b, 4000, 3000, 1)
	lim := Limits{TempDir: b.TempDir()}
	for b.Loop() {
		res, err := Process(context.Background(), p, "", lim)
		if err != nil || res.ThumbWidth != 320 {
			b.Fatal(err)
		}
	}
}

// BenchmarkScale12MP compares x/image/draw's kernels for the thumbnail's
// resampling of a decoded 12 MP JPEG to 320 x 240.
func BenchmarkScale12MP(b *testing.B) {
	f, err := os.Open(writePhotoJPEG(b, 4000, 3000, 1))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	src, err := jpeg.Decode(bufio.NewReader(f))
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range []struct {
		name   string
		scaler xdraw.Scaler
	}{
		{"NearestNeighbor", xdraw.NearestNeighbor},
		{"ApproxBiLinear", xdraw.ApproxBiLinear},
		{"BiLinear", xdraw.BiLinear},
		{"CatmullRom", xdraw.CatmullRom},
		{"ApproxBiLinear3x+CatmullRom", scalerFunc(scale)},
	} {
		b.Run(k.name, func(b *testing.B) {
			dst := image.NewRGBA(image.Rect(0, 0, 320, 240))
			for b.Loop() {
				k.scaler.Scale(dst, dst.Rect, src, src.Bounds(), xdraw.Src, nil)
			}
		})
	}
}

// scalerFunc adapts the package's scale to xdraw.Scaler for the benchmark.
type scalerFunc func(dst *image.RGBA, src image.Image)

func (f scalerFunc) Scale(dst xdraw.Image, _ image.Rectangle, src image.Image, _ image.Rectangle, _ xdraw.Op, _ *xdraw.Options) {
	f(dst.(*image.RGBA), src)
}

// BenchmarkProcess50MP processes a 50-megapixel (8660 x 5773) JPEG, upright
// (metadata-free: decode, thumbnail) and with EXIF orientation 6 (decode,
// rotate, re-encode, thumbnail), with measureProcess's memory figures.
func BenchmarkProcess50MP(b *testing.B) {
	for _, o := range []struct {
		name        string
		orientation int
	}{{"upright", 1}, {"rotated", 6}} {
		b.Run(o.name, func(b *testing.B) {
			measureProcess(b, writePhotoJPEG(b, 8660, 5773, o.orientation))
		})
	}
}

// BenchmarkProcessFile measures Process on the file named by
// PARLEY_BENCH_IMAGE (skipped when unset), for images the tests cannot make
// (a progressive JPEG: convert -interlace JPEG, from ImageMagick).
func BenchmarkProcessFile(b *testing.B) {
	p := os.Getenv("PARLEY_BENCH_IMAGE")
	if p == "" {
		b.Skip("PARLEY_BENCH_IMAGE is not set")
	}
	measureProcess(b, p)
}

// measureProcess runs Process on path in a b.Loop and reports the peak of
// the heap's objects above what was there before (sampled every 2 ms), the
// bytes allocated a call, and the process's peak resident set (Linux).
func measureProcess(b *testing.B, p string) {
	lim := Limits{TempDir: b.TempDir()}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak, total atomic.Uint64
	var ms runtime.MemStats
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		metrics.Read(sample)
		base := sample[0].Value.Uint64()
		resetPeakRSS()
		runtime.ReadMemStats(&ms)
		allocBefore := ms.TotalAlloc
		done := make(chan struct{})
		go func() {
			s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
			t := time.NewTicker(2 * time.Millisecond)
			defer t.Stop()
			for {
				metrics.Read(s)
				if v := s[0].Value.Uint64(); v > base && v-base > peak.Load() {
					peak.Store(v - base)
				}
				select {
				case <-done:
					return
				case <-t.C:
				}
			}
		}()
		b.StartTimer()
		res, err := Process(context.Background(), p, "", lim)
		b.StopTimer()
		close(done)
		if err != nil || res.Width == 0 {
			b.Fatal(err)
		}
		res.Remove()
		runtime.ReadMemStats(&ms)
		total.Add(ms.TotalAlloc - allocBefore)
		b.StartTimer()
	}
	b.ReportMetric(float64(peak.Load())/1e6, "peak-heap-MB")
	b.ReportMetric(float64(total.Load())/float64(b.N)/1e6, "alloc-MB/op")
	if rss := peakRSS(); rss > 0 {
		b.ReportMetric(float64(rss)/1e6, "peak-RSS-MB")
	}
}

// resetPeakRSS resets Linux's VmHWM for this process (no-op elsewhere).
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is VmHWM in bytes, 0 when unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb * 1000
			}
		}
	}
	return 0
}
