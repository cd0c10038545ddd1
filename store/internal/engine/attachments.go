package engine

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/parleychat/parley"
)

// SealAttachments returns the stored form of a message's attachments: nil
// (SQL NULL) for none, else the key id (4 bytes, big-endian) followed by
// the JSON list sealed with sealer, bound to the message id (filenames are
// user content, sealed at rest like bodies).
func SealAttachments(sealer parley.Sealer, messageID string, as []parley.Attachment) ([]byte, error) {
	if len(as) == 0 {
		return nil, nil
	}
	plain, err := json.Marshal(as)
	if err != nil {
		return nil, err
	}
	keyID, sealed, err := sealer.Seal(plain, attachmentsAD(messageID))
	if err != nil {
		return nil, err
	}
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(sealed)), keyID), sealed...), nil
}

// OpenAttachments reverses SealAttachments; nil or empty stored bytes are
// no attachments.
func OpenAttachments(sealer parley.Sealer, messageID string, stored []byte) ([]parley.Attachment, error) {
	if len(stored) == 0 {
		return nil, nil
	}
	if len(stored) < 4 {
		return nil, fmt.Errorf("stored attachments of message %s: %d bytes", messageID, len(stored))
	}
	plain, err := sealer.Open(binary.BigEndian.Uint32(stored), stored[4:], attachmentsAD(messageID))
	if err != nil {
		return nil, err
	}
	var as []parley.Attachment
	if err := json.Unmarshal(plain, &as); err != nil {
		return nil, fmt.Errorf("stored attachments of message %s: %w", messageID, err)
	}
	return as, nil
}

func attachmentsAD(messageID string) []byte { return []byte("attachments:" + messageID) }

// CheckAttach says whether the media record read inside an append's
// transaction (found false: there is none) may be attached to m: uploaded
// by m's sender for m's conversation, ready, not attached yet, and not
// expired at m.CreatedAt (expiresAt in Unix milliseconds, 0 for none: the
// garbage collector may be deleting an expired one). The
// error is CodeInvalidRequest naming the media id, the same text for an
// unknown media and another user's (neither is the sender's to know).
func CheckAttach(m *parley.Message, mediaID string, found bool, uploaderID, conversationID string, state parley.MediaState, conversationSeq, expiresAt int64) error {
	switch {
	case !found || uploaderID != m.SenderID:
		return parley.Errorf(parley.CodeInvalidRequest, "attachment %s: no such media of yours", mediaID)
	case conversationID != m.ConversationID:
		return parley.Errorf(parley.CodeInvalidRequest, "attachment %s was uploaded for another conversation", mediaID)
	case conversationSeq != 0:
		return parley.Errorf(parley.CodeInvalidRequest, "attachment %s is already attached to a message", mediaID)
	case state != parley.MediaReady:
		return parley.Errorf(parley.CodeInvalidRequest, "attachment %s is not ready (state %s)", mediaID, state)
	case expiresAt != 0 && expiresAt <= Millis(m.CreatedAt):
		return parley.Errorf(parley.CodeInvalidRequest, "attachment %s has expired (upload it again)", mediaID)
	}
	return nil
}
