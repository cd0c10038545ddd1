package cluster_test

import (
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/wstest"
)

// The abuse and privacy controls of issue 16, item 5, each shown against
// the real binary: the attack that worked before now fails.

// presenceOf waits for a presence frame about userID and returns its state.
func presenceOf(t testing.TB, c *wstest.Conn, userID string) string {
	t.Helper()
	for {
		var p struct {
			UserID string `json:"user_id"`
			State  string `json:"state"`
		}
		if err := e2e.UntilFrame(t, c, "presence").Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.UserID == userID {
			return p.State
		}
	}
}

// awaitOffline waits for an offline presence frame about userID, skipping
// repeated online ones: a session's initial list and the live announcement
// of the same connection may both say online (protocol.md section 9 allows
// a repeated online), so the next frame about a user who just left may be
// a stale online.
func awaitOffline(t testing.TB, c *wstest.Conn, userID string) {
	t.Helper()
	for {
		switch st := presenceOf(t, c, userID); st {
		case "offline":
			return
		case "online":
		default:
			t.Fatalf("presence of %s: state %q", userID, st)
		}
	}
}

// quietAbout fails if a presence frame about userID arrives within d.
func quietAbout(t testing.TB, c *wstest.Conn, userID string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		f, err := c.Next(time.Until(deadline))
		if err != nil {
			return
		}
		var p struct {
			UserID string `json:"user_id"`
		}
		if f.Type == "presence" && f.Decode(&p) == nil && p.UserID == userID {
			t.Fatalf("presence leaked: %s", f.Raw)
		}
	}
}

