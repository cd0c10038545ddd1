package seal

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// mediaLinkKeyInfo is the HKDF info that derives the media link key from a
// master key: the same master key, another key (see dataKeyInfo).
const mediaLinkKeyInfo = "parley media links v1"

// Media variants a link may name.
const (
	MediaOriginal  = "original"
	MediaThumbnail = "thumbnail"
)

// MediaLinkPrefix is the path under which signed media links are served.
const MediaLinkPrefix = "/m/"

// Errors of ParseMediaLink and Verify. All of them are answered alike
// (403): a client learns nothing from which one it was.
var (
	ErrMediaLinkMalformed = errors.New("seal: malformed media link")
	ErrMediaLinkExpired   = errors.New("seal: media link expired")
	ErrMediaLinkSignature = errors.New("seal: media link signature does not verify")
)

// MediaLinks signs and verifies the links under which media are
// downloaded without a token (GET /m/{media_id}/{variant}?exp=..&sig=..,
// served to anyone holding the link, a CDN included):
//
//	sig = base64url(HMAC-SHA256(K, "parley media link" 0 media_id 0 variant 0 exp))
//
// where K = HKDF-SHA256(master key, info "parley media links v1") and exp is
// a Unix time in seconds, decimal. Sign uses the first master key; Verify
// accepts a signature under any of them, so links signed before a rotation
// keep working until they expire (the rotation procedure in
// docs/operations.md applies as it is).
//
// exp is rounded up to a multiple of the bucket: every member asking for a
// media within one bucket gets the same URL, so a cache keyed on the URL
// stores it once. A link is valid for at least TTL and at most TTL+Bucket.
// Links cannot be revoked one by one: a member removed from a conversation
// gets no new link, but one already handed out works until it expires
// (TTL+Bucket at most, 2 h by default).
//
// A MediaLinks is immutable and safe for concurrent use.
type MediaLinks struct {
	keys   [][]byte // derived, the signing one first
	ttl    time.Duration
	bucket time.Duration
	now    func() time.Time
}

// MediaLinkOptions configure MediaLinks. Zero values mean the defaults.
type MediaLinkOptions struct {
	// TTL is how long a new link is valid at least. Default 1h.
	TTL time.Duration
	// Bucket is what exp is rounded up to a multiple of. Default 1h; at
	// least 1s (exp has a resolution of seconds).
	Bucket time.Duration
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// NewMediaLinks returns MediaLinks under masterKeys (the first one signs,
// all of them verify). It fails like NewKeyring on bad keys, and on a
// bucket under a second.
func NewMediaLinks(masterKeys [][]byte, opts MediaLinkOptions) (*MediaLinks, error) {
	if len(masterKeys) == 0 {
		return nil, errors.New("seal: no master key")
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Hour
	}
	if opts.Bucket == 0 {
		opts.Bucket = time.Hour
	}
	if opts.Bucket < time.Second {
		return nil, fmt.Errorf("seal: media link bucket %v is under a second", opts.Bucket)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &MediaLinks{ttl: opts.TTL, bucket: opts.Bucket.Truncate(time.Second), now: opts.Now}
	seen := make(map[uint32]bool, len(masterKeys))
	for i, master := range masterKeys {
		if len(master) != MasterKeySize {
			return nil, fmt.Errorf("seal: master key %d is %d bytes, want %d", i+1, len(master), MasterKeySize)
		}
		id := keyID(master)
		if seen[id] {
			return nil, fmt.Errorf("seal: master key %d repeats an earlier key", i+1)
		}
		seen[id] = true
		key, err := hkdf.Key(sha256.New, master, nil, mediaLinkKeyInfo, sha256.Size)
		if err != nil {
			return nil, fmt.Errorf("seal: derive key: %w", err)
		}
		l.keys = append(l.keys, key)
	}
	return l, nil
}

// Expiry returns the exp a link signed now gets: now+TTL rounded up to a
// multiple of the bucket (Unix time).
func (l *MediaLinks) Expiry() time.Time {
	b := int64(l.bucket / time.Second)
	end := l.now().Add(l.ttl)
	t := end.Unix() // rounds down: a fraction of a second rounds up below
	if end.Nanosecond() > 0 {
		t++
	}
	return time.Unix((t+b-1)/b*b, 0)
}

// Sign returns the link to variant of mediaID (a path with its query,
// "/m/{media_id}/{variant}?exp=..&sig=..") and when it expires. mediaID and
// variant are put into the path as they are: the caller passes a valid id
// and one of the variants.
func (l *MediaLinks) Sign(mediaID, variant string) (link string, exp time.Time) {
	exp = l.Expiry()
	e := exp.Unix()
	return MediaLinkPrefix + mediaID + "/" + variant + "?exp=" + strconv.FormatInt(e, 10) + "&sig=" + l.sign(l.keys[0], mediaID, variant, e), exp
}

func (l *MediaLinks) sign(key []byte, mediaID, variant string, exp int64) string {
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(mac(key, mediaID, variant, exp, sum[:0]))
}

func mac(key []byte, mediaID, variant string, exp int64, out []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("parley media link\x00"))
	h.Write([]byte(mediaID))
	h.Write([]byte{0})
	h.Write([]byte(variant))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, exp, 10))
	return h.Sum(out)
}

