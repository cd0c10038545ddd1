package httpapi

import (
	"net/http"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

type registerRequest struct {
	Handle      string `json:"handle"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name"`
}

type userBody struct {
	User *parley.User `json:"user"`
}

func (h *Handler) register(w http.ResponseWriter, r *http.Request) {
	if ok, retry := h.authLimit.Allow(limitKey(h.clientIP(r)), time.Now()); !ok {
		h.rateLimited(w, r, "auth", retry)
		return
	}
	var req registerRequest
	if err := decodeJSON(r, h.cfg.MaxRequestBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	u, err := h.svc.Register(r.Context(), req.Handle, req.Password, req.DisplayName)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, userBody{User: &parley.User{ID: u.ID, Handle: u.Handle, DisplayName: u.DisplayName}})
}

type loginRequest struct {
	Handle   string `json:"handle"`
	Password string `json:"password"`
	Device   struct {
		Platform parley.Platform `json:"platform"`
		Name     string          `json:"name"`
	} `json:"device"`
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if ok, retry := h.authLimit.Allow(limitKey(h.clientIP(r)), time.Now()); !ok {
		h.rateLimited(w, r, "auth", retry)
		return
	}
	var req loginRequest
	if err := decodeJSON(r, h.cfg.MaxRequestBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	// Failed attempts per handle are limited, whatever the IP: a token is
	// taken before the password is checked (so parallel guesses cannot slip
	// past) and given back when the login succeeds.
	handle, _ := parley.NormalizeHandle(req.Handle)
	ok, retry, cancel := h.loginLimit.Reserve(handle, time.Now())
	if !ok {
		h.rateLimited(w, r, "login", retry)
		return
	}
	s, err := h.svc.Login(r.Context(), service.LoginRequest{
		Handle: req.Handle, Password: req.Password, Platform: req.Device.Platform, DeviceName: req.Device.Name,
	})
	if err != nil {
		if parley.ErrorCode(err) != parley.CodeUnauthorized {
			cancel() // not a guess: a bad request, a suspended account, a failure of ours
		}
		h.writeError(w, r, err)
		return
	}
	cancel()
	writeJSON(w, http.StatusOK, s)
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func (h *Handler) refresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if err := decodeJSON(r, h.cfg.MaxRequestBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	s, err := h.svc.Refresh(r.Context(), req.RefreshToken)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	if err := h.svc.Logout(r.Context(), p); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) logoutAll(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	n, err := h.svc.LogoutAll(r.Context(), p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"sessions_ended": n})
}

func (h *Handler) me(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	u, err := h.svc.Me(r.Context(), p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, meBody{User: u, DNDUntil: dndOf(u.DNDUntil, time.Now())})
}

// meBody answers GET /v1/me: the account and its own settings.
type meBody struct {
	User     *parley.User `json:"user"`
	DNDUntil *time.Time   `json:"dnd_until"`
}

func (h *Handler) findUser(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	handle := r.URL.Query().Get("handle")
	if handle == "" {
		h.writeError(w, r, parley.Errorf(parley.CodeInvalidRequest, "query parameter handle is required"))
		return
	}
	u, err := h.svc.FindUser(r.Context(), p, handle)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, userBody{User: u})
}

func (h *Handler) user(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	u, err := h.svc.User(r.Context(), p, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, userBody{User: u})
}

type deviceView struct {
	parley.Device
	Current bool `json:"current"`
}

func (h *Handler) devices(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	ds, err := h.svc.Devices(r.Context(), p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]deviceView, len(ds))
	for i, d := range ds {
		out[i] = deviceView{Device: d, Current: d.ID == p.DeviceID}
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

func (h *Handler) removeDevice(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	if err := h.svc.RemoveDevice(r.Context(), p, r.PathValue("id")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) suspend(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	h.setUserState(w, r, p, parley.UserSuspended)
}

func (h *Handler) reinstate(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	h.setUserState(w, r, p, parley.UserActive)
}

func (h *Handler) setUserState(w http.ResponseWriter, r *http.Request, p *parley.Principal, state parley.UserState) {
	if err := h.svc.SetUserState(r.Context(), p, r.PathValue("id"), state); err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user_id": r.PathValue("id"), "state": state})
}
