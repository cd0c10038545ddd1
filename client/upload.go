package client

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/e2ee"
)

// Uploads speak tus 1.0.0 (https://tus.io/protocols/resumable-upload) with
// the creation extension, against /v1/uploads (docs/design/media.md):
// POST creates an upload of a known length, PATCH sends it in chunks, and
// after a failure HEAD says how much arrived, and the upload goes on from
// there. The last PATCH answers with the media id and state; the upload's
// URL also ends in the media id.

const tusVersion = "1.0.0"

// DefaultChunkSize is the size of one PATCH unless UploadOptions says
// otherwise.
const DefaultChunkSize = 4 << 20

// UploadOptions adjusts an upload. All fields are optional.
type UploadOptions struct {
	// Filename is shown to the other members (default: the file's base
	// name with UploadFile). The server sanitises it.
	Filename string
	// ContentType is the declared type; the server sniffs the real one
	// for plaintext media and keeps the declared one only if it matches.
	ContentType string
	// Encrypted marks a client-side encrypted blob: the server stores and
	// serves it as opaque application/octet-stream, never processing it.
	Encrypted bool
	// ChunkSize is the most bytes one PATCH carries (default
	// DefaultChunkSize). Smaller chunks lose less to a dropped connection.
	ChunkSize int64
	// Progress, if set, is called as bytes go out, with the bytes sent
	// so far and the total. After a failure it goes back to what the
	// server confirmed.
	Progress func(sent, total int64)
	// Resume keeps the upload's URL under Fingerprint, so an upload cut
	// short (even by the end of the process) goes on where it stopped
	// when started again with the same fingerprint.
	Resume ResumeStore
	// Fingerprint identifies this content for Resume. UploadFile derives
	// one from the file's absolute path, size and modification time;
	// Upload resumes across processes only with one given here (a hash
	// of the content is a good choice). It is combined with the server,
	// the user and the conversation.
	Fingerprint string
	// MaxRetries bounds the attempts in a row that make no progress
	// before the upload gives up (default 5); each waits longer
	// (exponential backoff from 500 ms to 15 s, with jitter).
	MaxRetries int
	// StallTimeout aborts a request when no byte has moved for this long
	// (default 30 s); it is then retried like any other failure.
	StallTimeout time.Duration
}

// ResumeStore keeps upload URLs across process restarts (see
// UploadOptions.Resume). Implementations must be safe for concurrent use.
type ResumeStore interface {
	// Get returns the upload URL stored under key.
	Get(key string) (uploadURL string, ok bool)
	// Set stores uploadURL under key.
	Set(key, uploadURL string) error
	// Delete forgets key (after the upload finished, or was found gone).
	Delete(key string) error
}

// FileResumeStore is a ResumeStore in one JSON file (mode 0600), written
// atomically on every change. Entries of uploads the server has expired
// are dropped when found gone.
type FileResumeStore struct {
	Path string
	mu   sync.Mutex
}

func (s *FileResumeStore) load() (map[string]string, error) {
	m := map[string]string{}
	data, err := os.ReadFile(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", s.Path, err)
		}
	}
	return m, nil
}

func (s *FileResumeStore) save(m map[string]string) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
		return err
	}
	tmp := s.Path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.Path)
}

// Get implements ResumeStore. An unreadable file counts as empty.
func (s *FileResumeStore) Get(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return "", false
	}
	u, ok := m[key]
	return u, ok
}

// Set implements ResumeStore.
func (s *FileResumeStore) Set(key, uploadURL string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		m = map[string]string{}
	}
	m[key] = uploadURL
	return s.save(m)
}

// Delete implements ResumeStore.
func (s *FileResumeStore) Delete(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return err
	}
	if _, ok := m[key]; !ok {
		return nil
	}
	delete(m, key)
	return s.save(m)
}

// UploadResult is a finished upload: its media id and state, and the
// processed attachment (from GET /v1/media/{id}/info) to send with
// WithAttachments(result.MediaID).
type UploadResult struct {
	MediaID    string
	State      string // ready (or failed: then Upload returns an error too)
	Attachment *parley.Attachment
	// Resumed: the upload went on from an earlier attempt's offset
	// (after a failure, or from the resume store).
	Resumed bool
	// E2EE is set for an upload to an e2ee conversation: the file went
	// encrypted, and this is what the message's content carries (its
	// key, digest, real metadata and thumbnail). Send it with
	// WithAttachments(MediaID) from the same Client.
	E2EE *e2ee.Attachment
}

