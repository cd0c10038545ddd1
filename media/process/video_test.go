package process

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/image/webp"
)

// needFFmpeg skips the test when ffmpeg or ffprobe is missing, unless
// PARLEY_TEST_REQUIRE_SERVICES=1 (as in CI, which installs them).
func needFFmpeg(t *testing.T) {
	t.Helper()
	for _, p := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("PARLEY_TEST_REQUIRE_SERVICES") == "1" {
				t.Fatalf("%s is not installed (apt-get install ffmpeg)", p)
			}
			t.Skipf("%s is not installed", p)
		}
	}
}

// ffmpegMake runs ffmpeg with args and returns the output file's path.
func ffmpegMake(t *testing.T, name string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	args = append(append([]string{"-nostdin", "-v", "error", "-y"}, args...), out)
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, b)
	}
	return out
}

func processPath(t *testing.T, path string, lim Limits) *Result {
	t.Helper()
	if lim.TempDir == "" {
		lim.TempDir = t.TempDir()
	}
	res, err := Process(context.Background(), path, "", lim)
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	t.Cleanup(func() { res.Remove() })
	return res
}

func TestVideo(t *testing.T) {
	needFFmpeg(t)
	mp4 := ffmpegMake(t, "clip.mp4", "-f", "lavfi", "-i", "testsrc=duration=1:size=640x360:rate=25", "-pix_fmt", "yuv420p")
	rotated := ffmpegMake(t, "rotated.mov", "-i", mp4, "-c", "copy", "-metadata:s:v:0", "rotate=90")
	webm := ffmpegMake(t, "clip.webm", "-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=10", "-c:v", "libvpx", "-b:v", "200k")
	for _, c := range []struct {
		name, path, ct string
		w, h, tw, th   int
	}{
		{"mp4", mp4, "video/mp4", 640, 360, 320, 180},
		{"rotated", rotated, "video/quicktime", 360, 640, 180, 320},
		{"webm", webm, "video/webm", 160, 120, 160, 120},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := processPath(t, c.path, Limits{})
			if res.ContentType != c.ct || res.Kind() != "video" {
				t.Fatalf("type %s", res.ContentType)
			}
			if res.Width != c.w || res.Height != c.h {
				t.Fatalf("size %dx%d, want %dx%d", res.Width, res.Height, c.w, c.h)
			}
			if res.DurationMS < 900 || res.DurationMS > 1100 {
				t.Fatalf("duration %d ms, want about 1000", res.DurationMS)
			}
			if res.ThumbWidth != c.tw || res.ThumbHeight != c.th || res.ThumbnailType != "image/jpeg" || res.Blurhash == "" {
				t.Fatalf("thumbnail %dx%d %s %q", res.ThumbWidth, res.ThumbHeight, res.ThumbnailType, res.Blurhash)
			}
			m, err := jpeg.Decode(bytes.NewReader(res.Thumbnail))
			if err != nil || m.Bounds() != image.Rect(0, 0, c.tw, c.th) {
				t.Fatalf("thumbnail does not decode: %v", err)
			}
			if res.CleanedPath != "" {
				t.Fatal("a video got a cleaned copy")
			}
		})
	}
}

func TestVideoWithoutFFmpeg(t *testing.T) {
	head := []byte("\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\x00\x00\x00\x08free")
	res := processPath(t, writeTemp(t, head), Limits{FFmpegPath: "/nonexistent/ffmpeg", FFprobePath: "/nonexistent/ffprobe"})
	if res.ContentType != "video/mp4" || res.Width != 0 || res.Thumbnail != nil {
		t.Fatalf("%+v", res)
	}
}

func TestBrokenVideoIsNotAnError(t *testing.T) {
	needFFmpeg(t)
	head := []byte("\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\x00\x00\x10\x00mdat garbage")
	res := processPath(t, writeTemp(t, head), Limits{})
	if res.ContentType != "video/mp4" || res.Width != 0 || res.Thumbnail != nil {
		t.Fatalf("%+v", res)
	}
	// A timeout too short for ffprobe to start: no information, no error.
	mp4 := ffmpegMake(t, "clip.mp4", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=5", "-pix_fmt", "yuv420p")
	res = processPath(t, mp4, Limits{FFmpegTimeout: time.Nanosecond})
	if res.ContentType != "video/mp4" || res.Width != 0 {
		t.Fatalf("%+v", res)
	}
}

func TestRunToolCapsOutput(t *testing.T) {
	yes, err := exec.LookPath("yes")
	if err != nil {
		t.Skip("no yes(1)")
	}
	start := time.Now()
	_, err = runTool(context.Background(), time.Minute, yes, 1<<20)
	if !errors.Is(err, errOutputCap) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v to stop", d)
	}
	env, err := exec.LookPath("env")
	if err != nil {
		t.Skip("no env(1)")
	}
	t.Setenv("PARLEY_SECRET_FOR_TEST", "x")
	out, err := runTool(context.Background(), time.Minute, env, 1<<10)
	if err != nil || len(out) != 0 {
		t.Fatalf("the tool saw an environment: %q %v", out, err)
	}
}

