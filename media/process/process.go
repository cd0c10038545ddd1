package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Defaults for the zero fields of Limits.
const (
	// DefaultMaxPixels admits every phone camera (12 to 50 MP) and most
	// full-frame cameras (45 MP); a 50 MP JPEG costs about 75 MB decoded
	// (docs/benchmarks.md has the measured peak).
	DefaultMaxPixels = 50_000_000
	// DefaultMaxThumbSide is the longest side of a thumbnail, in pixels.
	DefaultMaxThumbSide = 320
	// DefaultFFmpegTimeout bounds each ffprobe and ffmpeg run.
	DefaultFFmpegTimeout = 30 * time.Second
)

// Limits bounds what Process does. The zero value is usable: every zero
// field takes its default.
type Limits struct {
	// MaxPixels is the largest width x height of an image Process decodes,
	// checked from the header before any pixel is allocated; larger images
	// get a *LimitError. Default DefaultMaxPixels.
	MaxPixels int64
	// MaxThumbSide is the longest side of a thumbnail in pixels (smaller
	// images are never upscaled). Default DefaultMaxThumbSide.
	MaxThumbSide int
	// FFmpegTimeout bounds each ffprobe and ffmpeg run. Default
	// DefaultFFmpegTimeout.
	FFmpegTimeout time.Duration
	// FFmpegPath and FFprobePath are the programs for video; empty means
	// "ffmpeg" and "ffprobe" looked up on PATH. When either is missing,
	// videos get only their content type.
	FFmpegPath, FFprobePath string
	// TempDir is where the cleaned copy of an image is written; empty means
	// os.TempDir().
	TempDir string
}

func (l Limits) withDefaults() Limits {
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxThumbSide <= 0 {
		l.MaxThumbSide = DefaultMaxThumbSide
	}
	if l.FFmpegTimeout <= 0 {
		l.FFmpegTimeout = DefaultFFmpegTimeout
	}
	return l
}

// Result is what Process learnt about a file and what it made from it.
type Result struct {
	// ContentType is the type to store and serve the file as (see
	// Classify): never what the uploader declared unless the bytes agree.
	ContentType string
	// Width and Height are the displayed size of an image (after its EXIF
	// orientation) or a video (after its rotation), 0 when unknown.
	Width, Height int
	// DurationMS is a video's duration in milliseconds, 0 when unknown.
	DurationMS int64
	// Thumbnail is an image's or video poster's thumbnail (longest side at
	// most Limits.MaxThumbSide, never upscaled), nil when none was made.
	// ThumbnailType is "image/jpeg", or "image/png" when the thumbnail has
	// transparent pixels.
	Thumbnail               []byte
	ThumbnailType           string
	ThumbWidth, ThumbHeight int
	// Blurhash is the blurhash (4 x 3 components) of the thumbnail, "" when
	// there is no thumbnail.
	Blurhash string
	// CleanedPath, when not empty, names a temporary file holding the image
	// to store instead of the original: same format, metadata removed and
	// the EXIF orientation applied. The caller owns it and must remove it
	// (Result.Remove). Empty when the original has nothing to remove and
	// can be stored as it is.
	CleanedPath string
	// CleanedSize is the size of CleanedPath in bytes.
	CleanedSize int64
}

// Kind says how a message shows the file: "image", "video" or "file".
func (r *Result) Kind() string {
	switch {
	case strings.HasPrefix(r.ContentType, "image/"):
		return "image"
	case strings.HasPrefix(r.ContentType, "video/"):
		return "video"
	}
	return "file"
}

// Remove deletes CleanedPath, if any. It is safe to call more than once.
func (r *Result) Remove() error {
	if r == nil || r.CleanedPath == "" {
		return nil
	}
	err := os.Remove(r.CleanedPath)
	r.CleanedPath, r.CleanedSize = "", 0
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// ErrTooLarge is wrapped by a *LimitError: an image has more pixels than
// Limits.MaxPixels. The upload should be refused (or kept as a plain file).
var ErrTooLarge = errors.New("image has too many pixels")

// ErrInvalidImage reports bytes that sniff as an image of a processed
// format but do not decode as one (corrupt, truncated, or hostile). The
// caller may refuse the upload or store it as a plain OctetStream file.
var ErrInvalidImage = errors.New("invalid image")

// LimitError says which limit an image broke.
type LimitError struct {
	Width, Height int
	MaxPixels     int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("process: image of %dx%d pixels is over the limit of %d pixels", e.Width, e.Height, e.MaxPixels)
}

// Unwrap makes errors.Is(err, ErrTooLarge) true.
func (e *LimitError) Unwrap() error { return ErrTooLarge }

// Process examines the file at path (a local file the caller controls: a
// finished upload, or a private copy of a stored blob) and returns its
// real type and, for images and videos, their size, thumbnail, blurhash and
// a cleaned copy. declaredType is the uploader's claimed type ("" if none).
//
// Process does not change the file at path. It returns an error wrapping
// ErrTooLarge (as a *LimitError) or ErrInvalidImage for an image it refuses,
// ctx's error when ctx ends, or an I/O error; a video that ffmpeg cannot
// read, or a machine without ffmpeg, is not an error: the Result then has
// only ContentType. Process is safe for concurrent use; each call costs the
// memory described in the package documentation.
func Process(ctx context.Context, path, declaredType string, lim Limits) (*Result, error) {
	lim = lim.withDefaults()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("process: %s is not a regular file", path)
	}
	head := make([]byte, SniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	res := &Result{ContentType: Classify(Sniff(head[:n]), declaredType)}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch res.ContentType {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
		if err := processImage(ctx, f, st.Size(), res, lim); err != nil {
			res.Remove()
			return nil, err
		}
	case "video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/3gpp":
		if err := processVideo(ctx, path, res, lim); err != nil {
			return nil, err
		}
	}
	return res, nil
}
