package wsgate

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestDecodeClientFrame(t *testing.T) {
	conv := "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b"
	ok := []struct {
		in    string
		check func(f ClientFrame) bool
	}{
		{`{"type":"send","id":"r1","conversation_id":"` + conv + `","client_msg_id":"c1","body":"hi"}`,
			func(f ClientFrame) bool {
				return f.Type == FrameSend && f.ID == "r1" && f.Body == "hi" && f.MessageType == ""
			}},
		{`{"type":"send","id":"r1","conversation_id":"` + conv + `","client_msg_id":"c1","message_type":"image","body":"x","ttl_seconds":60,"future_field":1}`,
			func(f ClientFrame) bool { return f.MessageType == parley.MessageImage && f.TTLSeconds == 60 }},
		{`{"type":"send","id":"r1","conversation_id":"` + conv + `","client_msg_id":"c1","message_type":"image","attachments":[{"media_id":"m1","size":9},{"media_id":"m2"}]}`,
			func(f ClientFrame) bool {
				return len(f.Attachments) == 2 && f.Attachments[0].MediaID == "m1" && f.Attachments[1].MediaID == "m2" && f.Body == ""
			}},
		{`{"type":"delivered","conversation_id":"` + conv + `","seq":0}`, func(f ClientFrame) bool { return *f.Seq == 0 }},
		{`{"type":"read","conversation_id":"` + conv + `","seq":7}`, func(f ClientFrame) bool { return *f.Seq == 7 }},
		{`{"type":"typing","conversation_id":"` + conv + `","state":"start"}`, func(f ClientFrame) bool { return f.State == "start" }},
		{`{"type":"sync"}`, func(f ClientFrame) bool { return f.Position == "" && f.Limit == nil }},
		{`{"type":"sync","position":"djE6MTI","limit":20}`, func(f ClientFrame) bool { return f.Position == "djE6MTI" && *f.Limit == 20 }},
		{`{"type":"history","id":"h","conversation_id":"` + conv + `","after":0,"limit":5}`,
			func(f ClientFrame) bool { q := f.HistoryQuery(); return q.Forwards() && q.After == 0 && q.Limit == 5 }},
		{`{"type":"history","id":"h","conversation_id":"` + conv + `","before":9}`,
			func(f ClientFrame) bool { q := f.HistoryQuery(); return !q.Forwards() && q.Before == 9 }},
		{` {"type":"ping"} `, func(f ClientFrame) bool { return f.Type == FramePing }},
		{`{"type":"auth","id":"a","access_token":"eyJ.x.y"}`, func(f ClientFrame) bool { return f.AccessToken == "eyJ.x.y" }},
	}
	for _, tc := range ok {
		f, err := DecodeClientFrame([]byte(tc.in), 0)
		if err != nil || !tc.check(f) {
			t.Errorf("%s: %+v, %v", tc.in, f, err)
		}
	}

	bad := []struct {
		in, wantMsg string
		code        parley.Code
		id          string
	}{
		{`not json`, "one JSON object", parley.CodeInvalidRequest, ""},
		{`[]`, "one JSON object", parley.CodeInvalidRequest, ""},
		{`null`, "one JSON object", parley.CodeInvalidRequest, ""},
		{`{"type":"ping"} {"type":"ping"}`, "one JSON object", parley.CodeInvalidRequest, ""},
		{`{"type":"ping"`, "one JSON object", parley.CodeInvalidRequest, ""},
		{`{"type":"ping"}}`, "one JSON object", parley.CodeInvalidRequest, ""},
		{`{"type":"ping"}]`, "one JSON object", parley.CodeInvalidRequest, ""},
		{`{}`, "needs a type", parley.CodeInvalidRequest, ""},
		{`{"type":"send","id":"r","conversation_id":"c","client_msg_id":"c","attachments":[{"media_id":""}]}`, "needs a media_id", parley.CodeInvalidRequest, "r"},
		{`{"type":"send","id":"r","conversation_id":"c","client_msg_id":"c","attachments":[` + strings.Repeat(`{"media_id":"m"},`, 10) + `{"media_id":"m"}]}`, "at most 10 attachments", parley.CodeInvalidRequest, "r"},
		{`{"type":"send","id":"r","conversation_id":"c","client_msg_id":"c","attachments":"m"}`, "wrong JSON type", parley.CodeInvalidRequest, "r"},
		{`{"type":"dance","id":"d1"}`, "unknown frame type", parley.CodeInvalidRequest, "d1"},
		{`{"type":"send","id":"r2","conversation_id":"` + conv + `","seq":"x"}`, "field seq", parley.CodeInvalidRequest, "r2"},
		{`{"type":"send","conversation_id":"` + conv + `"}`, "needs an id", parley.CodeInvalidRequest, ""},
		{`{"type":"send","id":"r3"}`, "needs conversation_id", parley.CodeInvalidRequest, "r3"},
		{`{"type":"read","conversation_id":"` + conv + `"}`, "needs a seq", parley.CodeInvalidRequest, ""},
		{`{"type":"read","conversation_id":"` + conv + `","seq":-1}`, "needs a seq", parley.CodeInvalidRequest, ""},
		{`{"type":"typing","conversation_id":"` + conv + `","state":"maybe"}`, "start or stop", parley.CodeInvalidRequest, ""},
		{`{"type":"sync","limit":1000}`, "sync limit", parley.CodeInvalidRequest, ""},
		{`{"type":"history","id":"h","conversation_id":"` + conv + `","before":3,"after":1}`, "not both", parley.CodeInvalidRequest, "h"},
		{`{"type":"history","id":"h","conversation_id":"` + conv + `","limit":201}`, "limit must be", parley.CodeInvalidRequest, "h"},
		{`{"type":"auth","id":"a"}`, "needs access_token", parley.CodeInvalidRequest, "a"},
		{`{"type":"auth","access_token":"t"}`, "needs an id", parley.CodeInvalidRequest, ""},
		{`{"type":"ping","id":"has space"}`, "printable ASCII", parley.CodeInvalidRequest, ""},
		{`{"type":"ping","id":"` + strings.Repeat("x", 65) + `"}`, "printable ASCII", parley.CodeInvalidRequest, ""},
	}
	for _, tc := range bad {
		f, err := DecodeClientFrame([]byte(tc.in), 0)
		if parley.ErrorCode(err) != tc.code || !strings.Contains(parley.ErrorMessage(err), tc.wantMsg) || f.ID != tc.id {
			t.Errorf("%s: id %q, %v; want id %q and %s containing %q", tc.in, f.ID, err, tc.id, tc.code, tc.wantMsg)
		}
	}
	_, err := DecodeClientFrame(bytes.Repeat([]byte(" "), 101), 100)
	if parley.ErrorCode(err) != parley.CodePayloadTooLarge {
		t.Errorf("oversized frame: %v", err)
	}
}

