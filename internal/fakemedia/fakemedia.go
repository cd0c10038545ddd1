// Package fakemedia is a fake of parleyd's media endpoints for unit
// tests of clients, written from docs/design/media.md: tus uploads at
// /v1/uploads (creation, HEAD, PATCH, with the Parley-Media-* headers on
// the last PATCH), GET /v1/media/{id}/info, GET /v1/media/{id} answering
// 302 to a signed link, and /m/ serving with Range. It accepts the access
// token "tok1" (and "tok2" after POST /v1/sessions/refresh), and can drop
// a connection mid-PATCH or mid-download, once, after a byte count. It is
// not the server: the real one is tested through the binaries.
package fakemedia

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// Server is a tus server at /v1/uploads and the download side of
// docs/design/media.md, written from the contract, for unit tests. It can
// drop a connection mid-PATCH or mid-download, once, after a byte count.
// Set the options before the requests they affect; read the recorded
// fields under Mu while requests may run.
type Server struct {
	t testing.TB

	Mu      sync.Mutex // guards everything below
	Uploads map[string]*Upload
	nextID  int
	token   string // the access token accepted
	Reqs    []string

	CutUploadAt   int64 // drop the connection when the upload has this many bytes (0: never)
	CutDownloadAt int64 // drop the download after this many bytes (0: never)
	cutDone       bool
	CreateErr     *Err   // refuse creations with this
	ExpireOnce    bool   // answer the next authed request with token_expired
	ChangeETag    bool   // serve resumed downloads with another ETag
	FailReason    string // if set, finished uploads end failed with this Parley-Media-Error
	LastMeta      map[string]string
	AuthOnLink    []string         // Authorization headers seen on /m/
	Messages      []parley.Message // sent with POST /v1/conversations/{id}/messages
}

// Err is a refusal: an HTTP status and the error code of its JSON body.
type Err struct {
	Status int
	Code   parley.Code
}

// Upload is one upload: its id (also the media id), the bytes received
// and the decoded Upload-Metadata.
type Upload struct {
	lock   sync.Mutex // held by a PATCH and a HEAD, as tusd's locker does
	ID     string
	length int64
	Data   []byte
	Meta   map[string]string
}

// New starts a fake server, closed when the test ends.
func New(t testing.TB) (*Server, *httptest.Server) {
	f := &Server{t: t, Uploads: map[string]*Upload{}, token: "tok1"}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// Count is the number of requests so far whose "METHOD /path" starts
// with prefix.
func (f *Server) Count(prefix string) int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	n := 0
	for _, r := range f.Reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// WriteErr answers with a Parley JSON error.
func WriteErr(w http.ResponseWriter, status int, code parley.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": string(code), "message": msg}})
}

// authed checks the bearer token; false means it answered.
func (f *Server) authed(w http.ResponseWriter, r *http.Request) bool {
	f.Mu.Lock()
	expire := f.ExpireOnce
	f.ExpireOnce = false
	tok := f.token
	f.Mu.Unlock()
	if expire {
		WriteErr(w, 401, parley.CodeTokenExpired, "expired")
		return false
	}
	if r.Header.Get("Authorization") != "Bearer "+tok {
		WriteErr(w, 401, parley.CodeUnauthorized, "bad token")
		return false
	}
	return true
}

func (f *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.Mu.Lock()
	f.Reqs = append(f.Reqs, r.Method+" "+r.URL.Path)
	f.Mu.Unlock()
	p := r.URL.Path
	switch {
	case p == "/v1/sessions/refresh" && r.Method == "POST":
		f.Mu.Lock()
		f.token = "tok2"
		f.Mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"access_token": "tok2", "refresh_token": "r2", "expires_in": 900, "user_id": "u1", "device_id": "d1"})
	case p == "/v1/uploads" && r.Method == "POST":
		f.create(w, r)
	case strings.HasPrefix(p, "/v1/uploads/"):
		if r.Header.Get("Tus-Resumable") != "1.0.0" {
			WriteErr(w, 412, parley.CodeInvalidRequest, "Tus-Resumable")
			return
		}
		if !f.authed(w, r) {
			return
		}
		f.Mu.Lock()
		up := f.Uploads[strings.TrimPrefix(p, "/v1/uploads/")]
		f.Mu.Unlock()
		if up == nil {
			WriteErr(w, 404, parley.CodeNotFound, "no such upload")
			return
		}
		up.lock.Lock()
		defer up.lock.Unlock()
		switch r.Method {
		case "HEAD":
			f.Mu.Lock()
			w.Header().Set("Upload-Offset", strconv.Itoa(len(up.Data)))
			f.Mu.Unlock()
			w.Header().Set("Upload-Length", strconv.FormatInt(up.length, 10))
			w.Header().Set("Cache-Control", "no-store")
		case "PATCH":
			f.patch(w, r, up)
		default:
			w.WriteHeader(405)
		}
	case strings.HasPrefix(p, "/v1/media/") && strings.HasSuffix(p, "/info"):
		if !f.authed(w, r) {
			return
		}
		up := f.done(strings.TrimSuffix(strings.TrimPrefix(p, "/v1/media/"), "/info"))
		if up == nil {
			WriteErr(w, 404, parley.CodeNotFound, "no such media")
			return
		}
		json.NewEncoder(w).Encode(f.attachment(up)) // bare, as parleyd answers
	case strings.HasPrefix(p, "/v1/media/"):
		if !f.authed(w, r) {
			return
		}
		id := strings.TrimPrefix(p, "/v1/media/")
		if f.done(id) == nil {
			WriteErr(w, 404, parley.CodeNotFound, "no such media")
			return
		}
		variant := r.URL.Query().Get("variant")
		if variant == "" {
			variant = "original"
		}
		w.Header().Set("Cache-Control", "private, no-store")
		http.Redirect(w, r, "/m/"+id+"/"+variant+"?exp=4102444800&sig=abc", http.StatusFound)
	case strings.HasPrefix(p, "/v1/conversations/") && strings.HasSuffix(p, "/messages") && r.Method == "POST":
		f.send(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/v1/conversations/"), "/messages"))
	case strings.HasPrefix(p, "/m/"):
		f.serveLink(w, r)
	default:
		WriteErr(w, 404, parley.CodeNotFound, "no route "+p)
	}
}

