package service

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/parleychat/parley"
)

// ReportRequest is the input of Report: a message (ConversationID and
// Seq) or a user (UserID), a reason, an optional comment, and for a
// message the content as the reporter's client shows it (used only when
// the server holds no plaintext of it: end-to-end encrypted messages).
type ReportRequest struct {
	UserID         string
	ConversationID string
	Seq            int64
	Reason         parley.ReportReason
	Comment        string
	Content        string
}

// Report stores a report for admins and returns it (its id and state are
// what the reporter needs; no one but admins can read reports). A message
// is reportable by a member of its conversation who can see it; the
// reported user is its sender, and the server copies its content.
func (s *Service) Report(ctx context.Context, p *parley.Principal, req ReportRequest) (*parley.Report, error) {
	if !req.Reason.Valid() {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "reason must be spam, harassment, inappropriate or other")
	}
	comment, err := parley.CleanText("comment", req.Comment, parley.ReportCommentMaxLen)
	if err != nil {
		return nil, err
	}
	if len(req.Content) > s.cfg.MaxBodyBytes {
		return nil, parley.Errorf(parley.CodePayloadTooLarge, "content must be at most %d bytes", s.cfg.MaxBodyBytes)
	}
	if !utf8.ValidString(req.Content) {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "content must be valid UTF-8")
	}
	r := &parley.Report{ID: parley.NewID(), ReporterID: p.UserID, Reason: req.Reason, Comment: comment, CreatedAt: s.cfg.Now().UTC()}
	switch {
	case req.ConversationID != "" && req.UserID == "":
		if _, err := s.member(ctx, p, req.ConversationID); err != nil {
			return nil, err
		}
		if req.Seq < 1 {
			return nil, parley.Errorf(parley.CodeNotFound, "no such message")
		}
		m, err := s.store.Message(ctx, req.ConversationID, req.Seq, s.cfg.Now())
		if err != nil {
			return nil, err
		}
		m = shown(p.UserID, m) // what the reporter could see
		if m.Withheld {
			return nil, parley.Errorf(parley.CodeNotFound, "no such message")
		}
		if m.SenderID == p.UserID {
			return nil, parley.Errorf(parley.CodeInvalidRequest, "you cannot report your own message")
		}
		r.UserID, r.ConversationID, r.Seq, r.MessageID = m.SenderID, m.ConversationID, m.Seq, m.ID
		switch {
		case m.Body != "":
			r.Content, r.ContentSource = m.Body, "server"
		case req.Content != "":
			r.Content, r.ContentSource = req.Content, "client"
		}
	case req.UserID != "" && req.ConversationID == "":
		if !parley.ValidID(req.UserID) {
			return nil, parley.Errorf(parley.CodeNotFound, "no such user")
		}
		if req.UserID == p.UserID {
			return nil, parley.Errorf(parley.CodeInvalidRequest, "you cannot report yourself")
		}
		if _, err := s.store.User(ctx, req.UserID); err != nil {
			return nil, err
		}
		r.UserID = req.UserID
	default:
		return nil, parley.Errorf(parley.CodeInvalidRequest, "report a user (user_id) or a message (conversation_id and seq)")
	}
	if err := s.store.CreateReport(ctx, r); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "report filed", "report_id", r.ID, "reason", r.Reason)
	return r, nil
}

func requireAdmin(p *parley.Principal) error {
	if p.Role != parley.SystemRoleAdmin {
		return parley.Errorf(parley.CodeForbidden, "only admins may review reports")
	}
	return nil
}

// Reports returns a page of reports, newest first; admins only.
func (s *Service) Reports(ctx context.Context, p *parley.Principal, q parley.ReportQuery) ([]parley.Report, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	if q.State != "" && q.State != parley.ReportOpen && q.State != parley.ReportResolved {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "state must be open or resolved")
	}
	if q.BeforeID != "" && !parley.ValidID(q.BeforeID) {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "before must be a report id")
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	return s.store.Reports(ctx, q)
}

// ResolveReport marks a report resolved with a note and, with suspend,
// suspends the reported user (as POST /v1/admin/users/{id}/suspend);
// admins only.
func (s *Service) ResolveReport(ctx context.Context, p *parley.Principal, id, resolution string, suspend bool) (*parley.Report, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	note, err := parley.CleanText("resolution", resolution, parley.ReportCommentMaxLen)
	if err != nil {
		return nil, err
	}
	if !parley.ValidID(id) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such report")
	}
	r, err := s.store.ResolveReport(ctx, id, p.UserID, note, s.cfg.Now().UTC().Truncate(time.Millisecond))
	if err != nil {
		return nil, err
	}
	if suspend {
		if err := s.SetUserState(ctx, p, r.UserID, parley.UserSuspended); err != nil {
			return nil, err
		}
	}
	return r, nil
}
