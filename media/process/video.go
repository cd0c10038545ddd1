package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Output caps for the subprocesses: ffprobe's JSON for one file is a few
// KiB; a poster of at most MaxThumbSide pixels a side as PNG is far below
// the cap.
const (
	maxProbeOutput  = 1 << 20
	maxPosterOutput = 16 << 20
	maxToolStderr   = 16 << 10
	// maxAlloc is ffmpeg's -max_alloc: the largest single allocation
	// (an 8K frame is about 50 MB).
	maxAlloc = "268435456"
)

// videoDemuxer forces ffmpeg's demuxer from the sniffed type, so a file is
// never read as a playlist (HLS, concat) that could name other files.
var videoDemuxer = map[string]string{
	"video/mp4": "mov", "video/quicktime": "mov", "video/3gpp": "mov",
	"video/webm": "matroska", "video/x-matroska": "matroska",
}

// processVideo fills res's size, duration, poster thumbnail and blurhash
// with ffprobe and ffmpeg. A missing tool, a timeout or a file they cannot
// read leave res as it is and are not errors; only ctx ending is.
func processVideo(ctx context.Context, path string, res *Result, lim Limits) error {
	probe, ffmpeg := lim.FFprobePath, lim.FFmpegPath
	if probe == "" {
		probe = "ffprobe"
	}
	if ffmpeg == "" {
		ffmpeg = "ffmpeg"
	}
	probe, err1 := exec.LookPath(probe)
	ffmpeg, err2 := exec.LookPath(ffmpeg)
	if err1 != nil || err2 != nil {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	// "file:" so that a name with a colon is not read as another protocol.
	input := "file:" + abs
	demuxer := videoDemuxer[res.ContentType]

	out, err := runTool(ctx, lim.FFmpegTimeout, probe, maxProbeOutput,
		"-max_alloc", maxAlloc, "-v", "error", "-protocol_whitelist", "file", "-f", demuxer,
		"-print_format", "json", "-show_format", "-show_streams", "-i", input)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return nil
	}
	w, h, dur, ok := parseProbe(out)
	if !ok {
		return nil
	}
	res.Width, res.Height, res.DurationMS = w, h, dur
	if int64(w)*int64(h) > lim.MaxPixels {
		return nil // no poster from frames larger than an image may be
	}

	side := lim.MaxThumbSide
	filter := fmt.Sprintf("scale=w=min(%d\\,iw):h=min(%d\\,ih):force_original_aspect_ratio=decrease", side, side)
	poster, err := runTool(ctx, lim.FFmpegTimeout, ffmpeg, maxPosterOutput,
		"-max_alloc", maxAlloc, "-nostdin", "-v", "error", "-threads", "1",
		"-protocol_whitelist", "file", "-f", demuxer, "-i", input,
		"-map", "0:v:0", "-frames:v", "1", "-vf", filter,
		"-f", "image2pipe", "-c:v", "png", "-pix_fmt", "rgba", "pipe:1")
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil || len(poster) == 0 {
		return nil
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(poster))
	if err != nil || cfg.Width > side+1 || cfg.Height > side+1 || cfg.Width < 1 || cfg.Height < 1 {
		return nil
	}
	img, err := png.Decode(bytes.NewReader(poster))
	if err != nil {
		return nil
	}
	return thumbnail(res, img, side)
}

// probeOutput is the part of ffprobe's JSON that processVideo reads.
type probeOutput struct {
	Streams []struct {
		CodecType string `json:"codec_type"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
		Duration  string `json:"duration"`
		Tags      struct {
			Rotate string `json:"rotate"`
		} `json:"tags"`
		SideData []struct {
			Rotation float64 `json:"rotation"`
		} `json:"side_data_list"`
	} `json:"streams"`
	Format struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

// parseProbe reads the first video stream's displayed size (rotation
// applied) and the duration in milliseconds from ffprobe's JSON.
func parseProbe(out []byte) (w, h int, durationMS int64, ok bool) {
	var p probeOutput
	if err := json.Unmarshal(out, &p); err != nil {
		return 0, 0, 0, false
	}
	for _, s := range p.Streams {
		if s.CodecType != "video" || s.Width <= 0 || s.Height <= 0 {
			continue
		}
		w, h = s.Width, s.Height
		rotation := 0.0
		if r, err := strconv.ParseFloat(s.Tags.Rotate, 64); err == nil {
			rotation = r
		}
		for _, sd := range s.SideData {
			if sd.Rotation != 0 {
				rotation = sd.Rotation
			}
		}
		if r := math.Mod(math.Abs(rotation), 180); r == 90 {
			w, h = h, w
		}
		d := p.Format.Duration
		if d == "" {
			d = s.Duration
		}
		if sec, err := strconv.ParseFloat(d, 64); err == nil && sec > 0 && sec < 1e9 {
			durationMS = int64(math.Round(sec * 1000))
		}
		return w, h, durationMS, true
	}
	return 0, 0, 0, false
}

// errOutputCap is the error of a tool that wrote more than its cap.
var errOutputCap = errors.New("output over its cap")

// runTool runs prog with args and returns its standard output, killing it
// when timeout passes, ctx ends or it writes more than maxOut bytes. It
// runs without a shell, with an empty environment, standard input from
// /dev/null and "/" as its directory.
func runTool(ctx context.Context, timeout time.Duration, prog string, maxOut int, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.WaitDelay = time.Second
	stdout := &cappedBuffer{max: maxOut, overflow: cancel}
	stderr := &cappedBuffer{max: maxToolStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if stdout.over {
		return nil, fmt.Errorf("%s: %w", filepath.Base(prog), errOutputCap)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(prog), err, bytes.TrimSpace(stderr.buf.Bytes()))
	}
	return stdout.buf.Bytes(), nil
}

// cappedBuffer keeps at most max bytes; past that it calls overflow (which
// kills the writer) and drops the rest.
type cappedBuffer struct {
	buf      bytes.Buffer
	max      int
	over     bool
	overflow func()
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.over {
		return len(p), nil
	}
	if c.buf.Len()+len(p) > c.max {
		c.over = true
		if c.overflow != nil {
			c.overflow()
		}
		return len(p), nil
	}
	return c.buf.Write(p)
}
