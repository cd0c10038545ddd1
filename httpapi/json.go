package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/parleychat/parley"
)

// decodeJSON reads one JSON object from a request body of at most max bytes
// into v. Every failure is a *parley.Error: payload_too_large for an
// oversized body, invalid_request for anything that is not one well-formed
// object of the right shape.
func decodeJSON(r *http.Request, max int64, v any) error {
	_, err := decodeJSONSize(r, max, v)
	return err
}

// decodeJSONSize is decodeJSON that also returns the body's size.
func decodeJSONSize(r *http.Request, max int64, v any) (int64, error) {
	body, err := readBody(r, max)
	if err != nil {
		return 0, err
	}
	return int64(len(body)), decodeBody(body, v)
}

// decodeBody is the decoder proper, separate so that it can be fuzzed.
func decodeBody(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return parley.Errorf(parley.CodeInvalidRequest, "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return parley.Errorf(parley.CodeInvalidRequest, "field %s must be of JSON type %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
		}
		return parley.Errorf(parley.CodeInvalidRequest, "request body is not valid JSON for this endpoint")
	}
	// Anything after the object (even a stray '}', which dec.More misses)
	// makes the body invalid.
	if dec.InputOffset() != int64(len(trimmed)) {
		return parley.Errorf(parley.CodeInvalidRequest, "request body must hold exactly one JSON object")
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "int", "int64", "int32", "uint", "uint32", "uint64", "float64":
		return "number"
	case "bool":
		return "boolean"
	case "slice":
		return "array"
	default:
		return "object"
	}
}

// writeJSON answers with v as JSON, without HTML escaping: <, > and &
// stay one byte each (escaped, a body of '<' grew six times; API JSON is
// never embedded in HTML and always served as application/json). It
// reports a failed write (a client that stopped
// reading until the server's write timeout).
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := marshalJSON(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, err = w.Write(b)
	return err
}

// marshalJSON encodes v without HTML escaping, with a final newline.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// jsonList streams a reply of the form {"<key>":[e0,e1,...]<tail>} one
// element at a time, so a long list is never held encoded in memory
// twice (the elements are encoded into the connection's buffer as they
// go). tail, if set, is more members of the object, already encoded
// (",\"truncated\":true"). A failed encoding mid-stream cannot change the
// status any more: the reply is cut short, which the client sees as
// invalid JSON, and the error is returned.
//
// If writeTimeout > 0, the connection's write deadline is pushed to
// writeTimeout from now after each element written, so the server's
// write timeout (which otherwise bounds the handler and the whole
// download together) cuts off only a client that stops reading for that
// long, not a slow one downloading a long list.
func jsonList[T any](w http.ResponseWriter, status int, key string, elems []T, tail string, writeTimeout time.Duration) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	extend := func() {}
	if writeTimeout > 0 {
		rc := http.NewResponseController(w)
		extend = func() {
			// ErrNotSupported (a writer that has no connection) leaves
			// the deadline as it is.
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if _, err := io.WriteString(w, `{"`+key+`":[`); err != nil {
		return err
	}
	for i := range elems {
		if i > 0 {
			if _, err := io.WriteString(w, ","); err != nil {
				return err
			}
		}
		if err := enc.Encode(&elems[i]); err != nil { // one line each: newlines are JSON whitespace
			return err
		}
		extend()
	}
	_, err := io.WriteString(w, "]"+tail+"}\n")
	return err
}

// queryInt parses an optional non-negative integer query parameter.
func queryInt(v url.Values, name string) (int64, error) {
	s := v.Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, parley.Errorf(parley.CodeInvalidRequest, "%s must be a non-negative integer", name)
	}
	return n, nil
}

// pathSeq parses the {seq} path segment. Garbage becomes 0, which the core
// answers with not_found after its membership check, so a non-member gets
// conversation_not_found whatever the seq.
func pathSeq(r *http.Request) int64 {
	n, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	if err != nil || n < 1 {
		return 0
	}
	return n
}
