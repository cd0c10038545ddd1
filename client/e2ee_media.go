package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/media/process"
)

// Attachments of e2ee conversations are encrypted on the device before
// the tus upload (encrypted=true; docs/design/e2ee.md, "Attachment
// files"): the server stores opaque bytes and never sees the file's type,
// name, size before encryption, dimensions, thumbnail or blurhash, which
// travel in the message's encrypted content. For an image, UploadFile
// makes the thumbnail and blurhash here (media/process, as the server
// does for plaintext media), strips the image's metadata, and uploads the
// thumbnail encrypted as a media item of its own.
//
// An encrypted upload does not resume across processes (its key lives in
// memory until the message is sent): UploadOptions.Resume is ignored.

// uploadFileEncrypted uploads the file at path encrypted, with the
// metadata and thumbnail media/process finds.
func (c *Client) uploadFileEncrypted(ctx context.Context, conversationID, path string, opts UploadOptions) (*UploadResult, error) {
	meta := &e2ee.Attachment{Filename: opts.Filename, ContentType: opts.ContentType}
	src := path
	var thumb []byte
	var thumbType string
	var thumbW, thumbH int
	pr, err := process.Process(ctx, path, opts.ContentType, process.Limits{})
	if err != nil {
		// A file media/process refuses (an image too large to decode) is
		// sent as it is, without preview.
		c.log.Info("parley: e2ee: no preview for the upload", "err", err)
	} else {
		defer pr.Remove()
		meta.ContentType, meta.Width, meta.Height, meta.DurationMS, meta.Blurhash = pr.ContentType, pr.Width, pr.Height, pr.DurationMS, pr.Blurhash
		if pr.CleanedPath != "" {
			src = pr.CleanedPath // without its metadata (GPS, camera), upright
		}
		thumb, thumbType, thumbW, thumbH = pr.Thumbnail, pr.ThumbnailType, pr.ThumbWidth, pr.ThumbHeight
	}
	if meta.ContentType == "" {
		meta.ContentType = "application/octet-stream"
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	res, err := c.uploadEncrypted(ctx, conversationID, f, st.Size(), opts, meta)
	if err != nil || len(thumb) == 0 {
		return res, err
	}
	tres, err := c.uploadEncrypted(ctx, conversationID, bytes.NewReader(thumb), int64(len(thumb)), UploadOptions{ChunkSize: opts.ChunkSize,
		MaxRetries: opts.MaxRetries, StallTimeout: opts.StallTimeout}, &e2ee.Attachment{ContentType: thumbType})
	if err != nil {
		return nil, fmt.Errorf("uploading the encrypted thumbnail: %w", err)
	}
	a := *res.E2EE
	a.Thumbnail = &e2ee.Thumbnail{MediaID: tres.MediaID, Key: tres.E2EE.Key, SHA256: tres.E2EE.SHA256, ContentType: thumbType, Width: thumbW, Height: thumbH}
	c.crypt.rememberUpload(a)
	res.E2EE = &a
	return res, nil
}

// uploadEncrypted encrypts size bytes of r with a fresh key (STREAM, 64
// KiB chunks), uploads the blob with encrypted=true and returns the
// upload with the attachment to put in the message's content (E2EE). The
// blob's SHA-256 is computed first (a pass over r) and checked against
// the server's.
func (c *Client) uploadEncrypted(ctx context.Context, conversationID string, r io.ReadSeeker, size int64, opts UploadOptions, meta *e2ee.Attachment) (*UploadResult, error) {
	key, err := e2ee.NewFileKey()
	if err != nil {
		return nil, err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := e2ee.EncryptFile(key, h, io.LimitReader(r, size))
	if err != nil {
		return nil, err
	}
	if n != e2ee.EncryptedFileSize(size) {
		return nil, fmt.Errorf("upload: the file is shorter than its size %d", size)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	blob, err := e2ee.NewFileEncrypter(key, r, size)
	if err != nil {
		return nil, err
	}
	up := opts
	up.Encrypted, up.ContentType, up.Filename = true, "application/octet-stream", "" // nothing readable to the server
	up.Resume, up.Fingerprint = nil, ""
	if up.Progress != nil {
		progress := opts.Progress
		up.Progress = func(sent, total int64) { progress(min(sent, size), size) }
	}
	res, err := c.uploadPlain(ctx, conversationID, blob, blob.Size(), up)
	if err != nil {
		return res, err
	}
	if a := res.Attachment; a != nil && a.SHA256 != "" && a.SHA256 != digest {
		return res, parley.Errorf(parley.CodeInternal, "upload %s: the server stored a blob of SHA-256 %s, not the %s encrypted here", res.MediaID, a.SHA256, digest)
	}
	att := *meta
	att.MediaID, att.Key, att.SHA256, att.Size = res.MediaID, key, digest, size
	c.crypt.rememberUpload(att)
	res.E2EE = &att
	return res, nil
}

// downloadDecrypted downloads an encrypted media item whose key this
// client has (from a decrypted message, or its own upload) into a
// temporary file, checks its SHA-256, and writes the plaintext to w.
func (c *Client) downloadDecrypted(ctx context.Context, mediaID, variant string, mk *mediaKey, w io.Writer) (int64, string, error) {
	if variant == VariantThumbnail {
		if mk.thumbnail == "" {
			return 0, "", parley.Errorf(parley.CodeNotFound, "media %s has no thumbnail", mediaID)
		}
		mediaID = mk.thumbnail
		if mk = c.crypt.mediaKeyOf(mediaID); mk == nil {
			return 0, "", parley.Errorf(parley.CodeNotFound, "the key of thumbnail %s is not known", mediaID)
		}
	}
	tmp, err := os.CreateTemp("", "parley-e2ee-*")
	if err != nil {
		return 0, "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	if _, _, err := c.downloadPlain(ctx, mediaID, VariantOriginal, io.MultiWriter(tmp, h)); err != nil {
		return 0, "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != mk.sha256 {
		return 0, "", parley.Errorf(parley.CodeInvalidRequest, "media %s: the blob's SHA-256 is %s, the message says %s: not decrypting it", mediaID, got, mk.sha256)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, "", err
	}
	n, err := e2ee.DecryptFile(mk.key, w, tmp)
	if err != nil {
		return n, mk.contentType, fmt.Errorf("media %s: %w", mediaID, err)
	}
	return n, mk.contentType, nil
}

// DecryptedMedia returns what this client knows of an encrypted media
// item from the message that carries it (or its own upload): the real
// content type, size and file name. ok is false when its key is not
// known here (read the message first: History or the live event).
func (c *Client) DecryptedMedia(mediaID string) (a *parley.Attachment, ok bool) {
	mk := c.crypt.mediaKeyOf(mediaID)
	if mk == nil {
		return nil, false
	}
	return &parley.Attachment{MediaID: mediaID, ContentType: mk.contentType, Size: mk.size, Filename: mk.filename, Encrypted: true}, true
}
