package service_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// TestUserSendLimit: one bucket per user, whatever device sends; the
// refusal is rate_limited with a retry hint; other users are not slowed.
func TestUserSendLimit(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newService(st, service.Config{UserSendRate: 0.001, UserSendBurst: 4})
	alice, bob := createUser(t, st, "alice"), createUser(t, st, "bob")
	c, _, err := st.CreateConversation(ctx, &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: time.Now(),
		Members: []parley.Member{{UserID: alice.ID, Role: parley.MemberRoleMember}, {UserID: bob.ID, Role: parley.MemberRoleMember}}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(u *parley.User, device string, i int) error {
		_, _, err := svc.Send(ctx, &parley.Principal{UserID: u.ID, DeviceID: device}, service.SendRequest{
			ConversationID: c.ID, ClientMsgID: fmt.Sprintf("%s-%s-%d", u.Handle, device, i), Type: parley.MessageText, Body: "hi"})
		return err
	}
	for i := range 4 { // the burst, spread over two devices
		if err := send(alice, fmt.Sprint("d", i%2), i); err != nil {
			t.Fatalf("send %d within the burst: %v", i, err)
		}
	}
	err = send(alice, "d3", 9)
	var retry *service.RetryError
	if parley.ErrorCode(err) != parley.CodeRateLimited || !errors.As(err, &retry) || retry.RetryAfter <= 0 {
		t.Fatalf("fifth send from a third device: %v, want rate_limited with a retry hint", err)
	}
	if err := send(bob, "b", 0); err != nil {
		t.Fatalf("another user: %v", err)
	}
}
