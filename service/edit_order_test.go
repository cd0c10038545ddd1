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

// Concurrent edits: the stored version can carry an older edited_at than
// a version already published, so clients following the merge rule
// ("keep the later edited_at") keep a body the server no longer has.
func TestEditedAtMonotonic(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := time.Now().UTC()
	svc := newService(st, service.Config{})
	u := createUser(t, st, "u")
	c, _, _ := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, CreatedAt: now, Members: []parley.Member{{UserID: u.ID, Role: parley.MemberRoleOwner}}})
	p := &parley.Principal{UserID: u.ID, DeviceID: "d"}
	bad := 0
	for round := 0; round < 50; round++ {
		m, _, err := svc.Send(ctx, p, service.SendRequest{ConversationID: c.ID, ClientMsgID: fmt.Sprint("m", round), Body: "v0"})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var newest *parley.Message
		var all []*parley.Message
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e, err := svc.EditMessage(ctx, p, c.ID, m.Seq, fmt.Sprint("v", i+1))
				if err != nil {
					return
				}
				mu.Lock()
				all = append(all, e)
				if newest == nil || e.EditedAt.After(newest.EditedAt) {
					newest = e
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		stored, err := st.Message(ctx, c.ID, m.Seq, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_ = newest
		for _, e := range all {
			if e.Body != stored.Body && !e.EditedAt.Before(stored.EditedAt) {
				bad++
				t.Logf("round %d: stored %q at %v; %q at %v was also sent: a client holding it keeps it (tie or later)", round, stored.Body, stored.EditedAt, e.Body, e.EditedAt)
				break
			}
		}
		if false {
			bad++
			t.Logf("round %d: stored %q edited_at %v, but %q with edited_at %v was published", round, stored.Body, stored.EditedAt, newest.Body, newest.EditedAt)
		}
	}
	if bad > 0 {
		t.Errorf("see above")
	}
	if bad > 0 {
		t.Errorf("%d/50 rounds: the final stored version is older by edited_at than one already sent", bad)
	}
}
