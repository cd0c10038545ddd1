package httpapi

import (
	"bufio"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

type sendRequest struct {
	ClientMsgID string             `json:"client_msg_id"`
	Type        parley.MessageType `json:"type"`
	Body        string             `json:"body"`
	TTLSeconds  int64              `json:"ttl_seconds"`
	// Attachments name media to attach (see parley.AttachmentRef).
	Attachments []parley.AttachmentRef `json:"attachments"`
	// Envelope is the content of an encrypted message (type encrypted).
	Envelope *parley.EnvelopeInput `json:"envelope"`
}

// MaxE2EESendBytes bounds the body of a REST send of an encrypted
// message (2 MiB): its envelope has a key per recipient device, so a
// large group's may pass the limit of other requests. Other sends keep
// Config.MaxRequestBytes.
const MaxE2EESendBytes = 2 << 20

type messageBody struct {
	Message *parley.Message `json:"message"`
}

// messageView is a message as GET answers it: with how far it has reached
// the other members (delivered_count, read_count, member_count; see
// service.Receipts).
type messageView struct {
	*parley.Message
	service.Receipts
}

func (h *Handler) send(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	var req sendRequest
	limit := max(h.cfg.MaxRequestBytes, MaxE2EESendBytes)
	n, err := decodeJSONSize(r, limit, &req)
	if err == nil && n > h.cfg.MaxRequestBytes && req.Type != parley.MessageEncrypted {
		err = parley.Errorf(parley.CodePayloadTooLarge, "request body must be at most %d bytes", h.cfg.MaxRequestBytes)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	sreq := service.SendRequest{
		ConversationID: r.PathValue("id"), ClientMsgID: req.ClientMsgID,
		Type: req.Type, Body: req.Body, TTLSeconds: req.TTLSeconds, Attachments: req.Attachments,
	}
	if req.Envelope != nil {
		sreq.Envelope = req.Envelope.Envelope()
	}
	m, created, err := h.svc.Send(r.Context(), p, sreq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, messageBody{Message: m})
}

func (h *Handler) history(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	q, err := parseHistoryQuery(r.URL.Query())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	ms, err := h.svc.History(r.Context(), p, r.PathValue("id"), q)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	receipts, err := h.svc.Receipts(r.Context(), p, r.PathValue("id"), ms)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	views := make([]messageView, len(ms))
	for i := range ms {
		views[i] = messageView{Message: &ms[i], Receipts: receipts[i]}
	}
	if err := writeHistory(w, views, q.Forwards(), parley.ReplyBudget); err != nil {
		h.log.DebugContext(r.Context(), "history reply not delivered", "err", err)
	}
}

// writeHistory answers a history request with views (ascending by seq)
// cut to budget bytes of encoded messages, counted exactly: paging
// forward it keeps the oldest, otherwise the newest, so the client goes on
// from the edge it received (after the last seq forward, before the first
// one backward). At least one message goes; a cut page says
// "truncated": true. The reply is at most budget plus about 100 bytes
// (plus one message larger than the budget alone).
func writeHistory(w http.ResponseWriter, views []messageView, forward bool, budget int) error {
	parts := make([][]byte, 0, len(views))
	total, truncated := 0, false
	for i := range views {
		j := i
		if !forward {
			j = len(views) - 1 - i
		}
		b, err := marshalJSON(&views[j])
		if err != nil {
			return writeJSON(w, http.StatusInternalServerError, errorBody{Error: errorDetail{Code: parley.CodeInternal, Message: "internal error"}})
		}
		b = b[:len(b)-1] // the encoder's newline
		if i > 0 && total+len(b)+1 > budget {
			truncated = true
			break
		}
		total += len(b) + 1
		parts = append(parts, b)
	}
	if !forward {
		slices.Reverse(parts)
	}
	tail := "]}\n"
	if truncated {
		tail = `],"truncated":true}` + "\n"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(`{"messages":[`)+max(total-1, 0)+len(tail)))
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 16<<10)
	bw.WriteString(`{"messages":[`)
	for i, b := range parts {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(b)
	}
	bw.WriteString(tail)
	return bw.Flush()
}

// message answers GET /v1/conversations/{id}/messages/{seq}: one message
// with its receipts.
func (h *Handler) message(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	m, receipts, err := h.svc.Message(r.Context(), p, r.PathValue("id"), pathSeq(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message": messageView{Message: m, Receipts: receipts}})
}

// parseHistoryQuery reads before, after and limit. An explicit after=0
// pages forward from the oldest message; no after and no before gives the
// newest page.
func parseHistoryQuery(v url.Values) (parley.HistoryQuery, error) {
	var q parley.HistoryQuery
	var err error
	if q.Before, err = queryInt(v, "before"); err != nil {
		return q, err
	}
	if q.After, err = queryInt(v, "after"); err != nil {
		return q, err
	}
	q.Forward = v.Has("after")
	limit, err := queryInt(v, "limit")
	if err != nil {
		return q, err
	}
	if limit > parley.MaxHistoryLimit || v.Has("limit") && limit == 0 {
		return q, parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to %d", parley.MaxHistoryLimit)
	}
	q.Limit = int(limit)
	return q, nil
}

type editRequest struct {
	Body string `json:"body"`
}

func (h *Handler) editMessage(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	seq := pathSeq(r)
	var req editRequest
	if err := decodeJSON(r, h.cfg.MaxRequestBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	m, err := h.svc.EditMessage(r.Context(), p, r.PathValue("id"), seq, req.Body)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, messageBody{Message: m})
}

func (h *Handler) deleteMessage(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	seq := pathSeq(r)
	m, err := h.svc.DeleteMessage(r.Context(), p, r.PathValue("id"), seq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, messageBody{Message: m})
}

type readRequest struct {
	Seq int64 `json:"seq"`
}

func (h *Handler) markRead(w http.ResponseWriter, r *http.Request, p *parley.Principal) {
	var req readRequest
	if err := decodeJSON(r, h.cfg.MaxRequestBytes, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	read, err := h.svc.MarkRead(r.Context(), p, r.PathValue("id"), req.Seq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conversation_id": r.PathValue("id"), "read_seq": read.Seq})
}
