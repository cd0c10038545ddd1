package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// statusOf is the one table from error codes to HTTP statuses.
var statusOf = map[parley.Code]int{
	parley.CodeInvalidRequest:       http.StatusBadRequest,
	parley.CodeUnauthorized:         http.StatusUnauthorized,
	parley.CodeTokenExpired:         http.StatusUnauthorized,
	parley.CodeForbidden:            http.StatusForbidden,
	parley.CodeSuspended:            http.StatusForbidden,
	parley.CodeConversationNotFound: http.StatusNotFound,
	parley.CodeNotFound:             http.StatusNotFound,
	parley.CodeConflict:             http.StatusConflict,
	parley.CodeRateLimited:          http.StatusTooManyRequests,
	parley.CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	parley.CodeLimitExceeded:        http.StatusConflict,
	parley.CodeDeviceMismatch:       http.StatusConflict,
	parley.CodeUnavailable:          http.StatusServiceUnavailable,
	parley.CodeInternal:             http.StatusInternalServerError,
}

// statusFor returns the HTTP status for an error code.
func statusFor(c parley.Code) int {
	if s, ok := statusOf[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    parley.Code `json:"code"`
	Message string      `json:"message"`
	// The lists of a device_mismatch (missing, extra, stale).
	*parley.DeviceMismatch
}

// writeError answers with the error's code and message. Internal errors
// are logged with the request id and answered without detail.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := parley.ErrorCode(err)
	if errors.Is(err, r.Context().Err()) && r.Context().Err() != nil {
		code = parley.CodeUnavailable
		err = parley.Errorf(code, "request cancelled")
	}
	if code == parley.CodeInternal {
		h.log.ErrorContext(r.Context(), "internal error", "err", err, "route", r.Pattern)
	}
	var retry *service.RetryError
	if errors.As(err, &retry) {
		w.Header().Set("Retry-After", strconv.Itoa(service.RetryAfterSeconds(retry.RetryAfter)))
	}
	detail := errorDetail{Code: code, Message: parley.ErrorMessage(err)}
	var mismatch *parley.DeviceMismatchError
	if errors.As(err, &mismatch) {
		detail.DeviceMismatch = &mismatch.DeviceMismatch
	}
	writeJSON(w, statusFor(code), errorBody{Error: detail})
}
