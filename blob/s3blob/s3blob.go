// Package s3blob is the parley.BlobStore of clusters: objects in a bucket
// of any S3-compatible object store (AWS S3, MinIO, Ceph, versitygw, ...)
// through the AWS SDK for Go v2, so every node serves every object.
//
// Objects are encrypted on the client under the master keys, as the
// filesystem engine's are (package blobcrypt: DARE 2.0 packages of 64 KiB
// under a per-object key), so neither the bucket's operator nor a leaked
// bucket sees media, and a byte range is one ranged GET of the packages
// that cover it. The object's key id and salt travel in its metadata
// (x-amz-meta-parley-seal); its body is the packages alone.
//
// Put streams: up to PartSize bytes go in one PutObject, more in a
// multipart upload of PartSize parts, one in flight (memory per Put: one
// part). A Put that fails aborts its multipart upload; one killed with
// its process leaves parts that a bucket lifecycle rule
// (AbortIncompleteMultipartUpload) should clean. Limits: 10,000 parts, so
// PartSize × 10,000 bytes an object (80 GB at the default 8 MiB).
package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/blob/internal/blobcrypt"
)

// metaSeal is the metadata field with the object's blobcrypt header.
const metaSeal = "parley-seal"

// Part sizes: S3 refuses parts under 5 MiB (except the last).
const (
	MinPartSize     = 5 << 20
	DefaultPartSize = 8 << 20
)

// Config says where the objects are.
type Config struct {
	// Bucket holds the objects; it must exist.
	Bucket string
	// Prefix is prepended to every key (e.g. "media/" to share a bucket);
	// "" for none. It ends in '/' when set through ParseURL.
	Prefix string
	// Endpoint is the S3 server's base URL ("http://127.0.0.1:7070");
	// "" for AWS S3.
	Endpoint string
	// Region; "" for the SDK's default chain (AWS_REGION, ~/.aws/config),
	// then us-east-1.
	Region string
	// PathStyle addresses the bucket in the path (endpoint/bucket/key), as
	// most self-hosted servers need, instead of in the host name.
	PathStyle bool
	// PartSize is the size of a multipart upload's parts in bytes, at
	// least MinPartSize; 0 means DefaultPartSize.
	PartSize int
	// Credentials; nil for the SDK's default chain: AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), then the shared files
	// and the instance's role.
	Credentials aws.CredentialsProvider
	// HTTPClient; nil for the SDK's.
	HTTPClient *http.Client
}

// ParseURL reads the --media-store setting of an S3 store:
//
//	s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION&path_style=true]
//
// BUCKET follows S3's naming rules (3 to 63 lowercase letters, digits,
// '-' and '.'); PREFIX, if any, is a blob key prefix (see
// parley.ValidBlobKey) and gets a trailing '/'; endpoint is an http or
// https URL without path, query or credentials; path_style is true or
// false. Unknown parameters are errors, so a typo does not pass silently.
// Credentials never go in the URL: they come from the environment.
func ParseURL(raw string) (Config, error) {
	var c Config
	if !strings.HasPrefix(raw, "s3://") {
		return c, fmt.Errorf("s3blob: %q is not an s3:// URL", raw)
	}
	rest := raw[len("s3://"):]
	rest, query, _ := strings.Cut(rest, "?")
	if strings.ContainsAny(rest, "#@%\\") {
		return c, fmt.Errorf("s3blob: the bucket and prefix of %q hold a character that is not allowed ('#', '@', '%%', '\\')", raw)
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if err := validBucket(bucket); err != nil {
		return c, err
	}
	c.Bucket = bucket
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		if err := parley.ValidBlobKey(prefix); err != nil {
			return c, fmt.Errorf("s3blob: prefix %q: %w", prefix, err)
		}
		c.Prefix = prefix + "/"
	}
	if query == "" {
		return c, nil
	}
	for field := range strings.SplitSeq(query, "&") {
		name, value, ok := strings.Cut(field, "=")
		if !ok || value == "" {
			return c, fmt.Errorf("s3blob: parameter %q has no value", name)
		}
		unescaped, err := urlUnescape(value)
		if err != nil {
			return c, fmt.Errorf("s3blob: parameter %s: %w", name, err)
		}
		switch name {
		case "endpoint":
			if c.Endpoint != "" {
				return c, errors.New("s3blob: endpoint given twice")
			}
			if err := validEndpoint(unescaped); err != nil {
				return c, err
			}
			c.Endpoint = strings.TrimSuffix(unescaped, "/")
		case "region":
			if c.Region != "" {
				return c, errors.New("s3blob: region given twice")
			}
			for _, r := range unescaped {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') || len(unescaped) > 32 {
					return c, fmt.Errorf("s3blob: region %q: lowercase letters, digits and '-' only", unescaped)
				}
			}
			c.Region = unescaped
		case "path_style":
			b, err := strconv.ParseBool(unescaped)
			if err != nil {
				return c, fmt.Errorf("s3blob: path_style %q: true or false", unescaped)
			}
			c.PathStyle = b
		default:
			return c, fmt.Errorf("s3blob: unknown parameter %q (endpoint, region, path_style)", name)
		}
	}
	return c, nil
}

func urlUnescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// validBucket applies S3's bucket naming rules.
func validBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("s3blob: bucket %q: 3 to 63 characters", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("s3blob: bucket %q: lowercase letters, digits, '-' and '.' only", b)
		}
	}
	if first, last := b[0], b[len(b)-1]; first == '-' || first == '.' || last == '-' || last == '.' || strings.Contains(b, "..") {
		return fmt.Errorf("s3blob: bucket %q: must start and end with a letter or digit, no \"..\"", b)
	}
	return nil
}

// validEndpoint accepts http(s)://host[:port][/] and nothing else.
func validEndpoint(e string) error {
	for i := 0; i < len(e); i++ {
		if c := e[i]; c < 0x21 || c > 0x7e || c == '\\' {
			return fmt.Errorf("s3blob: endpoint %q: control, space, '\\' or non-ASCII byte", e)
		}
	}
	u, err := url.Parse(e)
	if err != nil {
		return fmt.Errorf("s3blob: endpoint: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawPath != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(e, "#") {
		return fmt.Errorf("s3blob: endpoint %q: want http://host[:port] or https://host[:port], no path, query or credentials", e)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("s3blob: endpoint %q: port out of range", e)
		}
	}
	return nil
}

// Store is a parley.BlobStore over an S3 bucket. Safe for concurrent use.
type Store struct {
	client   *s3.Client
	bucket   string
	prefix   string
	partSize int
	keys     *blobcrypt.Keys
}

var _ parley.BlobStore = (*Store)(nil)

// Open returns a Store for the setting rawURL (see ParseURL) with
// credentials from the environment.
func Open(ctx context.Context, rawURL string, masterKeys [][]byte) (*Store, error) {
	c, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return New(ctx, c, masterKeys)
}

// New returns a Store for c with the given master keys (32 bytes each; the
// first seals, all of them open). It does not contact the server.
func New(ctx context.Context, c Config, masterKeys [][]byte) (*Store, error) {
	keys, err := blobcrypt.NewKeys(masterKeys)
	if err != nil {
		return nil, err
	}
	if err := validBucket(c.Bucket); err != nil {
		return nil, err
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.PartSize < MinPartSize {
		return nil, fmt.Errorf("s3blob: part size %d under S3's minimum %d", c.PartSize, MinPartSize)
	}
	var opts []func(*config.LoadOptions) error
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(c.Credentials))
	}
	if c.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(c.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3blob: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.PathStyle
		// Our packages are authenticated; CRC trailers only cost CPU and
		// trip S3-compatible servers that lack them.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &Store{client: client, bucket: c.Bucket, prefix: c.Prefix, partSize: c.PartSize, keys: keys}, nil
}