// TestSecurityBlocking: once Alice blocks Mallory, Mallory's direct
// messages never reach Alice's devices (live, by sync or in history), yet
// look accepted to Mallory and never show delivered or read; Mallory
// cannot add Alice to a group, and sees neither her presence nor her
// typing. Alice's other device learns the block.
func TestSecurityBlocking(t *testing.T) {
	p := e2e.StartRealtime(t)
	base := p.Base
	e2e.Signup(t, base, "alice")
	e2e.Signup(t, base, "mallory")
	e2e.Signup(t, base, "carol")
	aPhone, aLaptop := e2e.LoginDevice(t, base, "alice", "phone"), e2e.LoginDevice(t, base, "alice", "laptop")
	mPhone, cPhone := e2e.LoginDevice(t, base, "mallory", "phone"), e2e.LoginDevice(t, base, "carol", "phone")
	alice, mallory := aPhone.User, mPhone.User
	// Mallory knows Alice's handle: that is all it takes to open a DM.
	dm := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", mPhone.Token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	// Carol shares a group with Alice: the control that presence flows.
	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.Token, map[string]any{"kind": "group", "title": "friends", "members": []string{alice}})

	ap, al, mp, cp := e2e.Connect(t, base, aPhone), e2e.Connect(t, base, aLaptop), e2e.Connect(t, base, mPhone), e2e.Connect(t, base, cPhone)
	if st := presenceOf(t, cp, alice); st != "online" { // listed to Carol's new session
		t.Fatalf("carol sees alice %s", st)
	}
	mp.MustWrite(map[string]any{"type": "send", "id": "s1", "conversation_id": dm, "client_msg_id": "m1", "body": "hello"})
	if m := e2e.ExpectMessage(t, ap, "ack"); m.Seq != 1 || m.Body != "hello" {
		t.Fatalf("before the block alice got %+v", m)
	}
	ap.MustWrite(map[string]any{"type": "delivered", "conversation_id": dm, "seq": 1})
	if r := e2e.ExpectReceipt(t, mp, "delivered", alice); r.Seq != 1 {
		t.Fatalf("delivered before the block: %+v", r)
	}

	e2e.MustAPI(t, 204, "PUT", base+"/v1/blocks/"+mallory, aPhone.Token, nil)
	var block struct {
		UserID  string `json:"user_id"`
		Blocked bool   `json:"blocked"`
	}
	if err := e2e.UntilFrame(t, al, "block").Decode(&block); err != nil || block.UserID != mallory || !block.Blocked {
		t.Fatalf("alice's laptop: block frame %+v, %v", block, err)
	}
	if bs := e2e.MustAPI(t, 200, "GET", base+"/v1/blocks", aLaptop.Token, nil)["blocks"].([]any); len(bs) != 1 || bs[0].(map[string]any)["user_id"] != mallory {
		t.Fatalf("GET /v1/blocks = %v", bs)
	}
	// Mallory sees Alice go offline, and then nothing of her.
	awaitOffline(t, mp, alice)

	// Mallory's messages are accepted as ever, live and over REST ...
	mp.MustWrite(map[string]any{"type": "send", "id": "s2", "conversation_id": dm, "client_msg_id": "m2", "body": "spam 2"})
	ack := e2e.UntilFrame(t, mp, "ack")
	var a struct {
		Message map[string]any `json:"message"`
	}
	if err := ack.Decode(&a); err != nil || a.Message["seq"].(float64) != 2 || a.Message["body"] != "spam 2" || a.Message["withheld"] != nil || a.Message["deleted"] != nil {
		t.Fatalf("mallory's ack %s", ack.Raw)
	}
	sent := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations/"+dm+"/messages", mPhone.Token, map[string]any{"client_msg_id": "m3", "body": "spam 3"})["message"].(map[string]any)
	if sent["seq"].(float64) != 3 || sent["withheld"] != nil {
		t.Fatalf("mallory's REST send %v", sent)
	}
	// ... and reach none of Alice's devices live: Alice's own next
	// message is the barrier.
	ap.MustWrite(map[string]any{"type": "send", "id": "a4", "conversation_id": dm, "client_msg_id": "a4", "body": "bye"})
	for name, c := range map[string]*wstest.Conn{"phone": ap, "laptop": al} {
		var m e2e.MsgFrame
		if err := e2e.UntilFrame(t, c, "message").Decode(&m); err != nil || m.Message.Seq != 4 {
			t.Fatalf("alice's %s got %+v first, want her own seq 4", name, m.Message)
		}
	}
	// History and sync show Alice withheld tombstones, Mallory her words.
	hist := e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+dm+"/messages", aLaptop.Token, nil)["messages"].([]any)
	for _, m := range hist {
		mm := m.(map[string]any)
		if seq := mm["seq"].(float64); (seq == 2 || seq == 3) && (mm["body"] != "" || mm["withheld"] != true || mm["deleted"] != true) {
			t.Fatalf("alice's history shows %v", mm)
		}
	}
	al.MustWrite(map[string]any{"type": "sync", "id": "sync"})
	sr := e2e.UntilFrame(t, al, "sync_result")
	var sync e2e.SyncResult
	if err := sr.Decode(&sync); err != nil {
		t.Fatal(err)
	}
	for _, c := range sync.Conversations {
		for _, m := range c.Messages {
			if m.SenderID == mallory && m.Seq > 1 && (m.Body != "" || !m.Withheld) {
				t.Fatalf("alice's sync shows %+v", m)
			}
		}
		if c.Conversation.ID == dm && c.UnreadCount != 1 {
			t.Fatalf("unread %d, want 1 (seq 1; the withheld messages do not count)", c.UnreadCount)
		}
	}
	mhist := e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+dm+"/messages", mPhone.Token, nil)["messages"].([]any)
	if len(mhist) != 4 || mhist[1].(map[string]any)["body"] != "spam 2" || mhist[1].(map[string]any)["withheld"] != nil {
		t.Fatalf("mallory's history %v", mhist)
	}

	// Alice's receipts never reach Mallory: Mallory's own message after
	// them is the barrier, and her view keeps Alice's watermarks at 1.
	ap.MustWrite(map[string]any{"type": "delivered", "conversation_id": dm, "seq": 4})
	ap.MustWrite(map[string]any{"type": "read", "conversation_id": dm, "seq": 4})
	e2e.UntilFrame(t, ap, "receipt") // committed: Alice's own devices hear it
	ap.MustWrite(map[string]any{"type": "typing", "conversation_id": dm, "state": "start"})
	mp.MustWrite(map[string]any{"type": "send", "id": "s5", "conversation_id": dm, "client_msg_id": "m5", "body": "spam 5"})
	e2e.UntilFrame(t, mp, "message", "receipt", "typing") // seq 4, Alice's own
	e2e.UntilFrame(t, mp, "message", "receipt", "typing") // seq 5
	view := e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+dm, mPhone.Token, nil)["conversation"].(map[string]any)
	if am := e2e.MemberOf(t, view, alice); am["delivered_seq"].(float64) != 1 || am["read_seq"].(float64) > 1 {
		t.Fatalf("mallory sees alice's watermarks %v", am)
	}

	// Mallory cannot put Alice in a group, at creation or later.
	if code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations", mPhone.Token, map[string]any{"kind": "group", "title": "trap", "members": []string{alice}}); code != 403 {
		t.Fatalf("mallory's group with alice: %d %v", code, out)
	}
	g := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", mPhone.Token, map[string]any{"kind": "group", "title": "trap"})["conversation"].(map[string]any)["id"].(string)
	if code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations/"+g+"/members", mPhone.Token, map[string]any{"user_id": alice}); code != 403 {
		t.Fatalf("mallory adds alice: %d %v", code, out)
	}

	// Alice goes offline and comes back: Carol sees it, Mallory does not,
	// nor does a new device of Mallory's list her online.
	ap.Close()
	al.Close()
	awaitOffline(t, cp, alice)
	ap = e2e.Connect(t, base, aPhone)
	if st := presenceOf(t, cp, alice); st != "online" {
		t.Fatalf("carol sees alice %s", st)
	}
	quietAbout(t, mp, alice, 300*time.Millisecond)
	mLaptop := e2e.Connect(t, base, e2e.LoginDevice(t, base, "mallory", "laptop"))
	quietAbout(t, mLaptop, alice, 300*time.Millisecond)
	_ = ap

	// Unblocking lets new messages through; withheld ones stay withheld.
	e2e.MustAPI(t, 204, "DELETE", base+"/v1/blocks/"+mallory, aPhone.Token, nil)
	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations/"+dm+"/messages", mPhone.Token, map[string]any{"client_msg_id": "m6", "body": "sorry"})
	if m := e2e.ExpectMessage(t, ap, "ack", "block"); m.Seq != 6 || m.Body != "sorry" {
		t.Fatalf("after unblocking alice got %+v", m)
	}
	var one parley.Message
	raw := e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+dm+"/messages/5", aPhone.Token, nil)["message"].(map[string]any)
	one.Body, _ = raw["body"].(string)
	if one.Body != "" || raw["withheld"] != true {
		t.Fatalf("a withheld message after unblocking: %v", raw)
	}

	// A blocked user who never wrote to Alice opens a DM with her: it
	// looks created to him, and Alice never sees it, live or listed.
	eve, _ := e2e.Signup(t, base, "eve")
	e2e.MustAPI(t, 204, "PUT", base+"/v1/blocks/"+eve, aPhone.Token, nil)
	e2e.UntilFrame(t, ap, "block")
	eDevice := e2e.LoginDevice(t, base, "eve", "phone")
	edm := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", eDevice.Token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations/"+edm+"/messages", eDevice.Token, map[string]any{"client_msg_id": "e1", "body": "hi"})
	ap.Quiet(300*time.Millisecond, "conversation", "message")
	for _, c := range e2e.MustAPI(t, 200, "GET", base+"/v1/conversations", aPhone.Token, nil)["conversations"].([]any) {
		if c.(map[string]any)["id"] == edm {
			t.Fatalf("alice's list shows the blocked user's DM: %v", c)
		}
	}
}

