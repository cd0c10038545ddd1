package realtime_test

import (
	"fmt"
	"path/filepath"
	"testing"

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

	e2e.StreamOneOrder(t, conns, conv, senders, each, "presence", "conversation")
}
