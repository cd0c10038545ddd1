package process

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"os"

	"github.com/bbrks/go-blurhash"
	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// Quality settings.
const (
	thumbJPEGQuality   = 80
	cleanedJPEGQuality = 90 // only when an EXIF orientation forces re-encoding
	blurhashX          = 4
	blurhashY          = 3
)

// processImage fills res for a JPEG, PNG, GIF or WebP in f.
func processImage(ctx context.Context, f *os.File, size int64, res *Result, lim Limits) error {
	ct := res.ContentType
	src := io.NewSectionReader(f, 0, size)
	cfg, err := decodeConfig(ct, bufio.NewReader(src))
	if err != nil {
		return fmt.Errorf("process: %w: %v", ErrInvalidImage, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return fmt.Errorf("process: %w: %dx%d pixels", ErrInvalidImage, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > lim.MaxPixels {
		return &LimitError{Width: cfg.Width, Height: cfg.Height, MaxPixels: lim.MaxPixels}
	}

	// One pass that copies the file without its metadata and reads the
	// orientation on the way.
	tmp, err := os.CreateTemp(lim.TempDir, "parley-media-*")
	if err != nil {
		return err
	}
	keepTmp := false
	defer func() {
		if !keepTmp {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 64<<10)
	var info stripInfo
	switch ct {
	case "image/jpeg":
		info, err = stripJPEG(bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 64<<10), bw)
	case "image/png":
		info, err = stripPNG(bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 64<<10), bw)
	case "image/gif":
		info, err = stripGIF(bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 64<<10), bw)
	case "image/webp":
		info, err = stripWebP(f, size, bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if errors.Is(err, errMalformed) {
		return fmt.Errorf("process: %w: %v", ErrInvalidImage, err)
	}
	if err != nil {
		return err
	}
	res.Width, res.Height = orientedSize(cfg.Width, cfg.Height, info.Orientation)
	if err := ctx.Err(); err != nil {
		return err
	}

	if !info.Animated { // x/image/webp decodes no animation: no thumbnail then
		img, err := decodeImage(ct, bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 64<<10), cfg)
		if err != nil {
			return fmt.Errorf("process: %w: %v", ErrInvalidImage, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if info.Orientation != 1 {
			img = orient(img, info.Orientation)
			if err := reencode(tmp, ct, img); err != nil {
				return err
			}
			info.Removed = true
		}
		if err := thumbnail(res, img, lim.MaxThumbSide); err != nil {
			return err
		}
	}
	if !info.Removed {
		return nil
	}
	st, err := tmp.Stat()
	if err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	keepTmp = true
	res.CleanedPath, res.CleanedSize = tmp.Name(), st.Size()
	return nil
}

// decodeConfig reads only an image's header.
func decodeConfig(ct string, r io.Reader) (image.Config, error) {
	switch ct {
	case "image/jpeg":
		return jpeg.DecodeConfig(r)
	case "image/png":
		return png.DecodeConfig(r)
	case "image/gif":
		return gif.DecodeConfig(r)
	case "image/webp":
		return webp.DecodeConfig(r)
	}
	return image.Config{}, fmt.Errorf("no decoder for %s", ct)
}

// decodeImage decodes an image whose header said cfg. For a GIF it decodes
// the first frame only and places it on the logical screen.
func decodeImage(ct string, r io.Reader, cfg image.Config) (image.Image, error) {
	switch ct {
	case "image/jpeg":
		return jpeg.Decode(r)
	case "image/png":
		return png.Decode(r)
	case "image/webp":
		return webp.Decode(r)
	case "image/gif":
		frame, err := gif.Decode(r)
		if err != nil {
			return nil, err
		}
		screen := image.Rect(0, 0, cfg.Width, cfg.Height)
		if frame.Bounds() == screen {
			return frame, nil
		}
		canvas := image.NewNRGBA(screen)
		draw.Draw(canvas, frame.Bounds(), frame, frame.Bounds().Min, draw.Src)
		return canvas, nil
	}
	return nil, fmt.Errorf("no decoder for %s", ct)
}

// reencode replaces tmp's content with img encoded as ct (JPEG or PNG).
func reencode(tmp *os.File, ct string, img image.Image) error {
	if err := tmp.Truncate(0); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(tmp, 64<<10)
	var err error
	switch ct {
	case "image/jpeg":
		err = jpeg.Encode(bw, img, &jpeg.Options{Quality: cleanedJPEGQuality})
	case "image/png":
		err = png.Encode(bw, img)
	default:
		err = fmt.Errorf("process: cannot re-encode %s", ct)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// thumbSize fits w x h within side x side, keeping the aspect ratio and
// never enlarging.
func thumbSize(w, h, side int) (int, int) {
	if w <= side && h <= side {
		return w, h
	}
	if w >= h {
		return side, max(1, int((int64(h)*int64(side)+int64(w)/2)/int64(w)))
	}
	return max(1, int((int64(w)*int64(side)+int64(h)/2)/int64(h))), side
}

// thumbnail scales img into res.Thumbnail and hashes it.
func thumbnail(res *Result, img image.Image, side int) error {
	b := img.Bounds()
	tw, th := thumbSize(b.Dx(), b.Dy(), side)
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	scale(dst, img)
	var buf bytes.Buffer
	if dst.Opaque() {
		if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: thumbJPEGQuality}); err != nil {
			return err
		}
		res.ThumbnailType = "image/jpeg"
	} else {
		if err := png.Encode(&buf, dst); err != nil {
			return err
		}
		res.ThumbnailType = "image/png"
	}
	res.Thumbnail, res.ThumbWidth, res.ThumbHeight = buf.Bytes(), tw, th
	hash, err := blurhash.Encode(blurhashX, blurhashY, blurhashSource(dst))
	if err != nil {
		return err
	}
	res.Blurhash = hash
	return nil
}

// blurhashSide is the longest side of the image a blurhash is computed
// from: 4 x 3 cosine components need no more, and the encoder's cost grows
// with the pixel count.
const blurhashSide = 64

// blurhashSource returns thumb scaled down to at most blurhashSide.
func blurhashSource(thumb *image.RGBA) image.Image {
	w, h := thumbSize(thumb.Rect.Dx(), thumb.Rect.Dy(), blurhashSide)
	if w == thumb.Rect.Dx() && h == thumb.Rect.Dy() {
		return thumb
	}
	small := image.NewRGBA(image.Rect(0, 0, w, h))
	xdraw.ApproxBiLinear.Scale(small, small.Rect, thumb, thumb.Rect, xdraw.Src, nil)
	return small
}

// prescaleFactor: a source more than this many times the thumbnail's size
// on both sides is first reduced, with x/image/draw's ApproxBiLinear, to
// this many times the thumbnail's size, and only that is resampled with
// Catmull-Rom, whose cost grows with the source's pixels. Measured on a
// noisy 12 MP image to 320 x 240 (BenchmarkScale12MP): Catmull-Rom alone
// about 360 ms; ApproxBiLinear alone 3 ms but aliased (PSNR 25 dB against
// Catmull-Rom); through 2x 70 ms and 28 dB; through 3x about 100 ms and
// 37 dB; through 4x about 150 ms and 39 dB.
const prescaleFactor = 3

// scale draws src into all of dst, resampled.
func scale(dst *image.RGBA, src image.Image) {
	sb, db := src.Bounds(), dst.Rect
	if sb.Dx() > prescaleFactor*db.Dx() && sb.Dy() > prescaleFactor*db.Dy() {
		mid := image.NewRGBA(image.Rect(0, 0, prescaleFactor*db.Dx(), prescaleFactor*db.Dy()))
		xdraw.ApproxBiLinear.Scale(mid, mid.Rect, src, sb, xdraw.Src, nil)
		src, sb = mid, mid.Rect
	}
	xdraw.CatmullRom.Scale(dst, db, src, sb, xdraw.Src, nil)
}
