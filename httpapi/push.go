package httpapi

import (
	"io"
	"net/http"
	"strconv"
	"time"

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

// untilRequest is the body of PUT .../mute and PUT /v1/me/dnd: until is
// an RFC 3339 time in the future, or null to end the mute.
type untilRequest struct {
	Until *string `json:"until"`
}

// parseUntil reads an until body; the zero time means "end it".
func parseUntil(body []byte) (time.Time, error) {
	var req untilRequest
	if err := decodeBody(body, &req); err != nil {
		return time.Time{}, err
	}
	if req.Until == nil {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *req.Until)
	if err != nil {
		return time.Time{}, parley.Errorf(parley.CodeInvalidRequest, "until must be an RFC 3339 time, like 2026-12-01T08:00:00Z, or null")
	}
	return t, nil
}

func readUntil(r *http.Request) (time.Time, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxPushBody))
	if err != nil {
		return time.Time{}, parley.Errorf(parley.CodePayloadTooLarge, "request body must be at most %d bytes", maxPushBody)
	}
	return parseUntil(body)
}

// setMute: PUT /v1/conversations/{id}/mute.
func (h *Handler) setMute(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	until, err := readUntil(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	c, err := h.svc.SetMute(r.Context(), p, r.PathValue("id"), until)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, conversationBody{Conversation: c})
}

// dndBody answers PUT /v1/me/dnd; GET /v1/me carries the same field.
type dndBody struct {
	DNDUntil *time.Time `json:"dnd_until"`
}

func dndOf(until time.Time, now time.Time) *time.Time {
	if !until.After(now) {
		return nil
	}
	u := until.UTC()
	return &u
}

// setDND: PUT /v1/me/dnd.
func (h *Handler) setDND(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	until, err := readUntil(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	until, err = h.svc.SetDND(r.Context(), p, until)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, dndBody{DNDUntil: dndOf(until, time.Now())})
}

// pushTrace: GET /v1/admin/push/trace?conversation_id=...&seq=... (admins).
func (h *Handler) pushTrace(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	q := r.URL.Query()
	seq, err := strconv.ParseInt(q.Get("seq"), 10, 64)
	if err != nil || seq < 1 || q.Get("conversation_id") == "" {
		h.writeError(w, r, parley.Errorf(parley.CodeInvalidRequest, "query parameters conversation_id and seq (a positive integer) are required"))
		return
	}
	t, err := h.svc.PushTrace(r.Context(), p, q.Get("conversation_id"), seq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"trace": t})
}