// object returns the object name of key, or ErrBlobKey.
func (s *Store) object(key string) (string, error) {
	if err := parley.ValidBlobKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// Put implements parley.BlobStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (parley.BlobInfo, error) {
	name, err := s.object(key)
	if err != nil {
		return parley.BlobInfo{}, err
	}
	h := s.keys.NewHeader()
	digest := sha256.New()
	src := &blobcrypt.SourceReader{Ctx: ctx, Src: io.TeeReader(r, digest)}
	enc, err := s.keys.Encrypt(h, key, src)
	if err != nil {
		return parley.BlobInfo{}, err
	}
	meta := map[string]string{metaSeal: h.String()}
	part := make([]byte, s.partSize)
	n, err := io.ReadFull(enc, part)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &s.bucket, Key: &name, Body: bytes.NewReader(part[:n]),
			ContentLength: aws.Int64(int64(n)), Metadata: meta,
			ContentType: aws.String("application/octet-stream"),
		})
		if err != nil {
			return parley.BlobInfo{}, s.fail(src, "put", err)
		}
	case err != nil:
		return parley.BlobInfo{}, s.fail(src, "read", err)
	default:
		if err := s.multipart(ctx, name, meta, enc, part, src); err != nil {
			return parley.BlobInfo{}, err
		}
	}
	return parley.BlobInfo{Key: key, Size: src.N, ModTime: time.Now(), SHA256: hex.EncodeToString(digest.Sum(nil))}, nil
}

// multipart uploads the object whose first part is in part, then what enc
// yields.
func (s *Store) multipart(ctx context.Context, name string, meta map[string]string, enc io.Reader, part []byte, src *blobcrypt.SourceReader) error {
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: &name, Metadata: meta, ContentType: aws.String("application/octet-stream"),
	})
	if err != nil {
		return s.fail(src, "create multipart upload", err)
	}
	completed := false
	defer func() {
		if completed {
			return
		}
		abortCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		s.client.AbortMultipartUpload(abortCtx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &name, UploadId: created.UploadId})
	}()
	var parts []types.CompletedPart
	n := len(part)
	for number := int32(1); ; number++ {
		if number > 10000 {
			return fmt.Errorf("s3blob: object over 10,000 parts of %d bytes", len(part))
		}
		up, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.bucket, Key: &name, UploadId: created.UploadId, PartNumber: aws.Int32(number),
			Body: bytes.NewReader(part[:n]), ContentLength: aws.Int64(int64(n)),
		})
		if err != nil {
			return s.fail(src, "upload part", err)
		}
		parts = append(parts, types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(number)})
		n, err = io.ReadFull(enc, part)
		if err == io.EOF {
			break
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return s.fail(src, "read", err)
		}
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &name, UploadId: created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return s.fail(src, "complete multipart upload", err)
	}
	completed = true
	return nil
}

// fail returns the source's own error if reading it failed (so a caller
// sees its client's error or ctx's), else err in context.
func (s *Store) fail(src *blobcrypt.SourceReader, what string, err error) error {
	if src.ReadErr != nil {
		return src.ReadErr
	}
	return fmt.Errorf("s3blob: %s: %w", what, err)
}

// Get implements parley.BlobStore: one GET of the packages that cover the
// range (a second request, a HEAD, only for empty ranges and ranges that
// start at the very end).
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 || length < -1 || offset > blobcrypt.MaxPlainSize || length > blobcrypt.MaxPlainSize {
		return nil, fmt.Errorf("%w: offset %d length %d", parley.ErrBlobRange, offset, length)
	}
	if length == 0 {
		return s.emptyRange(ctx, key, offset, length)
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &name}
	if offset > 0 || length > 0 {
		first := offset / blobcrypt.PayloadSize
		rng := fmt.Sprintf("bytes=%d-", first*blobcrypt.PackageSize)
		if length > 0 {
			last := (offset + length - 1) / blobcrypt.PayloadSize
			rng += strconv.FormatInt((last+1)*blobcrypt.PackageSize-1, 10)
		}
		in.Range = &rng
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if isCode(err, http.StatusRequestedRangeNotSatisfiable, "InvalidRange") {
			// The range starts at or past the last package's end: either
			// just the end of the object (an empty range) or beyond it.
			return s.emptyRange(ctx, key, offset, length)
		}
		return nil, s.notFound(key, err)
	}
	r, err := s.decrypt(out, key, offset, length)
	if err != nil {
		out.Body.Close()
		return nil, err
	}
	return r, nil
}

