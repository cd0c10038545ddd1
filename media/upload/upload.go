// Package upload serves resumable uploads with tus (github.com/tus/tusd/v2
// as a library) at /v1/uploads and keeps the media records they make
// (docs/design/media.md, docs/media.md).
//
// A POST creates an upload after the checks of the contract: the metadata
// decodes within its limits (ParseMetadata), Upload-Length is given and at
// most Config.MaxUploadBytes, the caller is a member of the conversation,
// and the upload fits the caller's quotas (Config.QuotaDaily over the last
// 24 h, Config.QuotaStored held now). The media id is the tus upload id, a
// UUID v7. PATCH appends, HEAD tells the offset to resume from, DELETE
// abandons the upload; only the uploader may touch an upload (others get
// 404). When the last byte arrives, the upload is processed (media/process,
// not when encrypted) on a pool of Config.Workers, its original and
// thumbnail go to the BlobStore, the tus data is deleted, and the final
// PATCH answers with Parley-Media-Id and Parley-Media-State.
//
// Limits: the quotas are checked at creation against a snapshot, so two
// creations racing may together overshoot a quota by one upload. Tus data
// (the bytes of unfinished uploads) is not encrypted at rest: it lives in
// the data directory (embedded) or under the bucket's uploads/ prefix
// (cluster) only until the upload finishes or expires. Processing copies
// the upload to a temporary file first (process.Process reads a local
// path), so a finished upload briefly takes twice its size on disk.
package upload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	expslog "golang.org/x/exp/slog"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/media/process"
)

// Defaults of Config.
const (
	DefaultMaxUploadBytes = 100 << 20
	DefaultQuotaDaily     = 1 << 30
	DefaultQuotaStored    = 5 << 30
	DefaultExpiry         = 24 * time.Hour
	DefaultWorkers        = 2
)

// Response headers of the final PATCH (and of a HEAD on a finished upload).
const (
	HeaderMediaID    = "Parley-Media-Id"
	HeaderMediaState = "Parley-Media-State"
	HeaderMediaError = "Parley-Media-Error"
)

