package client

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/e2ee"
)

// maxMismatches bounds the device_mismatch answers one send goes through
// (each refetches the devices and redoes the keys) before it fails.
const maxMismatches = 5

// rememberUpload keeps the key and metadata of a file this client
// uploaded encrypted, so that WithAttachments(mediaID) can put them into
// the message's content.
func (x *crypt) rememberUpload(a e2ee.Attachment) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.uploads == nil {
		x.uploads = map[string]e2ee.Attachment{}
	}
	if _, ok := x.uploads[a.MediaID]; !ok && len(x.uploads) >= maxMediaKeys {
		for old := range x.uploads {
			delete(x.uploads, old)
			break
		}
	}
	x.uploads[a.MediaID] = a
	mk := &mediaKey{key: a.Key, sha256: a.SHA256, contentType: a.ContentType, size: a.Size, filename: a.Filename}
	if t := a.Thumbnail; t != nil {
		mk.thumbnail = t.MediaID
		x.putMedia(t.MediaID, &mediaKey{key: t.Key, sha256: t.SHA256, contentType: t.ContentType})
	}
	x.putMedia(a.MediaID, mk)
}

// lookupUploads returns the encrypted uploads of these media ids that
// this client knows, in order.
func (x *crypt) lookupUploads(ids []string) []e2ee.Attachment {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []e2ee.Attachment
	for _, id := range ids {
		if a, ok := x.uploads[id]; ok {
			out = append(out, a)
		}
	}
	return out
}

// resolveUploads fills p.E2EEAttachments from p's media ids: every one
// must be a file this client uploaded encrypted (its key is needed).
func (c *Client) resolveUploads(p *Pending, ids []string) error {
	if len(ids) == 0 || len(p.E2EEAttachments) == len(ids) {
		return nil
	}
	found := c.crypt.lookupUploads(ids)
	if len(found) != len(ids) {
		return parley.Errorf(parley.CodeInvalidRequest, "an attachment of an e2ee message must be uploaded encrypted by this client (UploadFile or Upload to that conversation), and its key is gone or never was here")
	}
	p.E2EEAttachments = found
	return nil
}

// kindOf is the message type a file's content type calls for.
func kindOf(contentType string) string {
	switch {
	case len(contentType) >= 6 && contentType[:6] == "image/":
		return e2ee.TypeImage
	case len(contentType) >= 6 && contentType[:6] == "video/":
		return e2ee.TypeVideo
	}
	return e2ee.TypeFile
}

// sendEncryptedREST seals p for the conversation's devices and POSTs it,
// resealing after device_mismatch; it returns the stored message,
// decrypted.
func (c *Client) sendEncryptedREST(ctx context.Context, p *Pending) (*parley.Message, error) {
	content, err := contentOf(p)
	if err != nil {
		return nil, err
	}
	s, err := c.seal(ctx, p.ConversationID, p.ClientMsgID, content, p.E2EEAttachments, false)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		m, err := c.postEncrypted(ctx, p, s)
		if parley.ErrorCode(err) != parley.CodeDeviceMismatch || attempt >= maxMismatches {
			return m, err
		}
		if s, err = c.reseal(ctx, s); err != nil {
			return nil, err
		}
	}
}

// postEncrypted sends a sealed message over REST (POST .../messages) and
// decrypts the answer with the kept content key.
func (c *Client) postEncrypted(ctx context.Context, p *Pending, s *sealed) (*parley.Message, error) {
	in := map[string]any{"client_msg_id": p.ClientMsgID, "type": parley.MessageEncrypted, "envelope": s.env}
	if p.TTL > 0 {
		in["ttl_seconds"] = int64(p.TTL / time.Second)
	}
	if refs := serverRefs(s.atts); refs != nil {
		in["attachments"] = refs
	}
	var out struct {
		Message *parley.Message `json:"message"`
	}
	if err := c.do(ctx, "POST", "/v1/conversations/"+url.PathEscape(p.ConversationID)+"/messages", true, in, &out); err != nil {
		return nil, err
	}
	if out.Message == nil {
		return nil, parley.Errorf(parley.CodeInternal, "POST messages: no message in the answer")
	}
	c.decrypt(out.Message)
	return out.Message, nil
}

// sealRetryable reports whether preparing a send may work if tried again
// (the server or the network was down), rather than never.
func sealRetryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch parley.ErrorCode(err) {
	case parley.CodeRateLimited, parley.CodeUnavailable, parley.CodeInternal, parley.CodeTokenExpired:
		return true
	}
	return retryable(err)
}
