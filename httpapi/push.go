package httpapi

import (
	"net/http"

	"github.com/parleychat/parley"
)

// maxPushBody bounds a push registration request: a token or a browser
// subscription is a few hundred bytes.
const maxPushBody = 16 << 10

// setPush: PUT /v1/devices/current/push.
func (h *Handler) setPush(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	var req parley.PushRegistration
	if err := decodeJSON(r, maxPushBody, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	reg, err := h.svc.SetPush(r.Context(), p, &req)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"push": reg})
}

// deletePush: DELETE /v1/devices/current/push.
func (h *Handler) deletePush(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	if err := h.svc.DeletePush(r.Context(), p); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// vapid: GET /v1/push/vapid, public: a browser needs it to subscribe.
func (h *Handler) vapid(w http.ResponseWriter, r *http.Request) {
	key, err := h.svc.VAPIDPublicKey(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]string{"public_key": key})
}