// UploadFile uploads the file at path for a conversation (see Upload).
// Filename defaults to the file's base name. To an e2ee conversation the
// file goes encrypted, with a thumbnail and blurhash made here for an
// image (see e2ee_media.go).
func (c *Client) UploadFile(ctx context.Context, conversationID, path string, opts UploadOptions) (*UploadResult, error) {
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
		return nil, parley.Errorf(parley.CodeInvalidRequest, "%s is not a regular file", path)
	}
	if opts.Filename == "" {
		opts.Filename = filepath.Base(path)
	}
	if !opts.Encrypted {
		encrypted, err := c.isE2EE(ctx, conversationID)
		if err != nil {
			return nil, err
		}
		if encrypted {
			f.Close()
			return c.uploadFileEncrypted(ctx, conversationID, path, opts)
		}
	}
	if opts.Fingerprint == "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			abs = path
		}
		opts.Fingerprint = fmt.Sprintf("file:%s:%d:%d", abs, st.Size(), st.ModTime().UnixNano())
	}
	return c.uploadPlain(ctx, conversationID, f, st.Size(), opts)
}

// Upload uploads size bytes from r (read from its start) for a
// conversation the user is a member of, over tus at /v1/uploads: it
// creates the upload, sends it in chunks, and after a failure (a dropped
// connection, a 5xx) asks the server's offset with HEAD and goes on from
// there, up to opts.MaxRetries failures in a row without progress. It
// returns when the server has processed the upload, with the processed
// attachment. The server's refusals (not a member, too large, over
// quota) are *Error, as for other calls.
//
// To an e2ee conversation the bytes go encrypted (UploadResult.E2EE),
// unless opts.Encrypted says the caller encrypted them already; no
// thumbnail is made from a reader (UploadFile makes one).
func (c *Client) Upload(ctx context.Context, conversationID string, r io.ReadSeeker, size int64, opts UploadOptions) (*UploadResult, error) {
	if !opts.Encrypted && size >= 0 {
		encrypted, err := c.isE2EE(ctx, conversationID)
		if err != nil {
			return nil, err
		}
		if encrypted {
			ct := opts.ContentType
			if ct == "" {
				ct = "application/octet-stream"
			}
			return c.uploadEncrypted(ctx, conversationID, r, size, opts, &e2ee.Attachment{Filename: opts.Filename, ContentType: ct})
		}
	}
	return c.uploadPlain(ctx, conversationID, r, size, opts)
}

// uploadPlain uploads r's bytes as they are.
func (c *Client) uploadPlain(ctx context.Context, conversationID string, r io.ReadSeeker, size int64, opts UploadOptions) (*UploadResult, error) {
	if size < 0 {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "upload size %d is negative", size)
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 5
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 30 * time.Second
	}
	u := &uploader{c: c, conv: conversationID, r: r, size: size, opts: opts}
	return u.run(ctx)
}

type uploader struct {
	c    *Client
	conv string
	r    io.ReadSeeker
	size int64
	opts UploadOptions

	url    string // the upload's URL, once created
	reason string // Parley-Media-Error of a failed upload
	key    string // the resume store's key ("" without one)
	offset int64  // confirmed by the server
}

