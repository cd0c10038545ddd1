package httpapi

import (
	"net/url"
	"testing"

	"github.com/parleychat/parley"
)

// FuzzMembersQuery feeds arbitrary query strings to the members page
// decoder: it never panics, fails only with invalid_request, and what it
// accepts is within the documented bounds.
func FuzzMembersQuery(f *testing.F) {
	for _, s := range []string{"", "limit=3", "after=01936f4e-7b19-7a2c-8e0f-1b3c4d5e6f70&limit=1000", "limit=0", "limit=1001",
		"limit=-1", "after=x", "after=", "limit=1&limit=2", "after=a&after=b", "limit=99999999999999999999", "limit=+5", "limit= 5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseMembersQuery(v)
		if err != nil {
			if parley.ErrorCode(err) != parley.CodeInvalidRequest {
				t.Fatalf("%q: code %s", raw, parley.ErrorCode(err))
			}
			return
		}
		if q.Limit < 1 || q.Limit > parley.MaxMembersPage || q.After != "" && !parley.ValidID(q.After) {
			t.Fatalf("%q accepted out of bounds: %+v", raw, q)
		}
		if len(v["after"]) > 1 || len(v["limit"]) > 1 {
			t.Fatalf("%q: a parameter given twice was accepted", raw)
		}
	})
}
