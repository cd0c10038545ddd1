package process

import (
	"bytes"
	"mime"
	"net/http"
	"strings"
)

// SniffLen is how many leading bytes Sniff looks at; more are ignored.
const SniffLen = 512

// OctetStream is the type given to bytes whose type is unknown, active
// (HTML, XML, SVG: a browser could run them) or different from what the
// uploader declared.
const OctetStream = "application/octet-stream"

// Sniff returns the media type of a file from its first bytes (up to
// SniffLen): http.DetectContentType's answer refined for the containers it
// lumps together or misses: ISO-BMFF (`ftyp`: MP4, QuickTime, 3GP, M4A,
// HEIC, AVIF) and EBML (WebM or Matroska). It does not judge whether the
// type is safe to serve; Classify does.
func Sniff(head []byte) string {
	if len(head) > SniffLen {
		head = head[:SniffLen]
	}
	if len(head) >= 12 && string(head[4:8]) == "ftyp" {
		if t := ftypType(head); t != "" {
			return t
		}
	}
	if bytes.HasPrefix(head, []byte("\x1A\x45\xDF\xA3")) {
		// The EBML header's DocType element follows within a few dozen bytes.
		end := min(len(head), 64)
		if bytes.Contains(head[:end], []byte("webm")) {
			return "video/webm"
		}
		return "video/x-matroska"
	}
	return http.DetectContentType(head)
}

// ftypType names an ISO base media file from its major brand and, when that
// says nothing, its compatible brands.
func ftypType(head []byte) string {
	size := int(head[0])<<24 | int(head[1])<<16 | int(head[2])<<8 | int(head[3])
	if size < 16 || size > len(head) {
		size = len(head)
	}
	brands := []string{string(head[8:12])}
	for i := 16; i+4 <= size; i += 4 {
		brands = append(brands, string(head[i:i+4]))
	}
	for _, b := range brands {
		switch b {
		case "qt  ":
			return "video/quicktime"
		case "heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1":
			return "image/heic"
		case "avif", "avis":
			return "image/avif"
		case "M4A ", "M4B ":
			return "audio/mp4"
		case "3gp4", "3gp5", "3gp6", "3g2a":
			return "video/3gpp"
		case "isom", "iso2", "iso4", "iso5", "iso6", "mp41", "mp42", "avc1", "M4V ", "dash", "MSNV", "f4v ":
			return "video/mp4"
		}
	}
	return ""
}

// servable are the sniffed types kept as they are: formats a browser shows
// or plays without running code, and common inert documents. Everything
// else becomes OctetStream.
var servable = map[string]bool{
	"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true,
	"image/bmp": true, "image/x-icon": true, "image/heic": true, "image/avif": true,
	"video/mp4": true, "video/quicktime": true, "video/webm": true, "video/x-matroska": true,
	"video/3gpp": true, "video/avi": true,
	"audio/mp4": true, "audio/mpeg": true, "audio/wave": true, "audio/aiff": true,
	"audio/basic": true, "audio/midi": true, "application/ogg": true,
	"application/pdf": true, "application/zip": true, "application/x-gzip": true,
	"application/x-rar-compressed": true,
	"text/plain; charset=utf-8":    true, "text/plain; charset=utf-16be": true,
	"text/plain; charset=utf-16le": true,
}

// Classify decides the type a file is stored and served as, from its
// sniffed type and the type its uploader declared (which may be empty):
//
//   - a sniffed type outside a small list of passive formats (HTML, XML,
//     SVG, scripts, anything unknown) is OctetStream;
//   - a declared image/, video/ or audio/ type whose family the bytes do not
//     share (a ".jpg" that is HTML or a PDF) is OctetStream: the uploader's
//     claim is false, so the file is served as an opaque download;
//   - otherwise the sniffed type wins (a PNG declared as image/jpeg is
//     image/png).
func Classify(sniffed, declared string) string {
	if !servable[sniffed] {
		return OctetStream
	}
	if mt, _, err := mime.ParseMediaType(declared); err == nil {
		family := func(t string) string { f, _, _ := strings.Cut(t, "/"); return f }
		switch df := family(mt); df {
		case "image", "video", "audio":
			sf := family(sniffed)
			if sniffed == "application/ogg" {
				sf = df // Ogg holds audio or video
			}
			if sf != df {
				return OctetStream
			}
		}
	}
	return sniffed
}
