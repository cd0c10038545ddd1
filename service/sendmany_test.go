package service_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// TestSendManyInOrder: a connection's pipelined sends keep their order
// (seqs, results, events) and a bad one in the middle fails alone.
func TestSendManyInOrder(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newService(st, service.Config{})
	bus := &recBus{}
	svc.UseBus(bus)
	a, b := createUser(t, st, "alice"), createUser(t, st, "bob")
	now := time.Now().UTC().Truncate(time.Millisecond)
	c := createGroup(t, st, now, a, b)
	p := &parley.Principal{UserID: a.ID, DeviceID: "a1"}
	req := func(conv, cmid, body string) service.SendRequest {
		return service.SendRequest{ConversationID: conv, ClientMsgID: cmid, Body: body}
	}
	reqs := []service.SendRequest{
		req(c.ID, "m0", "zero"),
		req(c.ID, "bad id", "refused by the checks"),
		req(c.ID, "m1", "one"),
		req(parley.NewID(), "m2", "nowhere"),
		req(c.ID, "m0", "zero again"), // a retry: the original
		req(c.ID, "m3", ""),           // no body
		req(c.ID, "m4", "two"),
	}
	var order []int
	res := svc.SendMany(ctx, p, reqs, func(i int, r service.SendResult) {
		order = append(order, i)
		// Its event is out before its result.
		bus.mu.Lock()
		defer bus.mu.Unlock()
		if r.Err == nil && (len(bus.events) == 0 || bus.events[len(bus.events)-1].Message.ID != r.Message.ID) {
			t.Errorf("result %d reported before its event", i)
		}
	})
	if fmt.Sprint(order) != "[0 1 2 3 4 5 6]" {
		t.Fatalf("results reported in order %v", order)
	}
	want := []struct {
		seq     int64
		created bool
		code    parley.Code
	}{{1, true, ""}, {code: parley.CodeInvalidRequest}, {2, true, ""}, {code: parley.CodeConversationNotFound}, {1, false, ""}, {code: parley.CodeInvalidRequest}, {3, true, ""}}
	if len(res) != len(want) {
		t.Fatalf("%d results for %d requests", len(res), len(reqs))
	}
	for i, w := range want {
		r := res[i]
		if w.code != "" {
			if got := parley.ErrorCode(r.Err); got != w.code {
				t.Fatalf("request %d: %v, want code %s", i, r.Err, w.code)
			}
			continue
		}
		if r.Err != nil || r.Message.Seq != w.seq || r.Created != w.created {
			t.Fatalf("request %d: seq %v created %v err %v, want seq %d created %v", i, r.Message, r.Created, r.Err, w.seq, w.created)
		}
	}
	if res[4].Message.Body != "zero" {
		t.Fatalf("the retry returned %q, want the original", res[4].Message.Body)
	}
	// Events: one per message, the retry announced again, in the order
	// of the requests, so new messages in seq order.
	bus.mu.Lock()
	var got []string
	for _, e := range bus.events {
		if e.Kind == service.EventMessage {
			got = append(got, fmt.Sprintf("%d:%s", e.Message.Seq, e.Message.Body))
		}
	}
	bus.mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint([]string{"1:zero", "2:one", "1:zero", "3:two"}) {
		t.Fatalf("events %v", got)
	}
}

// TestSendManyAcrossConversationsNoDeadlock: SendMany holds the publish
// order of several conversations at once while membership changes take
// them one at a time; callers listing the conversations in opposite
// orders must not wait on each other in a cycle.
func TestSendManyAcrossConversationsNoDeadlock(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newService(st, service.Config{})
	owner := createUser(t, st, "owner")
	const n = 6
	var users []*parley.User
	for i := range n {
		users = append(users, createUser(t, st, fmt.Sprintf("u%d", i)))
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	var convs []string
	for range 4 {
		members := []parley.Member{{UserID: owner.ID, Role: parley.MemberRoleOwner}}
		for _, u := range users {
			members = append(members, parley.Member{UserID: u.ID, Role: parley.MemberRoleMember})
		}
		c, _, err := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, CreatedAt: now, Members: members})
		if err != nil {
			t.Fatal(err)
		}
		convs = append(convs, c.ID)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range users[:n-2] {
		wg.Go(func() {
			p := &parley.Principal{UserID: u.ID, DeviceID: "d"}
			for round := range 20 {
				var reqs []service.SendRequest
				for k := range convs {
					conv := convs[(k+i)%len(convs)]
					if i%2 == 1 {
						conv = convs[len(convs)-1-(k+i)%len(convs)]
					}
					reqs = append(reqs, service.SendRequest{ConversationID: conv, ClientMsgID: fmt.Sprintf("%d-%d", round, k), Body: "hi"})
				}
				svc.SendMany(ctx, p, reqs, nil)
			}
		})
	}
	// Membership changes take each conversation's order exclusively, one
	// at a time, from two goroutines.
	for j, u := range users[n-2:] {
		wg.Go(func() {
			op := &parley.Principal{UserID: owner.ID, DeviceID: "o"}
			for round := range 10 {
				for k := range convs {
					conv := convs[k]
					if j == 1 {
						conv = convs[len(convs)-1-k]
					}
					if round%2 == 0 {
						_ = svc.RemoveMember(ctx, op, conv, u.ID)
					} else {
						_, _ = svc.AddMember(ctx, op, conv, u.ID, parley.MemberRoleMember)
					}
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("SendMany and membership changes deadlocked")
	}
}

// TestSendManyAcceptsRequestOnce: pipelined sends into a message request
// accept it once (the first send) and all commit.
func TestSendManyAcceptsRequestOnce(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newService(st, service.Config{MessageRequests: true})
	bus := &recBus{}
	svc.UseBus(bus)
	a, b := createUser(t, st, "alice"), createUser(t, st, "bob")
	c, _, err := svc.CreateConversation(ctx, &parley.Principal{UserID: a.ID, DeviceID: "a1"}, service.CreateConversationRequest{Kind: parley.KindDirect, Members: []string{b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	pb := &parley.Principal{UserID: b.ID, DeviceID: "b1"}
	if m, err := st.Member(ctx, c.ID, b.ID); err != nil || !m.Request {
		t.Fatalf("bob's membership %+v, %v; want a request", m, err)
	}
	var reqs []service.SendRequest
	for i := range 4 {
		reqs = append(reqs, service.SendRequest{ConversationID: c.ID, ClientMsgID: fmt.Sprintf("b%d", i), Body: "hi"})
	}
	for i, r := range svc.SendMany(ctx, pb, reqs, nil) {
		if r.Err != nil || r.Message.Seq != int64(i+1) {
			t.Fatalf("send %d: %+v", i, r)
		}
	}
	if m, err := st.Member(ctx, c.ID, b.ID); err != nil || m.Request {
		t.Fatalf("bob's membership %+v, %v; want accepted", m, err)
	}
	bus.mu.Lock()
	defer bus.mu.Unlock()
	accepted := 0
	for _, e := range bus.events {
		if e.Kind == service.EventConversation && e.Action == service.ActionAccepted {
			accepted++
		}
	}
	if accepted != 1 {
		t.Fatalf("%d accepted events, want 1", accepted)
	}
}