// MediaLink is a parsed link; it says nothing until Verify accepts it.
type MediaLink struct {
	MediaID string
	Variant string
	Exp     time.Time
	Sig     []byte
}

// maxMediaIDLen bounds the media id of a link (a UUID is 36 bytes).
const maxMediaIDLen = 64

// ParseMediaLink reads a link's path ("/m/{media_id}/{variant}", the path
// as received, not unescaped) and raw query ("exp=..&sig=..", each exactly
// once, nothing else). The media id is 1 to 64 bytes of ASCII letters,
// digits and '-'; the variant is MediaOriginal or MediaThumbnail; exp is
// decimal digits (no sign); sig is 43 bytes of unpadded base64url (32
// bytes). Anything else is ErrMediaLinkMalformed.
func ParseMediaLink(path, rawQuery string) (MediaLink, error) {
	var link MediaLink
	rest, ok := strings.CutPrefix(path, MediaLinkPrefix)
	if !ok {
		return link, fmt.Errorf("%w: path outside %s", ErrMediaLinkMalformed, MediaLinkPrefix)
	}
	id, variant, ok := strings.Cut(rest, "/")
	if !ok || !validMediaID(id) {
		return link, fmt.Errorf("%w: bad media id", ErrMediaLinkMalformed)
	}
	if variant != MediaOriginal && variant != MediaThumbnail {
		return link, fmt.Errorf("%w: unknown variant", ErrMediaLinkMalformed)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil || len(q) != 2 || len(q["exp"]) != 1 || len(q["sig"]) != 1 {
		return link, fmt.Errorf("%w: the query must be exp and sig, once each", ErrMediaLinkMalformed)
	}
	expText, sigText := q.Get("exp"), q.Get("sig")
	if expText == "" || len(expText) > 19 || strings.TrimLeft(expText, "0123456789") != "" {
		return link, fmt.Errorf("%w: bad exp", ErrMediaLinkMalformed)
	}
	exp, err := strconv.ParseInt(expText, 10, 64)
	if err != nil {
		return link, fmt.Errorf("%w: bad exp", ErrMediaLinkMalformed)
	}
	if len(sigText) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return link, fmt.Errorf("%w: bad sig", ErrMediaLinkMalformed)
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(sigText)
	if err != nil {
		return link, fmt.Errorf("%w: bad sig", ErrMediaLinkMalformed)
	}
	return MediaLink{MediaID: id, Variant: variant, Exp: time.Unix(exp, 0), Sig: sig}, nil
}

func validMediaID(id string) bool {
	if id == "" || len(id) > maxMediaIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Verify checks a parsed link: its signature under any of the master keys
// (constant time), then that it has not expired (exp at or before now is
// expired). The error is ErrMediaLinkSignature or ErrMediaLinkExpired.
func (l *MediaLinks) Verify(link MediaLink) error {
	exp := link.Exp.Unix()
	var sum [sha256.Size]byte
	ok := false
	for _, key := range l.keys {
		if hmac.Equal(mac(key, link.MediaID, link.Variant, exp, sum[:0]), link.Sig) {
			ok = true
			break
		}
	}
	if !ok {
		return ErrMediaLinkSignature
	}
	if !l.now().Before(link.Exp) {
		return ErrMediaLinkExpired
	}
	return nil
}

// Open parses and verifies a link's path and raw query (ParseMediaLink,
// then Verify).
func (l *MediaLinks) Open(path, rawQuery string) (MediaLink, error) {
	link, err := ParseMediaLink(path, rawQuery)
	if err != nil {
		return link, err
	}
	return link, l.Verify(link)
}

// VerifyLink is Open in the shape the REST transport takes (httpapi's
// MediaLinks): the media id, variant and expiry of a valid link.
func (l *MediaLinks) VerifyLink(path, rawQuery string) (mediaID, variant string, exp time.Time, err error) {
	link, err := l.Open(path, rawQuery)
	if err != nil {
		return "", "", time.Time{}, err
	}
	return link.MediaID, link.Variant, link.Exp, nil
}