// expectReceiptNot waits for a receipt of kind by user want, failing if
// one of that kind by user banned comes first.
func expectReceiptNot(t testing.TB, c *wstest.Conn, kind, want, banned string) {
	t.Helper()
	for {
		var r e2e.ReceiptFrame
		if err := e2e.UntilFrame(t, c, "receipt").Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.Kind == kind && r.UserID == banned {
			t.Fatalf("%s receipt of %s leaked: %+v", kind, banned, r)
		}
		if r.Kind == kind && r.UserID == want {
			return
		}
	}
}

// TestSecurityPrivacySettings: with presence and read receipts set to
// nobody, Alice's presence and last seen and her read watermark reach no
// one (Carol is the third user who watches), across live frames, the
// online list and REST views; as in WhatsApp, Alice then sees no one's
// read watermark either. Restricting presence while online shows Bob
// offline to those who may no longer see him.
func TestSecurityPrivacySettings(t *testing.T) {
	p := e2e.StartRealtime(t)
	base := p.Base
	for _, h := range []string{"alice", "bob", "carol", "dave"} {
		e2e.Signup(t, base, h)
	}
	aPhone, aLaptop := e2e.LoginDevice(t, base, "alice", "phone"), e2e.LoginDevice(t, base, "alice", "laptop")
	bPhone, cPhone, dPhone := e2e.LoginDevice(t, base, "bob", "phone"), e2e.LoginDevice(t, base, "carol", "phone"), e2e.LoginDevice(t, base, "dave", "phone")
	alice, bob, carol, dave := aPhone.User, bPhone.User, cPhone.User, dPhone.User
	g := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.Token, map[string]any{"kind": "group", "title": "g", "members": []string{alice, bob, dave}})["conversation"].(map[string]any)["id"].(string)

	if code, out := e2e.API(t, http.DefaultClient, "PATCH", base+"/v1/me/privacy", aPhone.Token, map[string]any{"presence": "friends"}); code != 400 {
		t.Fatalf("a bad visibility: %d %v", code, out)
	}
	pr := e2e.MustAPI(t, 200, "PATCH", base+"/v1/me/privacy", aPhone.Token, map[string]any{"presence": "nobody", "read_receipts": "nobody"})["privacy"].(map[string]any)
	if pr["presence"] != "nobody" || pr["read_receipts"] != "nobody" {
		t.Fatalf("PATCH /v1/me/privacy = %v", pr)
	}
	if pr := e2e.MustAPI(t, 200, "GET", base+"/v1/me/privacy", aLaptop.Token, nil)["privacy"].(map[string]any); pr["presence"] != "nobody" {
		t.Fatalf("GET /v1/me/privacy = %v", pr)
	}

	cp := e2e.Connect(t, base, cPhone)
	ap, al := e2e.Connect(t, base, aPhone), e2e.Connect(t, base, aLaptop)
	bp := e2e.Connect(t, base, bPhone)
	// Bob's online reaches Carol (the control); Alice's never does.
	if st := presenceOf(t, cp, bob); st != "online" {
		t.Fatalf("carol sees bob %s", st)
	}
	quietAbout(t, cp, alice, 300*time.Millisecond)
	c2 := e2e.Connect(t, base, e2e.LoginDevice(t, base, "carol", "laptop"))
	if st := presenceOf(t, c2, bob); st != "online" { // the online list has Bob ...
		t.Fatalf("carol's laptop sees bob %s", st)
	}
	quietAbout(t, c2, alice, 300*time.Millisecond) // ... and not Alice

	// Carol writes; Alice reads on her phone: her laptop learns it, Carol
	// does not. Bob's read after Alice's is the barrier.
	cp.MustWrite(map[string]any{"type": "send", "id": "c1", "conversation_id": g, "client_msg_id": "c1", "body": "party at 8"})
	e2e.ExpectMessage(t, ap, "ack")
	ap.MustWrite(map[string]any{"type": "read", "conversation_id": g, "seq": 1})
	if r := e2e.ExpectReceipt(t, al, "read", alice); r.Seq != 1 {
		t.Fatalf("alice's laptop: %+v", r)
	}
	bp.MustWrite(map[string]any{"type": "read", "conversation_id": g, "seq": 1})
	expectReceiptNot(t, cp, "read", bob, alice)
	view := e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+g, cPhone.Token, nil)["conversation"].(map[string]any)
	if am, bm := e2e.MemberOf(t, view, alice), e2e.MemberOf(t, view, bob); am["read_seq"].(float64) != 0 || bm["read_seq"].(float64) != 1 {
		t.Fatalf("carol sees alice %v and bob %v", am, bm)
	}
	msg := e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+g+"/messages/1", cPhone.Token, nil)["message"].(map[string]any)
	if msg["read_count"].(float64) != 1 {
		t.Fatalf("carol's message 1 is read by %v, want 1 (bob)", msg["read_count"])
	}
	// Reciprocity: Alice sees no one's read watermark.
	aview := e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+g, aPhone.Token, nil)["conversation"].(map[string]any)
	if bm := e2e.MemberOf(t, aview, bob); bm["read_seq"].(float64) != 0 {
		t.Fatalf("alice sees bob's read_seq %v", bm["read_seq"])
	}

	// Alice goes away: no offline, no last seen, for Carol; Dave's coming
	// and going is the control.
	ap.Close()
	al.Close()
	dp := e2e.Connect(t, base, dPhone)
	if st := presenceOf(t, cp, dave); st != "online" {
		t.Fatalf("carol sees dave %s", st)
	}
	dp.Close()
	awaitOffline(t, cp, dave)
	quietAbout(t, cp, alice, 300*time.Millisecond)

	// Bob restricts his presence while online: Carol sees him go offline,
	// and nothing of him after.
	e2e.MustAPI(t, 200, "PATCH", base+"/v1/me/privacy", bPhone.Token, map[string]any{"presence": "nobody"})
	awaitOffline(t, cp, bob)
	c3 := e2e.Connect(t, base, e2e.LoginDevice(t, base, "carol", "tablet"))
	quietAbout(t, c3, bob, 300*time.Millisecond)
	_ = carol
}

