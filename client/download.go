package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley"
)

// Variants of a media item for Download.
const (
	VariantOriginal  = "original"
	VariantThumbnail = "thumbnail"
)

// maxDownloadRetries bounds the attempts in a row that bring no byte.
const maxDownloadRetries = 5

// Download writes a media item (variant "" or VariantOriginal, or
// VariantThumbnail) to w and returns the bytes written and the content
// type. It asks GET /v1/media/{id} (with the access token) for a signed
// link, then fetches the link without the token (it may point at a CDN
// on another host). A download cut short goes on with a Range request
// from the bytes already written, If-Range the first answer's ETag, so
// a changed file is never spliced; an expired link is asked for again.
// It gives up after 5 attempts in a row that bring no byte. On an error,
// w may hold part of the file (n says how much).
//
// A media item of an e2ee message whose key this client knows (it
// decrypted the message, or uploaded the file) is decrypted: the blob is
// downloaded to a temporary file, checked against the SHA-256 the message
// gives, and its plaintext written to w, with the real content type.
// VariantThumbnail then fetches the encrypted thumbnail's own media item.
func (c *Client) Download(ctx context.Context, mediaID, variant string, w io.Writer) (n int64, contentType string, err error) {
	if mk := c.crypt.mediaKeyOf(mediaID); mk != nil {
		return c.downloadDecrypted(ctx, mediaID, variant, mk, w)
	}
	return c.downloadPlain(ctx, mediaID, variant, w)
}

// downloadPlain downloads the stored bytes.
func (c *Client) downloadPlain(ctx context.Context, mediaID, variant string, w io.Writer) (n int64, contentType string, err error) {
	var etag string
	total := int64(-1)
	link := ""
	failures := 0
	for {
		if link == "" {
			if link, err = c.mediaLink(ctx, mediaID, variant); err != nil {
				return n, contentType, err
			}
		}
		before := n
		var done bool
		done, err = c.fetchRange(ctx, link, w, &n, &etag, &total, &contentType)
		if done {
			return n, contentType, nil
		}
		if ctx.Err() != nil {
			return n, contentType, err
		}
		var he *Error
		if errors.As(err, &he) {
			switch he.Status {
			case http.StatusForbidden, http.StatusNotFound, http.StatusGone:
				if failures == 0 || n > before { // the link may have expired: a new one
					link = ""
				} else {
					return n, contentType, err
				}
			case http.StatusPreconditionFailed:
				return n, contentType, err
			default:
				if !retryable(err) {
					return n, contentType, err
				}
			}
		} else if !retryable(err) {
			return n, contentType, err
		}
		if n > before {
			failures = 0
		}
		failures++
		if failures > maxDownloadRetries {
			return n, contentType, fmt.Errorf("download: giving up after %d failures in a row: %w", failures-1, err)
		}
		c.log.Debug("download: retrying", "written", n, "failures", failures, "err", err)
		if err := sleepCtx(ctx, backoffFor(failures)); err != nil {
			return n, contentType, err
		}
	}
}

// mediaLink asks the server for the signed link of a media variant: the
// 302's Location, resolved against the server.
func (c *Client) mediaLink(ctx context.Context, mediaID, variant string) (string, error) {
	p := "/v1/media/" + url.PathEscape(mediaID)
	if variant != "" && variant != VariantOriginal {
		p += "?variant=" + url.QueryEscape(variant)
	}
	var link string
	err := c.withRetries(ctx, 3, func(ctx context.Context, token string) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", c.cfg.Server+p, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.transfer().Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", p, err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode < 300 || resp.StatusCode >= 400 {
			if resp.StatusCode < 300 {
				return parley.Errorf(parley.CodeInternal, "GET %s: expected a redirect, got HTTP %d", p, resp.StatusCode)
			}
			return responseError(resp, data)
		}
		loc, err := resp.Location()
		if err != nil {
			return parley.Errorf(parley.CodeInternal, "GET %s: redirect without a usable Location: %v", p, err)
		}
		if loc.Scheme != "http" && loc.Scheme != "https" {
			return parley.Errorf(parley.CodeInternal, "GET %s: redirect to a %q URL", p, loc.Scheme)
		}
		link = loc.String()
		return nil
	})
	return link, err
}

// fetchRange fetches link from *n on (the whole of it when *n is 0),
// appending to w, and reports whether the file is complete.
func (c *Client) fetchRange(ctx context.Context, link string, w io.Writer, n *int64, etag *string, total *int64, contentType *string) (bool, error) {
	ctx, wd := newWatchdog(ctx, 30*time.Second)
	defer wd.stop()
	req, err := http.NewRequestWithContext(ctx, "GET", link, nil)
	if err != nil {
		return false, &permanentError{err}
	}
	// No Authorization: the link carries its own signature, and may
	// lead to another host.
	if *n > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(*n, 10)+"-")
		if *etag != "" {
			req.Header.Set("If-Range", *etag)
		}
	}
	cl := &http.Client{Transport: c.http.Transport} // follows a CDN's own redirects
	resp, err := cl.Do(req)
	if err != nil {
		return false, fmt.Errorf("GET media: %w", err)
	}
	defer resp.Body.Close()
	body := io.Reader(resp.Body)
	switch {
	case resp.StatusCode == http.StatusOK:
		tag := resp.Header.Get("ETag")
		if *n > 0 {
			// The whole file again: the server ignored Range, or the
			// file changed (If-Range did not match).
			if *etag == "" || tag != *etag {
				return false, &Error{Status: http.StatusPreconditionFailed, Code: parley.CodeConflict,
					Message: "the media changed while downloading"}
			}
			if _, err := io.CopyN(io.Discard, body, *n); err != nil {
				return false, fmt.Errorf("GET media: skipping %d bytes: %w", *n, err)
			}
		}
		*etag, *total = tag, resp.ContentLength
		*contentType = resp.Header.Get("Content-Type")
	case resp.StatusCode == http.StatusPartialContent && *n > 0:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != *n {
			return false, &permanentError{fmt.Errorf("GET media: Content-Range %q does not start at %d", resp.Header.Get("Content-Range"), *n)}
		}
		if tag := resp.Header.Get("ETag"); tag != "" && *etag != "" && tag != *etag {
			return false, &Error{Status: http.StatusPreconditionFailed, Code: parley.CodeConflict, Message: "the media changed while downloading"}
		}
		if size >= 0 {
			*total = size
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && *n > 0 && *n == *total:
		return true, nil
	default:
		data, _ := io.ReadAll(io.LimitReader(body, 64<<10))
		return false, responseError(resp, data)
	}
	buf := make([]byte, 64<<10)
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			wd.kick(0)
			k, werr := w.Write(buf[:m])
			*n += int64(k)
			if werr != nil {
				return false, &permanentError{fmt.Errorf("download: writing: %w", werr)}
			}
		}
		if rerr == io.EOF {
			if *total >= 0 && *n < *total {
				return false, fmt.Errorf("GET media: connection ended at %d of %d bytes: %w", *n, *total, io.ErrUnexpectedEOF)
			}
			return true, nil
		}
		if rerr != nil {
			return false, fmt.Errorf("GET media: reading at %d: %w", *n, rerr)
		}
	}
}

// parseContentRange reads "bytes START-END/SIZE" (SIZE may be *, then -1).
func parseContentRange(s string) (start, size int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	size = -1
	if sz != "*" {
		n, err := strconv.ParseInt(sz, 10, 64)
		if err != nil || n <= end {
			return 0, 0, false
		}
		size = n
	}
	return start, size, true
}