func (f *Server) done(id string) *Upload {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	up := f.Uploads[id]
	if up == nil || int64(len(up.Data)) != up.length {
		return nil
	}
	return up
}

func (f *Server) attachment(up *Upload) parley.Attachment {
	sum := sha256.Sum256(up.Data)
	return parley.Attachment{MediaID: up.ID, ContentType: up.Meta["content_type"], Size: up.length,
		SHA256: hex.EncodeToString(sum[:]), Filename: up.Meta["filename"], Width: 1024, Height: 768,
		Thumbnail: &parley.Thumbnail{Width: 320, Height: 240}, Blurhash: "LEHV6nWB2yk8pyo0adR*.7kCMdnj"}
}

func (f *Server) create(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Tus-Resumable") != "1.0.0" {
		WriteErr(w, 412, parley.CodeInvalidRequest, "Tus-Resumable")
		return
	}
	if !f.authed(w, r) {
		return
	}
	if f.CreateErr != nil {
		WriteErr(w, f.CreateErr.Status, f.CreateErr.Code, "refused")
		return
	}
	length, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
	if err != nil || length < 0 {
		WriteErr(w, 400, parley.CodeInvalidRequest, "Upload-Length")
		return
	}
	meta := map[string]string{}
	for _, kv := range strings.Split(r.Header.Get("Upload-Metadata"), ",") {
		k, v, _ := strings.Cut(kv, " ")
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			WriteErr(w, 400, parley.CodeInvalidRequest, "metadata "+k)
			return
		}
		meta[k] = string(b)
	}
	f.Mu.Lock()
	f.nextID++
	id := fmt.Sprintf("0193media%04d", f.nextID)
	f.Uploads[id] = &Upload{ID: id, length: length, Meta: meta}
	f.LastMeta = meta
	f.Mu.Unlock()
	w.Header().Set("Tus-Resumable", "1.0.0")
	w.Header().Set("Location", "/v1/uploads/"+id) // relative: the client resolves it
	w.WriteHeader(http.StatusCreated)
}