// TestSecurityMessageRequests: a stranger who knows Alice's handle can
// put her in a DM or a group, but the conversation is a message request:
// until she accepts, the stranger sees neither her presence and last
// seen, nor her typing or receipts, while her contact does; accepting
// lets receipts through, declining leaves (and blocks, if asked); and the
// stranger can add only so many strangers an hour.
func TestSecurityMessageRequests(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off", "PARLEY_MESSAGE_REQUESTS=on", "PARLEY_STRANGER_ADDS=3"}, "--presence-grace", "300ms")
	base := p.Base
	for _, h := range []string{"alice", "mallory", "carol", "dave", "erin"} {
		e2e.Signup(t, base, h)
	}
	aPhone, aLaptop := e2e.LoginDevice(t, base, "alice", "phone"), e2e.LoginDevice(t, base, "alice", "laptop")
	mPhone, cPhone := e2e.LoginDevice(t, base, "mallory", "phone"), e2e.LoginDevice(t, base, "carol", "phone")
	alice, mallory, carol := aPhone.User, mPhone.User, cPhone.User
	// Carol is Alice's contact: Alice accepted Carol's DM.
	cdm := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.Token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)
	if m := e2e.MemberOf(t, cdm, alice); m["request"] != true {
		t.Fatalf("carol's first DM: alice is %v, want a request", m)
	}
	e2e.MustAPI(t, 200, "POST", base+"/v1/conversations/"+cdm["id"].(string)+"/accept", aPhone.Token, nil)

	ap, al := e2e.Connect(t, base, aPhone), e2e.Connect(t, base, aLaptop)
	// Mallory knows the handle: a DM and a group, both requests.
	dmObj := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", mPhone.Token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)
	dm := dmObj["id"].(string)
	if m := e2e.MemberOf(t, dmObj, alice); m["request"] != true {
		t.Fatalf("mallory's DM: alice is %v, want a request", m)
	}
	var conv struct {
		Action       string              `json:"action"`
		Conversation parley.Conversation `json:"conversation"`
	}
	if err := e2e.UntilFrame(t, al, "conversation").Decode(&conv); err != nil || conv.Conversation.ID != dm || !conv.Conversation.MemberOf(alice).Request {
		t.Fatalf("alice's laptop: the request frame %+v, %v", conv, err)
	}
	grp := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", mPhone.Token, map[string]any{"kind": "group", "title": "1,000 friends", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)

	mp, cp := e2e.Connect(t, base, mPhone), e2e.Connect(t, base, cPhone)
	// Carol's online list has Alice (the control); Mallory's does not.
	if st := presenceOf(t, cp, alice); st != "online" {
		t.Fatalf("carol sees alice %s", st)
	}
	quietAbout(t, mp, alice, 300*time.Millisecond)
	// Alice goes away and comes back: Carol sees both, Mallory neither.
	ap.Close()
	al.Close()
	awaitOffline(t, cp, alice)
	ap = e2e.Connect(t, base, aPhone)
	if st := presenceOf(t, cp, alice); st != "online" {
		t.Fatalf("carol sees alice %s", st)
	}
	quietAbout(t, mp, alice, 300*time.Millisecond)

	// The messages arrive (it is a request, not a block) but nothing of
	// Alice's flows back: Mallory's own next message is the barrier.
	mp.MustWrite(map[string]any{"type": "send", "id": "m1", "conversation_id": dm, "client_msg_id": "m1", "body": "hi, I saw your handle"})
	if m := e2e.ExpectMessage(t, ap, "ack", "conversation"); m.Body != "hi, I saw your handle" {
		t.Fatalf("alice got %+v", m)
	}
	ap.MustWrite(map[string]any{"type": "delivered", "conversation_id": dm, "seq": 1})
	ap.MustWrite(map[string]any{"type": "read", "conversation_id": dm, "seq": 1})
	ap.MustWrite(map[string]any{"type": "typing", "conversation_id": dm, "state": "start"})
	e2e.ExpectReceipt(t, ap, "read", alice) // committed; Alice's own devices hear it
	mp.MustWrite(map[string]any{"type": "send", "id": "m2", "conversation_id": dm, "client_msg_id": "m2", "body": "hello?"})
	e2e.UntilFrame(t, mp, "message", "receipt", "typing") // seq 1
	e2e.UntilFrame(t, mp, "message", "receipt", "typing") // seq 2
	view := e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+dm, mPhone.Token, nil)["conversation"].(map[string]any)
	if am := e2e.MemberOf(t, view, alice); am["request"] != true || am["read_seq"].(float64) != 0 || am["delivered_seq"].(float64) != 0 {
		t.Fatalf("mallory sees alice as %v", am)
	}

	// Alice accepts the DM: Mallory learns it, and receipts flow.
	e2e.MustAPI(t, 200, "POST", base+"/v1/conversations/"+dm+"/accept", aLaptop.Token, nil)
	var acc struct {
		Action  string   `json:"action"`
		UserIDs []string `json:"user_ids"`
	}
	if err := e2e.UntilFrame(t, mp, "conversation").Decode(&acc); err != nil || acc.Action != "accepted" || len(acc.UserIDs) != 1 || acc.UserIDs[0] != alice {
		t.Fatalf("mallory's accepted frame %+v, %v", acc, err)
	}
	ap.MustWrite(map[string]any{"type": "read", "conversation_id": dm, "seq": 2})
	if r := e2e.ExpectReceipt(t, mp, "read", alice); r.Seq != 2 {
		t.Fatalf("after accepting: %+v", r)
	}

	// The group: Alice declines and blocks.
	e2e.MustAPI(t, 204, "POST", base+"/v1/conversations/"+grp+"/decline", aPhone.Token, map[string]any{"block": true})
	if code, _ := e2e.API(t, http.DefaultClient, "GET", base+"/v1/conversations/"+grp, aPhone.Token, nil); code != 404 {
		t.Fatalf("alice still sees the declined group: %d", code)
	}
	if bs := e2e.MustAPI(t, 200, "GET", base+"/v1/blocks", aPhone.Token, nil)["blocks"].([]any); len(bs) != 1 || bs[0].(map[string]any)["user_id"] != mallory {
		t.Fatalf("blocks after declining with block: %v", bs)
	}
	if code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations/"+dm+"/decline", aPhone.Token, nil); code != 409 {
		t.Fatalf("declining an accepted conversation: %d %v", code, out)
	}

	// Erin's DM request: Alice declines it and blocks her. Erin opening
	// the DM again puts Alice back only as a request Alice is never shown:
	// not listed, not announced (Carol's group after it is the barrier on
	// Alice's socket), as a new DM from a blocked user.
	eTok := e2e.LoginDevice(t, base, "erin", "phone").Token
	edm := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", eTok, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	e2e.MustAPI(t, 204, "POST", base+"/v1/conversations/"+edm+"/decline", aPhone.Token, map[string]any{"block": true})
	// drainTo reads Alice's conversation frames up to a new group of
	// Carol's, and fails on one about Erin's DM if told to.
	drainTo := func(title string, forbidEDM bool) {
		t.Helper()
		barrier := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.Token, map[string]any{"kind": "group", "title": title, "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
		for {
			var f struct {
				Conversation parley.Conversation `json:"conversation"`
			}
			if err := e2e.UntilFrame(t, ap, "conversation").Decode(&f); err != nil {
				t.Fatal(err)
			}
			if forbidEDM && f.Conversation.ID == edm {
				t.Fatal("a blocked user reopening a declined DM: alice's socket is told")
			}
			if f.Conversation.ID == barrier {
				return
			}
		}
	}
	drainTo("before", false)
	e2e.MustAPI(t, 200, "POST", base+"/v1/conversations", eTok, map[string]any{"kind": "direct", "members": []string{alice}})
	drainTo("after", true)
	for _, c := range e2e.MustAPI(t, 200, "GET", base+"/v1/conversations", aPhone.Token, nil)["conversations"].([]any) {
		if c.(map[string]any)["id"] == edm {
			t.Fatal("a blocked user reopening a declined DM: alice lists it")
		}
	}

	// Mallory has used two of three strangers this hour: one more, then
	// rate_limited. Carol adding Alice, a contact, costs nothing.
	dave := e2e.MustAPI(t, 200, "GET", base+"/v1/users?handle=dave", mPhone.Token, nil)["user"].(map[string]any)["id"].(string)
	erin := e2e.MustAPI(t, 200, "GET", base+"/v1/users?handle=erin", mPhone.Token, nil)["user"].(map[string]any)["id"].(string)
	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", mPhone.Token, map[string]any{"kind": "direct", "members": []string{dave}})
	if code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/conversations", mPhone.Token, map[string]any{"kind": "direct", "members": []string{erin}}); code != 429 {
		t.Fatalf("the fourth stranger: %d %v", code, out)
	}
	for range 5 {
		e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.Token, map[string]any{"kind": "group", "title": "friends", "members": []string{alice}})
	}
	_ = carol
}

