package httpapi

import (
	"net/http"

	"github.com/parleychat/parley"
)

// privacyRoutes adds the abuse and privacy controls: blocks (and, as they
// land, privacy settings, message requests and reports).
func (h *Handler) privacyRoutes(m *http.ServeMux) {
	m.Handle("GET /v1/blocks", h.authed(h.blocks))
	m.Handle("PUT /v1/blocks/{user_id}", h.authed(h.block))
	m.Handle("DELETE /v1/blocks/{user_id}", h.authed(h.unblock))
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
