package realtime_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/benchaccounts"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/wstest"
)

// TestLargeGroupConcurrentSendersOneOrder: a group large enough that the
// gateway writes its frames outside the hub's lock, over several
// goroutines (128 members or more on the node), with four members
// streaming sends at once: every member's connection gets every message
// once, with seqs 1..N in order, all in the same order, and each sender
// gets its acks in the order it sent. The users come from parleyd admin
// bench-accounts (no argon2id per user).
func TestLargeGroupConcurrentSendersOneOrder(t *testing.T) {
	const members, senders, each = 160, 4, 25
	data := t.TempDir()
	file := filepath.Join(t.TempDir(), "accounts.json")
	if _, stderr, err := e2e.RunParleyd(t, nil, "admin", "bench-accounts", "--data", data, "--count", fmt.Sprint(members), "--prefix", "big", file); err != nil {
		t.Fatalf("bench-accounts: %v\n%s", err, stderr)
	}
	p := e2e.StartParleyd(t, data, []string{"PARLEY_LIMITS=off"}, "--presence-grace", "300ms")
	accounts, err := benchaccounts.Read(file)
	if err != nil {
		t.Fatal(err)
	}
	devs := make([]e2e.Device, members)
	for i, a := range accounts.Accounts { // a SHA-256 and a store write each
		out := e2e.MustAPI(t, 200, "POST", p.Base+"/v1/sessions/refresh", "", map[string]any{"refresh_token": a.RefreshToken})
		devs[i] = e2e.Device{User: a.UserID, ID: a.DeviceID, Token: out["access_token"].(string)}
	}
	var ids []string
	for _, d := range devs[1:] {
		ids = append(ids, d.User)
	}
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", devs[0].Token, map[string]any{"kind": "group", "title": "big", "members": ids})["conversation"].(map[string]any)["id"].(string)
	conns := make([]*wstest.Conn, members)
	for i, d := range devs {
		conns[i] = e2e.Connect(t, p.Base, d)
	}

	const total = senders * each
	orders := make([][]string, members)
	errs := make(chan error, members)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sending := i < senders
			sent, acks := 0, 0
			var seqs []int64
			for (sending && acks < each) || len(seqs) < total {
				for sending && sent < each && sent-acks < 8 {
					if err := c.Write(map[string]any{"type": "send", "id": fmt.Sprint(sent), "conversation_id": conv, "client_msg_id": fmt.Sprint(i, "-", sent), "body": "x"}); err != nil {
						errs <- err
						return
					}
					sent++
				}
				if ctx.Err() != nil {
					errs <- fmt.Errorf("connection %d: out of time (acks %d, messages %d)", i, acks, len(seqs))
					return
				}
				f, err := c.Next(20 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("connection %d: %v (acks %d, messages %d)", i, err, acks, len(seqs))
					return
				}
				switch f.Type {
				case "ack":
					var a struct{ ID string }
					_ = f.Decode(&a)
					if a.ID != fmt.Sprint(acks) {
						errs <- fmt.Errorf("connection %d: ack %d is for send %s", i, acks, a.ID)
						return
					}
					acks++
				case "message":
					var m e2e.MsgFrame
					_ = f.Decode(&m)
					seqs = append(seqs, m.Message.Seq)
					orders[i] = append(orders[i], m.Message.ClientMsgID)
					if m.Message.Seq != int64(len(seqs)) {
						errs <- fmt.Errorf("connection %d: message %d has seq %d", i, len(seqs), m.Message.Seq)
						return
					}
				case "presence", "conversation":
				default:
					errs <- fmt.Errorf("connection %d: unexpected %s", i, f.Raw)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 1; i < members; i++ {
		if !slices.Equal(orders[0], orders[i]) {
			t.Fatalf("connection %d saw another order", i)
		}
	}
}
