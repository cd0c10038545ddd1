package httpapi

import (
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/parleychat/parley"
)

// TestEveryCodeMappedAndDocumented keeps the closed list, the status table
// and docs/errors.md in step.
func TestEveryCodeMappedAndDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/errors.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range parley.Codes() {
		if _, ok := statusOf[c]; !ok {
			t.Errorf("code %s has no HTTP status", c)
		}
		if !strings.Contains(string(doc), "`"+string(c)+"`") {
			t.Errorf("code %s is not in docs/errors.md", c)
		}
	}
	if len(statusOf) != len(parley.Codes()) {
		t.Errorf("status table has %d codes, the closed list %d", len(statusOf), len(parley.Codes()))
	}
}

// FuzzDecodeBody feeds arbitrary bytes to the request decoder for every
// request shape: it must never panic, and must answer a *parley.Error with
// code invalid_request whenever it fails.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"handle":"alice","password":"correct horse battery","display_name":"A"}`,
		`{"handle":"a","password":"p","device":{"platform":"ios","name":"x"}}`,
		`{"client_msg_id":"c1","type":"text","body":"hi","ttl_seconds":5}`,
		`{"client_msg_id":"c2","type":"image","attachments":[{"media_id":"01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b","size":1}]}`,
		`{"client_msg_id":"c3","attachments":[null,{"media_id":7}]}`,
		`{"kind":"group","title":"t","members":["01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b"]}`,
		`{"seq":3}`, `{"role":"admin"}`, `{"refresh_token":"x"}`, `{}`, `[]`, `{"a":1}{}`, "\x00", `{"seq":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		targets := []any{
			&registerRequest{}, &loginRequest{}, &refreshRequest{}, &sendRequest{},
			&createConversationRequest{}, &memberRequest{}, &roleRequest{}, &readRequest{}, &editRequest{},
		}
		for _, v := range targets {
			if err := decodeBody(data, v); err != nil {
				if parley.ErrorCode(err) != parley.CodeInvalidRequest {
					t.Fatalf("decode %q into %T: code %s, want invalid_request", data, v, parley.ErrorCode(err))
				}
			}
		}
	})
}

// FuzzHistoryQuery feeds arbitrary query strings to the history decoder:
// it never panics, fails only with invalid_request, and what it accepts is
// within the documented bounds.
func FuzzHistoryQuery(f *testing.F) {
	for _, s := range []string{"", "limit=3", "before=8&limit=3", "after=0", "after=-1", "limit=201", "before=x", "after=1&after=2", "limit=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseHistoryQuery(v)
		if err != nil {
			if parley.ErrorCode(err) != parley.CodeInvalidRequest {
				t.Fatalf("%q: code %s", raw, parley.ErrorCode(err))
			}
			return
		}
		if q.Before < 0 || q.After < 0 || q.Limit < 0 || q.Limit > parley.MaxHistoryLimit {
			t.Fatalf("%q accepted out of bounds: %+v", raw, q)
		}
	})
}

// FuzzParseUntil: the mute and do-not-disturb body decoder answers any
// input with a time or an invalid_request error, never a panic.
func FuzzParseUntil(f *testing.F) {
	for _, s := range []string{`{"until":null}`, `{"until":"2026-12-01T08:00:00Z"}`, `{"until":"2026-12-01T08:00:00.123+02:00"}`,
		`{"until":"x"}`, `{"until":1}`, `{}`, `[]`, `{"until":"2026-12-01"}`, "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := parseUntil(data); err != nil && parley.ErrorCode(err) != parley.CodeInvalidRequest {
			t.Fatalf("%q: code %s", data, parley.ErrorCode(err))
		}
	})
}