// TestSecurityReports: Alice reports Mallory's message and Mallory; an
// admin sees both reports with the message's content (copied by the
// server), Alice and Mallory cannot list reports, and resolving with
// suspend ends Mallory's sessions.
func TestSecurityReports(t *testing.T) {
	data := t.TempDir()
	p := e2e.StartParleyd(t, data, []string{"PARLEY_LIMITS=off"})
	base := p.Base
	_, rootTok := e2e.Signup(t, base, "root")
	alice, aliceTok := e2e.Signup(t, base, "alice")
	mallory, malloryTok := e2e.Signup(t, base, "mallory")
	_ = alice
	if out, err := exec.Command(e2e.Bin(), "admin", "grant", "root", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	dm := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", malloryTok, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations/"+dm+"/messages", malloryTok, map[string]any{"client_msg_id": "m1", "body": "send me your password"})

	// A report of a message the reporter cannot see is refused like a
	// missing one; bad input is refused and changes nothing.
	for _, bad := range []map[string]any{
		{"conversation_id": dm, "seq": 1, "reason": "because"},
		{"conversation_id": dm, "seq": 9, "reason": "spam"},
		{"reason": "spam"},
		{"user_id": alice, "conversation_id": dm, "seq": 1, "reason": "spam"},
	} {
		if code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/reports", aliceTok, bad); code != 400 && code != 404 {
			t.Fatalf("report %v: %d %v", bad, code, out)
		}
	}
	rep := e2e.MustAPI(t, 201, "POST", base+"/v1/reports", aliceTok, map[string]any{"conversation_id": dm, "seq": 1, "reason": "harassment", "comment": "phishing", "content": "something else"})["report"].(map[string]any)
	if rep["state"] != "open" || rep["content"] != nil {
		t.Fatalf("the reporter's view of a report %v", rep)
	}
	e2e.MustAPI(t, 201, "POST", base+"/v1/reports", aliceTok, map[string]any{"user_id": mallory, "reason": "spam"})

	// Only admins list them.
	for name, tok := range map[string]string{"alice": aliceTok, "mallory": malloryTok} {
		if code, out := e2e.API(t, http.DefaultClient, "GET", base+"/v1/admin/reports", tok, nil); code != 403 {
			t.Fatalf("%s lists reports: %d %v", name, code, out)
		}
		if code, out := e2e.API(t, http.DefaultClient, "POST", base+"/v1/admin/reports/"+rep["id"].(string)+"/resolve", tok, map[string]any{}); code != 403 {
			t.Fatalf("%s resolves a report: %d %v", name, code, out)
		}
	}
	list := e2e.MustAPI(t, 200, "GET", base+"/v1/admin/reports?state=open", rootTok, nil)["reports"].([]any)
	if len(list) != 2 {
		t.Fatalf("admin sees %d reports, want 2: %v", len(list), list)
	}
	var msgReport map[string]any
	for _, r := range list {
		if rr := r.(map[string]any); rr["id"] == rep["id"] {
			msgReport = rr
		}
	}
	if msgReport == nil || msgReport["content"] != "send me your password" || msgReport["content_source"] != "server" ||
		msgReport["user_id"] != mallory || msgReport["reporter_id"] != alice || msgReport["comment"] != "phishing" {
		t.Fatalf("the admin's view of the message report: %v", msgReport)
	}

	res := e2e.MustAPI(t, 200, "POST", base+"/v1/admin/reports/"+rep["id"].(string)+"/resolve", rootTok, map[string]any{"resolution": "phishing", "suspend": true})["report"].(map[string]any)
	if res["state"] != "resolved" || res["resolution"] != "phishing" {
		t.Fatalf("resolved report %v", res)
	}
	if code, _ := e2e.API(t, http.DefaultClient, "GET", base+"/v1/me", malloryTok, nil); code != 401 {
		t.Fatalf("the suspended reported user's token: %d, want 401", code)
	}
	if open := e2e.MustAPI(t, 200, "GET", base+"/v1/admin/reports?state=open", rootTok, nil)["reports"].([]any); len(open) != 1 {
		t.Fatalf("open reports after resolving one: %v", open)
	}
}

