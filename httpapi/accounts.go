package httpapi

import (
	"context"
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
	ctx := h.passwordWait(r)
	if ok, retry := h.authLimit.Allow(limitKey(h.clientIP(r)), time.Now()); !ok {
		h.rateLimited(w, r, "auth", retry)
		return
	}
	var req registerRequest
	if err := decodeJSON(r, h.cfg.MaxRequestBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	u, err := h.svc.Register(ctx, req.Handle, req.Password, req.DisplayName)
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
	// DeviceToken is the known-device token of an earlier login on this
	// device, if any.
	DeviceToken string `json:"device_token"`
}

// loginResponse is a session and, when the server issues them, the
// device's known-device token for its next login.
type loginResponse struct {
	*service.Session
	DeviceToken string `json:"device_token,omitempty"`
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	ctx := h.passwordWait(r)
	if ok, retry := h.authLimit.Allow(limitKey(h.clientIP(r)), time.Now()); !ok {
		h.rateLimited(w, r, "auth", retry)
		return
	}
	var req loginRequest
	if err := decodeJSON(r, h.cfg.MaxRequestBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	handle, _ := parley.NormalizeHandle(req.Handle)
	ok, retry, cancel := h.reserveLogin(r, handle, req.DeviceToken)
	if !ok {
		h.rateLimited(w, r, "login", retry)
		return
	}
	s, err := h.svc.Login(ctx, service.LoginRequest{
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
	out := loginResponse{Session: s}
	if h.deviceTokens != nil {
		out.DeviceToken = h.deviceTokens.Issue(handle, time.Now())
	}
	writeJSON(w, http.StatusOK, out)
}

// passwordWait returns r's context with a deadline, half the server's
// write timeout (Config.WriteTimeout) from now, for the wait for a turn
// to hash the password (service.WithPasswordWait). The write timeout
// cuts the connection of a request that takes longer, without an
// answer, yet the handler runs on: a login that got its turn late would
// create a device its client never learns of. Giving up at half the
// write timeout leaves the other half for the hash, the store and the
// reply; the request is answered 503 unavailable with Retry-After.
// Without a write timeout there is no deadline.
func (h *Handler) passwordWait(r *http.Request) context.Context {
	if h.cfg.WriteTimeout <= 0 {
		return r.Context()
	}
	return service.WithPasswordWait(r.Context(), time.Now().Add(h.cfg.WriteTimeout/2))
}

// reserveLogin takes, before the password is checked (so that parallel
// guesses cannot slip past), a token from the limits that apply to a login
// at handle; cancel gives them back (a successful login is not a guess).
//
// One wrong guess must not lock the owner out, so no limit is the handle's
// alone for everyone: a device with a valid known-device token for the
// handle spends from its own bucket (handle, token id) only; any other
// attempt from the bucket of (handle, client address) and from the
// handle's ceiling for unknown devices, which is high enough that a
// guesser from one address never reaches it.
func (h *Handler) reserveLogin(r *http.Request, handle, deviceToken string) (ok bool, retry time.Duration, cancel func()) {
	now := time.Now()
	if h.deviceTokens != nil && deviceToken != "" {
		if id, known := h.deviceTokens.Verify(deviceToken, handle, now); known {
			return h.loginLimit.Reserve("device\x00"+handle+"\x00"+id, now)
		}
	}
	ok, retry, cancelAddr := h.loginLimit.Reserve("addr\x00"+handle+"\x00"+limitKey(h.clientIP(r)), now)
	if !ok {
		return false, retry, nil
	}
	ok, retry, cancelHandle := h.handleLimit.Reserve(handle, now)
	if !ok {
		cancelAddr()
		return false, retry, nil
	}
	return true, 0, func() { cancelAddr(); cancelHandle() }
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func (h *Handler) refresh(w http.ResponseWriter, r *http.Request) {
	noStore(w)
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