// TestServerFramesGolden pins the wire form of every server frame; run
// with -update after an intended change and review the diff.
func TestServerFramesGolden(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	msg := &parley.Message{
		ID: "01936f4e-9d3b-7c4e-8a21-3d5e6f708192", ConversationID: "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b", Seq: 42,
		SenderID: "01936f4e-7b19-7a2c-8e0f-1b3c4d5e6f70", SenderDeviceID: "01936f4e-7c20-7d31-9a44-5e6f708192a3",
		ClientMsgID: "c-17", Type: parley.MessageText, Body: "see you at 8", CreatedAt: at,
	}
	frames := map[string]any{
		"ack":            AckFrame{Type: FrameAck, ID: "r1", Message: msg},
		"error":          ErrorFrameFor("r2", parley.Errorf(parley.CodeConversationNotFound, "conversation not found")),
		"error_internal": ErrorFrameFor("", os.ErrNotExist),
		"message":        MessageFrame{Type: FrameMessage, Message: msg},
		"receipt":        ReceiptFrame{Type: FrameReceipt, ConversationID: msg.ConversationID, UserID: msg.SenderID, Kind: "read", Seq: 42},
		"pong":           PongFrame{Type: FramePong, ID: "p1"},
		"history_result": HistoryResultFrame{Type: FrameHistoryResult, ID: "h1", ConversationID: msg.ConversationID, Messages: []parley.Message{*msg}},
		"ready":          ReadyFrame{Type: FrameReady, UserID: msg.SenderID, DeviceID: msg.SenderDeviceID, PingInterval: 25, TokenExpires: at.Add(15 * time.Minute), MaxFrameBytes: DefaultMaxFrame},
		"typing":         TypingFrame{Type: FrameTyping, ConversationID: msg.ConversationID, UserID: msg.SenderID, State: "start", ExpiresIn: TypingExpiresIn},
		"presence":       PresenceFrame{Type: FramePresence, UserID: msg.SenderID, State: "offline", LastSeen: &at},
		"conversation": ConversationFrame{Type: FrameConversation, Action: "member_added", ByUserID: msg.SenderID, UserIDs: []string{"01936f4e-7e55-7f00-8b12-6f708192a3b4"},
			Conversation: &parley.Conversation{ID: msg.ConversationID, Kind: parley.KindGroup, Title: "climbing", LastSeq: 42, CreatedAt: at, MemberCount: 2, Members: []parley.Member{
				{UserID: msg.SenderID, Role: parley.MemberRoleOwner, ReadSeq: 42, DeliveredSeq: 42, JoinedAt: at},
				{UserID: "01936f4e-7e55-7f00-8b12-6f708192a3b4", Role: parley.MemberRoleMember, ReadSeq: 42, JoinedAt: at},
			}}},
		"sync_result": SyncResultFrame{Type: FrameSyncResult, ID: "s1", Position: "djE6MTA0", Conversations: []SyncConversation{
			{Conversation: &parley.Conversation{ID: msg.ConversationID, Kind: parley.KindDirect, LastSeq: 42, CreatedAt: at, MemberCount: 1, Members: []parley.Member{
				{UserID: msg.SenderID, Role: parley.MemberRoleMember, ReadSeq: 42, DeliveredSeq: 42, JoinedAt: at}}},
				ReadSeq: 41, UnreadCount: 1, Messages: []parley.Message{*msg}},
			{Conversation: ConversationRef{ID: "01936f4e-8c2a-7b3d-9f10-000000000001"}, Removed: true, Messages: []parley.Message{}},
		}},
		"conversation_paged": ConversationFrame{Type: FrameConversation, Action: "member_added", ByUserID: msg.SenderID, UserIDs: []string{"01936f4e-7e55-7f00-8b12-6f708192a3b4"},
			Conversation: &parley.Conversation{ID: msg.ConversationID, Kind: parley.KindGroup, Title: "all hands", LastSeq: 42, CreatedAt: at, MemberCount: 10001, MembersPaged: true},
			Members:      []parley.Member{{UserID: "01936f4e-7e55-7f00-8b12-6f708192a3b4", Role: parley.MemberRoleMember, ReadSeq: 42, JoinedAt: at}}},
		"sync_result_paged": SyncResultFrame{Type: FrameSyncResult, ID: "s1", Position: "djE6MTA0", Conversations: []SyncConversation{
			{Conversation: &parley.Conversation{ID: msg.ConversationID, Kind: parley.KindGroup, Title: "all hands", LastSeq: 42, CreatedAt: at, MemberCount: 10000, MembersPaged: true,
				Me:       &parley.Member{UserID: msg.SenderID, Role: parley.MemberRoleOwner, ReadSeq: 42, DeliveredSeq: 42, JoinedAt: at},
				Receipts: parley.SummarizeReceipts(3, []parley.Member{{ReadSeq: 3}, {DeliveredSeq: 2}, {DeliveredSeq: 1, ReadSeq: 1}})},
				ReadSeq: 42, Messages: []parley.Message{}},
		}},
		"authenticated": AuthenticatedFrame{Type: FrameAuthenticated, ID: "a1", TokenExpires: at.Add(15 * time.Minute)},
		"message_attachments": MessageFrame{Type: FrameMessage, Message: &parley.Message{
			ID: msg.ID, ConversationID: msg.ConversationID, Seq: 43, SenderID: msg.SenderID, SenderDeviceID: msg.SenderDeviceID,
			ClientMsgID: "c-18", Type: parley.MessageImage, CreatedAt: at, Attachments: []parley.Attachment{
				{MediaID: "01936f4f-0a1b-7c2d-8e3f-405162738495", ContentType: "image/jpeg", Size: 48213,
					SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Filename: "beach.jpg",
					Width: 1024, Height: 768, Thumbnail: &parley.Thumbnail{Width: 320, Height: 240}, Blurhash: "LEHV6nWB2yk8pyo0adR*.7kCMdnj"},
				{MediaID: "01936f4f-0a1b-7c2d-8e3f-405162738496", ContentType: "application/octet-stream", Size: 1 << 20, Encrypted: true},
			}}},
		"message_encrypted": MessageFrame{Type: FrameMessage, Message: &parley.Message{
			ID: msg.ID, ConversationID: msg.ConversationID, Seq: 44, SenderID: msg.SenderID, SenderDeviceID: msg.SenderDeviceID,
			ClientMsgID: "c-19", Type: parley.MessageEncrypted, CreatedAt: at, Envelope: (&parley.Envelope{V: 1, Suite: parley.SuiteX25519,
				Ciphertext: "n3rB0vQ2c1lVt6Yx9eC4Fq8uJm5aKp7dZ0hLw2sTg1oR", Signature: "kY7mQ2x9vB4nT6cR1wF8zL3pH5sJ0dG2aE9uK4iO7yN6bV1qW3eX8rZ5tM0jS2fA4gD7hP9lC6oU1nI3kB5vQ",
				Keys: []parley.EnvelopeKey{
					{DeviceID: "01936f4e-7f61-7a10-9c23-708192a3b4c5", KeyID: 3, Enc: "Hq2vN8xR4tL6mB1wC9zF3kP7sJ5dG0aE2uY4iO6nT8c", Sealed: "Vt5rK1yM8qW3xB6nP2zH9sL4dF7cJ0gA5eU2iO8vN3tR6mQ1wX4bZ7kY9pS2jD5fG"},
					{DeviceID: "01936f4e-7f61-7a10-9c23-000000000002", KeyID: 1, Enc: "other", Sealed: "other"},
				}}).For("01936f4e-7f61-7a10-9c23-708192a3b4c5")}},
		"error_device_mismatch": ErrorFrameFor("r3", parley.MatchDevices(
			[]parley.EnvelopeKey{{DeviceID: "01936f4e-7f61-7a10-9c23-000000000009", KeyID: 1}, {DeviceID: "01936f4e-7f61-7a10-9c23-708192a3b4c5", KeyID: 2}},
			[]parley.RecipientDevice{{UserID: msg.SenderID, DeviceID: msg.SenderDeviceID, KeyID: 1}, {UserID: "01936f4e-7e55-7f00-8b12-6f708192a3b4", DeviceID: "01936f4e-7f61-7a10-9c23-708192a3b4c5", KeyID: 3}})),
		"device_list": DeviceListFrame{Type: FrameDeviceList, UserID: msg.SenderID, Version: 8},
		"key_request": KeyRequestFrame{Type: FrameKeyRequest, ConversationID: msg.ConversationID, Seq: 42, UserID: "01936f4e-7e55-7f00-8b12-6f708192a3b4", DeviceID: "01936f4e-7f61-7a10-9c23-708192a3b4c5"},
	}
	for name, frame := range frames {
		got, err := Encode(frame)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		path := filepath.Join("testdata", name+".golden")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./wsgate -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s frame:\n got %s\nwant %s", name, got, want)
		}
	}
}