// TestSecurityPresenceAcrossNodes: the presence rules hold in a cluster
// (a shared PostgreSQL store, the machine's NATS, the presence directory):
// Alice is on node 1; on node 2, her contact Carol sees her come and go,
// while the stranger Mallory, who put her in a DM, and Dave, whom she
// blocks, see nothing of her, neither in the online list nor live.
func TestSecurityPresenceAcrossNodes(t *testing.T) {
	env := append(e2e.ClusterEnv(t), "PARLEY_MESSAGE_REQUESTS=on", "PARLEY_LIMITS=off")
	n1 := e2e.StartParleyd(t, t.TempDir(), env, "--presence-grace", "300ms")
	n2 := e2e.StartParleyd(t, t.TempDir(), env, "--presence-grace", "300ms")
	for _, h := range []string{"alice", "carol", "mallory", "dave"} {
		e2e.Signup(t, n1.Base, h)
	}
	a := e2e.LoginDevice(t, n1.Base, "alice", "phone")
	c, m, d := e2e.LoginDevice(t, n2.Base, "carol", "phone"), e2e.LoginDevice(t, n2.Base, "mallory", "phone"), e2e.LoginDevice(t, n2.Base, "dave", "phone")
	alice := a.User
	cdm := e2e.MustAPI(t, 201, "POST", n2.Base+"/v1/conversations", c.Token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	e2e.MustAPI(t, 200, "POST", n1.Base+"/v1/conversations/"+cdm+"/accept", a.Token, nil)
	ddm := e2e.MustAPI(t, 201, "POST", n2.Base+"/v1/conversations", d.Token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	e2e.MustAPI(t, 200, "POST", n1.Base+"/v1/conversations/"+ddm+"/accept", a.Token, nil)
	e2e.MustAPI(t, 201, "POST", n2.Base+"/v1/conversations", m.Token, map[string]any{"kind": "direct", "members": []string{alice}})
	e2e.MustAPI(t, 204, "PUT", n1.Base+"/v1/blocks/"+d.User, a.Token, nil)

	ac := e2e.Connect(t, n1.Base, a)
	cc, mc, dc := e2e.Connect(t, n2.Base, c), e2e.Connect(t, n2.Base, m), e2e.Connect(t, n2.Base, d)
	if st := presenceOf(t, cc, alice); st != "online" {
		t.Fatalf("carol on node 2 sees alice %s", st)
	}
	ac.Close()
	// A node's list and the other's announcement may both say online
	// (the protocol allows a repeated online): wait for the offline.
	awaitOffline(t, cc, alice)
	ac = e2e.Connect(t, n1.Base, a)
	if st := presenceOf(t, cc, alice); st != "online" {
		t.Fatalf("carol on node 2 sees alice %s", st)
	}
	quietAbout(t, mc, alice, 500*time.Millisecond)
	quietAbout(t, dc, alice, 500*time.Millisecond)
	_ = ac
}

// TestSecurityPrivacyContacts: with presence and read receipts set to
// contacts, Alice's contact (Carol, whose DM she accepted) sees her
// presence and her read receipts, while a fellow member of a group who is
// no contact (Gina, a stranger Alice added, whose membership is still a
// request) sees neither, although she did while Alice's settings were
// everyone (the control).
func TestSecurityPrivacyContacts(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off", "PARLEY_MESSAGE_REQUESTS=on"}, "--presence-grace", "300ms")
	base := p.Base
	for _, h := range []string{"alice", "carol", "gina"} {
		e2e.Signup(t, base, h)
	}
	aPhone, cPhone, gPhone := e2e.LoginDevice(t, base, "alice", "phone"), e2e.LoginDevice(t, base, "carol", "phone"), e2e.LoginDevice(t, base, "gina", "phone")
	alice, carol, gina := aPhone.User, cPhone.User, gPhone.User
	// Carol is Alice's contact: Alice accepted Carol's DM.
	cdm := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.Token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	e2e.MustAPI(t, 200, "POST", base+"/v1/conversations/"+cdm+"/accept", aPhone.Token, nil)
	// Alice's group holds Carol (a contact: an ordinary member) and Gina
	// (a stranger: a request).
	gObj := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", aPhone.Token, map[string]any{"kind": "group", "title": "g", "members": []string{carol, gina}})["conversation"].(map[string]any)
	if c, g := e2e.MemberOf(t, gObj, carol), e2e.MemberOf(t, gObj, gina); c["request"] == true || g["request"] != true {
		t.Fatalf("alice's group: carol %v, gina %v; want carol a member, gina a request", c, g)
	}
	g := gObj["id"].(string)

	// The control: with everyone, Gina sees Alice online.
	ap := e2e.Connect(t, base, aPhone)
	gp := e2e.Connect(t, base, gPhone)
	if st := presenceOf(t, gp, alice); st != "online" {
		t.Fatalf("gina sees alice %s while alice's presence is everyone", st)
	}
	pr := e2e.MustAPI(t, 200, "PATCH", base+"/v1/me/privacy", aPhone.Token, map[string]any{"presence": "contacts", "read_receipts": "contacts"})["privacy"].(map[string]any)
	if pr["presence"] != "contacts" || pr["read_receipts"] != "contacts" {
		t.Fatalf("PATCH /v1/me/privacy = %v", pr)
	}
	awaitOffline(t, gp, alice) // restricted while online: Gina sees her go

	// A contact's new connection has Alice in its online list; Gina's new
	// one does not.
	cp := e2e.Connect(t, base, cPhone)
	if st := presenceOf(t, cp, alice); st != "online" {
		t.Fatalf("carol (a contact) sees alice %s", st)
	}
	gp2 := e2e.Connect(t, base, e2e.LoginDevice(t, base, "gina", "laptop"))
	quietAbout(t, gp2, alice, 500*time.Millisecond)

	// Alice reads Carol's message: Carol gets the receipt, Gina does not
	// (her own read, which her devices always learn, is the barrier).
	cp.MustWrite(map[string]any{"type": "send", "id": "c1", "conversation_id": g, "client_msg_id": "c1", "body": "party at 8"})
	e2e.ExpectMessage(t, ap, "ack", "presence")
	ap.MustWrite(map[string]any{"type": "read", "conversation_id": g, "seq": 1})
	if r := e2e.ExpectReceipt(t, cp, "read", alice); r.Seq != 1 {
		t.Fatalf("carol (a contact): alice's read receipt %+v", r)
	}
	gp.MustWrite(map[string]any{"type": "read", "conversation_id": g, "seq": 1})
	expectReceiptNot(t, gp, "read", gina, alice)
	if am := e2e.MemberOf(t, e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+g, cPhone.Token, nil)["conversation"].(map[string]any), alice); am["read_seq"].(float64) != 1 {
		t.Fatalf("carol (a contact) sees alice's read_seq %v, want 1", am["read_seq"])
	}
	if am := e2e.MemberOf(t, e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+g, gPhone.Token, nil)["conversation"].(map[string]any), alice); am["read_seq"].(float64) != 0 {
		t.Fatalf("gina (no contact) sees alice's read_seq %v, want 0", am["read_seq"])
	}

	// Alice goes away: Carol sees it, Gina does not.
	ap.Close()
	awaitOffline(t, cp, alice)
	quietAbout(t, gp2, alice, 500*time.Millisecond)
}
