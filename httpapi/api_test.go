package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/httpapi"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/service"
	"github.com/parleychat/parley/store/sqlite"
)

// env is a real router over a real SQLite store, keys and core.
type env struct {
	t     testing.TB
	srv   *httptest.Server
	svc   *service.Service
	store *sqlite.Store
	now   *time.Time
}

type envOption func(*httpapi.Config)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	return newEnvWith(t, nil, opts...)
}

// newEnvWith is newEnv with the core's config changed by svcOpt.
func newEnvWith(t testing.TB, svcOpt func(*service.Config), opts ...envOption) *env {
	t.Helper()
	cfg := httpapi.Config{LimitsOff: true}
	for _, o := range opts {
		o(&cfg)
	}
	return buildEnv(t, cfg, svcOpt, nil, nil)
}

// buildEnv starts the API over a fresh SQLite store with cfg, the
// server's write timeout cfg.WriteTimeout as parleyd sets it; svcOpt,
// when given, changes the core's config, passwords, when given, wraps
// the argon2id queue the core hashes with, and more adds to the service
// and the handler's options before the server starts.
func buildEnv(t testing.TB, cfg httpapi.Config, svcOpt func(*service.Config), passwords func(service.Passwords) service.Passwords, more func(*env, *httpapi.Options)) *env {
	t.Helper()
	dir := t.TempDir()
	kr, err := seal.NewKeyring([][]byte{bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "parley.db"), sqlite.Options{Sealer: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := auth.LoadKeys(filepath.Join(dir, "keys"), auth.KeyOptions{AccessTTL: 15 * time.Minute}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e := &env{t: t, store: st, now: &now}
	log := slog.New(slog.DiscardHandler)
	svcCfg := service.Config{MaxBodyBytes: 1024, APNsTopics: []string{"com.example.app"}, Now: func() time.Time { return *e.now }}
	if svcOpt != nil {
		svcOpt(&svcCfg)
	}
	var pw service.Passwords = auth.NewArgon2id(auth.PasswordParams{Time: 1, MemoryKiB: 1024, Threads: 1}, 4)
	if passwords != nil {
		pw = passwords(pw)
	}
	e.svc = service.New(st, keys, pw, svcCfg, log, nil)
	o := httpapi.Options{JWKS: keys.JWKS}
	if more != nil {
		more(e, &o)
	}
	e.srv = httptest.NewUnstartedServer(httpapi.New(e.svc, cfg, o, log, nil))
	e.srv.Config.WriteTimeout = cfg.WriteTimeout
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// call does one request and decodes the JSON answer into a map.
func (e *env) call(method, path, token string, body any) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, _ := json.Marshal(b)
		rd = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			e.t.Fatalf("%s %s: answer is not JSON: %q", method, path, raw)
		}
	}
	return res.StatusCode, out
}

// must does a request that has to answer want.
func (e *env) must(want int, method, path, token string, body any) map[string]any {
	e.t.Helper()
	got, out := e.call(method, path, token, body)
	if got != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %v", method, path, got, want, out)
	}
	return out
}

// fails does a request that has to fail with status and code.
func (e *env) fails(status int, code parley.Code, method, path, token string, body any) {
	e.t.Helper()
	got, out := e.call(method, path, token, body)
	errObj, _ := out["error"].(map[string]any)
	if got != status || errObj == nil || errObj["code"] != string(code) || errObj["message"] == "" {
		e.t.Fatalf("%s %s: got %d %v, want %d with code %s and a message", method, path, got, out, status, code)
	}
}

type user struct {
	id, handle, token, refresh, device string
}

func (e *env) user(handle string) user {
	e.t.Helper()
	out := e.must(201, "POST", "/v1/accounts", "", map[string]any{"handle": handle, "password": "correct horse battery", "display_name": strings.ToUpper(handle)})
	u := user{id: str(out, "user", "id"), handle: handle}
	e.login(&u, "ios")
	return u
}

func (e *env) login(u *user, platform string) {
	e.t.Helper()
	out := e.must(200, "POST", "/v1/sessions", "", map[string]any{"handle": u.handle, "password": "correct horse battery", "device": map[string]any{"platform": platform, "name": "phone"}})
	u.token, u.refresh, u.device = str(out, "access_token"), str(out, "refresh_token"), str(out, "device_id")
	if str(out, "user_id") != u.id || out["expires_in"].(float64) != 900 {
		e.t.Fatalf("login answer %v", out)
	}
}

