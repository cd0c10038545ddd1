package httpapi

import (
	"net/http"

	"github.com/parleychat/parley"
)

// End-to-end encryption routes (docs/design/e2ee.md): the key directory
// and key requests.
func (h *Handler) e2eeRoutes(m *http.ServeMux) {
	m.Handle("PUT /v1/devices/me/keys", h.authed(h.publishDeviceKeys))
	m.Handle("GET /v1/users/{id}/devices", h.authed(h.userDevices))
	m.Handle("GET /v1/conversations/{id}/devices", h.authed(h.conversationDevices))
	m.Handle("POST /v1/conversations/{id}/messages/{seq}/key-requests", h.authed(h.requestKey))
	m.Handle("PUT /v1/conversations/{id}/messages/{seq}/keys", h.authed(h.addMessageKeys))
}

// publishKeysRequest is the body of PUT /v1/devices/me/keys.
type publishKeysRequest struct {
	IdentityKey  string `json:"identity_key"`
	Suite        string `json:"suite"`
	KeyID        int64  `json:"key_id"`
	PublicKey    string `json:"public_key"`
	KeySignature string `json:"key_signature"`
}

// decodeDeviceKeys decodes a publish body (at most MaxRequestBytes
// bytes) into the keys of the device of userID and deviceID and checks
// them (sizes, suite, signature). It is the one decoder of published
// keys; FuzzDecodeDeviceKeys fuzzes it.
func decodeDeviceKeys(body []byte, userID, deviceID string) (parley.DeviceKeys, error) {
	var req publishKeysRequest
	if err := decodeBody(body, &req); err != nil {
		return parley.DeviceKeys{}, err
	}
	k := parley.DeviceKeys{UserID: userID, DeviceID: deviceID, IdentityKey: req.IdentityKey, Suite: req.Suite,
		KeyID: req.KeyID, PublicKey: req.PublicKey, KeySignature: req.KeySignature}
	return k, k.Check()
}

func (h *Handler) publishDeviceKeys(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	raw, err := readBody(r, h.cfg.MaxRequestBytes)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	k, err := decodeDeviceKeys(raw, p.UserID, p.DeviceID)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	d, version, err := h.svc.PublishDeviceKeys(r.Context(), p, k)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"device": d, "device_list_version": version})
}

func (h *Handler) userDevices(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	l, err := h.svc.UserDevices(r.Context(), p, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (h *Handler) conversationDevices(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	ls, err := h.svc.ConversationDevices(r.Context(), p, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": ls})
}

func (h *Handler) requestKey(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	if err := h.svc.RequestKey(r.Context(), p, r.PathValue("id"), pathSeq(r)); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

type addKeysRequest struct {
	Keys []parley.EnvelopeKey `json:"keys"`
}

func (h *Handler) addMessageKeys(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	var req addKeysRequest
	if err := decodeJSON(r, MaxE2EESendBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.svc.AddMessageKeys(r.Context(), p, r.PathValue("id"), pathSeq(r), req.Keys); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
