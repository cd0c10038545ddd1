package httpapi

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley"
)

// MediaLinks signs and verifies media download links (seal.MediaLinks;
// docs/design/media.md). Safe for concurrent use.
type MediaLinks interface {
	// Sign returns the link ("/m/{media_id}/{variant}?exp=..&sig=..") to
	// variant of mediaID and when it expires.
	Sign(mediaID, variant string) (link string, exp time.Time)
	// VerifyLink checks a request's escaped path and raw query and
	// returns what the link names; an error if it is malformed, tampered
	// with or expired.
	VerifyLink(path, rawQuery string) (mediaID, variant string, exp time.Time, err error)
}

// MediaOptions enable the media download routes: GET /v1/media/{media_id}
// (token and membership, then a redirect to a signed link),
// /v1/media/{media_id}/info, and GET /m/{media_id}/{variant} (the signed
// link, no token: a CDN fetches it).
type MediaOptions struct {
	Links MediaLinks
	Blobs parley.BlobStore
}

// Media variants (the last path element of a signed link).
const (
	variantOriginal  = "original"
	variantThumbnail = "thumbnail"
)

func (h *Handler) mediaRoutes(m *http.ServeMux) {
	if h.media == nil {
		return
	}
	m.Handle("GET /v1/media/{media_id}", h.authed(h.mediaLink))
	m.Handle("GET /v1/media/{media_id}/info", h.authed(h.mediaInfo))
	m.HandleFunc("GET /m/{media_id}/{variant}", h.serveMedia)
}

// mediaLink answers GET /v1/media/{media_id}[?variant=thumbnail] for a
// member: 302 to the signed link, which the body repeats with its expiry
// (for clients that do not follow redirects). The answer is private to
// the caller and never stored: another member gets the same link, but
// only after the same check.
func (h *Handler) mediaLink(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	variant := variantOriginal
	if v := r.URL.Query(); v.Has("variant") {
		variant = v.Get("variant")
		if variant != variantOriginal && variant != variantThumbnail {
			h.writeError(w, r, parley.Errorf(parley.CodeInvalidRequest, "variant must be original or thumbnail"))
			return
		}
	}
	m, err := h.svc.MediaForMember(r.Context(), p, r.PathValue("media_id"))
	if err != nil {
		w.Header().Set("Cache-Control", "private, no-store")
		h.writeError(w, r, err)
		return
	}
	if variant == variantThumbnail && !hasThumbnail(m) {
		w.Header().Set("Cache-Control", "private, no-store")
		h.writeError(w, r, parley.Errorf(parley.CodeNotFound, "this media has no thumbnail"))
		return
	}
	link, exp := h.media.Links.Sign(m.ID, variant)
	w.Header().Set("Location", link)
	w.Header().Set("Cache-Control", "private, no-store")
	writeJSON(w, http.StatusFound, map[string]any{"url": link, "expires_at": exp.UTC()})
}