func (s *Store) decrypt(out *s3.GetObjectOutput, key string, offset, length int64) (io.ReadCloser, error) {
	total, start := aws.ToInt64(out.ContentLength), int64(0)
	if out.ContentRange != nil {
		var err error
		if start, total, err = parseContentRange(*out.ContentRange); err != nil {
			return nil, fmt.Errorf("s3blob: %w", err)
		}
	}
	plainSize, err := blobcrypt.PlainSize(total)
	if err != nil {
		return nil, err
	}
	sp, err := blobcrypt.SpanOf(offset, length, plainSize)
	if err != nil {
		return nil, err
	}
	if sp.Length > 0 && start != sp.CipherStart {
		return nil, fmt.Errorf("s3blob: server answered range from %d, asked from %d", start, sp.CipherStart)
	}
	h, err := blobcrypt.ParseHeaderText(out.Metadata[metaSeal])
	if err != nil {
		return nil, err
	}
	body := io.LimitReader(out.Body, sp.CipherEnd-sp.CipherStart)
	plain, err := s.keys.Decrypt(h, key, body, sp)
	if err != nil {
		return nil, err
	}
	return &readCloser{Reader: plain, Closer: out.Body}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// parseContentRange reads "bytes START-END/TOTAL".
func parseContentRange(v string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	rng, tot, ok2 := strings.Cut(rest, "/")
	first, _, ok3 := strings.Cut(rng, "-")
	if !ok || !ok2 || !ok3 {
		return 0, 0, fmt.Errorf("bad Content-Range %q", v)
	}
	if start, err = strconv.ParseInt(first, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("bad Content-Range %q", v)
	}
	if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("bad Content-Range %q", v)
	}
	return start, total, nil
}

// emptyRange answers a Get whose range holds no package: after a HEAD, an
// empty reader or the error.
func (s *Store) emptyRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	sp, err := blobcrypt.SpanOf(offset, length, info.Size)
	if err != nil {
		return nil, err
	}
	if sp.Length != 0 {
		return nil, fmt.Errorf("s3blob: the server refused a range inside the object (%d bytes at %d of %d)", sp.Length, offset, info.Size)
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// isCode reports whether err is an answer with the HTTP status or one of
// the S3 error codes.
func isCode(err error, status int, codes ...string) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == status {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		for _, c := range codes {
			if api.ErrorCode() == c {
				return true
			}
		}
	}
	return false
}

func (s *Store) notFound(key string, err error) error {
	if isCode(err, http.StatusNotFound, "NoSuchKey", "NotFound") {
		return fmt.Errorf("%w: %s", parley.ErrBlobNotFound, key)
	}
	return fmt.Errorf("s3blob: %w", err)
}

// Stat implements parley.BlobStore with a HEAD.
func (s *Store) Stat(ctx context.Context, key string) (parley.BlobInfo, error) {
	name, err := s.object(key)
	if err != nil {
		return parley.BlobInfo{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &name})
	if err != nil {
		return parley.BlobInfo{}, s.notFound(key, err)
	}
	size, err := blobcrypt.PlainSize(aws.ToInt64(out.ContentLength))
	if err != nil {
		return parley.BlobInfo{}, err
	}
	return parley.BlobInfo{Key: key, Size: size, ModTime: aws.ToTime(out.LastModified)}, nil
}

// Delete implements parley.BlobStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.object(key)
	if err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &name}); err != nil {
		if isCode(err, http.StatusNotFound, "NoSuchKey", "NotFound") {
			return nil
		}
		return fmt.Errorf("s3blob: %w", err)
	}
	return nil
}

// List implements parley.BlobStore with ListObjectsV2, a page of up to
// 1,000 objects a request. Objects under the store's prefix whose names
// are not valid keys (put there by something else) are skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(parley.BlobInfo) error) error {
	if err := parley.ValidBlobPrefix(prefix); err != nil {
		return err
	}
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3blob: list: %w", err)
		}
		for _, o := range page.Contents {
			key, ok := strings.CutPrefix(aws.ToString(o.Key), s.prefix)
			if !ok || parley.ValidBlobKey(key) != nil {
				continue
			}
			size, err := blobcrypt.PlainSize(aws.ToInt64(o.Size))
			if err != nil {
				size = -1
			}
			if err := fn(parley.BlobInfo{Key: key, Size: size, ModTime: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}
