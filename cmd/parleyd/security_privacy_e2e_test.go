package main

import (
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/wstest"
)

// The abuse and privacy controls of issue 16, item 5, each shown against
// the real binary: the attack that worked before now fails.

// untilFrame reads frames until one of type typ and returns it, failing if
// a frame of a type in forbidden comes first. Events of one conversation
// reach a session in the order they were published, so a frame the test
// causes after an action is a barrier: what the action would have sent
// comes before it.
func untilFrame(t testing.TB, c *wstest.Conn, typ string, forbidden ...string) wstest.Frame {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := c.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for a %s frame: %v", typ, err)
		}
		for _, bad := range forbidden {
			if f.Type == bad {
				t.Fatalf("got %s before the %s frame", f.Raw, typ)
			}
		}
		if f.Type == typ {
			return f
		}
	}
}

// presenceOf waits for a presence frame about userID and returns its state.
func presenceOf(t testing.TB, c *wstest.Conn, userID string) string {
	t.Helper()
	for {
		var p struct {
			UserID string `json:"user_id"`
			State  string `json:"state"`
		}
		if err := untilFrame(t, c, "presence").Decode(&p); err != nil {
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

func memberOf(t testing.TB, conv map[string]any, userID string) map[string]any {
	t.Helper()
	for _, m := range conv["members"].([]any) {
		if mm := m.(map[string]any); mm["user_id"] == userID {
			return mm
		}
	}
	t.Fatalf("no member %s in %v", userID, conv)
	return nil
}

// TestSecurityBlocking: once Alice blocks Mallory, Mallory's direct
// messages never reach Alice's devices (live, by sync or in history), yet
// look accepted to Mallory and never show delivered or read; Mallory
// cannot add Alice to a group, and sees neither her presence nor her
// typing. Alice's other device learns the block.
func TestSecurityBlocking(t *testing.T) {
	p := startRealtime(t)
	base := p.base
	signup(t, base, "alice")
	signup(t, base, "mallory")
	signup(t, base, "carol")
	aPhone, aLaptop := loginDevice(t, base, "alice", "phone"), loginDevice(t, base, "alice", "laptop")
	mPhone, cPhone := loginDevice(t, base, "mallory", "phone"), loginDevice(t, base, "carol", "phone")
	alice, mallory := aPhone.user, mPhone.user
	// Mallory knows Alice's handle: that is all it takes to open a DM.
	dm := mustAPI(t, 201, "POST", base+"/v1/conversations", mPhone.token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	// Carol shares a group with Alice: the control that presence flows.
	mustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.token, map[string]any{"kind": "group", "title": "friends", "members": []string{alice}})

	ap, al, mp, cp := connect(t, base, aPhone), connect(t, base, aLaptop), connect(t, base, mPhone), connect(t, base, cPhone)
	if st := presenceOf(t, cp, alice); st != "online" { // listed to Carol's new session
		t.Fatalf("carol sees alice %s", st)
	}
	mp.MustWrite(map[string]any{"type": "send", "id": "s1", "conversation_id": dm, "client_msg_id": "m1", "body": "hello"})
	if m := expectMessage(t, ap, "ack"); m.Seq != 1 || m.Body != "hello" {
		t.Fatalf("before the block alice got %+v", m)
	}
	ap.MustWrite(map[string]any{"type": "delivered", "conversation_id": dm, "seq": 1})
	if r := expectReceipt(t, mp, "delivered", alice); r.Seq != 1 {
		t.Fatalf("delivered before the block: %+v", r)
	}

	mustAPI(t, 204, "PUT", base+"/v1/blocks/"+mallory, aPhone.token, nil)
	var block struct {
		UserID  string `json:"user_id"`
		Blocked bool   `json:"blocked"`
	}
	if err := untilFrame(t, al, "block").Decode(&block); err != nil || block.UserID != mallory || !block.Blocked {
		t.Fatalf("alice's laptop: block frame %+v, %v", block, err)
	}
	if bs := mustAPI(t, 200, "GET", base+"/v1/blocks", aLaptop.token, nil)["blocks"].([]any); len(bs) != 1 || bs[0].(map[string]any)["user_id"] != mallory {
		t.Fatalf("GET /v1/blocks = %v", bs)
	}
	// Mallory sees Alice go offline, and then nothing of her.
	awaitOffline(t, mp, alice)

	// Mallory's messages are accepted as ever, live and over REST ...
	mp.MustWrite(map[string]any{"type": "send", "id": "s2", "conversation_id": dm, "client_msg_id": "m2", "body": "spam 2"})
	ack := untilFrame(t, mp, "ack")
	var a struct {
		Message map[string]any `json:"message"`
	}
	if err := ack.Decode(&a); err != nil || a.Message["seq"].(float64) != 2 || a.Message["body"] != "spam 2" || a.Message["withheld"] != nil || a.Message["deleted"] != nil {
		t.Fatalf("mallory's ack %s", ack.Raw)
	}
	sent := mustAPI(t, 201, "POST", base+"/v1/conversations/"+dm+"/messages", mPhone.token, map[string]any{"client_msg_id": "m3", "body": "spam 3"})["message"].(map[string]any)
	if sent["seq"].(float64) != 3 || sent["withheld"] != nil {
		t.Fatalf("mallory's REST send %v", sent)
	}
	// ... and reach none of Alice's devices live: Alice's own next
	// message is the barrier.
	ap.MustWrite(map[string]any{"type": "send", "id": "a4", "conversation_id": dm, "client_msg_id": "a4", "body": "bye"})
	for name, c := range map[string]*wstest.Conn{"phone": ap, "laptop": al} {
		var m msgFrame
		if err := untilFrame(t, c, "message").Decode(&m); err != nil || m.Message.Seq != 4 {
			t.Fatalf("alice's %s got %+v first, want her own seq 4", name, m.Message)
		}
	}
	// History and sync show Alice withheld tombstones, Mallory her words.
	hist := mustAPI(t, 200, "GET", base+"/v1/conversations/"+dm+"/messages", aLaptop.token, nil)["messages"].([]any)
	for _, m := range hist {
		mm := m.(map[string]any)
		if seq := mm["seq"].(float64); (seq == 2 || seq == 3) && (mm["body"] != "" || mm["withheld"] != true || mm["deleted"] != true) {
			t.Fatalf("alice's history shows %v", mm)
		}
	}
	al.MustWrite(map[string]any{"type": "sync", "id": "sync"})
	sr := untilFrame(t, al, "sync_result")
	var sync syncResult
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
	mhist := mustAPI(t, 200, "GET", base+"/v1/conversations/"+dm+"/messages", mPhone.token, nil)["messages"].([]any)
	if len(mhist) != 4 || mhist[1].(map[string]any)["body"] != "spam 2" || mhist[1].(map[string]any)["withheld"] != nil {
		t.Fatalf("mallory's history %v", mhist)
	}

	// Alice's receipts never reach Mallory: Mallory's own message after
	// them is the barrier, and her view keeps Alice's watermarks at 1.
	ap.MustWrite(map[string]any{"type": "delivered", "conversation_id": dm, "seq": 4})
	ap.MustWrite(map[string]any{"type": "read", "conversation_id": dm, "seq": 4})
	untilFrame(t, ap, "receipt") // committed: Alice's own devices hear it
	ap.MustWrite(map[string]any{"type": "typing", "conversation_id": dm, "state": "start"})
	mp.MustWrite(map[string]any{"type": "send", "id": "s5", "conversation_id": dm, "client_msg_id": "m5", "body": "spam 5"})
	untilFrame(t, mp, "message", "receipt", "typing") // seq 4, Alice's own
	untilFrame(t, mp, "message", "receipt", "typing") // seq 5
	view := mustAPI(t, 200, "GET", base+"/v1/conversations/"+dm, mPhone.token, nil)["conversation"].(map[string]any)
	if am := memberOf(t, view, alice); am["delivered_seq"].(float64) != 1 || am["read_seq"].(float64) > 1 {
		t.Fatalf("mallory sees alice's watermarks %v", am)
	}

	// Mallory cannot put Alice in a group, at creation or later.
	if code, out := api(t, http.DefaultClient, "POST", base+"/v1/conversations", mPhone.token, map[string]any{"kind": "group", "title": "trap", "members": []string{alice}}); code != 403 {
		t.Fatalf("mallory's group with alice: %d %v", code, out)
	}
	g := mustAPI(t, 201, "POST", base+"/v1/conversations", mPhone.token, map[string]any{"kind": "group", "title": "trap"})["conversation"].(map[string]any)["id"].(string)
	if code, out := api(t, http.DefaultClient, "POST", base+"/v1/conversations/"+g+"/members", mPhone.token, map[string]any{"user_id": alice}); code != 403 {
		t.Fatalf("mallory adds alice: %d %v", code, out)
	}

	// Alice goes offline and comes back: Carol sees it, Mallory does not,
	// nor does a new device of Mallory's list her online.
	ap.Close()
	al.Close()
	awaitOffline(t, cp, alice)
	ap = connect(t, base, aPhone)
	if st := presenceOf(t, cp, alice); st != "online" {
		t.Fatalf("carol sees alice %s", st)
	}
	quietAbout(t, mp, alice, 300*time.Millisecond)
	mLaptop := connect(t, base, loginDevice(t, base, "mallory", "laptop"))
	quietAbout(t, mLaptop, alice, 300*time.Millisecond)
	_ = ap

	// Unblocking lets new messages through; withheld ones stay withheld.
	mustAPI(t, 204, "DELETE", base+"/v1/blocks/"+mallory, aPhone.token, nil)
	mustAPI(t, 201, "POST", base+"/v1/conversations/"+dm+"/messages", mPhone.token, map[string]any{"client_msg_id": "m6", "body": "sorry"})
	if m := expectMessage(t, ap, "ack", "block"); m.Seq != 6 || m.Body != "sorry" {
		t.Fatalf("after unblocking alice got %+v", m)
	}
	var one parley.Message
	raw := mustAPI(t, 200, "GET", base+"/v1/conversations/"+dm+"/messages/5", aPhone.token, nil)["message"].(map[string]any)
	one.Body, _ = raw["body"].(string)
	if one.Body != "" || raw["withheld"] != true {
		t.Fatalf("a withheld message after unblocking: %v", raw)
	}

	// A blocked user who never wrote to Alice opens a DM with her: it
	// looks created to him, and Alice never sees it, live or listed.
	eve, _ := signup(t, base, "eve")
	mustAPI(t, 204, "PUT", base+"/v1/blocks/"+eve, aPhone.token, nil)
	untilFrame(t, ap, "block")
	eDevice := loginDevice(t, base, "eve", "phone")
	edm := mustAPI(t, 201, "POST", base+"/v1/conversations", eDevice.token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	mustAPI(t, 201, "POST", base+"/v1/conversations/"+edm+"/messages", eDevice.token, map[string]any{"client_msg_id": "e1", "body": "hi"})
	ap.Quiet(300*time.Millisecond, "conversation", "message")
	for _, c := range mustAPI(t, 200, "GET", base+"/v1/conversations", aPhone.token, nil)["conversations"].([]any) {
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
		var r receiptFrame
		if err := untilFrame(t, c, "receipt").Decode(&r); err != nil {
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
	p := startRealtime(t)
	base := p.base
	for _, h := range []string{"alice", "bob", "carol", "dave"} {
		signup(t, base, h)
	}
	aPhone, aLaptop := loginDevice(t, base, "alice", "phone"), loginDevice(t, base, "alice", "laptop")
	bPhone, cPhone, dPhone := loginDevice(t, base, "bob", "phone"), loginDevice(t, base, "carol", "phone"), loginDevice(t, base, "dave", "phone")
	alice, bob, carol, dave := aPhone.user, bPhone.user, cPhone.user, dPhone.user
	g := mustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.token, map[string]any{"kind": "group", "title": "g", "members": []string{alice, bob, dave}})["conversation"].(map[string]any)["id"].(string)

	if code, out := api(t, http.DefaultClient, "PATCH", base+"/v1/me/privacy", aPhone.token, map[string]any{"presence": "friends"}); code != 400 {
		t.Fatalf("a bad visibility: %d %v", code, out)
	}
	pr := mustAPI(t, 200, "PATCH", base+"/v1/me/privacy", aPhone.token, map[string]any{"presence": "nobody", "read_receipts": "nobody"})["privacy"].(map[string]any)
	if pr["presence"] != "nobody" || pr["read_receipts"] != "nobody" {
		t.Fatalf("PATCH /v1/me/privacy = %v", pr)
	}
	if pr := mustAPI(t, 200, "GET", base+"/v1/me/privacy", aLaptop.token, nil)["privacy"].(map[string]any); pr["presence"] != "nobody" {
		t.Fatalf("GET /v1/me/privacy = %v", pr)
	}

	cp := connect(t, base, cPhone)
	ap, al := connect(t, base, aPhone), connect(t, base, aLaptop)
	bp := connect(t, base, bPhone)
	// Bob's online reaches Carol (the control); Alice's never does.
	if st := presenceOf(t, cp, bob); st != "online" {
		t.Fatalf("carol sees bob %s", st)
	}
	quietAbout(t, cp, alice, 300*time.Millisecond)
	c2 := connect(t, base, loginDevice(t, base, "carol", "laptop"))
	if st := presenceOf(t, c2, bob); st != "online" { // the online list has Bob ...
		t.Fatalf("carol's laptop sees bob %s", st)
	}
	quietAbout(t, c2, alice, 300*time.Millisecond) // ... and not Alice

	// Carol writes; Alice reads on her phone: her laptop learns it, Carol
	// does not. Bob's read after Alice's is the barrier.
	cp.MustWrite(map[string]any{"type": "send", "id": "c1", "conversation_id": g, "client_msg_id": "c1", "body": "party at 8"})
	expectMessage(t, ap, "ack")
	ap.MustWrite(map[string]any{"type": "read", "conversation_id": g, "seq": 1})
	if r := expectReceipt(t, al, "read", alice); r.Seq != 1 {
		t.Fatalf("alice's laptop: %+v", r)
	}
	bp.MustWrite(map[string]any{"type": "read", "conversation_id": g, "seq": 1})
	expectReceiptNot(t, cp, "read", bob, alice)
	view := mustAPI(t, 200, "GET", base+"/v1/conversations/"+g, cPhone.token, nil)["conversation"].(map[string]any)
	if am, bm := memberOf(t, view, alice), memberOf(t, view, bob); am["read_seq"].(float64) != 0 || bm["read_seq"].(float64) != 1 {
		t.Fatalf("carol sees alice %v and bob %v", am, bm)
	}
	msg := mustAPI(t, 200, "GET", base+"/v1/conversations/"+g+"/messages/1", cPhone.token, nil)["message"].(map[string]any)
	if msg["read_count"].(float64) != 1 {
		t.Fatalf("carol's message 1 is read by %v, want 1 (bob)", msg["read_count"])
	}
	// Reciprocity: Alice sees no one's read watermark.
	aview := mustAPI(t, 200, "GET", base+"/v1/conversations/"+g, aPhone.token, nil)["conversation"].(map[string]any)
	if bm := memberOf(t, aview, bob); bm["read_seq"].(float64) != 0 {
		t.Fatalf("alice sees bob's read_seq %v", bm["read_seq"])
	}

	// Alice goes away: no offline, no last seen, for Carol; Dave's coming
	// and going is the control.
	ap.Close()
	al.Close()
	dp := connect(t, base, dPhone)
	if st := presenceOf(t, cp, dave); st != "online" {
		t.Fatalf("carol sees dave %s", st)
	}
	dp.Close()
	awaitOffline(t, cp, dave)
	quietAbout(t, cp, alice, 300*time.Millisecond)

	// Bob restricts his presence while online: Carol sees him go offline,
	// and nothing of him after.
	mustAPI(t, 200, "PATCH", base+"/v1/me/privacy", bPhone.token, map[string]any{"presence": "nobody"})
	awaitOffline(t, cp, bob)
	c3 := connect(t, base, loginDevice(t, base, "carol", "tablet"))
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
	p := startParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off", "PARLEY_MESSAGE_REQUESTS=on", "PARLEY_STRANGER_ADDS=3"}, "--presence-grace", "300ms")
	base := p.base
	for _, h := range []string{"alice", "mallory", "carol", "dave", "erin"} {
		signup(t, base, h)
	}
	aPhone, aLaptop := loginDevice(t, base, "alice", "phone"), loginDevice(t, base, "alice", "laptop")
	mPhone, cPhone := loginDevice(t, base, "mallory", "phone"), loginDevice(t, base, "carol", "phone")
	alice, mallory, carol := aPhone.user, mPhone.user, cPhone.user
	// Carol is Alice's contact: Alice accepted Carol's DM.
	cdm := mustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)
	if m := memberOf(t, cdm, alice); m["request"] != true {
		t.Fatalf("carol's first DM: alice is %v, want a request", m)
	}
	mustAPI(t, 200, "POST", base+"/v1/conversations/"+cdm["id"].(string)+"/accept", aPhone.token, nil)

	ap, al := connect(t, base, aPhone), connect(t, base, aLaptop)
	// Mallory knows the handle: a DM and a group, both requests.
	dmObj := mustAPI(t, 201, "POST", base+"/v1/conversations", mPhone.token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)
	dm := dmObj["id"].(string)
	if m := memberOf(t, dmObj, alice); m["request"] != true {
		t.Fatalf("mallory's DM: alice is %v, want a request", m)
	}
	var conv struct {
		Action       string              `json:"action"`
		Conversation parley.Conversation `json:"conversation"`
	}
	if err := untilFrame(t, al, "conversation").Decode(&conv); err != nil || conv.Conversation.ID != dm || !conv.Conversation.MemberOf(alice).Request {
		t.Fatalf("alice's laptop: the request frame %+v, %v", conv, err)
	}
	grp := mustAPI(t, 201, "POST", base+"/v1/conversations", mPhone.token, map[string]any{"kind": "group", "title": "1,000 friends", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)

	mp, cp := connect(t, base, mPhone), connect(t, base, cPhone)
	// Carol's online list has Alice (the control); Mallory's does not.
	if st := presenceOf(t, cp, alice); st != "online" {
		t.Fatalf("carol sees alice %s", st)
	}
	quietAbout(t, mp, alice, 300*time.Millisecond)
	// Alice goes away and comes back: Carol sees both, Mallory neither.
	ap.Close()
	al.Close()
	awaitOffline(t, cp, alice)
	ap = connect(t, base, aPhone)
	if st := presenceOf(t, cp, alice); st != "online" {
		t.Fatalf("carol sees alice %s", st)
	}
	quietAbout(t, mp, alice, 300*time.Millisecond)

	// The messages arrive (it is a request, not a block) but nothing of
	// Alice's flows back: Mallory's own next message is the barrier.
	mp.MustWrite(map[string]any{"type": "send", "id": "m1", "conversation_id": dm, "client_msg_id": "m1", "body": "hi, I saw your handle"})
	if m := expectMessage(t, ap, "ack", "conversation"); m.Body != "hi, I saw your handle" {
		t.Fatalf("alice got %+v", m)
	}
	ap.MustWrite(map[string]any{"type": "delivered", "conversation_id": dm, "seq": 1})
	ap.MustWrite(map[string]any{"type": "read", "conversation_id": dm, "seq": 1})
	ap.MustWrite(map[string]any{"type": "typing", "conversation_id": dm, "state": "start"})
	expectReceipt(t, ap, "read", alice) // committed; Alice's own devices hear it
	mp.MustWrite(map[string]any{"type": "send", "id": "m2", "conversation_id": dm, "client_msg_id": "m2", "body": "hello?"})
	untilFrame(t, mp, "message", "receipt", "typing") // seq 1
	untilFrame(t, mp, "message", "receipt", "typing") // seq 2
	view := mustAPI(t, 200, "GET", base+"/v1/conversations/"+dm, mPhone.token, nil)["conversation"].(map[string]any)
	if am := memberOf(t, view, alice); am["request"] != true || am["read_seq"].(float64) != 0 || am["delivered_seq"].(float64) != 0 {
		t.Fatalf("mallory sees alice as %v", am)
	}

	// Alice accepts the DM: Mallory learns it, and receipts flow.
	mustAPI(t, 200, "POST", base+"/v1/conversations/"+dm+"/accept", aLaptop.token, nil)
	var acc struct {
		Action  string   `json:"action"`
		UserIDs []string `json:"user_ids"`
	}
	if err := untilFrame(t, mp, "conversation").Decode(&acc); err != nil || acc.Action != "accepted" || len(acc.UserIDs) != 1 || acc.UserIDs[0] != alice {
		t.Fatalf("mallory's accepted frame %+v, %v", acc, err)
	}
	ap.MustWrite(map[string]any{"type": "read", "conversation_id": dm, "seq": 2})
	if r := expectReceipt(t, mp, "read", alice); r.Seq != 2 {
		t.Fatalf("after accepting: %+v", r)
	}

	// The group: Alice declines and blocks.
	mustAPI(t, 204, "POST", base+"/v1/conversations/"+grp+"/decline", aPhone.token, map[string]any{"block": true})
	if code, _ := api(t, http.DefaultClient, "GET", base+"/v1/conversations/"+grp, aPhone.token, nil); code != 404 {
		t.Fatalf("alice still sees the declined group: %d", code)
	}
	if bs := mustAPI(t, 200, "GET", base+"/v1/blocks", aPhone.token, nil)["blocks"].([]any); len(bs) != 1 || bs[0].(map[string]any)["user_id"] != mallory {
		t.Fatalf("blocks after declining with block: %v", bs)
	}
	if code, out := api(t, http.DefaultClient, "POST", base+"/v1/conversations/"+dm+"/decline", aPhone.token, nil); code != 409 {
		t.Fatalf("declining an accepted conversation: %d %v", code, out)
	}

	// Erin's DM request: Alice declines it and blocks her. Erin opening
	// the DM again puts Alice back only as a request Alice is never shown:
	// not listed, not announced (Carol's group after it is the barrier on
	// Alice's socket), as a new DM from a blocked user.
	eTok := loginDevice(t, base, "erin", "phone").token
	edm := mustAPI(t, 201, "POST", base+"/v1/conversations", eTok, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	mustAPI(t, 204, "POST", base+"/v1/conversations/"+edm+"/decline", aPhone.token, map[string]any{"block": true})
	// drainTo reads Alice's conversation frames up to a new group of
	// Carol's, and fails on one about Erin's DM if told to.
	drainTo := func(title string, forbidEDM bool) {
		t.Helper()
		barrier := mustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.token, map[string]any{"kind": "group", "title": title, "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
		for {
			var f struct {
				Conversation parley.Conversation `json:"conversation"`
			}
			if err := untilFrame(t, ap, "conversation").Decode(&f); err != nil {
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
	mustAPI(t, 200, "POST", base+"/v1/conversations", eTok, map[string]any{"kind": "direct", "members": []string{alice}})
	drainTo("after", true)
	for _, c := range mustAPI(t, 200, "GET", base+"/v1/conversations", aPhone.token, nil)["conversations"].([]any) {
		if c.(map[string]any)["id"] == edm {
			t.Fatal("a blocked user reopening a declined DM: alice lists it")
		}
	}

	// Mallory has used two of three strangers this hour: one more, then
	// rate_limited. Carol adding Alice, a contact, costs nothing.
	dave := mustAPI(t, 200, "GET", base+"/v1/users?handle=dave", mPhone.token, nil)["user"].(map[string]any)["id"].(string)
	erin := mustAPI(t, 200, "GET", base+"/v1/users?handle=erin", mPhone.token, nil)["user"].(map[string]any)["id"].(string)
	mustAPI(t, 201, "POST", base+"/v1/conversations", mPhone.token, map[string]any{"kind": "direct", "members": []string{dave}})
	if code, out := api(t, http.DefaultClient, "POST", base+"/v1/conversations", mPhone.token, map[string]any{"kind": "direct", "members": []string{erin}}); code != 429 {
		t.Fatalf("the fourth stranger: %d %v", code, out)
	}
	for range 5 {
		mustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.token, map[string]any{"kind": "group", "title": "friends", "members": []string{alice}})
	}
	_ = carol
}

// TestSecurityReports: Alice reports Mallory's message and Mallory; an
// admin sees both reports with the message's content (copied by the
// server), Alice and Mallory cannot list reports, and resolving with
// suspend ends Mallory's sessions.
func TestSecurityReports(t *testing.T) {
	data := t.TempDir()
	p := startParleyd(t, data, []string{"PARLEY_LIMITS=off"})
	base := p.base
	_, rootTok := signup(t, base, "root")
	alice, aliceTok := signup(t, base, "alice")
	mallory, malloryTok := signup(t, base, "mallory")
	_ = alice
	if out, err := exec.Command(parleydBin, "admin", "grant", "root", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	dm := mustAPI(t, 201, "POST", base+"/v1/conversations", malloryTok, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	mustAPI(t, 201, "POST", base+"/v1/conversations/"+dm+"/messages", malloryTok, map[string]any{"client_msg_id": "m1", "body": "send me your password"})

	// A report of a message the reporter cannot see is refused like a
	// missing one; bad input is refused and changes nothing.
	for _, bad := range []map[string]any{
		{"conversation_id": dm, "seq": 1, "reason": "because"},
		{"conversation_id": dm, "seq": 9, "reason": "spam"},
		{"reason": "spam"},
		{"user_id": alice, "conversation_id": dm, "seq": 1, "reason": "spam"},
	} {
		if code, out := api(t, http.DefaultClient, "POST", base+"/v1/reports", aliceTok, bad); code != 400 && code != 404 {
			t.Fatalf("report %v: %d %v", bad, code, out)
		}
	}
	rep := mustAPI(t, 201, "POST", base+"/v1/reports", aliceTok, map[string]any{"conversation_id": dm, "seq": 1, "reason": "harassment", "comment": "phishing", "content": "something else"})["report"].(map[string]any)
	if rep["state"] != "open" || rep["content"] != nil {
		t.Fatalf("the reporter's view of a report %v", rep)
	}
	mustAPI(t, 201, "POST", base+"/v1/reports", aliceTok, map[string]any{"user_id": mallory, "reason": "spam"})

	// Only admins list them.
	for name, tok := range map[string]string{"alice": aliceTok, "mallory": malloryTok} {
		if code, out := api(t, http.DefaultClient, "GET", base+"/v1/admin/reports", tok, nil); code != 403 {
			t.Fatalf("%s lists reports: %d %v", name, code, out)
		}
		if code, out := api(t, http.DefaultClient, "POST", base+"/v1/admin/reports/"+rep["id"].(string)+"/resolve", tok, map[string]any{}); code != 403 {
			t.Fatalf("%s resolves a report: %d %v", name, code, out)
		}
	}
	list := mustAPI(t, 200, "GET", base+"/v1/admin/reports?state=open", rootTok, nil)["reports"].([]any)
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

	res := mustAPI(t, 200, "POST", base+"/v1/admin/reports/"+rep["id"].(string)+"/resolve", rootTok, map[string]any{"resolution": "phishing", "suspend": true})["report"].(map[string]any)
	if res["state"] != "resolved" || res["resolution"] != "phishing" {
		t.Fatalf("resolved report %v", res)
	}
	if code, _ := api(t, http.DefaultClient, "GET", base+"/v1/me", malloryTok, nil); code != 401 {
		t.Fatalf("the suspended reported user's token: %d, want 401", code)
	}
	if open := mustAPI(t, 200, "GET", base+"/v1/admin/reports?state=open", rootTok, nil)["reports"].([]any); len(open) != 1 {
		t.Fatalf("open reports after resolving one: %v", open)
	}
}

// TestSecurityPresenceAcrossNodes: the presence rules hold in a cluster
// (a shared PostgreSQL store, the machine's NATS, the presence directory):
// Alice is on node 1; on node 2, her contact Carol sees her come and go,
// while the stranger Mallory, who put her in a DM, and Dave, whom she
// blocks, see nothing of her, neither in the online list nor live.
func TestSecurityPresenceAcrossNodes(t *testing.T) {
	env := append(clusterEnv(t), "PARLEY_MESSAGE_REQUESTS=on", "PARLEY_LIMITS=off")
	n1 := startParleyd(t, t.TempDir(), env, "--presence-grace", "300ms")
	n2 := startParleyd(t, t.TempDir(), env, "--presence-grace", "300ms")
	for _, h := range []string{"alice", "carol", "mallory", "dave"} {
		signup(t, n1.base, h)
	}
	a := loginDevice(t, n1.base, "alice", "phone")
	c, m, d := loginDevice(t, n2.base, "carol", "phone"), loginDevice(t, n2.base, "mallory", "phone"), loginDevice(t, n2.base, "dave", "phone")
	alice := a.user
	cdm := mustAPI(t, 201, "POST", n2.base+"/v1/conversations", c.token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	mustAPI(t, 200, "POST", n1.base+"/v1/conversations/"+cdm+"/accept", a.token, nil)
	ddm := mustAPI(t, 201, "POST", n2.base+"/v1/conversations", d.token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	mustAPI(t, 200, "POST", n1.base+"/v1/conversations/"+ddm+"/accept", a.token, nil)
	mustAPI(t, 201, "POST", n2.base+"/v1/conversations", m.token, map[string]any{"kind": "direct", "members": []string{alice}})
	mustAPI(t, 204, "PUT", n1.base+"/v1/blocks/"+d.user, a.token, nil)

	ac := connect(t, n1.base, a)
	cc, mc, dc := connect(t, n2.base, c), connect(t, n2.base, m), connect(t, n2.base, d)
	if st := presenceOf(t, cc, alice); st != "online" {
		t.Fatalf("carol on node 2 sees alice %s", st)
	}
	ac.Close()
	// A node's list and the other's announcement may both say online
	// (the protocol allows a repeated online): wait for the offline.
	awaitOffline(t, cc, alice)
	ac = connect(t, n1.base, a)
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
	p := startParleyd(t, t.TempDir(), []string{"PARLEY_LIMITS=off", "PARLEY_MESSAGE_REQUESTS=on"}, "--presence-grace", "300ms")
	base := p.base
	for _, h := range []string{"alice", "carol", "gina"} {
		signup(t, base, h)
	}
	aPhone, cPhone, gPhone := loginDevice(t, base, "alice", "phone"), loginDevice(t, base, "carol", "phone"), loginDevice(t, base, "gina", "phone")
	alice, carol, gina := aPhone.user, cPhone.user, gPhone.user
	// Carol is Alice's contact: Alice accepted Carol's DM.
	cdm := mustAPI(t, 201, "POST", base+"/v1/conversations", cPhone.token, map[string]any{"kind": "direct", "members": []string{alice}})["conversation"].(map[string]any)["id"].(string)
	mustAPI(t, 200, "POST", base+"/v1/conversations/"+cdm+"/accept", aPhone.token, nil)
	// Alice's group holds Carol (a contact: an ordinary member) and Gina
	// (a stranger: a request).
	gObj := mustAPI(t, 201, "POST", base+"/v1/conversations", aPhone.token, map[string]any{"kind": "group", "title": "g", "members": []string{carol, gina}})["conversation"].(map[string]any)
	if c, g := memberOf(t, gObj, carol), memberOf(t, gObj, gina); c["request"] == true || g["request"] != true {
		t.Fatalf("alice's group: carol %v, gina %v; want carol a member, gina a request", c, g)
	}
	g := gObj["id"].(string)

	// The control: with everyone, Gina sees Alice online.
	ap := connect(t, base, aPhone)
	gp := connect(t, base, gPhone)
	if st := presenceOf(t, gp, alice); st != "online" {
		t.Fatalf("gina sees alice %s while alice's presence is everyone", st)
	}
	pr := mustAPI(t, 200, "PATCH", base+"/v1/me/privacy", aPhone.token, map[string]any{"presence": "contacts", "read_receipts": "contacts"})["privacy"].(map[string]any)
	if pr["presence"] != "contacts" || pr["read_receipts"] != "contacts" {
		t.Fatalf("PATCH /v1/me/privacy = %v", pr)
	}
	awaitOffline(t, gp, alice) // restricted while online: Gina sees her go

	// A contact's new connection has Alice in its online list; Gina's new
	// one does not.
	cp := connect(t, base, cPhone)
	if st := presenceOf(t, cp, alice); st != "online" {
		t.Fatalf("carol (a contact) sees alice %s", st)
	}
	gp2 := connect(t, base, loginDevice(t, base, "gina", "laptop"))
	quietAbout(t, gp2, alice, 500*time.Millisecond)

	// Alice reads Carol's message: Carol gets the receipt, Gina does not
	// (her own read, which her devices always learn, is the barrier).
	cp.MustWrite(map[string]any{"type": "send", "id": "c1", "conversation_id": g, "client_msg_id": "c1", "body": "party at 8"})
	expectMessage(t, ap, "ack", "presence")
	ap.MustWrite(map[string]any{"type": "read", "conversation_id": g, "seq": 1})
	if r := expectReceipt(t, cp, "read", alice); r.Seq != 1 {
		t.Fatalf("carol (a contact): alice's read receipt %+v", r)
	}
	gp.MustWrite(map[string]any{"type": "read", "conversation_id": g, "seq": 1})
	expectReceiptNot(t, gp, "read", gina, alice)
	if am := memberOf(t, mustAPI(t, 200, "GET", base+"/v1/conversations/"+g, cPhone.token, nil)["conversation"].(map[string]any), alice); am["read_seq"].(float64) != 1 {
		t.Fatalf("carol (a contact) sees alice's read_seq %v, want 1", am["read_seq"])
	}
	if am := memberOf(t, mustAPI(t, 200, "GET", base+"/v1/conversations/"+g, gPhone.token, nil)["conversation"].(map[string]any), alice); am["read_seq"].(float64) != 0 {
		t.Fatalf("gina (no contact) sees alice's read_seq %v, want 0", am["read_seq"])
	}

	// Alice goes away: Carol sees it, Gina does not.
	ap.Close()
	awaitOffline(t, cp, alice)
	quietAbout(t, gp2, alice, 500*time.Millisecond)
}
