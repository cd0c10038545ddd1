package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// TestWriteHistoryBudget: a page of '<'-heavy bodies is cut to the
// budget, counted in encoded bytes (no HTML escaping), keeping the edge
// the client pages from, and says truncated; a small page is whole.
func TestWriteHistoryBudget(t *testing.T) {
	body := strings.Repeat("<", 10000)
	var views []messageView
	for i := range 200 {
		m := &parley.Message{ID: parley.NewID(), ConversationID: parley.NewID(), Seq: int64(i + 1), SenderID: parley.NewID(),
			Type: parley.MessageText, Body: body, CreatedAt: time.Now()}
		views = append(views, messageView{Message: m, Receipts: service.Receipts{MemberCount: 2}})
	}
	const budget = 100 << 10
	for _, forward := range []bool{false, true} {
		w := httptest.NewRecorder()
		if err := writeHistory(w, views, forward, budget); err != nil {
			t.Fatal(err)
		}
		raw := w.Body.Bytes()
		if bytes.Contains(raw, []byte(`\u003c`)) {
			t.Fatal("the reply escapes < as \\u003c")
		}
		if len(raw) > budget+64 {
			t.Fatalf("forward %v: %d bytes, budget %d", forward, len(raw), budget)
		}
		if cl := w.Header().Get("Content-Length"); cl != itoa(len(raw)) {
			t.Fatalf("Content-Length %s, body %d bytes", cl, len(raw))
		}
		var out struct {
			Messages  []parley.Message `json:"messages"`
			Truncated bool             `json:"truncated"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("not JSON: %v", err)
		}
		n := len(out.Messages)
		if !out.Truncated || n < 5 || n > 10 {
			t.Fatalf("forward %v: %d messages, truncated %v", forward, n, out.Truncated)
		}
		first, last := out.Messages[0].Seq, out.Messages[n-1].Seq
		if forward && (first != 1 || last != int64(n)) || !forward && (last != 200 || first != int64(201-n)) {
			t.Fatalf("forward %v: kept %d..%d", forward, first, last)
		}
	}
	// A message bigger than the budget alone still goes; a small page is
	// not marked.
	for _, tc := range []struct {
		views []messageView
		n     int
	}{{views[:1], 1}, {views[:3], 3}, {nil, 0}} {
		w := httptest.NewRecorder()
		if err := writeHistory(w, tc.views, false, 5000); err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("not JSON: %q", w.Body.Bytes())
		}
		msgs, _ := out["messages"].([]any)
		if len(msgs) != min(tc.n, 1) || (tc.n > 1) != (out["truncated"] == true) || msgs == nil {
			t.Fatalf("%d messages in, budget 5000: %d out, truncated %v", tc.n, len(msgs), out["truncated"])
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestJSONNotHTMLEscaped: REST answers keep <, > and & as one byte.
func TestJSONNotHTMLEscaped(t *testing.T) {
	w := httptest.NewRecorder()
	_ = writeJSON(w, 200, map[string]string{"body": "<a & b>"})
	if got := w.Body.String(); got != `{"body":"<a & b>"}`+"\n" {
		t.Fatalf("got %q", got)
	}
	w = httptest.NewRecorder()
	_ = jsonList(w, 200, "items", []string{"<", ">&"}, "", 0)
	var out map[string][]string
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || len(out["items"]) != 2 || strings.Contains(w.Body.String(), `\u`) {
		t.Fatalf("jsonList: %q %v", w.Body.String(), err)
	}
	w = httptest.NewRecorder()
	_ = jsonList[string](w, 200, "items", nil, "", 0)
	if w.Body.String() != `{"items":[]}`+"\n" {
		t.Fatalf("empty list: %q", w.Body.String())
	}
}
