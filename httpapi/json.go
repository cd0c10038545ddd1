package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/parleychat/parley"
)

// decodeJSON reads one JSON object from a request body of at most max bytes
// into v. Every failure is a *parley.Error: payload_too_large for an
// oversized body, invalid_request for anything that is not one well-formed
// object of the right shape.
func decodeJSON(r *http.Request, max int64, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return parley.Errorf(parley.CodePayloadTooLarge, "request body must be at most %d bytes", max)
		}
		return parley.Errorf(parley.CodeInvalidRequest, "could not read the request body")
	}
	return decodeBody(body, v)
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
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