// mediaInfo answers GET /v1/media/{media_id}/info: the attachment object,
// under the same rule as the link.
func (h *Handler) mediaInfo(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	w.Header().Set("Cache-Control", "private, no-store")
	m, err := h.svc.MediaForMember(r.Context(), p, r.PathValue("media_id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, parley.AttachmentOf(m))
}

func hasThumbnail(m *parley.Media) bool {
	return !m.Encrypted && m.ThumbWidth > 0 && m.ThumbHeight > 0
}

// serveMedia answers a signed link, GET /m/{media_id}/{variant}?exp&sig:
// the signature and expiry are the whole permission (a CDN fetches it
// without a token). A tampered, malformed or expired link is 403; a media
// deleted, not ready or gone is 404; both are no-store. Otherwise the
// content, with Range support (206), a strong ETag (the original's
// SHA-256), and cacheable by anyone until the link expires: every member
// gets the same link within a bucket, so a shared cache stores it once.
func (h *Handler) serveMedia(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Security-Policy", "sandbox")
	id, variant, exp, err := h.media.Links.VerifyLink(r.URL.EscapedPath(), r.URL.RawQuery)
	if err != nil {
		h.metrics.MediaServed(r.PathValue("variant"), "forbidden", 0)
		hdr.Set("Cache-Control", "no-store")
		h.writeError(w, r, parley.Errorf(parley.CodeForbidden, "this link is not valid (tampered with or expired)"))
		return
	}
	m, err := h.svc.MediaForLink(r.Context(), id)
	if err == nil && variant == variantThumbnail && !hasThumbnail(m) {
		err = parley.Errorf(parley.CodeNotFound, "this media has no thumbnail")
	}
	if err != nil {
		if parley.ErrorCode(err) == parley.CodeNotFound {
			h.metrics.MediaServed(variant, "not_found", 0)
			err = parley.Errorf(parley.CodeNotFound, "no such media")
		}
		hdr.Set("Cache-Control", "no-store")
		h.writeError(w, r, err)
		return
	}
	key, size, contentType, etag := parley.MediaOriginalKey(m.ID), m.Size, m.ContentType, `"`+m.SHA256+`"`
	if m.Encrypted {
		contentType = "application/octet-stream"
	}
	if variant == variantThumbnail {
		key, contentType, etag = parley.MediaThumbnailKey(m.ID), m.ThumbType, `"`+m.SHA256+`-thumbnail"`
		info, err := h.media.Blobs.Stat(r.Context(), key)
		if err != nil {
			if parley.ErrorCode(err) == parley.CodeNotFound {
				h.metrics.MediaServed(variant, "not_found", 0)
			}
			hdr.Set("Cache-Control", "no-store")
			h.writeError(w, r, err)
			return
		}
		size = info.Size
	}
	if contentType == "" {
		contentType = "application/octet-stream" // never let ServeContent sniff
	}
	hdr.Set("Content-Type", contentType)
	if m.SHA256 != "" {
		hdr.Set("ETag", etag)
	}
	maxAge := int64(time.Until(exp) / time.Second)
	hdr.Set("Cache-Control", "public, max-age="+strconv.FormatInt(max(maxAge, 0), 10)+", immutable")
	if d := contentDisposition(contentType, m.Filename); d != "" {
		hdr.Set("Content-Disposition", d)
	}
	f := parley.NewBlobFile(r.Context(), h.media.Blobs, key, size)
	defer f.Close()
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", time.Time{}, f)
	outcome := "ok"
	if cw.status == http.StatusNotModified {
		outcome = "not_modified"
	} else if cw.status >= 400 {
		outcome = "error"
	}
	h.metrics.MediaServed(variant, outcome, cw.n)
}

// contentDisposition is "attachment" with the filename (RFC 6266: an ASCII
// fallback in filename, the UTF-8 name in filename*) for anything that is
// not an image or a video, so a browser saves it instead of rendering it;
// "" (inline) for images and video.
func contentDisposition(contentType, filename string) string {
	if strings.HasPrefix(contentType, "image/") || strings.HasPrefix(contentType, "video/") {
		return ""
	}
	if filename == "" {
		return "attachment"
	}
	var ascii strings.Builder
	for _, c := range filename {
		switch {
		case c < 0x20 || c == 0x7f || c == '"' || c == '\\' || c == '%' || c == ';':
			ascii.WriteByte('_')
		case c > 0x7e:
			ascii.WriteByte('_')
		default:
			ascii.WriteRune(c)
		}
	}
	if d := mime.FormatMediaType("attachment", map[string]string{"filename": filename}); d != "" && ascii.String() == filename {
		return d
	}
	return fmt.Sprintf(`attachment; filename="%s"; filename*=UTF-8''%s`, ascii.String(), rfc5987(filename))
}

// rfc5987 percent-encodes s as an RFC 5987 ext-value's value chars.
func rfc5987(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// countingWriter counts the body bytes written and keeps the status.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// countingWriter has no ReadFrom (it hides the ResponseWriter's), so
// ServeContent's copy goes through Write, which counts.
var _ io.Writer = (*countingWriter)(nil)
