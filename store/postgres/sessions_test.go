package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/testenv"
)

// TestPurgeSweepsDeadDevices: the first purge of a process deletes every
// device with no refresh token, also one whose tokens went before it ran
// (as an older version's purge left them), with its push registration.
func TestPurgeSweepsDeadDevices(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	s := openStore(t, testenv.Postgres(t), newTestSealer(t))
	u := &parley.User{ID: parley.NewID(), Handle: "alice", CreatedAt: now}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	session := func() *parley.Device {
		d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: parley.PlatformCLI, Name: "x",
			CreatedAt: now, SessionID: parley.NewID()}
		if err := s.CreateSession(ctx, d, &parley.RefreshToken{Hash: d.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, 0); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPush(ctx, u.ID, d.ID, &parley.PushRegistration{Provider: parley.PushFCM, Token: "t-" + d.ID, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		return d
	}
	dead, live := session(), session()
	if _, err := s.pool.Exec(ctx, `DELETE FROM refresh_tokens WHERE device_id = $1`, dead.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PurgeExpired(ctx, now, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Device(ctx, dead.ID); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("Device(dead) after the first purge: %v, want not_found", err)
	}
	if _, err := s.Push(ctx, dead.ID); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("Push(dead) after the first purge: %v, want not_found", err)
	}
	if _, err := s.Device(ctx, live.ID); err != nil {
		t.Fatalf("Device(live) after the first purge: %v", err)
	}
}