// webpWithMetadata wraps a simple WebP ("RIFF" "WEBP" "VP8 "...) in the
// extended format with EXIF, XMP and ICCP chunks and bytes after the RIFF.
func webpWithMetadata(simple []byte, w, h int) []byte {
	chunk := func(typ string, data []byte) []byte {
		c := append([]byte(typ), binary.LittleEndian.AppendUint32(nil, uint32(len(data)))...)
		c = append(c, data...)
		if len(data)%2 == 1 {
			c = append(c, 0)
		}
		return c
	}
	vp8x := []byte{vp8xICC | vp8xEXIF | vp8xXMP, 0, 0, 0}
	vp8x = append(vp8x, byte(w-1), byte((w-1)>>8), byte((w-1)>>16), byte(h-1), byte((h-1)>>8), byte((h-1)>>16))
	body := []byte("WEBP")
	body = append(body, chunk("VP8X", vp8x)...)
	body = append(body, chunk("ICCP", []byte("device "+gpsMarker))...)
	body = append(body, simple[12:]...)
	body = append(body, chunk("EXIF", exifTIFF(binary.LittleEndian, 1))...)
	body = append(body, chunk("XMP ", []byte("<x:xmpmeta>"+gpsMarker+"</x:xmpmeta>"))...)
	out := append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...)
	out = append(out, body...)
	return append(out, "trailer "+gpsMarker...)
}

func TestWebPMetadataIsStripped(t *testing.T) {
	needFFmpeg(t)
	simple, err := os.ReadFile(ffmpegMake(t, "red.webp", "-f", "lavfi", "-i", "color=red:size=64x32", "-frames:v", "1", "-c:v", "libwebp"))
	if err != nil {
		t.Fatal(err)
	}
	in := webpWithMetadata(simple, 64, 32)
	res := process(t, in, "image/webp", Limits{})
	if res.ContentType != "image/webp" || res.Width != 64 || res.Height != 32 {
		t.Fatalf("%s %dx%d", res.ContentType, res.Width, res.Height)
	}
	out := readCleaned(t, res)
	assertClean(t, out)
	if bytes.Contains(out, []byte("ICCP")) || bytes.Contains(out, []byte("EXIF")) {
		t.Fatal("metadata chunks left")
	}
	if flags := out[20]; string(out[12:16]) != "VP8X" || flags&(vp8xICC|vp8xEXIF|vp8xXMP) != 0 {
		t.Fatalf("VP8X flags %#x", flags)
	}
	if got := binary.LittleEndian.Uint32(out[4:8]); int(got) != len(out)-8 {
		t.Fatalf("RIFF size %d for %d bytes", got, len(out))
	}
	want, err := webp.Decode(bytes.NewReader(simple))
	if err != nil {
		t.Fatal(err)
	}
	got, err := webp.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("cleaned WebP does not decode: %v", err)
	}
	sameImage(t, want, got)
	if res.Thumbnail == nil || !near(mustJPEG(t, res.Thumbnail).At(32, 16), red) {
		t.Fatal("no red thumbnail")
	}
}

func mustJPEG(t *testing.T, b []byte) image.Image {
	t.Helper()
	m, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVideoOverThePixelLimitGetsNoPoster(t *testing.T) {
	needFFmpeg(t)
	mp4 := ffmpegMake(t, "clip.mp4", "-f", "lavfi", "-i", "testsrc=duration=1:size=640x360:rate=5", "-pix_fmt", "yuv420p")
	res := processPath(t, mp4, Limits{MaxPixels: 640*360 - 1})
	if res.Width != 640 || res.Height != 360 || res.Thumbnail != nil {
		t.Fatalf("%dx%d, thumbnail %v", res.Width, res.Height, res.Thumbnail != nil)
	}
}
