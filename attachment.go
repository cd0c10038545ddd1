package parley

// MaxAttachments is the most attachments one message may carry.
const MaxAttachments = 10

// Attachment is a media file as a message carries it (docs/protocol.md,
// "Attachments"): a send names only MediaID; the server fills in the rest
// from the media record when the message commits, and every reader
// (history, sync, live frames, GET of a message) gets the whole object.
// Absent fields are unknown. An encrypted attachment has only MediaID,
// Size and SHA256 of the stored (encrypted) blob, Encrypted and
// ContentType application/octet-stream: its key, the real metadata,
// thumbnail and blurhash travel inside the (encrypted) body.
//
// Push payloads never carry attachments, only the message type.
type Attachment struct {
	MediaID     string     `json:"media_id"`
	ContentType string     `json:"content_type,omitempty"`
	Size        int64      `json:"size,omitempty"`
	SHA256      string     `json:"sha256,omitempty"`
	Filename    string     `json:"filename,omitempty"`
	Width       int        `json:"width,omitempty"`
	Height      int        `json:"height,omitempty"`
	DurationMS  int64      `json:"duration_ms,omitempty"`
	Thumbnail   *Thumbnail `json:"thumbnail,omitempty"`
	Blurhash    string     `json:"blurhash,omitempty"`
	Encrypted   bool       `json:"encrypted,omitempty"`
}

// Thumbnail describes an attachment's thumbnail, downloaded as the variant
// "thumbnail" of its media.
type Thumbnail struct {
	Width  int `json:"width"`
	Height int `json:"height"`
}

// AttachmentOf returns the attachment object of a media record.
func AttachmentOf(m *Media) Attachment {
	a := Attachment{
		MediaID:     m.ID,
		ContentType: m.ContentType,
		Size:        m.Size,
		SHA256:      m.SHA256,
		Filename:    m.Filename,
		Width:       m.Width,
		Height:      m.Height,
		DurationMS:  m.DurationMS,
		Blurhash:    m.Blurhash,
		Encrypted:   m.Encrypted,
	}
	if m.ThumbWidth > 0 && m.ThumbHeight > 0 {
		a.Thumbnail = &Thumbnail{Width: m.ThumbWidth, Height: m.ThumbHeight}
	}
	if m.Encrypted {
		// The stored blob's digest stays: a receiver checks the blob
		// it downloads against it before decrypting.
		a.ContentType, a.Filename, a.Width, a.Height, a.DurationMS, a.Thumbnail, a.Blurhash =
			"application/octet-stream", "", 0, 0, 0, nil, ""
	}
	return a
}

// AttachmentRef names a media in a send request (REST and WebSocket:
// "attachments": [{"media_id": "..."}]). Other fields a client sends with it
// are ignored: the server fills them in from the media record.
type AttachmentRef struct {
	MediaID string `json:"media_id"`
}