// str digs a string out of nested JSON objects.
func str(m map[string]any, path ...string) string {
	var cur any = m
	for _, p := range path {
		obj, _ := cur.(map[string]any)
		cur = obj[p]
	}
	s, _ := cur.(string)
	return s
}

func num(m map[string]any, path ...string) float64 {
	var cur any = m
	for _, p := range path {
		obj, _ := cur.(map[string]any)
		cur = obj[p]
	}
	f, _ := cur.(float64)
	return f
}

func TestAccountsAndSessions(t *testing.T) {
	e := newEnv(t)
	e.fails(400, parley.CodeInvalidRequest, "POST", "/v1/accounts", "", map[string]any{"handle": "a", "password": "correct horse battery"})
	e.fails(400, parley.CodeInvalidRequest, "POST", "/v1/accounts", "", map[string]any{"handle": "alice", "password": "short"})
	e.fails(400, parley.CodeInvalidRequest, "POST", "/v1/accounts", "", map[string]any{"handle": "al ice", "password": "correct horse battery"})
	alice := e.user("alice")
	e.fails(409, parley.CodeConflict, "POST", "/v1/accounts", "", map[string]any{"handle": "ALICE", "password": "correct horse battery"})

	me := e.must(200, "GET", "/v1/me", alice.token, nil)
	if str(me, "user", "handle") != "alice" || str(me, "user", "display_name") != "ALICE" || str(me, "user", "role") != "user" {
		t.Fatalf("me = %v", me)
	}
	if _, ok := me["user"].(map[string]any)["password_hash"]; ok {
		t.Fatal("password hash leaked")
	}
	e.fails(401, parley.CodeUnauthorized, "GET", "/v1/me", "", nil)
	e.fails(401, parley.CodeUnauthorized, "GET", "/v1/me", "garbage", nil)
	e.fails(401, parley.CodeUnauthorized, "POST", "/v1/sessions", "", map[string]any{"handle": "alice", "password": "wrong password!", "device": map[string]any{"platform": "ios"}})
	e.fails(401, parley.CodeUnauthorized, "POST", "/v1/sessions", "", map[string]any{"handle": "nobody", "password": "wrong password!", "device": map[string]any{"platform": "ios"}})
	e.fails(400, parley.CodeInvalidRequest, "POST", "/v1/sessions", "", map[string]any{"handle": "alice", "password": "correct horse battery", "device": map[string]any{"platform": "toaster"}})

	// A second device; both listed, the current one marked.
	laptop := alice
	e.login(&laptop, "web")
	devs := e.must(200, "GET", "/v1/devices", alice.token, nil)["devices"].([]any)
	if len(devs) != 2 {
		t.Fatalf("devices = %v", devs)
	}

	// Refresh rotates; the old refresh token, presented again, revokes the family.
	out := e.must(200, "POST", "/v1/sessions/refresh", "", map[string]any{"refresh_token": alice.refresh})
	newRefresh, newAccess := str(out, "refresh_token"), str(out, "access_token")
	if newRefresh == alice.refresh || str(out, "device_id") != alice.device {
		t.Fatalf("refresh answer %v", out)
	}
	e.must(200, "GET", "/v1/me", newAccess, nil)
	e.fails(401, parley.CodeUnauthorized, "POST", "/v1/sessions/refresh", "", map[string]any{"refresh_token": alice.refresh})
	e.fails(401, parley.CodeUnauthorized, "POST", "/v1/sessions/refresh", "", map[string]any{"refresh_token": newRefresh})
	e.fails(401, parley.CodeUnauthorized, "GET", "/v1/me", newAccess, nil) // the device is gone
	e.must(200, "GET", "/v1/me", laptop.token, nil)                        // the other device is not

	// Logout ends this device only; revoke-all ends every device.
	phone := alice
	e.login(&phone, "android")
	e.must(204, "DELETE", "/v1/sessions/current", phone.token, nil)
	e.fails(401, parley.CodeUnauthorized, "GET", "/v1/me", phone.token, nil)
	e.fails(401, parley.CodeUnauthorized, "POST", "/v1/sessions/refresh", "", map[string]any{"refresh_token": phone.refresh})
	e.must(200, "GET", "/v1/me", laptop.token, nil)
	tablet := alice
	e.login(&tablet, "ios")
	e.must(204, "DELETE", "/v1/devices/"+tablet.device, laptop.token, nil)
	e.fails(401, parley.CodeUnauthorized, "GET", "/v1/me", tablet.token, nil)
	e.fails(404, parley.CodeNotFound, "DELETE", "/v1/devices/"+tablet.device, laptop.token, nil)
	out = e.must(200, "DELETE", "/v1/sessions", laptop.token, nil)
	if num(out, "sessions_ended") != 1 {
		t.Fatalf("revoke all = %v", out)
	}
	e.fails(401, parley.CodeUnauthorized, "GET", "/v1/me", laptop.token, nil)

	// Find users by handle, case-insensitively.
	bob := e.user("bob")
	found := e.must(200, "GET", "/v1/users?handle=Alice", bob.token, nil)
	if str(found, "user", "id") != alice.id {
		t.Fatalf("find = %v", found)
	}
	e.fails(404, parley.CodeNotFound, "GET", "/v1/users?handle=nobody", bob.token, nil)
}

