package upload

import (
	"encoding/base64"
	"mime"
	"strings"

	"github.com/parleychat/parley"
)

// Limits on the Upload-Metadata header, checked before anything is stored.
const (
	MaxMetadataHeader = 4096 // bytes of the whole header
	MaxMetadataPairs  = 16   // key-value pairs, known or not
	MaxMetadataKey    = 64   // bytes of a key
	MaxMetadataValue  = 1024 // bytes of a decoded value (a filename is then cut to parley.MediaFilenameMaxLen)
)

// Metadata is what an upload's Upload-Metadata says, validated.
type Metadata struct {
	ConversationID string
	Filename       string // sanitised (parley.SanitizeFilename); "" if none
	ContentType    string // the declared type, lower-case without parameters; "" if none
	Encrypted      bool
}

// ParseMetadata decodes and checks a tus Upload-Metadata header: pairs of a
// key and a base64 value (a key alone means an empty value), separated by
// commas. Known keys are conversation_id (required, a Parley id),
// filename, content_type (a MIME type) and encrypted ("true" or "false");
// other keys are ignored (tus clients add their own, such as filetype) but
// count against the limits. Every error is a CodeInvalidRequest
// *parley.Error (CodePayloadTooLarge for the size limits) naming the
// problem.
func ParseMetadata(header string) (Metadata, error) {
	var md Metadata
	if len(header) > MaxMetadataHeader {
		return md, parley.Errorf(parley.CodePayloadTooLarge, "Upload-Metadata is longer than %d bytes", MaxMetadataHeader)
	}
	seen := map[string]bool{}
	pairs := 0
	for _, element := range strings.Split(header, ",") {
		element = strings.TrimSpace(element)
		if element == "" {
			continue
		}
		if pairs++; pairs > MaxMetadataPairs {
			return md, parley.Errorf(parley.CodePayloadTooLarge, "Upload-Metadata has more than %d pairs", MaxMetadataPairs)
		}
		key, encoded, _ := strings.Cut(element, " ")
		encoded = strings.TrimSpace(encoded)
		if len(key) > MaxMetadataKey || !validKey(key) {
			return md, parley.Errorf(parley.CodeInvalidRequest, "Upload-Metadata has a bad key %q", clip(key))
		}
		if seen[key] {
			return md, parley.Errorf(parley.CodeInvalidRequest, "Upload-Metadata repeats %s", key)
		}
		seen[key] = true
		if base64.StdEncoding.DecodedLen(len(encoded)) > MaxMetadataValue+3 {
			return md, parley.Errorf(parley.CodePayloadTooLarge, "Upload-Metadata value of %s is longer than %d bytes", key, MaxMetadataValue)
		}
		raw, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			return md, parley.Errorf(parley.CodeInvalidRequest, "Upload-Metadata value of %s is not base64", key)
		}
		if len(raw) > MaxMetadataValue {
			return md, parley.Errorf(parley.CodePayloadTooLarge, "Upload-Metadata value of %s is longer than %d bytes", key, MaxMetadataValue)
		}
		value := string(raw)
		switch key {
		case "conversation_id":
			if !parley.ValidID(value) {
				return md, parley.Errorf(parley.CodeInvalidRequest, "conversation_id is not a valid id")
			}
			md.ConversationID = value
		case "filename":
			md.Filename = parley.SanitizeFilename(value)
		case "content_type":
			if value == "" {
				continue
			}
			t, _, err := mime.ParseMediaType(value)
			if err != nil || !strings.Contains(t, "/") || len(t) > parley.MediaContentTypeMaxLen {
				return md, parley.Errorf(parley.CodeInvalidRequest, "content_type is not a MIME type")
			}
			md.ContentType = t
		case "encrypted":
			switch value {
			case "true":
				md.Encrypted = true
			case "false", "":
			default:
				return md, parley.Errorf(parley.CodeInvalidRequest, "encrypted must be true or false")
			}
		}
	}
	if md.ConversationID == "" {
		return md, parley.Errorf(parley.CodeInvalidRequest, "Upload-Metadata must name the conversation_id")
	}
	return md, nil
}

// validKey reports whether a metadata key is ASCII without spaces or
// commas, as tus requires.
func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ',' {
			return false
		}
	}
	return true
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
