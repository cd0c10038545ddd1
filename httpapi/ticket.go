package httpapi

import (
	"net/http"

	"github.com/parleychat/parley"
)

// wsTicket answers POST /v1/ws/ticket: a single-use ticket that opens one
// WebSocket for the caller's session (GET /v1/ws?ticket=...), for browsers,
// whose WebSocket API cannot send an Authorization header.
func (h *Handler) wsTicket(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	noStore(w)
	t, err := h.svc.IssueTicket(r.Context(), p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// noStore marks a response that carries a credential (tokens, tickets):
// no cache, shared or private, may keep it.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
}
