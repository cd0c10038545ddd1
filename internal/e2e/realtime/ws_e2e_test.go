package realtime_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/wstest"
	"github.com/parleychat/parley/service"
)

// The real-time tests run the real binary and talk to it with real
// WebSocket clients (internal/wstest, on gobwas/ws).

// TestRealtimeTwoUsersThreeDevices: live delivery to every device (the
// sender's own included), acks, a REST send delivered live, delivered and
// read receipts on every device, read state syncing across one user's
// devices, and typing to the other member only.
func TestRealtimeTwoUsersThreeDevices(t *testing.T) {
	p := e2e.StartRealtime(t)
	base := p.Base
	e2e.Signup(t, base, "alice")
	e2e.Signup(t, base, "bob")
	aPhone, aLaptop, bPhone := e2e.LoginDevice(t, base, "alice", "phone"), e2e.LoginDevice(t, base, "alice", "laptop"), e2e.LoginDevice(t, base, "bob", "phone")
	conv := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", aPhone.Token, map[string]any{"kind": "direct", "members": []string{bPhone.User}})["conversation"].(map[string]any)["id"].(string)

	ap, al, bp := e2e.Connect(t, base, aPhone), e2e.Connect(t, base, aLaptop), e2e.Connect(t, base, bPhone)

	ap.MustWrite(map[string]any{"type": "send", "id": "s1", "conversation_id": conv, "client_msg_id": "c1", "body": "hello bob"})
	var ack struct {
		ID      string         `json:"id"`
		Message parley.Message `json:"message"`
	}
	// The conversation's "created" event can reach a socket that
	// connected after the REST call made it (the bus is late on a loaded
	// machine); a client takes it as an update of what ready had, so it
	// is skipped here like presence.
	if err := ap.Expect("ack", "message", "presence", "conversation").Decode(&ack); err != nil || ack.ID != "s1" || ack.Message.Seq != 1 || ack.Message.Body != "hello bob" {
		t.Fatalf("ack %+v %v", ack, err)
	}
	for name, c := range map[string]*wstest.Conn{"bob phone": bp, "alice laptop": al} {
		if m := e2e.ExpectMessage(t, c); m.Seq != 1 || m.Body != "hello bob" || m.SenderID != aPhone.User || m.SenderDeviceID != aPhone.ID {
			t.Fatalf("%s got %+v", name, m)
		}
	}

	// A replayed client_msg_id gets the original, and no second delivery.
	ap.MustWrite(map[string]any{"type": "send", "id": "s1-retry", "conversation_id": conv, "client_msg_id": "c1", "body": "hello bob"})
	if err := ap.Expect("ack", "message", "presence", "conversation").Decode(&ack); err != nil || ack.ID != "s1-retry" || ack.Message.Seq != 1 {
		t.Fatalf("replay ack %+v %v", ack, err)
	}

	// A message sent over REST is delivered live too.
	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations/"+conv+"/messages", bPhone.Token, map[string]any{"client_msg_id": "r1", "body": "hi alice"})
	for name, c := range map[string]*wstest.Conn{"alice phone": ap, "alice laptop": al, "bob phone": bp} {
		if m := e2e.ExpectMessage(t, c, "ack"); m.Seq != 2 || m.Body != "hi alice" {
			t.Fatalf("%s got %+v, want seq 2", name, m)
		}
	}

	// Bob's phone reports delivery: everyone gets Bob's delivered receipt.
	bp.MustWrite(map[string]any{"type": "delivered", "conversation_id": conv, "seq": 2})
	for _, c := range []*wstest.Conn{ap, al, bp} {
		if r := e2e.ExpectReceipt(t, c, "delivered", bPhone.User); r.Seq != 2 || r.DeviceID != bPhone.ID || r.ConversationID != conv {
			t.Fatalf("delivered receipt %+v", r)
		}
	}
	// Alice reads on the laptop: her phone learns it (clears unread), and
	// so does Bob.
	al.MustWrite(map[string]any{"type": "read", "conversation_id": conv, "seq": 2})
	for _, c := range []*wstest.Conn{ap, al, bp} {
		if r := e2e.ExpectReceipt(t, c, "read", aPhone.User); r.Seq != 2 {
			t.Fatalf("read receipt %+v", r)
		}
	}
	view := e2e.MustAPI(t, 200, "GET", base+"/v1/conversations/"+conv, aPhone.Token, nil)["conversation"].(map[string]any)
	if view["unread_count"].(float64) != 0 || view["read_seq"].(float64) != 2 {
		t.Fatalf("alice's view after reading on the laptop: %v", view)
	}

	// Typing reaches Bob only, with an expiry.
	ap.MustWrite(map[string]any{"type": "typing", "conversation_id": conv, "state": "start"})
	var typing struct {
		UserID    string `json:"user_id"`
		State     string `json:"state"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := bp.Expect("typing", "presence", "receipt").Decode(&typing); err != nil || typing.UserID != aPhone.User || typing.State != "start" || typing.ExpiresIn != 6 {
		t.Fatalf("typing %+v %v", typing, err)
	}
	al.Quiet(300*time.Millisecond, "typing")

	// A sender's own other devices get its messages; all in seq order.
	for i := 3; i <= 12; i++ {
		bp.MustWrite(map[string]any{"type": "send", "id": fmt.Sprint("b", i), "conversation_id": conv, "client_msg_id": fmt.Sprint("b", i), "body": fmt.Sprint("m", i)})
	}
	for name, c := range map[string]*wstest.Conn{"alice phone": ap, "alice laptop": al, "bob phone": bp} {
		for want := int64(3); want <= 12; want++ {
			if m := e2e.ExpectMessage(t, c, "ack"); m.Seq != want {
				t.Fatalf("%s: seq %d, want %d", name, m.Seq, want)
			}
		}
	}
}

// TestOfflineSync: a device offline while 100 messages arrive in four
// conversations gets them all with one sync, no gap, no duplicate, with
// unread counts; the next sync is empty.
func TestOfflineSync(t *testing.T) {
	p := e2e.StartRealtime(t)
	base := p.Base
	e2e.Signup(t, base, "alice")
	_, bobToken := e2e.Signup(t, base, "bob")
	e2e.Signup(t, base, "carol")
	alice := e2e.LoginDevice(t, base, "alice", "phone")
	bobLaptop := e2e.LoginDevice(t, base, "bob", "laptop")
	carol := e2e.LoginDevice(t, base, "carol", "phone")
	var convs []string
	for i := range 4 {
		members := []string{bobLaptop.User}
		if i%2 == 1 {
			members = append(members, carol.User)
		}
		c := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", alice.Token, map[string]any{"kind": "group", "title": fmt.Sprint("g", i), "members": members})
		convs = append(convs, c["conversation"].(map[string]any)["id"].(string))
	}

	// Bob's laptop syncs once, then goes offline.
	bl := e2e.Connect(t, base, bobLaptop)
	first := e2e.DoSync(t, bl, "", 0)
	if len(first.Conversations) != 4 || first.HasMore {
		t.Fatalf("first sync: %d conversations, has_more %v", len(first.Conversations), first.HasMore)
	}
	bl.Close()

	ac := e2e.Connect(t, base, alice)
	for i := range 100 {
		ac.MustWrite(map[string]any{"type": "send", "id": fmt.Sprint(i), "conversation_id": convs[i%4], "client_msg_id": fmt.Sprint("m", i), "body": fmt.Sprint("message ", i)})
		ac.Expect("ack", "message", "presence", "receipt", "conversation")
	}
	// Bob reads conversation 0 up to 10 on another device meanwhile.
	e2e.MustAPI(t, 200, "POST", base+"/v1/conversations/"+convs[0]+"/read", bobToken, map[string]any{"seq": 10})

	bl = e2e.Connect(t, base, bobLaptop)
	res := e2e.DoSync(t, bl, first.Position, 100)
	if res.HasMore || len(res.Conversations) != 4 {
		t.Fatalf("sync after offline: %d conversations, has_more %v", len(res.Conversations), res.HasMore)
	}
	total := 0
	for _, c := range res.Conversations {
		i := slices.Index(convs, c.Conversation.ID)
		if i < 0 {
			t.Fatalf("unknown conversation %s", c.Conversation.ID)
		}
		var got []int64
		for _, m := range c.Messages {
			got = append(got, m.Seq)
		}
		want := make([]int64, 25)
		for k := range want {
			want[k] = int64(k + 1)
		}
		if !slices.Equal(got, want) || c.MoreMessages {
			t.Fatalf("conversation %d: seqs %v (more %v), want 1..25", i, got, c.MoreMessages)
		}
		wantRead, wantUnread := int64(0), int64(25)
		if i == 0 {
			wantRead, wantUnread = 10, 15
		}
		if c.ReadSeq != wantRead || c.UnreadCount != wantUnread {
			t.Fatalf("conversation %d: read_seq %d unread %d, want %d %d", i, c.ReadSeq, c.UnreadCount, wantRead, wantUnread)
		}
		total += len(c.Messages)
	}
	if total != 100 {
		t.Fatalf("%d messages synced, want 100", total)
	}
	again := e2e.DoSync(t, bl, res.Position, 100)
	if len(again.Conversations) != 0 || again.HasMore {
		t.Fatalf("second sync returned %d conversations", len(again.Conversations))
	}

	// A bad position is an error, and the connection lives on.
	bl.MustWrite(map[string]any{"type": "sync", "id": "bad", "position": "not-a-position"})
	var e struct {
		ID    string                `json:"id"`
		Error struct{ Code string } `json:"error"`
	}
	if err := bl.Expect("error", "*").Decode(&e); err != nil || e.ID != "bad" || e.Error.Code != "invalid_request" {
		t.Fatalf("bad position: %+v %v", e, err)
	}
}

// TestGroupConcurrentSendersOneOrder: four members send at once; every
// connection sees the same gap-free order.
func TestGroupConcurrentSendersOneOrder(t *testing.T) {
	p := e2e.StartRealtime(t)
	base := p.Base
	const members, each = 4, 40
	var devs []e2e.Device
	for i := range members {
		h := fmt.Sprint("member", i)
		e2e.Signup(t, base, h)
		devs = append(devs, e2e.LoginDevice(t, base, h, "phone"))
	}
	var ids []string
	for _, d := range devs[1:] {
		ids = append(ids, d.User)
	}
	conv := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", devs[0].Token, map[string]any{"kind": "group", "title": "race", "members": ids})["conversation"].(map[string]any)["id"].(string)
	conns := make([]*wstest.Conn, members)
	for i, d := range devs {
		conns[i] = e2e.Connect(t, base, d)
	}
	// Each member streams its sends with up to 8 in flight while reading
	// everything its connection receives.
	// The group's "created" frame may reach a socket that connected
	// after the REST call returned (it is still on the bus).
	e2e.StreamOneOrder(t, conns, conv, members, each, "presence", "conversation")
}

// TestRestartMidStream: the server is killed while a client streams
// sends; every acked message is there after the restart, the client
// resends what was not acked with the same client_msg_id, and history is
// gap-free with each message once.
func TestRestartMidStream(t *testing.T) {
	data := t.TempDir()
	p := e2e.StartParleyd(t, data, []string{"PARLEY_LIMITS=off"})
	e2e.Signup(t, p.Base, "alice")
	e2e.Signup(t, p.Base, "bob")
	a := e2e.LoginDevice(t, p.Base, "alice", "phone")
	b := e2e.LoginDevice(t, p.Base, "bob", "phone")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)

	const total = 200
	var mu sync.Mutex
	acked := map[string]int64{}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	ac := e2e.Connect(t, p.Base, a)
	streamDone := make(chan struct{})
	go func() {
		// Up to 16 sends in flight until the connection dies.
		defer close(streamDone)
		sent, acks := 0, 0
		for sent < total {
			for sent < total && sent-acks < 16 {
				if ac.Write(map[string]any{"type": "send", "id": fmt.Sprint(sent), "conversation_id": conv, "client_msg_id": fmt.Sprint("m", sent), "body": fmt.Sprint(sent)}) != nil {
					return
				}
				sent++
			}
			f, err := ac.Next(5 * time.Second)
			if err != nil {
				return
			}
			if f.Type == "ack" {
				var ack struct{ Message parley.Message }
				_ = f.Decode(&ack)
				mu.Lock()
				acked[ack.Message.ClientMsgID] = ack.Message.Seq
				mu.Unlock()
				acks++
			}
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for ackedCount() < 40 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if ackedCount() < 40 {
		t.Fatalf("only %d acks before the kill", ackedCount())
	}
	_ = p.Signal(syscall.SIGKILL)
	<-streamDone
	<-p.Exited()

	p = e2e.StartParleyd(t, data, []string{"PARLEY_LIMITS=off"})
	ac = e2e.Connect(t, p.Base, a)
	// The client resends everything (an outbox that lost track), in order.
	final := map[string]int64{}
	for i := range total {
		ac.MustWrite(map[string]any{"type": "send", "id": fmt.Sprint(i), "conversation_id": conv, "client_msg_id": fmt.Sprint("m", i), "body": fmt.Sprint(i)})
		var ack struct{ Message parley.Message }
		if err := ac.Expect("ack", "message", "presence").Decode(&ack); err != nil {
			t.Fatal(err)
		}
		final[ack.Message.ClientMsgID] = ack.Message.Seq
	}
	for id, seq := range acked {
		if final[id] != seq {
			t.Fatalf("%s was acked as seq %d before the kill, %d after", id, seq, final[id])
		}
	}
	res := e2e.DoSync(t, ac, "", 100)
	var lastSeq int64
	for _, c := range res.Conversations {
		if c.Conversation.ID == conv {
			lastSeq = c.Conversation.LastSeq
		}
	}
	if lastSeq != total {
		t.Fatalf("last_seq %d after %d distinct sends (acked before kill: %d)", lastSeq, total, len(acked))
	}
}

// TestBadFrames: malformed JSON, unknown types and binary frames get an
// error frame and the connection lives on; an oversized frame closes it
// with 1009.
func TestBadFrames(t *testing.T) {
	p := e2e.StartRealtime(t, "--max-frame-bytes", "4096")
	e2e.Signup(t, p.Base, "alice")
	a := e2e.LoginDevice(t, p.Base, "alice", "phone")
	c := e2e.Connect(t, p.Base, a)
	for _, bad := range []string{`{"type":`, `[1,2]`, `{"type":"launch_missiles","id":"x"}`, `{"type":"send","id":"s"}`, `{"type":"read","conversation_id":"x","seq":-1}`} {
		c.MustWrite(bad)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := c.Expect("error").Decode(&e); err != nil || e.Error.Code != "invalid_request" || e.Error.Message == "" {
			t.Fatalf("%s: %+v %v", bad, e, err)
		}
	}
	// A send to a conversation that does not exist.
	c.MustWrite(map[string]any{"type": "send", "id": "nc", "conversation_id": parley.NewID(), "client_msg_id": "x", "body": "x"})
	var e struct {
		ID    string                         `json:"id"`
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := c.Expect("error").Decode(&e); err != nil || e.ID != "nc" || e.Error.Code != "conversation_not_found" {
		t.Fatalf("send to nowhere: %+v %v", e, err)
	}
	c.MustWrite(map[string]any{"type": "ping", "id": "p"})
	c.Expect("pong")
	// A binary frame is refused the same way.
	if err := wsutil.WriteClientBinary(c.Raw(), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	c.Expect("error")
	if text := e2e.GetText(t, p.Base+"/metrics"); !strings.Contains(text, `parley_ws_frames_received_total{type="invalid"} 4`) || !strings.Contains(text, "parley_ws_connections 1") {
		t.Errorf("metrics after bad frames:\n%s", e2e.GrepLines(text, "parley_ws"))
	}

	c.MustWrite(`{"type":"ping","pad":"` + strings.Repeat("x", 5000) + `"}`)
	code, err := c.WaitClosed(5 * time.Second)
	if err != nil || code != 1009 {
		t.Fatalf("oversized frame: close code %d, %v; want 1009", code, err)
	}
}

// TestHandshakePolicy: tokens in a header or the query, Origin rules,
// and refusals before the upgrade.
func TestHandshakePolicy(t *testing.T) {
	p := e2e.StartRealtime(t, "--allowed-origins", "https://app.example.com")
	e2e.Signup(t, p.Base, "alice")
	a := e2e.LoginDevice(t, p.Base, "alice", "phone")
	url := e2e.WSURL(p.Base)
	dial := func(u, token, origin string) int {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, resp, err := wstest.Dial(ctx, u, token, h)
		if err != nil {
			if resp == nil {
				t.Fatalf("dial: %v", err)
			}
			return resp.StatusCode
		}
		c.Close()
		return 101
	}
	cases := []struct {
		name, url, token, origin string
		want                     int
	}{
		{"bearer, no origin", url, a.Token, "", 101},
		{"query token", url + "?access_token=" + a.Token, "", "", 101},
		{"allowed origin", url, a.Token, "https://app.example.com", 101},
		{"foreign origin", url, a.Token, "https://evil.example", 403},
		{"no token", url, "", "", 401},
		{"bad token", url, "nonsense", "", 401},
	}
	for _, tc := range cases {
		if got := dial(tc.url, tc.token, tc.origin); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	if strings.Contains(p.Logs(), a.Token) {
		t.Error("an access token reached the log")
	}
}

// TestPresenceRules: contacts see each other come online and go offline
// with last_seen; a user sharing no conversation sees nothing; logout
// closes the socket with 4003.
func TestPresenceRules(t *testing.T) {
	// The grace (300 ms elsewhere) must outlast a reconnect on a loaded,
	// race-built server: the upgrade, the token check and the read of
	// the user's conversations come before the new session cancels it.
	p := e2e.StartRealtime(t, "--presence-grace", "2s")
	base := p.Base
	e2e.Signup(t, base, "alice")
	e2e.Signup(t, base, "bob")
	e2e.Signup(t, base, "eve")
	a, b, e := e2e.LoginDevice(t, base, "alice", "phone"), e2e.LoginDevice(t, base, "bob", "phone"), e2e.LoginDevice(t, base, "eve", "phone")
	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{b.User}})

	bc := e2e.Connect(t, base, b)
	ec := e2e.Connect(t, base, e)
	ac := e2e.Connect(t, base, a)
	var pres struct {
		UserID   string     `json:"user_id"`
		State    string     `json:"state"`
		LastSeen *time.Time `json:"last_seen"`
	}
	// Alice learns Bob is online at connect; Bob learns Alice came online.
	// The conversation's creation may still be on its way to either.
	if err := ac.Expect("presence", "conversation").Decode(&pres); err != nil || pres.UserID != b.User || pres.State != "online" {
		t.Fatalf("alice's initial presence: %+v %v", pres, err)
	}
	if err := bc.Expect("presence", "conversation").Decode(&pres); err != nil || pres.UserID != a.User || pres.State != "online" {
		t.Fatalf("bob sees alice: %+v %v", pres, err)
	}
	ac.Close()
	// Bob may hear "alice online" twice: from her news and from the list
	// of his online contacts, when the gateway's presence goroutine got to
	// that list after she connected (it lists who is online then). A
	// repeated state is harmless; the next change must be the offline.
	for {
		if err := bc.Expect("presence", "conversation").Decode(&pres); err != nil || pres.UserID != a.User {
			t.Fatalf("bob sees alice leave: %+v %v", pres, err)
		}
		if pres.State != "online" {
			break
		}
	}
	if pres.State != "offline" || pres.LastSeen == nil {
		t.Fatalf("bob sees alice leave: %+v", pres)
	}
	ec.Quiet(500*time.Millisecond, "presence")

	// A quick reconnect within the grace period does not flap.
	ac = e2e.Connect(t, base, a)
	bc.Expect("presence", "conversation") // online again (she was offline)
	ac.Close()
	ac = e2e.Connect(t, base, a)
	for deadline := time.Now().Add(3 * time.Second); ; {
		f, err := bc.Next(time.Until(deadline))
		if err != nil {
			break
		}
		if f.Type == "presence" && strings.Contains(string(f.Raw), `"offline"`) {
			t.Fatalf("a reconnect within the grace period flapped: %s", f.Raw)
		}
	}

	// Logging out closes that device's socket at once.
	e2e.MustAPI(t, 204, "DELETE", base+"/v1/sessions/current", a.Token, nil)
	if code, err := ac.WaitClosed(5 * time.Second); err != nil || code != 4003 {
		t.Fatalf("after logout: close %d, %v; want 4003", code, err)
	}
}

// TestShutdownClosesWith1001: SIGTERM sends every socket close 1001.
func TestShutdownClosesWith1001(t *testing.T) {
	p := e2e.StartRealtime(t)
	e2e.Signup(t, p.Base, "alice")
	a := e2e.LoginDevice(t, p.Base, "alice", "phone")
	var conns []*wstest.Conn
	for range 5 {
		conns = append(conns, e2e.Connect(t, p.Base, a))
	}
	_ = p.Signal(syscall.SIGTERM)
	for i, c := range conns {
		if code, err := c.WaitClosed(10 * time.Second); err != nil || code != 1001 {
			t.Fatalf("connection %d: close %d, %v; want 1001", i, code, err)
		}
	}
	<-p.Exited()
	if p.ExitCode() != 0 {
		t.Fatalf("exit code %d:\n%s", p.ExitCode(), p.Logs())
	}
}

// TestTokenExpiryCloses: a connection whose token expires without an auth
// frame is closed with 4001; one that renews in-band lives on.
func TestTokenExpiryCloses(t *testing.T) {
	// Tokens live 4 s: the laptop renews after about one, with room for a
	// slow (race-built, loaded) machine before its first token expires.
	p := e2e.StartRealtime(t, "--access-token-ttl", "4s", "--ping-interval", "500ms", "--idle-timeout", "8s")
	e2e.Signup(t, p.Base, "alice")
	// Each token is used right after its login: a login's password hash
	// can take seconds on a loaded machine and must not eat another
	// device's 4 s token.
	a := e2e.LoginDevice(t, p.Base, "alice", "phone")
	stale := e2e.Connect(t, p.Base, a)
	other := e2e.LoginDevice(t, p.Base, "alice", "tablet")
	a2 := e2e.LoginDevice(t, p.Base, "alice", "laptop")
	renewing := e2e.Connect(t, p.Base, a2)
	// A token of another session is refused.
	renewing.MustWrite(map[string]any{"type": "auth", "id": "a0", "access_token": other.Token})
	var e struct {
		ID    string                `json:"id"`
		Error struct{ Code string } `json:"error"`
	}
	if err := renewing.Expect("error", "presence").Decode(&e); err != nil || e.ID != "a0" || e.Error.Code != "unauthorized" {
		t.Fatalf("auth with another session's token: %+v %v", e, err)
	}
	// The laptop refreshes its session and renews in-band.
	time.Sleep(time.Second)
	r := e2e.MustAPI(t, 200, "POST", p.Base+"/v1/sessions/refresh", "", map[string]any{"refresh_token": a2.Refresh})
	renewing.MustWrite(map[string]any{"type": "auth", "id": "a1", "access_token": r["access_token"].(string)})
	renewing.Expect("authenticated", "presence")

	if code, err := stale.WaitClosed(8 * time.Second); err != nil || code != 4001 {
		t.Fatalf("expired token: close %d, %v; want 4001", code, err)
	}
	// The renewed one is still open after its first token expired.
	time.Sleep(500 * time.Millisecond)
	renewing.MustWrite(map[string]any{"type": "ping", "id": "p"})
	renewing.Expect("pong", "presence")
}

type convFrame struct {
	Action       string              `json:"action"`
	Conversation parley.Conversation `json:"conversation"`
	UserIDs      []string            `json:"user_ids"`
}

// TestConversationFrames: creation, adds and removals reach the live
// sessions concerned, and delivery follows membership at once.
func TestConversationFrames(t *testing.T) {
	p := e2e.StartRealtime(t)
	base := p.Base
	for _, h := range []string{"alice", "bob", "carol"} {
		e2e.Signup(t, base, h)
	}
	a, b, c := e2e.LoginDevice(t, base, "alice", "phone"), e2e.LoginDevice(t, base, "bob", "phone"), e2e.LoginDevice(t, base, "carol", "phone")
	ac, bc, cc := e2e.Connect(t, base, a), e2e.Connect(t, base, b), e2e.Connect(t, base, c)

	g := e2e.MustAPI(t, 201, "POST", base+"/v1/conversations", a.Token, map[string]any{"kind": "group", "title": "trip", "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)
	for name, conn := range map[string]*wstest.Conn{"alice": ac, "bob": bc} {
		var f convFrame
		if err := conn.Expect("conversation", "presence").Decode(&f); err != nil || f.Action != "created" || f.Conversation.ID != g || len(f.Conversation.Members) != 2 {
			t.Fatalf("%s: %+v %v", name, f, err)
		}
	}
	send := func(id string) {
		ac.MustWrite(map[string]any{"type": "send", "id": id, "conversation_id": g, "client_msg_id": id, "body": id})
		ac.Expect("ack", "message", "presence", "conversation")
	}
	send("m1")
	if m := e2e.ExpectMessage(t, bc); m.Body != "m1" {
		t.Fatalf("bob got %+v", m)
	}

	e2e.MustAPI(t, 201, "POST", base+"/v1/conversations/"+g+"/members", a.Token, map[string]any{"user_id": c.User})
	var f convFrame
	if err := cc.Expect("conversation", "presence").Decode(&f); err != nil || f.Action != "member_added" || !slices.Equal(f.UserIDs, []string{c.User}) {
		t.Fatalf("carol: %+v %v", f, err)
	}
	if err := bc.Expect("conversation", "presence").Decode(&f); err != nil || f.Action != "member_added" {
		t.Fatalf("bob sees carol join: %+v %v", f, err)
	}
	e2e.MustAPI(t, 204, "DELETE", base+"/v1/conversations/"+g+"/members/"+b.User, a.Token, nil)
	if err := bc.Expect("conversation", "presence").Decode(&f); err != nil || f.Action != "member_removed" || !slices.Equal(f.UserIDs, []string{b.User}) {
		t.Fatalf("bob: %+v %v", f, err)
	}
	send("m2")
	if m := e2e.ExpectMessage(t, cc); m.Body != "m2" || m.Seq != 2 {
		t.Fatalf("carol got %+v", m)
	}
	bc.Quiet(300*time.Millisecond, "message")
}

// TestSlowConsumerDropped: a client that stops reading is disconnected
// once its outbound queue passes the limit; the sender is never slowed.
func TestSlowConsumerDropped(t *testing.T) {
	p := e2e.StartRealtime(t, "--max-body-bytes", "65536")
	e2e.Signup(t, p.Base, "alice")
	e2e.Signup(t, p.Base, "bob")
	a, b := e2e.LoginDevice(t, p.Base, "alice", "phone"), e2e.LoginDevice(t, p.Base, "bob", "phone")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)

	// Bob connects with a tiny receive buffer and never reads.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	dialer := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + b.Token}}), NetDial: d.DialContext}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stuck, _, _, err := dialer.Dial(ctx, e2e.WSURL(p.Base))
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()

	ac := e2e.Connect(t, p.Base, a)
	body := strings.Repeat("x", 60000)
	start := time.Now()
	var slowest time.Duration
	for i := range 150 { // 9 MB for bob
		t0 := time.Now()
		ac.MustWrite(map[string]any{"type": "send", "id": fmt.Sprint(i), "conversation_id": conv, "client_msg_id": fmt.Sprint(i), "body": body})
		ac.Expect("ack", "message", "presence", "conversation")
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("150 acked sends of 60 kB in %v, slowest %v", time.Since(start), slowest)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e2e.GetText(t, p.Base+"/metrics"), "parley_ws_connections 1\n") {
		if time.Now().After(deadline) {
			t.Fatalf("the stuck connection was not dropped:\n%s", e2e.GrepLines(e2e.GetText(t, p.Base+"/metrics"), "parley_ws"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIdleTimeout: a client that sends nothing (not even pongs) is closed
// after the idle timeout; one that answers pings stays.
func TestIdleTimeout(t *testing.T) {
	p := e2e.StartRealtime(t, "--ping-interval", "300ms", "--idle-timeout", "1s")
	e2e.Signup(t, p.Base, "alice")
	a := e2e.LoginDevice(t, p.Base, "alice", "phone")
	live := e2e.Connect(t, p.Base, a) // wstest answers pings
	dialer := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + a.Token}})}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// From before the dial: the server's idle clock starts at the
	// upgrade, which a loaded machine may answer late.
	start := time.Now()
	silent, _, _, err := dialer.Dial(ctx, e2e.WSURL(p.Base))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_ = silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, silent); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("silent connection: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("silent connection closed after %v, want about 1s", d)
	}
	time.Sleep(time.Second)
	live.MustWrite(map[string]any{"type": "ping", "id": "still-here"})
	live.Expect("pong", "presence")
}

// TestLargeRepliesFitBudget: sync and history replies over big messages
// are cut to the reply budget instead of overflowing the connection, and
// say so, so the client pages on.
func TestLargeRepliesFitBudget(t *testing.T) {
	p := e2e.StartRealtime(t)
	e2e.Signup(t, p.Base, "alice")
	e2e.Signup(t, p.Base, "bob")
	a, b := e2e.LoginDevice(t, p.Base, "alice", "phone"), e2e.LoginDevice(t, p.Base, "bob", "phone")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)
	body := strings.Repeat("y", 60000)
	for i := range 40 {
		e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations/"+conv+"/messages", a.Token, map[string]any{"client_msg_id": fmt.Sprint(i), "body": body})
	}
	bc := e2e.Connect(t, p.Base, b)
	res := e2e.DoSync(t, bc, "", 100)
	if len(res.Conversations) != 1 {
		t.Fatalf("%d conversations", len(res.Conversations))
	}
	c := res.Conversations[0]
	n := len(c.Messages)
	if !c.MoreMessages || n == 0 || n > service.SyncBudget/60000+1 || c.Messages[n-1].Seq != 40 {
		t.Fatalf("sync over 40 x 60 kB: %d messages, more %v", n, c.MoreMessages)
	}
	// Page back through the rest with history; every page fits.
	got := n
	before := c.Messages[0].Seq
	for before > 1 {
		bc.MustWrite(map[string]any{"type": "history", "id": "h", "conversation_id": conv, "before": before, "limit": 200})
		var h struct {
			Messages  []parley.Message `json:"messages"`
			Truncated bool             `json:"truncated"`
		}
		if err := bc.Expect("history_result", "*").Decode(&h); err != nil || len(h.Messages) == 0 {
			t.Fatalf("history before %d: %+v %v", before, h, err)
		}
		if h.Messages[len(h.Messages)-1].Seq != before-1 || (!h.Truncated && h.Messages[0].Seq != 1) {
			t.Fatalf("history before %d: %d..%d truncated %v", before, h.Messages[0].Seq, h.Messages[len(h.Messages)-1].Seq, h.Truncated)
		}
		got += len(h.Messages)
		before = h.Messages[0].Seq
	}
	if got != 40 {
		t.Fatalf("paged %d messages, want 40", got)
	}
}

// TestTLSSlowConsumerDropped: with in-process TLS (nbio's blocking mode)
// a client that never reads is dropped too, by the frame bound.
func TestTLSSlowConsumerDropped(t *testing.T) {
	dir := t.TempDir()
	cert, key := e2e.WriteSelfSigned(t, dir)
	p := e2e.StartParleyd(t, filepath.Join(dir, "data"), []string{"PARLEY_LIMITS=off"}, "--tls-cert", cert, "--tls-key", key)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	tok, ids := map[string]string{}, map[string]string{}
	for _, h := range []string{"alice", "bob"} {
		if code, _ := e2e.API(t, client, "POST", p.Base+"/v1/accounts", "", map[string]any{"handle": h, "password": "correct horse battery"}); code != 201 {
			t.Fatalf("register: %d", code)
		}
		_, s := e2e.API(t, client, "POST", p.Base+"/v1/sessions", "", map[string]any{"handle": h, "password": "correct horse battery", "device": map[string]any{"platform": "cli", "name": "x"}})
		tok[h], ids[h] = s["access_token"].(string), s["user_id"].(string)
	}
	_, c := e2e.API(t, client, "POST", p.Base+"/v1/conversations", tok["alice"], map[string]any{"kind": "direct", "members": []string{ids["bob"]}})
	conv := c["conversation"].(map[string]any)["id"].(string)

	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	d := ws.Dialer{TLSConfig: &tls.Config{InsecureSkipVerify: true}, NetDial: nd.DialContext, Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + tok["bob"]}})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stuck, _, _, err := d.Dial(ctx, "wss"+strings.TrimPrefix(p.Base, "https")+"/v1/ws")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer stuck.Close()
	body := strings.Repeat("x", 60000)
	for i := range 150 { // 9 MB for bob
		if code, _ := e2e.API(t, client, "POST", p.Base+"/v1/conversations/"+conv+"/messages", tok["alice"], map[string]any{"client_msg_id": fmt.Sprint(i), "body": body}); code != 201 {
			t.Fatalf("send %d: %d", i, code)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := client.Get(p.Base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if strings.Contains(string(m), "parley_ws_connections 0\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("over TLS, a client that read nothing of 9 MB is still connected:\n%s", e2e.GrepLines(string(m), "parley_ws"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
