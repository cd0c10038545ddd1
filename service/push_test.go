package service_test

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

func TestVAPIDKeyMadeOnceAndKept(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	k1, err := newService(st, service.Config{}).VAPIDPublicKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(k1)
	if err != nil || len(raw) != 65 || raw[0] != 4 {
		t.Fatalf("public key %q: want 65 bytes, uncompressed, unpadded base64url (%v)", k1, err)
	}
	// Another service on the same store (another node) has the same key.
	if k2, err := newService(st, service.Config{}).VAPIDPublicKey(ctx); err != nil || k2 != k1 {
		t.Fatalf("second node's key %q (%v), want %q", k2, err, k1)
	}
	// A configured key wins.
	scalar := make([]byte, 32)
	scalar[31] = 7
	if k3, err := newService(st, service.Config{VAPIDPrivateKey: scalar}).VAPIDPublicKey(ctx); err != nil || k3 == k1 {
		t.Fatalf("configured key %q (%v)", k3, err)
	}
}

func TestSetPush(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	u := createUser(t, st, "alice")
	d := &parley.Device{ID: parley.NewID(), UserID: u.ID, Platform: parley.PlatformAndroid, SessionID: parley.NewID()}
	if err := st.CreateSession(ctx, d, &parley.RefreshToken{Hash: parley.NewID()}, 0); err != nil {
		t.Fatal(err)
	}
	p := &parley.Principal{UserID: u.ID, DeviceID: d.ID}
	svc := newService(st, service.Config{})
	if _, err := svc.SetPush(ctx, p, &parley.PushRegistration{Provider: "sms", Token: "x"}); parley.ErrorCode(err) != parley.CodeInvalidRequest {
		t.Fatalf("bad provider: %v", err)
	}
	if _, err := st.Push(ctx, d.ID); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("a refused registration was stored: %v", err)
	}
	r, err := svc.SetPush(ctx, p, &parley.PushRegistration{Provider: parley.PushFCM, Token: "tok"})
	if err != nil || r.UpdatedAt.IsZero() {
		t.Fatalf("SetPush: %+v %v", r, err)
	}
	if err := svc.DeletePush(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Push(ctx, d.ID); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("after DeletePush: %v", err)
	}
}
