package parley

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MediaState is where a media record is in its life (see Media).
type MediaState string

// Media states. An upload is created uploading; when its last byte arrives
// it is processing, then ready (its blobs are in the BlobStore) or failed
// (nothing is stored; FailReason says why). deleted is for the download
// and retention side: the record stays until its links expire.
const (
	MediaUploading  MediaState = "uploading"
	MediaProcessing MediaState = "processing"
	MediaReady      MediaState = "ready"
	MediaFailed     MediaState = "failed"
	MediaDeleted    MediaState = "deleted"
)

// Valid reports whether s is a known state.
func (s MediaState) Valid() bool {
	switch s {
	case MediaUploading, MediaProcessing, MediaReady, MediaFailed, MediaDeleted:
		return true
	}
	return false
}

// Limits on media records.
const (
	MediaFilenameMaxLen    = 255 // bytes, after SanitizeFilename
	MediaContentTypeMaxLen = 255 // bytes
	MediaFailReasonMaxLen  = 500 // bytes
)

// Media is an uploaded file (docs/design/media.md): the record the Store
// keeps for a tus upload from its creation on. ID is a UUID v7 and also the
// tus upload id and the media_id clients see. Filename is user content and
// sealed at rest like message bodies. Size and SHA256 (lower-case hex) are
// those of the stored original, after metadata stripping; DeclaredSize is
// the Upload-Length given at creation, which counts against the uploader's
// quotas until the upload is ready. ExpiresAt is when an unfinished or
// unreferenced upload is deleted (zero once a message references it,
// ConversationSeq being that message's seq).
type Media struct {
	ID               string     `json:"media_id"`
	UploaderID       string     `json:"uploader_id"`
	UploaderDeviceID string     `json:"uploader_device_id,omitempty"`
	ConversationID   string     `json:"conversation_id"`
	State            MediaState `json:"state"`
	Encrypted        bool       `json:"encrypted,omitempty"`
	ContentType      string     `json:"content_type,omitempty"`
	Filename         string     `json:"filename,omitempty"`
	Size             int64      `json:"size,omitempty"`
	SHA256           string     `json:"sha256,omitempty"`
	Width            int        `json:"width,omitempty"`
	Height           int        `json:"height,omitempty"`
	DurationMS       int64      `json:"duration_ms,omitempty"`
	ThumbWidth       int        `json:"thumb_width,omitempty"`
	ThumbHeight      int        `json:"thumb_height,omitempty"`
	ThumbType        string     `json:"thumb_type,omitempty"`
	Blurhash         string     `json:"blurhash,omitempty"`
	FailReason       string     `json:"fail_reason,omitempty"`
	DeclaredSize     int64      `json:"declared_size"`
	CreatedAt        time.Time  `json:"created_at"`
	ExpiresAt        time.Time  `json:"expires_at,omitzero"`
	ConversationSeq  int64      `json:"conversation_seq,omitempty"`
	// TusID is the tus store's id of the upload when it is not the media
	// id (tusd's s3store appends "+<multipart id>"); "" otherwise.
	TusID string `json:"-"`
}

// MediaOriginalKey is the BlobStore key of a media's stored original.
func MediaOriginalKey(id string) string { return "media/" + id + "/original" }

// MediaThumbnailKey is the BlobStore key of a media's thumbnail.
func MediaThumbnailKey(id string) string { return "media/" + id + "/thumbnail" }

// SanitizeFilename makes a client's filename safe to store and to send
// back in a Content-Disposition header: only the last path element (after
// any / or \), no control or format characters, invalid UTF-8 replaced,
// surrounding spaces and dots trimmed, at most MediaFilenameMaxLen bytes
// (cut at a character boundary). "." and ".." become "".
func SanitizeFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(name, "\uFFFD") {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '"' {
			continue
		}
		b.WriteRune(r)
	}
	name = strings.Trim(b.String(), " .")
	for len(name) > MediaFilenameMaxLen {
		_, n := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-n]
	}
	return strings.TrimRight(name, " .")
}
