package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// privacyRoutes adds the abuse and privacy controls: blocks (and, as they
// land, privacy settings, message requests and reports).
func (h *Handler) privacyRoutes(m *http.ServeMux) {
	m.Handle("GET /v1/blocks", h.authed(h.blocks))
	m.Handle("PUT /v1/blocks/{user_id}", h.authed(h.block))
	m.Handle("DELETE /v1/blocks/{user_id}", h.authed(h.unblock))
	m.Handle("GET /v1/me/privacy", h.authed(h.privacy))
	m.Handle("PATCH /v1/me/privacy", h.authed(h.setPrivacy))
	m.Handle("POST /v1/conversations/{id}/accept", h.authed(h.acceptConversation))
	m.Handle("POST /v1/conversations/{id}/decline", h.authed(h.declineConversation))
	m.Handle("POST /v1/reports", h.authed(h.report))
	m.Handle("GET /v1/admin/reports", h.authed(h.adminReports))
	m.Handle("POST /v1/admin/reports/{id}/resolve", h.authed(h.resolveReport))
}

// reportRequest is the body of POST /v1/reports.
type reportRequest struct {
	UserID         string              `json:"user_id"`
	ConversationID string              `json:"conversation_id"`
	Seq            int64               `json:"seq"`
	Reason         parley.ReportReason `json:"reason"`
	Comment        string              `json:"comment"`
	Content        string              `json:"content"`
}

// decodeReport decodes a POST /v1/reports body; the core checks it.
func decodeReport(body []byte) (service.ReportRequest, error) {
	var req reportRequest
	if err := decodeBody(body, &req); err != nil {
		return service.ReportRequest{}, err
	}
	return service.ReportRequest{UserID: req.UserID, ConversationID: req.ConversationID, Seq: req.Seq,
		Reason: req.Reason, Comment: req.Comment, Content: req.Content}, nil
}

// report: POST /v1/reports; 201 with the report's id and state only (its
// content is for admins).
func (h *Handler) report(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	body, err := readBody(r, h.cfg.MaxRequestBytes)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	req, err := decodeReport(body)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	rep, err := h.svc.Report(r.Context(), p, req)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"report": map[string]any{"id": rep.ID, "state": rep.State, "created_at": rep.CreatedAt}})
}

// adminReports: GET /v1/admin/reports?state=open&before=ID&limit=50.
func (h *Handler) adminReports(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	q := parley.ReportQuery{State: r.URL.Query().Get("state"), BeforeID: r.URL.Query().Get("before")}
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > parley.MaxReportsPage {
			h.writeError(w, r, parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to %d", parley.MaxReportsPage))
			return
		}
		q.Limit = n
	}
	reports, err := h.svc.Reports(r.Context(), p, q)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reports": reports})
}

// resolveRequest is the body of POST /v1/admin/reports/{id}/resolve.
type resolveRequest struct {
	Resolution string `json:"resolution"`
	Suspend    bool   `json:"suspend"`
}

// resolveReport: POST /v1/admin/reports/{id}/resolve.
func (h *Handler) resolveReport(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	var req resolveRequest
	if err := decodeJSON(r, h.cfg.MaxRequestBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	rep, err := h.svc.ResolveReport(r.Context(), p, r.PathValue("id"), req.Resolution, req.Suspend)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"report": rep})
}

// acceptConversation: POST /v1/conversations/{id}/accept.
func (h *Handler) acceptConversation(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	v, err := h.svc.AcceptConversation(r.Context(), p, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conversation": v})
}

// declineRequest is the optional body of POST .../decline.
type declineRequest struct {
	Block bool `json:"block"`
}

// decodeDecline decodes a decline body; an empty body declines without
// blocking.
func decodeDecline(body []byte) (declineRequest, error) {
	var req declineRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	err := decodeBody(body, &req)
	return req, err
}

// declineConversation: POST /v1/conversations/{id}/decline; 204.
func (h *Handler) declineConversation(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	body, err := readBody(r, h.cfg.MaxRequestBytes)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	req, err := decodeDecline(body)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.svc.DeclineConversation(r.Context(), p, r.PathValue("id"), req.Block); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// privacyBody answers GET and PATCH /v1/me/privacy.
type privacyBody struct {
	Privacy parley.Privacy `json:"privacy"`
}

// privacyRequest is the body of PATCH /v1/me/privacy; absent fields are
// kept.
type privacyRequest struct {
	Presence     *parley.Visibility `json:"presence"`
	ReadReceipts *parley.Visibility `json:"read_receipts"`
}

// decodePrivacy decodes and checks a PATCH /v1/me/privacy body.
func decodePrivacy(body []byte) (service.PrivacyChange, error) {
	var req privacyRequest
	if err := decodeBody(body, &req); err != nil {
		return service.PrivacyChange{}, err
	}
	for _, v := range []*parley.Visibility{req.Presence, req.ReadReceipts} {
		if v != nil && !v.Valid() {
			return service.PrivacyChange{}, parley.Errorf(parley.CodeInvalidRequest, "presence and read_receipts are everyone, contacts or nobody")
		}
	}
	return service.PrivacyChange{Presence: req.Presence, ReadReceipts: req.ReadReceipts}, nil
}

// privacy: GET /v1/me/privacy.
func (h *Handler) privacy(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	pr, err := h.svc.Privacy(r.Context(), p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, privacyBody{Privacy: pr})
}

// setPrivacy: PATCH /v1/me/privacy.
func (h *Handler) setPrivacy(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	body, err := readBody(r, h.cfg.MaxRequestBytes)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	change, err := decodePrivacy(body)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	pr, err := h.svc.SetPrivacy(r.Context(), p, change)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, privacyBody{Privacy: pr})
}

// readBody reads a request body of at most max bytes.
func readBody(r *http.Request, max int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, parley.Errorf(parley.CodePayloadTooLarge, "request body must be at most %d bytes", max)
		}
		return nil, parley.Errorf(parley.CodeInvalidRequest, "could not read the request body")
	}
	return body, nil
}

// blocksBody answers GET /v1/blocks.
type blocksBody struct {
	Blocks []parley.Block `json:"blocks"`
}

// blocks: GET /v1/blocks.
func (h *Handler) blocks(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	blocks, err := h.svc.Blocks(r.Context(), p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, blocksBody{Blocks: blocks})
}

// block: PUT /v1/blocks/{user_id}; 204.
func (h *Handler) block(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	if err := h.svc.Block(r.Context(), p, r.PathValue("user_id")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// unblock: DELETE /v1/blocks/{user_id}; 204.
func (h *Handler) unblock(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	if err := h.svc.Unblock(r.Context(), p, r.PathValue("user_id")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