func (u *uploader) run(ctx context.Context) (*UploadResult, error) {
	res := &UploadResult{}
	if u.opts.Resume != nil && u.opts.Fingerprint != "" {
		u.key = resumeKey(u.c, u.conv, u.opts.Fingerprint)
		if saved, ok := u.opts.Resume.Get(u.key); ok {
			off, _, err := u.head(ctx, saved)
			switch {
			case err == nil:
				u.url, u.offset, res.Resumed = saved, off, off > 0
			case retryable(err):
				return nil, err // the server is unreachable: try again later
			default:
				// Expired, finished, or not this upload: start afresh.
				_ = u.opts.Resume.Delete(u.key)
			}
		}
	}
	if u.url == "" {
		if err := u.create(ctx); err != nil {
			return nil, err
		}
	}
	u.progress(u.offset)

	var mediaID, state string
	failures := 0
	for {
		if u.offset == u.size {
			// Done. Without the last PATCH's answer (lost, or an
			// upload finished by an earlier attempt), the upload's URL
			// names the media.
			if mediaID == "" {
				mediaID = urlBase(u.url)
			}
			break
		}
		before := u.offset
		id, st, err := u.patch(ctx)
		if err == nil {
			if id != "" {
				mediaID, state = id, st
			}
			if u.offset > before {
				failures = 0
				continue
			}
			err = fmt.Errorf("PATCH upload at %d: the server took no bytes", before)
		}
		if !retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		failures++
		if failures > u.opts.MaxRetries {
			return nil, fmt.Errorf("upload: giving up after %d failures in a row: %w", failures-1, err)
		}
		u.c.log.Debug("upload: retrying", "offset", u.offset, "failures", failures, "err", err)
		if err := sleepCtx(ctx, backoffFor(failures)); err != nil {
			return nil, err
		}
		off, _, herr := u.head(ctx, u.url)
		if herr != nil {
			if isGone(herr) {
				u.forget()
				return nil, fmt.Errorf("upload: the server no longer has it: %w", herr)
			}
			if !retryable(herr) {
				return nil, herr
			}
			continue // HEAD failed too: try again after the next wait
		}
		if off > u.offset {
			failures = 0
		}
		u.offset = off
		res.Resumed = true
		u.progress(u.offset)
	}
	u.forget()
	res.MediaID, res.State = mediaID, state
	if state == "failed" {
		reason := u.reason
		if reason == "" {
			reason = "no reason given"
		}
		return res, parley.Errorf(parley.CodeInvalidRequest, "upload %s: the server could not process it: %s", mediaID, reason)
	}
	a, err := u.c.MediaInfo(ctx, mediaID)
	if err != nil {
		return res, err
	}
	res.Attachment = a
	if res.State == "" {
		res.State = "ready"
	}
	return res, nil
}

// resumeKey is the resume store's key of an upload: the server, the
// user, the conversation and the content's fingerprint.
func resumeKey(c *Client, conv, fingerprint string) string {
	h := sha256.Sum256([]byte(c.cfg.Server + "\x00" + c.Tokens().UserID + "\x00" + conv + "\x00" + fingerprint))
	return hex.EncodeToString(h[:16])
}

func (u *uploader) forget() {
	if u.key != "" {
		_ = u.opts.Resume.Delete(u.key)
	}
}

func (u *uploader) progress(sent int64) {
	if u.opts.Progress != nil {
		u.opts.Progress(sent, u.size)
	}
}

