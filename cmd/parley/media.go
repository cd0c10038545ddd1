package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// sendFile uploads a file (resumably: an interrupted send-file goes on
// where it stopped when run again) and sends a message carrying it.
func (k *cli) sendFile(ctx context.Context, args []string) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	var caption, ctype, name string
	var ttl time.Duration
	var chunkMiB int
	pos, err := k.flags("send-file", args, func(fs *flag.FlagSet) {
		fs.StringVar(&caption, "caption", "", "text sent with the file")
		fs.StringVar(&ctype, "type", "", "content type to declare (default: from the file name; the server checks it)")
		fs.StringVar(&name, "name", "", "file name shown to the others (default: the file's)")
		fs.DurationVar(&ttl, "ttl", 0, "the message expires after this long")
		fs.IntVar(&chunkMiB, "chunk-mib", 4, "upload chunk size in MiB")
	})
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError("send-file CONV PATH [--caption TEXT] [--type TYPE] [--name NAME]")
	}
	if chunkMiB < 1 {
		return usageError("send-file: --chunk-mib must be at least 1")
	}
	conv, err := k.resolveConv(ctx, pos[0])
	if err != nil {
		return err
	}
	if ctype == "" {
		ctype = mime.TypeByExtension(strings.ToLower(filepath.Ext(pos[1])))
	}
	bar := k.progressBar(filepath.Base(pos[1]))
	res, err := k.c.UploadFile(ctx, conv, pos[1], client.UploadOptions{
		Filename: name, ContentType: ctype, ChunkSize: int64(chunkMiB) << 20, Progress: bar.update,
		Resume: &client.FileResumeStore{Path: filepath.Join(k.configDir, "uploads.json")},
	})
	bar.done(err)
	if err != nil {
		return err
	}
	shown := res.Attachment
	if a := res.E2EE; a != nil { // encrypted: the real metadata is ours
		shown = &parley.Attachment{MediaID: a.MediaID, ContentType: a.ContentType, Size: a.Size, Filename: a.Filename, Width: a.Width,
			Height: a.Height, DurationMS: a.DurationMS, Encrypted: true}
	}
	m, err := k.c.SendREST(ctx, conv, caption, client.WithType(messageTypeFor(shown)),
		client.WithAttachments(res.MediaID), client.WithTTL(ttl))
	if err != nil {
		return fmt.Errorf("uploaded as %s, but sending failed: %w", res.MediaID, err)
	}
	return k.print(map[string]any{"message": m}, func(w io.Writer) {
		fmt.Fprintf(w, "sent: %s seq %d %s\n", conv, m.Seq, formatAttachment(shown))
	})
}

// messageTypeFor is the message type that renders an attachment.
func messageTypeFor(a *parley.Attachment) parley.MessageType {
	switch attachmentKind(a) {
	case "image":
		return parley.MessageImage
	case "video":
		return parley.MessageVideo
	}
	return parley.MessageFile
}

func attachmentKind(a *parley.Attachment) string {
	switch {
	case strings.HasPrefix(a.ContentType, "image/"): // an encrypted one's stored type is application/octet-stream
		return "image"
	case strings.HasPrefix(a.ContentType, "video/"):
		return "video"
	}
	return "file"
}

// formatAttachment is an attachment in one line of text:
// [image 1024x768 photo.jpg ID], [video 1920x1080 12.5s clip.mp4 ID],
// [file 2.1 MB report.pdf ID]. Fields the server did not give are left
// out; the file name is cleaned of control characters (terminal escapes).
func formatAttachment(a *parley.Attachment) string {
	kind := attachmentKind(a)
	parts := []string{kind}
	if kind != "file" && a.Width > 0 && a.Height > 0 {
		parts = append(parts, fmt.Sprintf("%dx%d", a.Width, a.Height))
	}
	if kind == "video" && a.DurationMS > 0 {
		parts = append(parts, fmt.Sprintf("%.1fs", float64(a.DurationMS)/1000))
	}
	if kind == "file" && a.Size > 0 {
		parts = append(parts, humanBytes(a.Size))
	}
	if n := printable(a.Filename); n != "" {
		parts = append(parts, n)
	}
	parts = append(parts, printable(a.MediaID))
	return "[" + strings.Join(parts, " ") + "]"
}

// printable drops control and format characters and turns spaces into
// ordinary ones, so that a name from the server prints as it is.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case unicode.IsSpace(r):
			return ' '
		case r == utf8.RuneError, unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return -1
		}
		return r
	}, s)
}

func humanBytes(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1000)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}