// FuzzDecodeClientFrame: any input decodes or fails with a client error
// code, never panics, and what it accepts satisfies the frame rules.
func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"send","id":"r1","conversation_id":"c","client_msg_id":"c1","body":"hi"}`,
		`{"type":"history","id":"h","conversation_id":"c","after":0,"limit":5}`,
		`{"type":"read","conversation_id":"c","seq":3}`, `{"type":"typing","conversation_id":"c","state":"stop"}`,
		`{"type":"send","id":"r2","conversation_id":"c","client_msg_id":"c2","attachments":[{"media_id":"m1"},{"media_id":"m2","size":3}]}`,
		`{"type":"send","id":"r3","conversation_id":"c","client_msg_id":"c3","attachments":[{}]}`,
		`{"type":"send","id":"r4","conversation_id":"c","client_msg_id":"c4","attachments":{"media_id":"m"}}`,
		`{"type":"send","id":"r5","conversation_id":"c","client_msg_id":"c5","message_type":"encrypted","envelope":{"v":1,"suite":"x25519-hkdf-sha256-chacha20poly1305","ciphertext":"AAAA","signature":"BB","keys":[{"device_id":"d","key_id":1,"enc":"e","sealed":"s"}]}}`,
		`{"type":"send","id":"r6","conversation_id":"c","client_msg_id":"c6","envelope":{"keys":{}}}`,
		`{"type":"sync","position":"x","limit":3}`, `{"type":"ping"}`, `{"type":"auth","id":"a","access_token":"t"}`, `{}`, `[]`, `null`, "\xff", `{"seq":1e999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := DecodeClientFrame(data, 4096)
		if err != nil {
			if c := parley.ErrorCode(err); c != parley.CodeInvalidRequest && c != parley.CodePayloadTooLarge {
				t.Fatalf("%q: code %s", data, c)
			}
			if !validRequestID(fr.ID) {
				t.Fatalf("%q: echoes an invalid id %q", data, fr.ID)
			}
			return
		}
		switch fr.Type {
		case FrameSend, FrameHistory:
			if fr.ID == "" || fr.ConversationID == "" {
				t.Fatalf("%q accepted without id or conversation", data)
			}
			if len(fr.Attachments) > parley.MaxAttachments {
				t.Fatalf("%q accepted with %d attachments", data, len(fr.Attachments))
			}
			for _, a := range fr.Attachments {
				if a.MediaID == "" {
					t.Fatalf("%q accepted an attachment without media_id", data)
				}
			}
		case FrameDelivered, FrameRead:
			if fr.Seq == nil || *fr.Seq < 0 {
				t.Fatalf("%q accepted without a valid seq", data)
			}
		case FrameAuth:
			if fr.ID == "" || fr.AccessToken == "" {
				t.Fatalf("%q accepted without id or token", data)
			}
		case FrameTyping, FrameSync, FramePing:
		default:
			t.Fatalf("%q accepted with type %q", data, fr.Type)
		}
	})
}