func TestTokenExpiry(t *testing.T) {
	e := newEnv(t)
	alice := e.user("alice")
	*e.now = e.now.Add(16 * time.Minute)
	e.fails(401, parley.CodeTokenExpired, "GET", "/v1/me", alice.token, nil)
	out := e.must(200, "POST", "/v1/sessions/refresh", "", map[string]any{"refresh_token": alice.refresh})
	e.must(200, "GET", "/v1/me", str(out, "access_token"), nil)
}

func TestSuspend(t *testing.T) {
	e := newEnv(t)
	admin, mallory := e.user("admin"), e.user("mallory")
	e.fails(403, parley.CodeForbidden, "POST", "/v1/admin/users/"+mallory.id+"/suspend", admin.token, nil)
	if _, err := e.svc.GrantAdmin(context.Background(), "admin"); err != nil {
		t.Fatal(err)
	}
	e.fails(403, parley.CodeForbidden, "POST", "/v1/admin/users/"+admin.id+"/suspend", mallory.token, nil)
	e.must(200, "POST", "/v1/admin/users/"+mallory.id+"/suspend", admin.token, nil)
	e.fails(401, parley.CodeUnauthorized, "GET", "/v1/me", mallory.token, nil)
	e.fails(401, parley.CodeUnauthorized, "POST", "/v1/sessions/refresh", "", map[string]any{"refresh_token": mallory.refresh})
	e.fails(403, parley.CodeSuspended, "POST", "/v1/sessions", "", map[string]any{"handle": "mallory", "password": "correct horse battery", "device": map[string]any{"platform": "ios"}})
	e.fails(404, parley.CodeNotFound, "POST", "/v1/admin/users/"+parley.NewID()+"/suspend", admin.token, nil)
	e.must(200, "POST", "/v1/admin/users/"+mallory.id+"/reinstate", admin.token, nil)
	e.login(&mallory, "ios")
	e.must(200, "GET", "/v1/me", mallory.token, nil)
}

