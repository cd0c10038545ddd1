package e2ee

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Content is the plaintext of an encrypted message: its real type, body
// and the keys and metadata of its attachments.
type Content struct {
	V           int          `json:"v"`
	Type        string       `json:"type"` // text, image, video or file
	Body        string       `json:"body"`
	Attachments []Attachment `json:"attachments,omitempty"`
}

// Attachment is an encrypted file of a message: the media item holding
// the encrypted blob, the file key, the SHA-256 (lower-case hex) of the
// encrypted blob, and the metadata the server no longer sees. Size is the
// plaintext's size.
type Attachment struct {
	MediaID     string     `json:"media_id"`
	Key         Bytes      `json:"key"`
	SHA256      string     `json:"sha256"`
	ContentType string     `json:"content_type"`
	Size        int64      `json:"size"`
	Filename    string     `json:"filename,omitempty"`
	Width       int        `json:"width,omitempty"`
	Height      int        `json:"height,omitempty"`
	DurationMS  int64      `json:"duration_ms,omitempty"`
	Blurhash    string     `json:"blurhash,omitempty"`
	Thumbnail   *Thumbnail `json:"thumbnail,omitempty"`
}

// Thumbnail is the encrypted preview of an image attachment, a media item
// of its own with its own key.
type Thumbnail struct {
	MediaID     string `json:"media_id"`
	Key         Bytes  `json:"key"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"content_type"`
	Width       int    `json:"width,omitempty"`
	Height      int    `json:"height,omitempty"`
}

// Content types.
const (
	TypeText  = "text"
	TypeImage = "image"
	TypeVideo = "video"
	TypeFile  = "file"
)

// Marshal returns the content's JSON with v set to Version.
func (c Content) Marshal() ([]byte, error) {
	c.V = Version
	if c.Type == "" {
		c.Type = TypeText
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

// ParseContent decodes a content's JSON and checks it: v = 1, a known
// type, and well-formed attachment keys and digests. Unknown fields are
// ignored.
func ParseContent(raw []byte) (*Content, error) {
	var c Content
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("e2ee: content is not JSON: %w", err)
	}
	if c.V != Version {
		return nil, fmt.Errorf("e2ee: content version %d, want %d", c.V, Version)
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Content) check() error {
	switch c.Type {
	case TypeText, TypeImage, TypeVideo, TypeFile:
	default:
		return fmt.Errorf("e2ee: content type %q", c.Type)
	}
	for i := range c.Attachments {
		a := &c.Attachments[i]
		if a.MediaID == "" {
			return errors.New("e2ee: attachment without media_id")
		}
		if err := checkFileKey(a.Key, a.SHA256); err != nil {
			return err
		}
		if a.Size < 0 {
			return errors.New("e2ee: attachment size below 0")
		}
		if t := a.Thumbnail; t != nil {
			if t.MediaID == "" {
				return errors.New("e2ee: thumbnail without media_id")
			}
			if err := checkFileKey(t.Key, t.SHA256); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkFileKey(key Bytes, digest string) error {
	if len(key) != ContentKeySize {
		return errors.New("e2ee: attachment key is not 32 bytes")
	}
	if len(digest) != 64 {
		return errors.New("e2ee: attachment sha256 is not 64 hex digits")
	}
	if _, err := hex.DecodeString(digest); err != nil {
		return errors.New("e2ee: attachment sha256 is not hex")
	}
	for _, ch := range digest {
		if ch >= 'A' && ch <= 'F' {
			return errors.New("e2ee: attachment sha256 is not lower-case hex")
		}
	}
	return nil
}
