package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// recBus records events in publish order.
type recBus struct {
	mu     sync.Mutex
	events []service.Event
	data   [][]byte // the events as published
}

func (b *recBus) Publish(_ context.Context, _ string, data []byte) error {
	var e service.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return err
	}
	b.mu.Lock()
	b.events = append(b.events, e)
	b.data = append(b.data, data)
	b.mu.Unlock()
	return nil
}
func (b *recBus) Subscribe(string, func(string, []byte)) (parley.Subscription, error) {
	return nil, nil
}
func (b *recBus) Close() error { return nil }

// TestRemovalNeverOvertakenByLaterMessage: a member_removed event is published after
// message events of messages committed after the removal.
func TestRemovalNeverOvertakenByLaterMessage(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	svc := newService(st, service.Config{})
	bus := &recBus{}
	svc.UseBus(bus)
	mk := func(h string) *parley.User { return createUser(t, st, h) }
	const senders = 8
	owner := mk("owner")
	var others []*parley.User
	for i := range senders {
		others = append(others, mk(fmt.Sprintf("s%d", i)))
	}
	bad := 0
	for round := 0; round < 30; round++ {
		victim := mk(fmt.Sprintf("victim%d", round))
		members := []parley.Member{{UserID: owner.ID, Role: parley.MemberRoleOwner}, {UserID: victim.ID, Role: parley.MemberRoleMember}}
		for _, o := range others {
			members = append(members, parley.Member{UserID: o.ID, Role: parley.MemberRoleMember})
		}
		c, _, err := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, CreatedAt: now, Members: members})
		if err != nil {
			t.Fatal(err)
		}
		bus.mu.Lock()
		bus.events = nil
		bus.mu.Unlock()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i, o := range others {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := &parley.Principal{UserID: o.ID, DeviceID: fmt.Sprintf("d%d", i)}
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					_, _, _ = svc.Send(ctx, p, service.SendRequest{ConversationID: c.ID, ClientMsgID: fmt.Sprintf("r%d-%s-%d", round, o.ID[:8], n), Body: "hi"})
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		if err := svc.RemoveMember(ctx, &parley.Principal{UserID: owner.ID, DeviceID: "od"}, c.ID, victim.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		close(stop)
		wg.Wait()
		bus.mu.Lock()
		var lastSeq int64 = -1
		for i := len(bus.events) - 1; i >= 0; i-- {
			e := bus.events[i]
			if e.Kind == service.EventConversation && e.Action == service.ActionMemberRemoved {
				lastSeq = e.Conversation.LastSeq
				for _, before := range bus.events[:i] {
					if before.Kind == service.EventMessage && before.Message.Seq > lastSeq {
						bad++
						t.Logf("round %d: message seq %d (committed after the removal at last_seq %d) published before member_removed", round, before.Message.Seq, lastSeq)
						break
					}
				}
			}
		}
		bus.mu.Unlock()
	}
	if bad > 0 {
		t.Errorf("%d of 30 removals were overtaken by a later message's event: a hub still linked the removed user when that message arrived", bad)
	}
}
