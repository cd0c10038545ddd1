package upload

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parleychat/parley"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(",k" + strings.Repeat("x", i))
	}
	return b.String()
}

func TestParseMetadata(t *testing.T) {
	conv := parley.NewID()
	md, err := ParseMetadata("conversation_id " + b64(conv) + ",filename " + b64("../x/beach.jpg") + ", content_type " + b64("Image/JPEG; q=1") + ",encrypted " + b64("true") + ",filetype " + b64("whatever") + ",flag")
	if err != nil || md.ConversationID != conv || md.Filename != "beach.jpg" || md.ContentType != "image/jpeg" || !md.Encrypted {
		t.Fatalf("ParseMetadata = %+v, %v", md, err)
	}
	for _, tc := range []struct {
		header string
		code   parley.Code
	}{
		{"", parley.CodeInvalidRequest},
		{"filename " + b64("a"), parley.CodeInvalidRequest},
		{"conversation_id " + b64("not-an-id"), parley.CodeInvalidRequest},
		{"conversation_id !!!", parley.CodeInvalidRequest},
		{"conversation_id " + b64(conv) + ",conversation_id " + b64(conv), parley.CodeInvalidRequest},
		{"conversation_id " + b64(conv) + ",encrypted " + b64("yes"), parley.CodeInvalidRequest},
		{"conversation_id " + b64(conv) + ",content_type " + b64("text"), parley.CodeInvalidRequest},
		{"conversation_id " + b64(conv) + ",filename " + b64(strings.Repeat("a", MaxMetadataValue+1)), parley.CodePayloadTooLarge},
		{"conversation_id " + b64(conv) + manyKeys(MaxMetadataPairs), parley.CodePayloadTooLarge},
		{strings.Repeat("x", MaxMetadataHeader+1), parley.CodePayloadTooLarge},
		{"conversation_id " + b64(conv) + ",k\x01ey " + b64("v"), parley.CodeInvalidRequest},
	} {
		if _, err := ParseMetadata(tc.header); parley.ErrorCode(err) != tc.code {
			t.Errorf("ParseMetadata(%.60q) = %v, want code %s", tc.header, err, tc.code)
		}
	}
}

func FuzzParseMetadata(f *testing.F) {
	conv := parley.NewID()
	f.Add("conversation_id " + b64(conv) + ",filename " + b64("a.jpg") + ",content_type " + b64("image/png") + ",encrypted " + b64("false"))
	f.Add("conversation_id " + b64(conv) + ",filename ====")
	f.Add(",,, k v,")
	f.Fuzz(func(t *testing.T, header string) {
		md, err := ParseMetadata(header)
		if err != nil {
			if c := parley.ErrorCode(err); c != parley.CodeInvalidRequest && c != parley.CodePayloadTooLarge {
				t.Fatalf("ParseMetadata(%q): error %v of code %s", header, err, c)
			}
			return
		}
		if !parley.ValidID(md.ConversationID) {
			t.Fatalf("ParseMetadata(%q) accepted conversation id %q", header, md.ConversationID)
		}
		if len(md.Filename) > parley.MediaFilenameMaxLen || !utf8.ValidString(md.Filename) || strings.ContainsAny(md.Filename, "/\\\x00\n\"") {
			t.Fatalf("ParseMetadata(%q) gave filename %q", header, md.Filename)
		}
		if len(md.ContentType) > parley.MediaContentTypeMaxLen || md.ContentType != "" && !strings.Contains(md.ContentType, "/") {
			t.Fatalf("ParseMetadata(%q) gave content type %q", header, md.ContentType)
		}
	})
}
