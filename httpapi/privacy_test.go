package httpapi

import (
	"testing"

	"github.com/parleychat/parley"
)

// FuzzPrivacyRequest: any body decodes to a valid change or a clear
// invalid_request, never a panic or an invalid visibility.
func FuzzPrivacyRequest(f *testing.F) {
	for _, seed := range []string{`{}`, `{"presence":"nobody"}`, `{"read_receipts":"contacts","presence":"everyone"}`,
		`{"presence":"all"}`, `{"presence":1}`, `[]`, `{"presence":null}`, `{"presence":"nobody"}}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := decodePrivacy(body)
		if err != nil {
			if code := parley.ErrorCode(err); code != parley.CodeInvalidRequest {
				t.Fatalf("error code %s for %q", code, body)
			}
			return
		}
		for _, v := range []*parley.Visibility{c.Presence, c.ReadReceipts} {
			if v != nil && !v.Valid() {
				t.Fatalf("accepted visibility %q from %q", *v, body)
			}
		}
	})
}

func TestDecodePrivacy(t *testing.T) {
	c, err := decodePrivacy([]byte(`{"presence":"contacts"}`))
	if err != nil || c.Presence == nil || *c.Presence != parley.VisibleContacts || c.ReadReceipts != nil {
		t.Fatalf("decodePrivacy = %+v, %v", c, err)
	}
	for _, bad := range []string{`{"presence":"friends"}`, `{"read_receipts":""}`, `{"presence":true}`, `nope`} {
		if _, err := decodePrivacy([]byte(bad)); parley.ErrorCode(err) != parley.CodeInvalidRequest {
			t.Fatalf("decodePrivacy(%s) = %v, want invalid_request", bad, err)
		}
	}
}

// FuzzDeclineRequest: any body declines (with or without block) or is a
// clear invalid_request.
func FuzzDeclineRequest(f *testing.F) {
	for _, seed := range []string{``, `{}`, `{"block":true}`, `{"block":"yes"}`, ` `, `[]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := decodeDecline(body); err != nil && parley.ErrorCode(err) != parley.CodeInvalidRequest {
			t.Fatalf("error %v for %q", err, body)
		}
	})
}

// FuzzReportRequest: any body decodes or is a clear invalid_request.
func FuzzReportRequest(f *testing.F) {
	for _, seed := range []string{`{"user_id":"x","reason":"spam"}`, `{"conversation_id":"c","seq":3,"reason":"other","content":"hi"}`,
		`{"seq":"3"}`, `{}`, `[1]`, `{"reason":1}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := decodeReport(body); err != nil && parley.ErrorCode(err) != parley.CodeInvalidRequest {
			t.Fatalf("error %v for %q", err, body)
		}
	})
}