func TestTrimToBudget(t *testing.T) {
	big := strings.Repeat("x", 60<<10)
	var msgs []parley.Message
	for i := range 10 {
		msgs = append(msgs, parley.Message{Seq: int64(i + 1), Body: big})
	}
	fwd, cut := trimToBudget(msgs, true)
	if !cut || fwd[0].Seq != 1 || len(fwd) != 4 {
		t.Fatalf("forward: %d messages from %d, cut %v", len(fwd), fwd[0].Seq, cut)
	}
	back, cut := trimToBudget(msgs, false)
	if !cut || back[len(back)-1].Seq != 10 || len(back) != 4 {
		t.Fatalf("backward: %d messages to %d, cut %v", len(back), back[len(back)-1].Seq, cut)
	}
	huge := []parley.Message{{Seq: 1, Body: strings.Repeat("x", ReplyBudget*2)}}
	if one, cut := trimToBudget(huge, true); len(one) != 1 || cut {
		t.Fatalf("a single message over the budget must still go: %d %v", len(one), cut)
	}
	if all, cut := trimToBudget(msgs[:2], false); len(all) != 2 || cut {
		t.Fatalf("small page cut: %d %v", len(all), cut)
	}
}

// TestBudgetCountsEscapes: bodies that JSON escapes (control characters)
// cannot make a reply several times the budget.
func TestBudgetCountsEscapes(t *testing.T) {
	for _, body := range []string{strings.Repeat("<", 1300), strings.Repeat("\x01", 1300), strings.Repeat("\u2028", 500)} {
		var msgs []parley.Message
		for i := range 200 {
			msgs = append(msgs, parley.Message{ID: parley.NewID(), ConversationID: "c", Seq: int64(i + 1), Body: body, CreatedAt: time.Now()})
		}
		kept, cut := trimToBudget(msgs, true)
		data, _ := Encode(HistoryResultFrame{Type: FrameHistoryResult, ID: "h", Messages: kept, Truncated: cut})
		if len(data) > ReplyBudget*5/4 {
			t.Errorf("body %q...: a reply within the budget encodes to %d bytes (budget %d)", body[:3], len(data), ReplyBudget)
		}
	}
}
