package parley

import (
	"errors"
	"fmt"
)

// Code is a machine-readable error code. The list is closed: clients branch
// on these values, so a new code is a protocol change documented in
// docs/errors.md.
type Code string

// The closed list of error codes.
const (
	CodeInvalidRequest       Code = "invalid_request"        // malformed or semantically invalid input
	CodeUnauthorized         Code = "unauthorized"           // no, bad or revoked credentials
	CodeTokenExpired         Code = "token_expired"          // the access token's lifetime is over; refresh it
	CodeForbidden            Code = "forbidden"              // authenticated, but the role does not allow it
	CodeSuspended            Code = "account_suspended"      // the account is suspended by an admin
	CodeConversationNotFound Code = "conversation_not_found" // no such conversation, or the caller is not a member
	CodeNotFound             Code = "not_found"              // no such user, device, message or route
	CodeConflict             Code = "conflict"               // the change contradicts existing state (handle taken, ...)
	CodeRateLimited          Code = "rate_limited"           // too many requests; retry after the given delay
	CodePayloadTooLarge      Code = "payload_too_large"      // request or field larger than the configured limit
	CodeLimitExceeded        Code = "limit_exceeded"         // a per-user cap (devices, push registrations, connections) is reached
	CodeDeviceMismatch       Code = "device_mismatch"        // an e2ee envelope does not cover exactly the current devices (DeviceMismatchError)
	CodeUnavailable          Code = "unavailable"            // the server is shutting down or a dependency is down
	CodeInternal             Code = "internal"               // a bug or an unexpected failure; details are logged
)

// Codes lists every code, in documentation order.
func Codes() []Code {
	return []Code{
		CodeInvalidRequest, CodeUnauthorized, CodeTokenExpired, CodeForbidden,
		CodeSuspended, CodeConversationNotFound, CodeNotFound, CodeConflict,
		CodeRateLimited, CodePayloadTooLarge, CodeLimitExceeded, CodeDeviceMismatch, CodeUnavailable, CodeInternal,
	}
}

// Error is the one error type that crosses package boundaries with a code a
// client can act on. Message is written for a person and never holds secrets
// or internal details.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none (and "" when err is nil).
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the human-readable message of the first *Error in
// err's chain, or a generic text for internal errors so that no internal
// detail leaks to a client.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
