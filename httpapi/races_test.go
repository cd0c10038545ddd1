package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/httpapi"
)

// TestConcurrentOwnershipTransfers: the permission check and the change
// are one transaction, so racing transfers leave exactly one owner.
func TestConcurrentOwnershipTransfers(t *testing.T) {
	e := newEnv(t)
	owner := e.user("owner")
	var others []user
	var ids []string
	for i := 0; i < 4; i++ {
		u := e.user(fmt.Sprintf("member%d", i))
		others = append(others, u)
		ids = append(ids, u.id)
	}
	g := e.must(201, "POST", "/v1/conversations", owner.token, map[string]any{"kind": "group", "title": "race", "members": ids})
	base := "/v1/conversations/" + str(g, "conversation", "id")
	var wg sync.WaitGroup
	var won atomic.Int32
	for _, u := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _ := e.call("PATCH", base+"/members/"+u.id, owner.token, map[string]any{"role": "owner"}); code == 200 {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	conv := e.must(200, "GET", base, owner.token, nil)["conversation"].(map[string]any)
	owners := 0
	for _, m := range conv["members"].([]any) {
		if m.(map[string]any)["role"] == "owner" {
			owners++
		}
	}
	if owners != 1 || won.Load() != 1 {
		t.Fatalf("%d owners, %d transfers succeeded; want 1 and 1", owners, won.Load())
	}
}

// TestMembershipLifecycle: roles, what a new member sees, and what a removed
// member loses.
func TestMembershipLifecycle(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol, dave := e.user("alice"), e.user("bob"), e.user("carol"), e.user("dave")
	g := e.must(201, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "group", "title": "club", "members": []string{bob.id, carol.id}})
	id := str(g, "conversation", "id")
	base := "/v1/conversations/" + id
	e.must(200, "PATCH", base+"/members/"+bob.id, alice.token, map[string]any{"role": "admin"})
	e.must(200, "PATCH", base+"/members/"+carol.id, alice.token, map[string]any{"role": "admin"})
	e.fails(403, parley.CodeForbidden, "DELETE", base+"/members/"+carol.id, bob.token, nil) // admin vs admin
	e.must(200, "PATCH", base+"/members/"+carol.id, alice.token, map[string]any{"role": "member"})
	e.fails(400, parley.CodeInvalidRequest, "PATCH", base+"/members/"+alice.id, alice.token, map[string]any{"role": "member"})

	for i := 0; i < 5; i++ {
		e.must(201, "POST", base+"/messages", alice.token, map[string]any{"client_msg_id": fmt.Sprintf("m%d", i), "body": "before dave"})
	}
	// Dave joins: history is there to page through, but none of it is unread.
	e.must(201, "POST", base+"/members", bob.token, map[string]any{"user_id": dave.id})
	v := e.must(200, "GET", base, dave.token, nil)["conversation"].(map[string]any)
	if v["unread_count"].(float64) != 0 || v["read_seq"].(float64) != 5 {
		t.Fatalf("new member's view: %v", v)
	}
	if n := len(e.must(200, "GET", base+"/messages", dave.token, nil)["messages"].([]any)); n != 5 {
		t.Fatalf("new member sees %d messages of history, want 5", n)
	}
	// Carol is removed: she loses the conversation entirely.
	e.must(204, "DELETE", base+"/members/"+carol.id, bob.token, nil)
	e.fails(404, parley.CodeConversationNotFound, "GET", base+"/messages", carol.token, nil)
	e.fails(404, parley.CodeConversationNotFound, "POST", base+"/messages", carol.token, map[string]any{"client_msg_id": "late", "body": "x"})
	e.fails(404, parley.CodeConversationNotFound, "PATCH", base+"/messages/not-a-seq", carol.token, map[string]any{"body": "x"})
	e.fails(404, parley.CodeConversationNotFound, "PATCH", base+"/messages/1", carol.token, map[string]any{"body": strings.Repeat("x", 5000)})
	if n := len(e.must(200, "GET", "/v1/conversations", carol.token, nil)["conversations"].([]any)); n != 0 {
		t.Fatalf("removed member still lists %d conversations", n)
	}
	e.fails(404, parley.CodeNotFound, "PATCH", base+"/messages/x", alice.token, map[string]any{"body": "x"})

	// Owner demotes and removes; the last member leaving deletes the group.
	e.must(204, "DELETE", base+"/members/"+bob.id, alice.token, nil)
	e.must(204, "DELETE", base+"/members/"+dave.id, dave.token, nil)
	e.must(204, "DELETE", base+"/members/"+alice.id, alice.token, nil)
	e.fails(404, parley.CodeConversationNotFound, "GET", base, alice.token, nil)
}

// TestExpiredReplay: retrying a client_msg_id whose message has expired is
// refused, before and after the purge, and stores nothing.
func TestExpiredReplay(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	c := e.must(201, "POST", "/v1/conversations", alice.token, map[string]any{"kind": "direct", "members": []string{bob.id}})
	msgs := "/v1/conversations/" + str(c, "conversation", "id") + "/messages"
	e.must(201, "POST", msgs, alice.token, map[string]any{"client_msg_id": "eph", "body": "soon gone", "ttl_seconds": 1})
	*e.now = e.now.Add(2 * time.Second)
	e.fails(409, parley.CodeConflict, "POST", msgs, alice.token, map[string]any{"client_msg_id": "eph", "body": "again"})
	e.svc.PurgeExpired(t.Context())
	e.fails(409, parley.CodeConflict, "POST", msgs, alice.token, map[string]any{"client_msg_id": "eph", "body": "again"})
	if out := e.must(201, "POST", msgs, alice.token, map[string]any{"client_msg_id": "next", "body": "x"}); num(out, "message", "seq") != 2 {
		t.Fatalf("next seq = %v, want 2", out)
	}
}

// TestParallelLoginGuesses: the failed-login limit holds under parallel
// guesses (tokens are taken before the password is checked).
func TestParallelLoginGuesses(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.LoginRate, c.LoginBurst = 0.001, 3 })
	e.user("alice")
	var wg sync.WaitGroup
	var refused, checked atomic.Int32
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := e.call("POST", "/v1/sessions", "", map[string]any{"handle": "alice", "password": "wrong password!", "device": map[string]any{"platform": "ios"}})
			switch code {
			case http.StatusTooManyRequests:
				refused.Add(1)
			case http.StatusUnauthorized:
				checked.Add(1)
			}
		}()
	}
	wg.Wait()
	// e.user's own successful login gave its token back, so 3 guesses pass.
	if checked.Load() != 3 || refused.Load() != 27 {
		t.Fatalf("%d guesses checked, %d refused; want 3 and 27", checked.Load(), refused.Load())
	}
}