func TestConversations(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol, dave := e.user("alice"), e.user("bob"), e.user("carol"), e.user("dave")

	// Direct: unique per pair, whichever side creates it.
	d1 := e.must(201, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bob.id}})
	d2 := e.must(200, "POST", "/v1/conversations", bob.token, map[string]any{"kind": "direct", "members": []string{alice.id}})
	direct := str(d1, "conversation", "id")
	if str(d2, "conversation", "id") != direct {
		t.Fatal("direct conversation created twice")
	}
	e.fails(400, parley.CodeInvalidRequest, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bob.id, carol.id}})
	e.fails(404, parley.CodeNotFound, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{parley.NewID()}})
	e.fails(400, parley.CodeInvalidRequest, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "channel", "members": []string{bob.id}})
	e.fails(403, parley.CodeForbidden, "POST", "/v1/conversations/"+direct+"/members", alice.token, map[string]any{"user_id": carol.id})

	// Group with roles.
	g := e.must(201, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "group", "title": "Trip", "members": []string{bob.id}})
	group := str(g, "conversation", "id")
	base := "/v1/conversations/" + group
	e.fails(403, parley.CodeForbidden, "POST", base+"/members", bob.token, map[string]any{"user_id": carol.id})
	e.must(200, "PATCH", base+"/members/"+bob.id, alice.token, map[string]any{"role": "admin"})
	e.must(201, "POST", base+"/members", bob.token, map[string]any{"user_id": carol.id})
	e.fails(403, parley.CodeForbidden, "POST", base+"/members", bob.token, map[string]any{"user_id": dave.id, "role": "admin"})
	e.fails(409, parley.CodeConflict, "POST", base+"/members", alice.token, map[string]any{"user_id": carol.id})
	e.fails(403, parley.CodeForbidden, "PATCH", base+"/members/"+carol.id, bob.token, map[string]any{"role": "admin"})
	e.fails(403, parley.CodeForbidden, "DELETE", base+"/members/"+alice.id, bob.token, nil)
	e.must(204, "DELETE", base+"/members/"+carol.id, bob.token, nil) // admin removes a member
	e.must(201, "POST", base+"/members", alice.token, map[string]any{"user_id": carol.id})
	e.must(204, "DELETE", base+"/members/"+carol.id, carol.token, nil) // carol leaves
	e.fails(409, parley.CodeConflict, "DELETE", base+"/members/"+alice.id, alice.token, nil)

	// Transfer ownership: bob owner, alice admin.
	out := e.must(200, "PATCH", base+"/members/"+bob.id, alice.token, map[string]any{"role": "owner"})
	roles := map[string]string{}
	for _, m := range out["conversation"].(map[string]any)["members"].([]any) {
		mm := m.(map[string]any)
		roles[mm["user_id"].(string)] = mm["role"].(string)
	}
	if roles[bob.id] != "owner" || roles[alice.id] != "admin" || len(roles) != 2 {
		t.Fatalf("after transfer roles = %v", roles)
	}
	e.fails(403, parley.CodeForbidden, "DELETE", base, alice.token, nil)

	// A non-member learns nothing: every route answers conversation_not_found,
	// exactly as for a conversation that does not exist.
	for _, id := range []string{group, parley.NewID(), "not-an-id"} {
		b := "/v1/conversations/" + id
		e.fails(404, parley.CodeConversationNotFound, "GET", b, dave.token, nil)
		e.fails(404, parley.CodeConversationNotFound, "GET", b+"/messages", dave.token, nil)
		e.fails(404, parley.CodeConversationNotFound, "POST", b+"/messages", dave.token, map[string]any{"client_msg_id": "x1", "body": "hi"})
		e.fails(404, parley.CodeConversationNotFound, "POST", b+"/read", dave.token, map[string]any{"seq": 1})
		e.fails(404, parley.CodeConversationNotFound, "POST", b+"/members", dave.token, map[string]any{"user_id": dave.id})
		e.fails(404, parley.CodeConversationNotFound, "DELETE", b+"/members/"+dave.id, dave.token, nil)
		e.fails(404, parley.CodeConversationNotFound, "PATCH", b+"/members/"+alice.id, dave.token, map[string]any{"role": "admin"})
		e.fails(404, parley.CodeConversationNotFound, "PATCH", b+"/messages/1", dave.token, map[string]any{"body": "x"})
		e.fails(404, parley.CodeConversationNotFound, "DELETE", b+"/messages/1", dave.token, nil)
		e.fails(404, parley.CodeConversationNotFound, "DELETE", b, dave.token, nil)
	}

	list := e.must(200, "GET", "/v1/conversations", alice.token, nil)["conversations"].([]any)
	if len(list) != 2 {
		t.Fatalf("alice has %d conversations, want 2", len(list))
	}
	e.must(204, "DELETE", base, bob.token, nil)
	e.fails(404, parley.CodeConversationNotFound, "GET", base, alice.token, nil)
}

