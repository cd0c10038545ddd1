package service

import (
	"context"
	"time"

	"github.com/parleychat/parley"
)

// DefaultMediaLinkLifetime is the longest a download link handed out
// stays valid (the default --media-url-ttl plus --media-url-bucket): a
// deleted message's media blobs are kept this long after the delete.
const DefaultMediaLinkLifetime = 2 * time.Hour

// checkAttachmentRefs checks the shape of a send's attachments (at most
// parley.MaxAttachments, valid ids, none twice); the store checks the
// media themselves when the message commits.
func checkAttachmentRefs(refs []parley.AttachmentRef) error {
	if len(refs) > parley.MaxAttachments {
		return parley.Errorf(parley.CodeInvalidRequest, "a message carries at most %d attachments", parley.MaxAttachments)
	}
	seen := make(map[string]bool, len(refs))
	for i, a := range refs {
		if !parley.ValidID(a.MediaID) {
			return parley.Errorf(parley.CodeInvalidRequest, "attachment %d: media_id %q is not a media id", i+1, a.MediaID)
		}
		if seen[a.MediaID] {
			return parley.Errorf(parley.CodeInvalidRequest, "attachment %s is given twice", a.MediaID)
		}
		seen[a.MediaID] = true
	}
	return nil
}

// attachments reads the media a send names and returns their attachment
// objects, refusing (CodeInvalidRequest naming the media) any that cannot
// be attached now. The store checks again inside the commit, atomically
// with the insert (engine.CheckAttach), so a race between two sends ends
// with one attach; this read fills in the fields.
func (s *Service) attachments(ctx context.Context, p *parley.Principal, conversationID string, refs []parley.AttachmentRef) ([]parley.Attachment, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	out := make([]parley.Attachment, 0, len(refs))
	for _, ref := range refs {
		m, err := s.store.Media(ctx, ref.MediaID)
		switch {
		case parley.ErrorCode(err) == parley.CodeNotFound || err == nil && m.UploaderID != p.UserID:
			return nil, parley.Errorf(parley.CodeInvalidRequest, "attachment %s: no such media of yours", ref.MediaID)
		case err != nil:
			return nil, err
		case m.ConversationID != conversationID:
			return nil, parley.Errorf(parley.CodeInvalidRequest, "attachment %s was uploaded for another conversation", ref.MediaID)
		case m.ConversationSeq != 0:
			return nil, parley.Errorf(parley.CodeInvalidRequest, "attachment %s is already attached to a message", ref.MediaID)
		case m.State != parley.MediaReady:
			return nil, parley.Errorf(parley.CodeInvalidRequest, "attachment %s is not ready (state %s)", ref.MediaID, m.State)
		case !m.ExpiresAt.IsZero() && !m.ExpiresAt.After(s.cfg.Now()):
			return nil, parley.Errorf(parley.CodeInvalidRequest, "attachment %s has expired (upload it again)", ref.MediaID)
		}
		out = append(out, parley.AttachmentOf(m))
	}
	return out, nil
}

// errNoMedia is what a caller learns of a media it may not see: the same
// as of one that does not exist.
func errNoMedia() error { return parley.Errorf(parley.CodeNotFound, "no such media") }

// MediaForMember returns a media record for p to download (GET
// /v1/media/{id}): p must be a member of its conversation now, and it must
// be attached to a message there (or be p's own upload), ready and not
// deleted. Anything else is CodeNotFound, the same as an unknown id, so a
// non-member learns nothing; a member removed from the conversation gets
// no new link (links handed out earlier work until they expire).
func (s *Service) MediaForMember(ctx context.Context, p *parley.Principal, mediaID string) (*parley.Media, error) {
	if !parley.ValidID(mediaID) {
		return nil, errNoMedia()
	}
	m, err := s.store.Media(ctx, mediaID)
	if parley.ErrorCode(err) == parley.CodeNotFound {
		return nil, errNoMedia()
	}
	if err != nil {
		return nil, err
	}
	if m.State != parley.MediaReady || m.ConversationSeq == 0 && m.UploaderID != p.UserID {
		return nil, errNoMedia()
	}
	if _, err := s.member(ctx, p, m.ConversationID); err != nil {
		if c := parley.ErrorCode(err); c == parley.CodeConversationNotFound || c == parley.CodeNotFound {
			return nil, errNoMedia()
		}
		return nil, err
	}
	return m, nil
}

// MediaForLink returns the media record a verified download link names
// (GET /m/...: no principal, the link's signature is the permission), if
// it is ready; CodeNotFound otherwise (deleted, failed, gone).
func (s *Service) MediaForLink(ctx context.Context, mediaID string) (*parley.Media, error) {
	m, err := s.store.Media(ctx, mediaID)
	if err != nil {
		return nil, err
	}
	if m.State != parley.MediaReady {
		return nil, errNoMedia()
	}
	return m, nil
}

// deleteMedia marks the media of a deleted message deleted: downloads stop
// at once (GET /m/ refuses deleted media), and their records and blobs
// are collected once ExpiresAt passes, when every link handed out for
// them has expired (Config.MediaLinkLifetime). A failure is logged: the
// message is deleted either way, and the media stay unreachable through
// it (its attachments are gone).
func (s *Service) deleteMedia(ctx context.Context, as []parley.Attachment) {
	until := s.cfg.Now().Add(s.cfg.MediaLinkLifetime)
	for _, a := range as {
		_, err := s.store.UpdateMedia(ctx, a.MediaID, func(m *parley.Media) error {
			m.State = parley.MediaDeleted
			m.ExpiresAt = until
			return nil
		})
		if err != nil && parley.ErrorCode(err) != parley.CodeNotFound {
			s.log.WarnContext(ctx, "media of a deleted message not marked deleted", "media_id", a.MediaID, "err", err)
		}
	}
}
