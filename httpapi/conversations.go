package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

type createConversationRequest struct {
	Kind    parley.ConversationKind `json:"kind"`
	Title   string                  `json:"title"`
	Members []string                `json:"members"`
	E2EE    bool                    `json:"e2ee"`
}

type conversationBody struct {
	Conversation any `json:"conversation"`
}

func (h *Handler) createConversation(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	var req createConversationRequest
	// Room for a member list as long as a group may have (an id is 39
	// bytes of JSON with its quotes and comma).
	limit := h.cfg.MaxRequestBytes + 40*int64(h.svc.Config().MaxGroupMembers)
	if err := decodeJSON(r, limit, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	c, created, err := h.svc.CreateConversation(r.Context(), p, service.CreateConversationRequest{
		Kind: req.Kind, Title: req.Title, Members: req.Members, E2EE: req.E2EE,
	})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, conversationBody{Conversation: c})
}

func (h *Handler) conversations(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	cs, err := h.svc.Conversations(r.Context(), p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	// Streamed: a user in many large groups has a long list (members
	// included), which is encoded straight into the connection, for as
	// long as the client keeps reading.
	if err := jsonList(w, http.StatusOK, "conversations", cs, "", h.cfg.WriteTimeout); err != nil {
		h.log.DebugContext(r.Context(), "conversations reply not delivered", "err", err)
	}
}

func (h *Handler) conversation(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	c, err := h.svc.Conversation(r.Context(), p, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, conversationBody{Conversation: c})
}

func (h *Handler) deleteConversation(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	if err := h.svc.DeleteConversation(r.Context(), p, r.PathValue("id")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type memberRequest struct {
	UserID string            `json:"user_id"`
	Role   parley.MemberRole `json:"role"`
}

func (h *Handler) addMember(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	var req memberRequest
	if err := decodeJSON(r, h.cfg.MaxRequestBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	c, err := h.svc.AddMember(r.Context(), p, r.PathValue("id"), req.UserID, req.Role)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, conversationBody{Conversation: c})
}

func (h *Handler) removeMember(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	if err := h.svc.RemoveMember(r.Context(), p, r.PathValue("id"), r.PathValue("user_id")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type roleRequest struct {
	Role parley.MemberRole `json:"role"`
}

func (h *Handler) setMemberRole(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	var req roleRequest
	if err := decodeJSON(r, h.cfg.MaxRequestBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	c, err := h.svc.SetMemberRole(r.Context(), p, r.PathValue("id"), r.PathValue("user_id"), req.Role)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, conversationBody{Conversation: c})
}

// parseMembersQuery reads after and limit of GET .../members: after is
// empty or a user id, limit 1..parley.MaxMembersPage (default
// parley.DefaultMembersPage); either given twice, or anything else, is
// CodeInvalidRequest.
func parseMembersQuery(v url.Values) (parley.MembersQuery, error) {
	q := parley.MembersQuery{Limit: parley.DefaultMembersPage}
	for _, name := range []string{"after", "limit"} {
		if len(v[name]) > 1 {
			return q, parley.Errorf(parley.CodeInvalidRequest, "%s given more than once", name)
		}
	}
	q.After = v.Get("after")
	if q.After != "" && !parley.ValidID(q.After) {
		return q, parley.Errorf(parley.CodeInvalidRequest, "after must be a user id")
	}
	if v.Has("limit") {
		n, err := strconv.Atoi(v.Get("limit"))
		if err != nil || n < 1 || n > parley.MaxMembersPage {
			return q, parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to %d", parley.MaxMembersPage)
		}
		q.Limit = n
	}
	return q, nil
}

// membersPage is the answer of GET .../members.
type membersPage struct {
	MemberCount int             `json:"member_count"`
	Members     []parley.Member `json:"members"`
	Next        string          `json:"next,omitempty"`
}

func (h *Handler) members(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	q, err := parseMembersQuery(r.URL.Query())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	members, count, err := h.svc.Members(r.Context(), p, r.PathValue("id"), q)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	page := membersPage{MemberCount: count, Members: members}
	if len(members) == q.Limit {
		page.Next = members[len(members)-1].UserID
	}
	writeJSON(w, http.StatusOK, page)
}