func TestMessages(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	c := e.must(201, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bob.id}})
	msgs := "/v1/conversations/" + str(c, "conversation", "id") + "/messages"

	m1 := e.must(201, "POST", msgs, alice.token, map[string]any{"client_msg_id": "a-1", "type": "text", "body": "hello"})
	if num(m1, "message", "seq") != 1 || str(m1, "message", "sender_id") != alice.id || str(m1, "message", "sender_device_id") != alice.device || str(m1, "message", "body") != "hello" {
		t.Fatalf("send = %v", m1)
	}
	replay := e.must(200, "POST", msgs, alice.token, map[string]any{"client_msg_id": "a-1", "type": "text", "body": "hello again"})
	if str(replay, "message", "id") != str(m1, "message", "id") || str(replay, "message", "body") != "hello" {
		t.Fatalf("replay = %v", replay)
	}
	// The same client_msg_id from another user is another message.
	e.must(201, "POST", msgs, bob.token, map[string]any{"client_msg_id": "a-1", "body": "hi alice"})

	// Bad sends change nothing.
	e.fails(400, parley.CodeInvalidRequest, "POST", msgs, alice.token, map[string]any{"body": "no id"})
	e.fails(400, parley.CodeInvalidRequest, "POST", msgs, alice.token, map[string]any{"client_msg_id": "s", "type": "system", "body": "fake"})
	e.fails(400, parley.CodeInvalidRequest, "POST", msgs, alice.token, map[string]any{"client_msg_id": "s", "type": "sticker", "body": "x"})
	e.fails(400, parley.CodeInvalidRequest, "POST", msgs, alice.token, map[string]any{"client_msg_id": "s", "body": ""})
	e.fails(400, parley.CodeInvalidRequest, "POST", msgs, alice.token, map[string]any{"client_msg_id": "s", "body": "x", "ttl_seconds": -1})
	e.fails(413, parley.CodePayloadTooLarge, "POST", msgs, alice.token, map[string]any{"client_msg_id": "s", "body": strings.Repeat("x", 1025)})
	e.fails(413, parley.CodePayloadTooLarge, "POST", msgs, alice.token, map[string]any{"client_msg_id": "s", "body": strings.Repeat("x", 40000)})
	e.fails(400, parley.CodeInvalidRequest, "POST", msgs, alice.token, `{"client_msg_id": "s", "body": `)
	e.fails(400, parley.CodeInvalidRequest, "POST", msgs, alice.token, `{"client_msg_id": 5, "body": "x"}`)
	e.fails(400, parley.CodeInvalidRequest, "POST", msgs, alice.token, `{"client_msg_id": "s", "body": "x"} {}`)
	e.fails(400, parley.CodeInvalidRequest, "POST", msgs, alice.token, `[]`)
	e.fails(400, parley.CodeInvalidRequest, "POST", msgs, alice.token, `{"client_msg_id": "s", "body": "x"}}`)

	for i := 3; i <= 10; i++ {
		e.must(201, "POST", msgs, alice.token, map[string]any{"client_msg_id": fmt.Sprintf("a-%d", i), "body": fmt.Sprintf("m%d", i)})
	}
	seqs := func(path string) []int {
		var out []int
		for _, m := range e.must(200, "GET", path, bob.token, nil)["messages"].([]any) {
			out = append(out, int(m.(map[string]any)["seq"].(float64)))
		}
		return out
	}
	for path, want := range map[string]string{
		msgs + "?limit=3":          "[8 9 10]",
		msgs + "?before=8&limit=3": "[5 6 7]",
		msgs + "?before=3&limit=5": "[1 2]",
		msgs + "?after=8":          "[9 10]",
		msgs + "?after=0&limit=2":  "[1 2]",
		msgs:                       "[1 2 3 4 5 6 7 8 9 10]",
	} {
		if got := fmt.Sprint(seqs(path)); got != want {
			t.Errorf("GET %s = %s, want %s", path, got, want)
		}
	}
	e.fails(400, parley.CodeInvalidRequest, "GET", msgs+"?limit=201", bob.token, nil)
	e.fails(400, parley.CodeInvalidRequest, "GET", msgs+"?limit=0", bob.token, nil)
	e.fails(400, parley.CodeInvalidRequest, "GET", msgs+"?before=3&after=1", bob.token, nil)
	e.fails(400, parley.CodeInvalidRequest, "GET", msgs+"?before=x", bob.token, nil)

	// Unread and read state.
	view := func(u user) map[string]any {
		return e.must(200, "GET", "/v1/conversations/"+str(c, "conversation", "id"), u.token, nil)["conversation"].(map[string]any)
	}
	if v := view(bob); v["unread_count"].(float64) != 9 || v["last_seq"].(float64) != 10 || v["read_seq"].(float64) != 0 {
		t.Fatalf("bob's view = %v", v)
	}
	read := strings.TrimSuffix(msgs, "/messages") + "/read"
	if out := e.must(200, "POST", read, bob.token, map[string]any{"seq": 6}); num(out, "read_seq") != 6 {
		t.Fatalf("read = %v", out)
	}
	if out := e.must(200, "POST", read, bob.token, map[string]any{"seq": 3}); num(out, "read_seq") != 6 {
		t.Fatalf("read went backwards: %v", out)
	}
	if out := e.must(200, "POST", read, bob.token, map[string]any{"seq": 99}); num(out, "read_seq") != 10 {
		t.Fatalf("read beyond last_seq: %v", out)
	}
	if v := view(bob); v["unread_count"].(float64) != 0 {
		t.Fatalf("bob's view after reading = %v", v)
	}

	// Edit and delete own messages; a deleted message is a tombstone.
	e.fails(403, parley.CodeForbidden, "PATCH", msgs+"/1", bob.token, map[string]any{"body": "not mine"})
	ed := e.must(200, "PATCH", msgs+"/1", alice.token, map[string]any{"body": "hello, edited"})
	if str(ed, "message", "body") != "hello, edited" || str(ed, "message", "edited_at") == "" {
		t.Fatalf("edit = %v", ed)
	}
	e.must(200, "DELETE", msgs+"/1", alice.token, nil)
	e.fails(409, parley.CodeConflict, "PATCH", msgs+"/1", alice.token, map[string]any{"body": "again"})
	e.fails(404, parley.CodeNotFound, "DELETE", msgs+"/99", alice.token, nil)
	first := e.must(200, "GET", msgs+"?limit=1&after=0", bob.token, nil)["messages"].([]any)[0].(map[string]any)
	if first["deleted"] != true || first["body"] != "" || first["seq"].(float64) != 1 {
		t.Fatalf("tombstone = %v", first)
	}

	// TTL: gone once expired, and purged by the background job.
	e.must(201, "POST", msgs, alice.token, map[string]any{"client_msg_id": "ttl", "body": "ephemeral", "ttl_seconds": 60})
	if got := fmt.Sprint(seqs(msgs + "?after=10")); got != "[11]" {
		t.Fatalf("before expiry: %s", got)
	}
	*e.now = e.now.Add(61 * time.Second)
	if got := fmt.Sprint(seqs(msgs + "?after=10")); got != "[]" {
		t.Fatalf("after expiry: %s", got)
	}
	if n := e.svc.PurgeExpired(context.Background()); n != 1 {
		t.Fatalf("purged %d, want 1", n)
	}
	// Seqs are never reused after a purge.
	if out := e.must(201, "POST", msgs, alice.token, map[string]any{"client_msg_id": "after-ttl", "body": "x"}); num(out, "message", "seq") != 12 {
		t.Fatalf("seq after purge = %v", out)
	}
}

