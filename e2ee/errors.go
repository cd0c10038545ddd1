package e2ee

import "errors"

// Reason says why a message cannot be decrypted. An SDK shows the message
// as undecryptable with its reason; it never drops it.
type Reason string

// Reasons, in the order the receiving steps of docs/design/e2ee.md meet
// them.
const (
	// ReasonNoKey: the envelope holds no key for this device, or the
	// device no longer (or never) had the private key of its key_id. A key
	// request may bring a new one.
	ReasonNoKey Reason = "no_key"
	// ReasonUnknownSenderDevice: the sending device is not in the sender's
	// device list (even after a refetch), or its identity key changed, so
	// the signature cannot be checked against a trusted key.
	ReasonUnknownSenderDevice Reason = "unknown_sender_device"
	// ReasonBadSignature: the signature does not verify: the envelope was
	// tampered with, or not made by that device.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonBadCiphertext: the sealed key or the ciphertext does not open
	// (or is malformed).
	ReasonBadCiphertext Reason = "bad_ciphertext"
	// ReasonBadContent: the plaintext opened and verified but is not a
	// version 1 content object (a newer client's format, or a bug).
	ReasonBadContent Reason = "bad_content"
)

// DecryptError is a failure to open a message, with the Reason an SDK
// shows. Err, when set, is the underlying error (never key material).
type DecryptError struct {
	Reason Reason
	Err    error
}

func (e *DecryptError) Error() string {
	if e.Err != nil {
		return "e2ee: undecryptable (" + string(e.Reason) + "): " + e.Err.Error()
	}
	return "e2ee: undecryptable (" + string(e.Reason) + ")"
}

func (e *DecryptError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, &DecryptError{Reason: r}) match any error of
// reason r.
func (e *DecryptError) Is(target error) bool {
	t, ok := target.(*DecryptError)
	return ok && t.Reason == e.Reason && t.Err == nil
}

func undecryptable(r Reason, err error) error { return &DecryptError{Reason: r, Err: err} }

// ReasonOf returns the Reason of a *DecryptError in err's chain, or ""
// when err is nil or of another kind.
func ReasonOf(err error) Reason {
	var de *DecryptError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ""
}