// encodeMetadata is tus Upload-Metadata: comma-separated "key base64(value)"
// pairs, in the given order.
func encodeMetadata(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteByte(' ')
		b.WriteString(base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return b.String()
}

func (u *uploader) create(ctx context.Context) error {
	meta := encodeMetadata("conversation_id", u.conv, "filename", u.opts.Filename,
		"content_type", u.opts.ContentType, "encrypted", strconv.FormatBool(u.opts.Encrypted))
	endpoint := u.c.cfg.Server + "/v1/uploads"
	var loc string
	err := u.c.withRetries(ctx, u.opts.MaxRetries, func(ctx context.Context, token string) error {
		req, err := http.NewRequestWithContext(ctx, "POST", endpoint, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Tus-Resumable", tusVersion)
		req.Header.Set("Upload-Length", strconv.FormatInt(u.size, 10))
		req.Header.Set("Upload-Metadata", meta)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := u.c.transfer().Do(req)
		if err != nil {
			return fmt.Errorf("POST /v1/uploads: %w", err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusCreated {
			return responseError(resp, data)
		}
		l, err := resp.Location()
		if err != nil {
			return fmt.Errorf("POST /v1/uploads: no usable Location in the answer: %w", err)
		}
		loc = l.String()
		return nil
	})
	if err != nil {
		return err
	}
	u.url = loc
	if u.key != "" {
		if err := u.opts.Resume.Set(u.key, loc); err != nil {
			u.c.log.Warn("upload: saving the resume point", "err", err)
		}
	}
	return nil
}

// head returns the server's offset and length of the upload at url.
func (u *uploader) head(ctx context.Context, uploadURL string) (offset, length int64, err error) {
	err = u.c.withToken(ctx, func(ctx context.Context, token string) error {
		ctx, cancel := context.WithTimeout(ctx, u.opts.StallTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "HEAD", uploadURL, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Tus-Resumable", tusVersion)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := u.c.transfer().Do(req)
		if err != nil {
			return fmt.Errorf("HEAD upload: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return responseError(resp, nil)
		}
		offset, err = parseOffset(resp.Header.Get("Upload-Offset"))
		if err != nil {
			return err
		}
		length = -1
		if l := resp.Header.Get("Upload-Length"); l != "" {
			if length, err = parseOffset(l); err != nil {
				return err
			}
		}
		if offset > u.size || (length >= 0 && length != u.size) {
			return parley.Errorf(parley.CodeInvalidRequest, "HEAD upload: the server's upload (offset %d, length %d) is not this one of %d bytes", offset, length, u.size)
		}
		return nil
	})
	return offset, length, err
}

// patch sends one chunk from u.offset and advances it to the server's
// new offset. It returns the media id and state when the server gave
// them (on the last chunk).
func (u *uploader) patch(ctx context.Context) (mediaID, state string, err error) {
	n := min(u.opts.ChunkSize, u.size-u.offset)
	err = u.c.withToken(ctx, func(ctx context.Context, token string) error {
		if _, err := u.r.Seek(u.offset, io.SeekStart); err != nil {
			return &permanentError{fmt.Errorf("upload: seeking to %d: %w", u.offset, err)}
		}
		ctx, w := newWatchdog(ctx, u.opts.StallTimeout)
		defer w.stop()
		body := &progressReader{r: io.LimitReader(u.r, n), w: w, base: u.offset, report: u.progress, eofTimeout: 5 * time.Minute}
		req, err := http.NewRequestWithContext(ctx, "PATCH", u.url, body)
		if err != nil {
			return err
		}
		req.ContentLength = n
		if n == 0 {
			req.Body = http.NoBody
		}
		req.Header.Set("Tus-Resumable", tusVersion)
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		req.Header.Set("Upload-Offset", strconv.FormatInt(u.offset, 10))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := u.c.transfer().Do(req)
		readErr := body.close() // the transport may still read it after Do
		if err != nil {
			if readErr != nil { // reading the file failed: no retry helps
				return &permanentError{readErr}
			}
			return fmt.Errorf("PATCH upload at %d: %w", u.offset, err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
			return responseError(resp, data)
		}
		off, err := parseOffset(resp.Header.Get("Upload-Offset"))
		if err != nil {
			return err
		}
		if off < u.offset || off > u.size {
			return parley.Errorf(parley.CodeInvalidRequest, "PATCH upload: the server's offset %d is outside %d-%d", off, u.offset, u.size)
		}
		u.offset = off
		mediaID, state = resp.Header.Get("Parley-Media-Id"), resp.Header.Get("Parley-Media-State")
		u.reason = resp.Header.Get("Parley-Media-Error")
		return nil
	})
	return mediaID, state, err
}

// urlBase is the last path segment of a URL: the media id of an upload.
func urlBase(s string) string {
	if u, err := url.Parse(s); err == nil {
		return path.Base(u.Path)
	}
	return path.Base(s)
}

func parseOffset(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, parley.Errorf(parley.CodeInvalidRequest, "upload: bad offset %q from the server", s)
	}
	return n, nil
}

// MediaInfo returns a media item's attachment object, with the fields
// processing filled in (GET /v1/media/{id}/info).
func (c *Client) MediaInfo(ctx context.Context, mediaID string) (*parley.Attachment, error) {
	var raw json.RawMessage
	if err := c.do(ctx, "GET", "/v1/media/"+url.PathEscape(mediaID)+"/info", true, nil, &raw); err != nil {
		return nil, err
	}
	return decodeAttachment(raw)
}

// decodeAttachment reads an attachment object, bare or wrapped as
// {"attachment": {...}} or {"media": {...}}.
func decodeAttachment(raw []byte) (*parley.Attachment, error) {
	var wrapped struct {
		Attachment *parley.Attachment `json:"attachment"`
		Media      *parley.Attachment `json:"media"`
	}
	if err := json.Unmarshal(raw, &wrapped); err != nil {
		return nil, fmt.Errorf("media info: %w", err)
	}
	a := wrapped.Attachment
	if a == nil {
		a = wrapped.Media
	}
	if a == nil {
		a = new(parley.Attachment)
		if err := json.Unmarshal(raw, a); err != nil {
			return nil, fmt.Errorf("media info: %w", err)
		}
	}
	if a.MediaID == "" {
		return nil, parley.Errorf(parley.CodeInternal, "media info: no media_id in the answer")
	}
	return a, nil
}

// transfer is the HTTP client for uploads and downloads: the configured
// transport, no overall timeout (a large file takes long; stalls are
// caught by a watchdog instead), and redirects not followed.
func (c *Client) transfer() *http.Client {
	return &http.Client{Transport: c.http.Transport, Jar: c.http.Jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// withToken runs one authenticated request, and once more after a
// refresh when the token had expired, as do does for JSON calls.
func (c *Client) withToken(ctx context.Context, fn func(ctx context.Context, token string) error) error {
	for attempt := 0; ; attempt++ {
		token, err := c.accessToken(ctx)
		if err != nil {
			return err
		}
		err = fn(ctx, token)
		if attempt == 0 && (parley.ErrorCode(err) == parley.CodeTokenExpired) {
			if err := c.Refresh(ctx); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

// withRetries is withToken, retrying retryable failures up to max times
// with backoff (for requests that are safe to repeat).
func (c *Client) withRetries(ctx context.Context, max int, fn func(ctx context.Context, token string) error) error {
	for failures := 0; ; failures++ {
		err := c.withToken(ctx, fn)
		if err == nil || !retryable(err) || failures >= max || ctx.Err() != nil {
			return err
		}
		if err := sleepCtx(ctx, backoffFor(failures+1)); err != nil {
			return err
		}
	}
}

// permanentError is a failure no retry can fix (the local file).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// retryable: a network failure, a 5xx, a rate limit, or a tus conflict
// (409 offset mismatch, 423 locked) — not a refusal that will repeat.
func retryable(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) {
		return false
	}
	var he *Error
	if errors.As(err, &he) {
		switch {
		case he.Status >= 500, he.Status == http.StatusLocked, he.Status == http.StatusTooManyRequests:
			return true
		case he.Status == http.StatusConflict:
			return he.Code != parley.CodeLimitExceeded // a quota does not pass by retrying
		}
		return false
	}
	var bad *parley.Error
	return !errors.As(err, &bad) // a transport error
}

// isGone: the upload does not exist (any more).
func isGone(err error) bool {
	var he *Error
	return errors.As(err, &he) && (he.Status == http.StatusNotFound || he.Status == http.StatusGone)
}

func backoffFor(failures int) time.Duration {
	d := 500 * time.Millisecond << min(failures-1, 5)
	d = min(d, 15*time.Second)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watchdog cancels a request's context when no byte has moved for its
// timeout.
type watchdog struct {
	t      *time.Timer
	d      time.Duration
	cancel context.CancelFunc
	mu     sync.Mutex
}

func newWatchdog(ctx context.Context, d time.Duration) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{d: d}
	w.cancel = func() { cancel(nil) }
	w.t = time.AfterFunc(d, func() { cancel(fmt.Errorf("no progress for %s", d)) })
	return ctx, w
}

// kick restarts the timer, for d (or the default when 0).
func (w *watchdog) kick(d time.Duration) {
	if d == 0 {
		d = w.d
	}
	w.mu.Lock()
	w.t.Reset(d)
	w.mu.Unlock()
}

func (w *watchdog) stop() {
	w.t.Stop()
	w.cancel()
}

// progressReader is a request body that reports progress and keeps the
// watchdog fed; at its end the watchdog allows eofTimeout for the answer
// (the last chunk's answer waits for processing).
type progressReader struct {
	r          io.Reader
	w          *watchdog
	base, n    int64
	report     func(int64)
	eofTimeout time.Duration
	mu         sync.Mutex
	closed     bool
	err        error // a read error of the source
}

// close ends reading (so that the source can be read elsewhere) and
// returns the source's read error, if any.
func (p *progressReader) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return p.err
}

func (p *progressReader) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, errors.New("upload chunk: body already closed")
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	if n > 0 {
		p.w.kick(0)
		p.report(p.base + p.n)
	}
	if err == io.EOF {
		p.w.kick(p.eofTimeout)
	} else if err != nil {
		p.err = err
	}
	return n, err
}