// Config wires an Uploads. Zero limits take the defaults.
type Config struct {
	Store parley.Store
	Blobs parley.BlobStore
	// TusStore keeps the bytes of unfinished uploads: tusd's filestore
	// (embedded) or s3store (cluster). It must provide a Terminater.
	TusStore interface{ UseIn(*handler.StoreComposer) }
	// Locker locks an upload while a request works on it: tusd's
	// memorylocker or filelocker on one node, PGLocker across nodes.
	Locker handler.Locker
	// BasePath is the path the handler is mounted at; default
	// "/v1/uploads/".
	BasePath string

	MaxUploadBytes int64
	QuotaDaily     int64 // bytes created per user in the last 24 h
	QuotaStored    int64 // bytes held per user
	// Expiry is how long an unfinished or unreferenced upload lives.
	Expiry time.Duration
	// Workers bounds concurrent processing of finished uploads.
	Workers int
	// Process bounds media/process; its TempDir also holds the copy of a
	// finished upload.
	Process process.Limits
	Log     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Uploads serves /v1/uploads. Safe for concurrent use.
type Uploads struct {
	cfg      Config
	composer *handler.StoreComposer
	tus      *handler.Handler
	sem      chan struct{}
}

type principalKey struct{}

// New returns an Uploads for cfg.
func New(cfg Config) (*Uploads, error) {
	if cfg.Store == nil || cfg.Blobs == nil || cfg.TusStore == nil || cfg.Locker == nil {
		return nil, errors.New("upload: Store, Blobs, TusStore and Locker are required")
	}
	if cfg.BasePath == "" {
		cfg.BasePath = "/v1/uploads/"
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if cfg.QuotaDaily <= 0 {
		cfg.QuotaDaily = DefaultQuotaDaily
	}
	if cfg.QuotaStored <= 0 {
		cfg.QuotaStored = DefaultQuotaStored
	}
	if cfg.Expiry <= 0 {
		cfg.Expiry = DefaultExpiry
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	u := &Uploads{cfg: cfg, composer: handler.NewStoreComposer(), sem: make(chan struct{}, cfg.Workers)}
	cfg.TusStore.UseIn(u.composer)
	u.composer.UseLocker(cfg.Locker)
	if !u.composer.UsesTerminater {
		return nil, errors.New("upload: the tus store cannot terminate uploads")
	}
	tus, err := handler.NewHandler(handler.Config{
		StoreComposer:              u.composer,
		BasePath:                   cfg.BasePath,
		MaxSize:                    cfg.MaxUploadBytes,
		DisableDownload:            true,
		DisableConcatenation:       true,
		Cors:                       &handler.CorsConfig{Disable: true},
		RespectForwardedHeaders:    false,
		PreUploadCreateCallback:    u.preCreate,
		PreFinishResponseCallback:  u.preFinish,
		PreUploadTerminateCallback: u.preTerminate,
		// tusd logs through golang.org/x/exp/slog; our own log has what
		// matters (refusals are answered, failures logged below).
		Logger: expslog.New(expslog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	u.tus = tus
	return u, nil
}

// Serve answers one tus request of p (authenticated by the caller):
// POST to the base path, HEAD, PATCH or DELETE to base path + id.
func (u *Uploads) Serve(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	ctx := context.WithValue(r.Context(), principalKey{}, p)
	var m *parley.Media // the upload's record, for requests naming one
	rest := strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(u.cfg.BasePath, "/"))
	id := strings.Trim(rest, "/")
	switch {
	case id == "" && r.Method == http.MethodPost:
		if r.Header.Get("Upload-Defer-Length") != "" || r.Header.Get("Upload-Length") == "" {
			writeError(w, parley.Errorf(parley.CodeInvalidRequest, "Upload-Length is required (deferred lengths are not supported)"))
			return
		}
		n, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
		if err != nil || n < 0 {
			writeError(w, parley.Errorf(parley.CodeInvalidRequest, "Upload-Length is not a size"))
			return
		}
		if n > u.cfg.MaxUploadBytes {
			writeError(w, parley.Errorf(parley.CodePayloadTooLarge, "upload of %d bytes is over the limit of %d bytes", n, u.cfg.MaxUploadBytes))
			return
		}
	case id == "":
		writeError(w, parley.Errorf(parley.CodeNotFound, "no such route"))
		return
	default:
		var err error
		m, err = u.owned(ctx, id, p)
		if err != nil {
			writeError(w, err)
			return
		}
		if m.State != parley.MediaUploading && r.Method == http.MethodHead {
			// Finished: a client that lost the final answer learns it here.
			w.Header().Set("Tus-Resumable", "1.0.0")
			w.Header().Set("Upload-Offset", strconv.FormatInt(m.DeclaredSize, 10))
			w.Header().Set("Upload-Length", strconv.FormatInt(m.DeclaredSize, 10))
			w.Header().Set("Cache-Control", "no-store")
			setMediaHeaders(w.Header(), m)
			w.WriteHeader(http.StatusOK)
			return
		}
		if m.State != parley.MediaUploading {
			writeError(w, parley.Errorf(parley.CodeConflict, "upload %s is %s", id, m.State))
			return
		}
	}
	r = r.WithContext(ctx)
	if id == "" {
		w = &createWriter{ResponseWriter: w, u: u, ctx: ctx}
	} else if m.TusID != "" {
		r.URL.Path = strings.TrimSuffix(u.cfg.BasePath, "/") + "/" + m.TusID
		r.URL.RawPath = ""
	}
	http.StripPrefix(strings.TrimSuffix(u.cfg.BasePath, "/"), u.tus).ServeHTTP(w, r)
}

// mediaID is the media id of a tus upload id: the id itself, or its part
// before "+" (tusd's s3store appends "+<multipart id>").
func mediaID(tusID string) string {
	id, _, _ := strings.Cut(tusID, "+")
	return id
}

// tusID is the tus store's id of m's upload.
func tusID(m *parley.Media) string {
	if m.TusID != "" {
		return m.TusID
	}
	return m.ID
}

// createWriter sees a creation's 201: when the tus store's id is not the
// media id, it records it (before the client learns the upload); it
// answers with Location = the base path + the media id.
type createWriter struct {
	http.ResponseWriter
	u    *Uploads
	ctx  context.Context
	done bool
}

func (w *createWriter) WriteHeader(code int) {
	if w.done {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.done = true
	loc := w.Header().Get("Location")
	if code != http.StatusCreated || loc == "" {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	tid := loc[strings.LastIndex(loc, "/")+1:]
	id := mediaID(tid)
	if tid != id {
		_, err := w.u.cfg.Store.UpdateMedia(w.ctx, id, func(m *parley.Media) error {
			m.TusID = tid
			return nil
		})
		if err != nil {
			w.u.cfg.Log.ErrorContext(w.ctx, "recording the tus id failed", "media_id", id, "err", err)
			w.Header().Del("Location")
			status, body := errorJSON(parley.Errorf(parley.CodeUnavailable, "upload could not be recorded; try again"))
			w.Header().Set("Content-Type", "application/json")
			w.ResponseWriter.WriteHeader(status)
			_, _ = io.WriteString(w.ResponseWriter, body)
			return
		}
	}
	// A path, not tusd's absolute URL: behind a TLS-terminating proxy the
	// scheme and host tusd sees are not the client's.
	w.Header().Set("Location", w.u.cfg.BasePath+id)
	w.ResponseWriter.WriteHeader(code)
}

func (w *createWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (tusd's deadlines) reach the
// connection.
func (w *createWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// owned returns the media id if p uploaded it; CodeNotFound otherwise, the
// same for another's upload as for none.
func (u *Uploads) owned(ctx context.Context, id string, p *parley.Principal) (*parley.Media, error) {
	if !parley.ValidID(id) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such upload")
	}
	m, err := u.cfg.Store.Media(ctx, id)
	if parley.ErrorCode(err) == parley.CodeNotFound || err == nil && (m.UploaderID != p.UserID || m.State == parley.MediaDeleted) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such upload")
	}
	return m, err
}

// preCreate checks a new upload and records it (see the package doc).
func (u *Uploads) preCreate(ev handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	var none handler.FileInfoChanges
	p, _ := ev.Context.Value(principalKey{}).(*parley.Principal)
	if p == nil {
		return handler.HTTPResponse{}, none, tusError(parley.Errorf(parley.CodeUnauthorized, "missing bearer token"))
	}
	md, err := ParseMetadata(ev.HTTPRequest.Header.Get("Upload-Metadata"))
	if err != nil {
		return handler.HTTPResponse{}, none, tusError(err)
	}
	size := ev.Upload.Size
	if ev.Upload.SizeIsDeferred {
		return handler.HTTPResponse{}, none, tusError(parley.Errorf(parley.CodeInvalidRequest, "Upload-Length is required"))
	}
	if size > u.cfg.MaxUploadBytes {
		return handler.HTTPResponse{}, none, tusError(parley.Errorf(parley.CodePayloadTooLarge, "upload of %d bytes is over the limit of %d bytes", size, u.cfg.MaxUploadBytes))
	}
	ctx := ev.Context
	if _, err := u.cfg.Store.Member(ctx, md.ConversationID, p.UserID); err != nil {
		return handler.HTTPResponse{}, none, tusError(err)
	}
	now := u.cfg.Now()
	created, stored, err := u.cfg.Store.MediaUsage(ctx, p.UserID, now.Add(-24*time.Hour))
	if err != nil {
		return handler.HTTPResponse{}, none, tusError(err)
	}
	if created+size > u.cfg.QuotaDaily {
		return handler.HTTPResponse{}, none, tusError(parley.Errorf(parley.CodeLimitExceeded,
			"daily upload quota exceeded: %d of %d bytes used in the last 24 hours, this upload needs %d more", created, u.cfg.QuotaDaily, size))
	}
	if stored+size > u.cfg.QuotaStored {
		return handler.HTTPResponse{}, none, tusError(parley.Errorf(parley.CodeLimitExceeded,
			"storage quota exceeded: %d of %d bytes stored, this upload needs %d more", stored, u.cfg.QuotaStored, size))
	}
	m := &parley.Media{
		ID: parley.NewID(), UploaderID: p.UserID, UploaderDeviceID: p.DeviceID, ConversationID: md.ConversationID,
		State: parley.MediaUploading, Encrypted: md.Encrypted, ContentType: md.ContentType, Filename: md.Filename,
		DeclaredSize: size, CreatedAt: now, ExpiresAt: now.Add(u.cfg.Expiry),
	}
	if m.Encrypted {
		m.ContentType = process.OctetStream
	}
	if err := u.cfg.Store.CreateMedia(ctx, m); err != nil {
		return handler.HTTPResponse{}, none, tusError(err)
	}
	// The tus store keeps no metadata: the filename is in the (sealed)
	// record only.
	return handler.HTTPResponse{Header: handler.HTTPHeader{HeaderMediaID: m.ID}}, handler.FileInfoChanges{ID: m.ID, MetaData: handler.MetaData{}}, nil
}

// preTerminate marks an abandoned upload for the collector.
func (u *Uploads) preTerminate(ev handler.HookEvent) (handler.HTTPResponse, error) {
	_, err := u.cfg.Store.UpdateMedia(ev.Context, mediaID(ev.Upload.ID), func(m *parley.Media) error {
		m.State = parley.MediaDeleted
		m.ExpiresAt = u.cfg.Now()
		return nil
	})
	if err != nil && parley.ErrorCode(err) != parley.CodeNotFound {
		return handler.HTTPResponse{}, tusError(err)
	}
	return handler.HTTPResponse{}, nil
}

// preFinish processes a finished upload and stores its blobs, holding
// the upload's lock; it answers with the media headers.
func (u *Uploads) preFinish(ev handler.HookEvent) (handler.HTTPResponse, error) {
	ctx := ev.Context
	id := mediaID(ev.Upload.ID)
	select {
	case u.sem <- struct{}{}:
	case <-ctx.Done():
		return handler.HTTPResponse{}, tusError(parley.Errorf(parley.CodeUnavailable, "upload finished but the server is busy; HEAD it later"))
	}
	defer func() { <-u.sem }()
	m, err := u.finish(ctx, id, ev.Upload.ID)
	if err != nil {
		u.cfg.Log.ErrorContext(ctx, "upload processing failed", "media_id", id, "err", err)
		return handler.HTTPResponse{}, tusError(err)
	}
	h := http.Header{}
	setMediaHeaders(h, m)
	resp := handler.HTTPResponse{Header: handler.HTTPHeader{}}
	for k := range h {
		resp.Header[k] = h.Get(k)
	}
	return resp, nil
}

// finish is preFinish's work: it returns the record as it ends (ready or
// failed). An error is one of the server's (the upload stays uploading,
// and the collector removes it when it expires).
func (u *Uploads) finish(ctx context.Context, id, tid string) (*parley.Media, error) {
	m, err := u.cfg.Store.UpdateMedia(ctx, id, func(m *parley.Media) error {
		m.State = parley.MediaProcessing
		return nil
	})
	if err != nil {
		return nil, err
	}
	upload, err := u.composer.Core.GetUpload(ctx, tid)
	if err != nil {
		return nil, fmt.Errorf("tus upload %s: %w", tid, err)
	}
	tmp, err := u.copyOut(ctx, upload)
	if tmp != "" {
		defer os.Remove(tmp)
	}
	if err != nil {
		return nil, err
	}
	result := &process.Result{ContentType: process.OctetStream}
	var failure string
	if !m.Encrypted {
		r, err := process.Process(ctx, tmp, m.ContentType, u.cfg.Process)
		switch {
		case err == nil:
			result = r
			defer r.Remove()
		case errors.Is(err, process.ErrTooLarge) || errors.Is(err, process.ErrInvalidImage):
			failure = err.Error()
		default:
			return nil, fmt.Errorf("process %s: %w", id, err)
		}
	}
	if failure == "" {
		original := tmp
		if result.CleanedPath != "" {
			original = result.CleanedPath
		}
		info, err := u.put(ctx, parley.MediaOriginalKey(id), original)
		if err != nil {
			return nil, err
		}
		m.Size, m.SHA256 = info.Size, info.SHA256
		if result.Thumbnail != nil {
			if _, err := u.cfg.Blobs.Put(ctx, parley.MediaThumbnailKey(id), strings.NewReader(string(result.Thumbnail))); err != nil {
				return nil, fmt.Errorf("store thumbnail: %w", err)
			}
		}
	}
	m, err = u.cfg.Store.UpdateMedia(ctx, id, func(rec *parley.Media) error {
		if failure != "" {
			rec.State, rec.FailReason = parley.MediaFailed, clipReason(failure)
			return nil
		}
		rec.State = parley.MediaReady
		rec.ContentType = result.ContentType
		rec.Size, rec.SHA256 = m.Size, m.SHA256
		rec.Width, rec.Height, rec.DurationMS = result.Width, result.Height, result.DurationMS
		if result.Thumbnail != nil {
			rec.ThumbWidth, rec.ThumbHeight, rec.ThumbType = result.ThumbWidth, result.ThumbHeight, result.ThumbnailType
		}
		rec.Blurhash = result.Blurhash
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := u.terminate(ctx, upload); err != nil {
		u.cfg.Log.WarnContext(ctx, "tus data not removed; the collector will", "media_id", id, "err", err)
	}
	return m, nil
}

// copyOut copies a finished upload to a temporary file and returns its
// path (which the caller removes, also on error).
func (u *Uploads) copyOut(ctx context.Context, upload handler.Upload) (string, error) {
	f, err := os.CreateTemp(u.cfg.Process.TempDir, "parley-upload-*")
	if err != nil {
		return "", fmt.Errorf("temporary file: %w", err)
	}
	defer f.Close()
	r, err := upload.GetReader(ctx)
	if err != nil {
		return f.Name(), fmt.Errorf("read upload: %w", err)
	}
	defer r.Close()
	if _, err := io.Copy(f, r); err != nil {
		return f.Name(), fmt.Errorf("copy upload: %w", err)
	}
	return f.Name(), f.Close()
}

// put stores the file at path under key and returns what Put measured,
// checking the SHA-256 against the file's own.
func (u *Uploads) put(ctx context.Context, key, path string) (parley.BlobInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return parley.BlobInfo{}, err
	}
	defer f.Close()
	h := sha256.New()
	info, err := u.cfg.Blobs.Put(ctx, key, io.TeeReader(f, h))
	if err != nil {
		return info, fmt.Errorf("store %s: %w", key, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); info.SHA256 == "" {
		info.SHA256 = sum
	} else if info.SHA256 != sum {
		return info, fmt.Errorf("store %s: digest mismatch", key)
	}
	return info, nil
}

// terminate deletes an upload's tus data.
func (u *Uploads) terminate(ctx context.Context, upload handler.Upload) error {
	return u.composer.Terminater.AsTerminatableUpload(upload).Terminate(ctx)
}

// setMediaHeaders sets the media headers of a finished upload.
func setMediaHeaders(h http.Header, m *parley.Media) {
	h.Set(HeaderMediaID, m.ID)
	h.Set(HeaderMediaState, string(m.State))
	if m.FailReason != "" {
		h.Set(HeaderMediaError, headerSafe(m.FailReason))
	}
}

// headerSafe keeps printable ASCII only.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}

// clipReason bounds a failure reason.
func clipReason(s string) string {
	if len(s) > parley.MediaFailReasonMaxLen {
		s = strings.ToValidUTF8(s[:parley.MediaFailReasonMaxLen], "")
	}
	return s
}

// errorBody is the API's JSON error shape (as package httpapi writes it).
type errorBody struct {
	Error struct {
		Code    parley.Code `json:"code"`
		Message string      `json:"message"`
	} `json:"error"`
}

// statusFor maps the codes this package answers with to HTTP statuses
// (the same as package httpapi's table).
func statusFor(code parley.Code) int {
	switch code {
	case parley.CodeInvalidRequest:
		return http.StatusBadRequest
	case parley.CodeUnauthorized:
		return http.StatusUnauthorized
	case parley.CodeConversationNotFound, parley.CodeNotFound:
		return http.StatusNotFound
	case parley.CodeConflict, parley.CodeLimitExceeded:
		return http.StatusConflict
	case parley.CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case parley.CodeUnavailable:
		return http.StatusServiceUnavailable
	case parley.CodeForbidden, parley.CodeSuspended:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// errorJSON renders err as the API's JSON error and its status.
func errorJSON(err error) (int, string) {
	var b errorBody
	b.Error.Code = parley.ErrorCode(err)
	b.Error.Message = parley.ErrorMessage(err)
	out, _ := json.Marshal(b)
	return statusFor(b.Error.Code), string(out) + "\n"
}

// writeError answers with err in the API's JSON shape.
func writeError(w http.ResponseWriter, err error) {
	status, body := errorJSON(err)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Tus-Resumable", "1.0.0")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// tusError turns err into the error a tusd hook returns, so tusd answers
// with the API's JSON shape.
func tusError(err error) error {
	status, body := errorJSON(err)
	return handler.Error{
		ErrorCode: string(parley.ErrorCode(err)),
		Message:   parley.ErrorMessage(err),
		HTTPResponse: handler.HTTPResponse{StatusCode: status, Body: body,
			Header: handler.HTTPHeader{"Content-Type": "application/json"}},
	}
}