func (f *Server) patch(w http.ResponseWriter, r *http.Request, up *Upload) {
	if r.Header.Get("Content-Type") != "application/offset+octet-stream" {
		WriteErr(w, 415, parley.CodeInvalidRequest, "Content-Type")
		return
	}
	off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
	f.Mu.Lock()
	have := int64(len(up.Data))
	f.Mu.Unlock()
	if err != nil || off != have {
		WriteErr(w, 409, parley.CodeConflict, "offset mismatch")
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, rerr := r.Body.Read(buf)
		f.Mu.Lock()
		if int64(len(up.Data))+int64(n) > up.length {
			f.Mu.Unlock()
			WriteErr(w, 400, parley.CodeInvalidRequest, "past Upload-Length")
			return
		}
		up.Data = append(up.Data, buf[:n]...)
		cut := f.CutUploadAt > 0 && !f.cutDone && int64(len(up.Data)) >= f.CutUploadAt
		if cut {
			f.cutDone = true
		}
		f.Mu.Unlock()
		if cut { // the connection drops: what arrived stays, as in tusd
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				f.t.Error(err)
				return
			}
			conn.Close()
			return
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return
		}
	}
	f.Mu.Lock()
	n := int64(len(up.Data))
	f.Mu.Unlock()
	w.Header().Set("Tus-Resumable", "1.0.0")
	w.Header().Set("Upload-Offset", strconv.FormatInt(n, 10))
	if n == up.length {
		w.Header().Set("Parley-Media-Id", up.ID)
		f.Mu.Lock()
		reason := f.FailReason
		f.Mu.Unlock()
		if reason != "" {
			w.Header().Set("Parley-Media-State", "failed")
			w.Header().Set("Parley-Media-Error", reason)
		} else {
			w.Header().Set("Parley-Media-State", "ready")
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Server) serveLink(w http.ResponseWriter, r *http.Request) {
	f.Mu.Lock()
	f.AuthOnLink = append(f.AuthOnLink, r.Header.Get("Authorization"))
	f.Mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/m/"), "/")
	if len(parts) != 2 || r.URL.Query().Get("sig") != "abc" {
		WriteErr(w, 403, parley.CodeForbidden, "bad link")
		return
	}
	up := f.done(parts[0])
	if up == nil {
		WriteErr(w, 404, parley.CodeNotFound, "gone")
		return
	}
	data := up.Data
	if parts[1] == "thumbnail" {
		data = []byte("thumbnail of " + up.ID)
	}
	sum := sha256.Sum256(data)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	f.Mu.Lock()
	if f.ChangeETag && r.Header.Get("Range") != "" {
		etag = `"changed"`
	}
	cut := f.CutDownloadAt > 0 && !f.cutDone && r.Header.Get("Range") == ""
	if cut {
		f.cutDone = true
	}
	f.Mu.Unlock()
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", up.Meta["content_type"])
	w.Header().Set("Cache-Control", "public, max-age=3600, immutable")
	if cut {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(200)
		w.Write(data[:f.CutDownloadAt])
		rc := http.NewResponseController(w)
		rc.Flush()
		conn, _, err := rc.Hijack()
		if err != nil {
			f.t.Error(err)
			return
		}
		conn.Close()
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// send stores a message (REST send), filling in its attachments from the
// uploads as the server does; Messages has them.
func (f *Server) send(w http.ResponseWriter, r *http.Request, conv string) {
	if !f.authed(w, r) {
		return
	}
	var in struct {
		ClientMsgID string             `json:"client_msg_id"`
		Type        parley.MessageType `json:"type"`
		Body        string             `json:"body"`
		Attachments []struct {
			MediaID string `json:"media_id"`
		} `json:"attachments"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		WriteErr(w, 400, parley.CodeInvalidRequest, err.Error())
		return
	}
	m := parley.Message{ConversationID: conv, SenderID: "u1", SenderDeviceID: "d1", ClientMsgID: in.ClientMsgID,
		Type: in.Type, Body: in.Body, CreatedAt: time.Now()}
	for _, a := range in.Attachments {
		up := f.done(a.MediaID)
		if up == nil || up.Meta["conversation_id"] != conv {
			WriteErr(w, 400, parley.CodeInvalidRequest, "media "+a.MediaID+" cannot be attached")
			return
		}
		m.Attachments = append(m.Attachments, f.attachment(up))
	}
	f.Mu.Lock()
	m.Seq = int64(len(f.Messages) + 1)
	m.ID = fmt.Sprintf("msg%d", m.Seq)
	f.Messages = append(f.Messages, m)
	f.Mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{"message": m})
}
