package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/service"
	"github.com/parleychat/parley/store/sqlite"
)

// TestMessageHandler calls the GET one-message handler directly, with the
// principal authed would pass: the message with its receipts, and the
// errors of a non-member and of a missing message.
func TestMessageHandler(t *testing.T) {
	ctx := context.Background()
	kr, err := seal.NewKeyring([][]byte{bytes.Repeat([]byte{9}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "parley.db"), sqlite.Options{Sealer: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	var users []*parley.User
	for _, handle := range []string{"alice", "bob", "carol", "eve"} {
		u := &parley.User{ID: parley.NewID(), Handle: handle, Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: now}
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	alice, bob, carol, eve := users[0], users[1], users[2], users[3]
	c, _, err := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, CreatedAt: now,
		Members: []parley.Member{{UserID: alice.ID, Role: parley.MemberRoleOwner}, {UserID: bob.ID}, {UserID: carol.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	sent, _, err := st.AppendMessage(ctx, &parley.Message{ConversationID: c.ID, SenderID: alice.ID, SenderDeviceID: "d", Type: parley.MessageText, Body: "hello", CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.MarkRead(ctx, c.ID, bob.ID, 1); err != nil {
		t.Fatal(err)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := New(service.New(st, nil, nil, service.Config{}, log, nil), Config{LimitsOff: true}, Options{}, log, nil)
	get := func(p *parley.User, conversationID string, seq int64) (int, map[string]any) {
		t.Helper()
		r := httptest.NewRequest("GET", "/v1/conversations/"+conversationID+"/messages/"+strconv.FormatInt(seq, 10), nil)
		r.SetPathValue("id", conversationID)
		r.SetPathValue("seq", strconv.FormatInt(seq, 10))
		w := httptest.NewRecorder()
		h.message(w, r, &parley.Principal{UserID: p.ID, DeviceID: "d"})
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer is not JSON: %q", w.Body.Bytes())
		}
		return w.Code, out
	}

	status, out := get(carol, c.ID, 1)
	m, _ := out["message"].(map[string]any)
	if status != 200 || m["id"] != sent.ID || m["body"] != "hello" ||
		m["delivered_count"] != 1.0 || m["read_count"] != 1.0 || m["member_count"] != 2.0 {
		t.Fatalf("GET message = %d %v; want it with 1 delivered (reading implies it), 1 read of 2", status, out)
	}
	for _, tc := range []struct {
		who    *parley.User
		convID string
		seq    int64
		status int
		code   parley.Code
	}{
		{eve, c.ID, 1, 404, parley.CodeConversationNotFound},
		{alice, parley.NewID(), 1, 404, parley.CodeConversationNotFound},
		{alice, c.ID, 2, 404, parley.CodeNotFound},
		{alice, c.ID, 0, 404, parley.CodeNotFound},
	} {
		status, out := get(tc.who, tc.convID, tc.seq)
		e, _ := out["error"].(map[string]any)
		if status != tc.status || e["code"] != string(tc.code) {
			t.Errorf("GET %s seq %d as %s = %d %v; want %d %s", tc.convID, tc.seq, tc.who.Handle, status, out, tc.status, tc.code)
		}
	}
}