func TestErrorsAndLimits(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) {
		c.LimitsOff = false
		c.IPRate, c.IPBurst = 1, 30
		c.LoginRate, c.LoginBurst = 0.01, 3
		c.AuthRate, c.AuthBurst = 100, 100
	})
	e.fails(404, parley.CodeNotFound, "GET", "/v1/nothing", "", nil)
	res, err := http.Get(e.srv.URL + "/healthz")
	if err != nil || res.StatusCode != 200 || res.Header.Get("X-Request-ID") == "" {
		t.Fatalf("healthz: %v %v", res, err)
	}
	res.Body.Close()
	e.must(200, "GET", "/readyz", "", nil)
	jwks := e.must(200, "GET", "/.well-known/jwks.json", "", nil)
	if keys, _ := jwks["keys"].([]any); len(keys) != 1 {
		t.Fatalf("jwks = %v", jwks)
	}

	// Failed login attempts per handle: after three, even the right
	// password is refused; successful logins do not count.
	alice := e.user("alice")
	for i := 0; i < 4; i++ {
		e.login(&alice, "web")
	}
	for i := 0; i < 3; i++ {
		e.fails(401, parley.CodeUnauthorized, "POST", "/v1/sessions", "", map[string]any{"handle": "alice", "password": "wrong password!", "device": map[string]any{"platform": "ios"}})
	}
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/sessions", strings.NewReader(`{"handle":"alice","password":"correct horse battery","device":{"platform":"ios"}}`))
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("login after 3 failures: %d Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	e.fails(400, parley.CodeInvalidRequest, "POST", "/v1/accounts", "", "null")

	// Per-IP limit: the burst runs out.
	limited := false
	for i := 0; i < 40 && !limited; i++ {
		code, _ := e.call("GET", "/v1/nothing", "", nil)
		limited = code == 429
	}
	if !limited {
		t.Fatal("per-IP limit never answered 429")
	}
	// Probes are exempt.
	e.must(200, "GET", "/healthz", "", nil)
	e.must(200, "GET", "/readyz", "", nil)
}