// download saves a media item. The default name is the attachment's
// file name, sanitised, in the current directory; an existing file is
// never overwritten without --force. PATH may be a directory, or - for
// stdout. The file is written under a temporary name and appears whole
// (mode 0600: chat media is private by default).
func (k *cli) download(ctx context.Context, args []string) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	var thumb, force bool
	var convRef string
	pos, err := k.flags("download", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&thumb, "thumbnail", false, "the thumbnail instead of the original")
		fs.BoolVar(&force, "force", false, "overwrite an existing file")
		fs.StringVar(&convRef, "conv", "", "CONV: the e2ee conversation the media was sent in (its key is read from the message)")
	})
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageError("download MEDIA_ID [PATH] [--thumbnail] [--force] [--conv CONV]")
	}
	id := pos[0]
	if convRef != "" {
		if err := k.findMediaKey(ctx, convRef, id); err != nil {
			return err
		}
	}
	variant := client.VariantOriginal
	if thumb {
		variant = client.VariantThumbnail
	}
	if len(pos) == 2 && pos[1] == "-" {
		n, ct, err := k.c.Download(ctx, id, variant, k.stdout)
		if err != nil {
			return err
		}
		fmt.Fprintf(k.stderr, "parley: %s bytes of %s\n", humanBytes(n), ct)
		return nil
	}
	dest := ""
	if len(pos) == 2 {
		dest = pos[1]
	}
	named := false // the name is ours: a thumbnail's extension follows its type
	total := int64(-1)
	if dest == "" || isDir(dest) {
		named = true
		// The name comes from the attachment (its info); without it,
		// the media id.
		var a *parley.Attachment
		if known, ok := k.c.DecryptedMedia(id); ok {
			a = known
			if !thumb && a.Size > 0 {
				total = a.Size
			}
		} else if info, err := k.c.MediaInfo(ctx, id); err == nil {
			a = info
			if !thumb && a.Size > 0 {
				total = a.Size
			}
		}
		dest = filepath.Join(dest, defaultFilename(id, a, thumb))
	}
	if !force && !(named && thumb) {
		if _, err := os.Lstat(dest); err == nil {
			return parley.Errorf(parley.CodeConflict, "%s exists (--force overwrites it)", dest)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".parley-download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename it is gone already
	bar := k.progressBar(filepath.Base(dest))
	n, ct, err := k.c.Download(ctx, id, variant, &countingWriter{w: tmp, report: func(n int64) { bar.update(n, total) }})
	bar.done(err)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if named && thumb {
		dest = strings.TrimSuffix(dest, filepath.Ext(dest)) + thumbnailExt(ct)
	}
	if force {
		err = os.Rename(tmp.Name(), dest)
	} else if err = os.Link(tmp.Name(), dest); errors.Is(err, os.ErrExist) { // never replaces a file that appeared meanwhile
		err = parley.Errorf(parley.CodeConflict, "%s exists (--force overwrites it)", dest)
	}
	if err != nil {
		return err
	}
	return k.print(map[string]any{"media_id": id, "path": dest, "bytes": n, "content_type": ct}, func(w io.Writer) {
		fmt.Fprintf(w, "saved %s (%s, %s)\n", dest, humanBytes(n), ct)
	})
}

// thumbnailExt is the extension of a thumbnail of this content type
// (the server makes JPEG, or PNG for transparent images).
func thumbnailExt(contentType string) string {
	switch strings.TrimSpace(strings.Split(contentType, ";")[0]) {
	case "image/png":
		return ".png"
	case "image/webp":
		return ".webp"
	case "image/gif":
		return ".gif"
	}
	return ".jpg"
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// defaultFilename is a safe local name for a media item: the
// attachment's file name without any directory, control characters,
// leading dots or characters that are special on common filesystems, at
// most 200 bytes; the media id when nothing is left.
func defaultFilename(id string, a *parley.Attachment, thumb bool) string {
	name := ""
	if a != nil {
		name = sanitizeFilename(a.Filename)
	}
	if name == "" {
		name = sanitizeFilename(id)
		if name == "" {
			name = "download"
		}
		if a != nil && !thumb {
			if exts, _ := mime.ExtensionsByType(a.ContentType); len(exts) > 0 {
				name += exts[0]
			}
		}
	}
	if thumb {
		ext := filepath.Ext(name)
		name = strings.TrimSuffix(name, ext) + ".thumbnail.jpg"
	}
	return name
}

func sanitizeFilename(s string) string {
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		s = s[i+1:]
	}
	s = strings.Map(func(r rune) rune {
		switch {
		case r == utf8.RuneError, unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return -1
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		case unicode.IsSpace(r):
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(strings.TrimLeft(s, ". "))
	for len(s) > 200 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return strings.TrimSpace(s)
}

type countingWriter struct {
	w      io.Writer
	n      int64
	report func(int64)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.report(c.n)
	return n, err
}

// progress shows a transfer's progress on stderr: a bar redrawn in
// place on a terminal, a plain line every 10% otherwise (stdout, and
// so --json's output, is left alone).
type progress struct {
	k      *cli
	label  string
	tty    bool
	mu     sync.Mutex
	last   time.Time
	decile int64
	start  time.Time
	drawn  bool
}

func (k *cli) progressBar(label string) *progress {
	return &progress{k: k, label: printable(label), tty: isTerminal(k.stderr), decile: -1, start: time.Now()}
}

// update reports sent of total bytes (total -1: unknown).
func (p *progress) update(sent, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		if now := time.Now(); now.Sub(p.last) < 100*time.Millisecond && sent != total {
			return
		} else {
			p.last = now
		}
		rate := float64(sent) / max(time.Since(p.start).Seconds(), 0.001)
		if total > 0 {
			const width = 30
			fill := int(sent * width / total)
			fmt.Fprintf(p.k.stderr, "\r%s [%s%s] %3d%% %s/%s %s/s ", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
				sent*100/total, humanBytes(sent), humanBytes(total), humanBytes(int64(rate)))
		} else {
			fmt.Fprintf(p.k.stderr, "\r%s %s %s/s ", p.label, humanBytes(sent), humanBytes(int64(rate)))
		}
		p.drawn = true
		return
	}
	if total <= 0 {
		return
	}
	if d := sent * 10 / total; d != p.decile {
		p.decile = d
		fmt.Fprintf(p.k.stderr, "parley: %s: %d%% (%s of %s)\n", p.label, d*10, humanBytes(sent), humanBytes(total))
	}
}

// done ends the bar's line.
func (p *progress) done(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		if err != nil {
			fmt.Fprintln(p.k.stderr, "failed")
		} else {
			fmt.Fprintln(p.k.stderr, "done")
		}
	}
}
