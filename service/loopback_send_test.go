package service_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// TestTakePublishedThroughSends: every message event a send publishes
// can be taken once, under the bytes published, and is that event
// decoded; other events are not kept.
func TestTakePublishedThroughSends(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newService(st, service.Config{})
	bus := &recBus{}
	svc.UseBus(bus)
	svc.KeepPublished(true)
	a, b := createUser(t, st, "alice"), createUser(t, st, "bob")
	c := createGroup(t, st, time.Now(), a, b)
	pa := &parley.Principal{UserID: a.ID, DeviceID: "a1"}
	reqs := []service.SendRequest{
		{ConversationID: c.ID, ClientMsgID: "m1", Body: "one"},
		{ConversationID: c.ID, ClientMsgID: "m2", Body: "two", TTLSeconds: 3600},
		{ConversationID: c.ID, ClientMsgID: "m1", Body: "one"}, // a retry: announced again
	}
	for _, r := range svc.SendMany(ctx, pa, reqs, nil) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if err := svc.Typing(ctx, pa, c.ID, "start"); err != nil {
		t.Fatal(err)
	}
	bus.mu.Lock()
	published := bus.data
	bus.mu.Unlock()
	messages := 0
	for _, data := range published {
		var dec service.Event
		if err := json.Unmarshal(data, &dec); err != nil {
			t.Fatal(err)
		}
		got := svc.TakePublished(data)
		if dec.Kind != service.EventMessage {
			if got != nil {
				t.Fatalf("a %s event was kept", dec.Kind)
			}
			continue
		}
		messages++
		if got == nil {
			// The retry's event has the same bytes as the first's: one
			// entry, taken by the first.
			if dec.Message.ClientMsgID == "m1" && messages == 3 {
				continue
			}
			t.Fatalf("message event %d (%s) not kept", messages, dec.Message.ClientMsgID)
		}
		if !reflect.DeepEqual(got, &dec) {
			t.Fatalf("taken\n%+v\ndecoded\n%+v", got.Message, dec.Message)
		}
	}
	if messages != 3 {
		t.Fatalf("%d message events, want 3", messages)
	}
}
