package push_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/push/pushtest"
)

// TestProvidersShareOneConnection: a burst of concurrent sends on a cold
// start, and the bursts after it, go over one HTTP/2 connection to each
// provider, not one dialled per send.
func TestProvidersShareOneConnection(t *testing.T) {
	apnsFake := pushtest.NewAPNs(t)
	apns, err := push.NewAPNs(push.APNsConfig{KeyFile: apnsFake.KeyFile(), KeyID: apnsFake.KeyID(), TeamID: apnsFake.TeamID(),
		URL: apnsFake.URL(), TLS: apnsFake.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	fcmFake := pushtest.NewFCM(t)
	fcm, err := push.NewFCM(context.Background(), push.FCMConfig{CredentialsFile: fcmFake.CredentialsFile(), URL: fcmFake.Endpoint(), TLS: fcmFake.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name        string
		provider    push.Provider
		reg         *parley.PushRegistration
		connections func() int
	}{
		{"apns", apns, &parley.PushRegistration{Provider: parley.PushAPNs, Token: apnsFake.NewToken(), Topic: "com.example.app",
			Environment: "production"}, apnsFake.Connections},
		{"fcm", fcm, &parley.PushRegistration{Provider: parley.PushFCM, Token: fcmFake.NewToken()}, fcmFake.Connections},
	} {
		t.Run(c.name, func(t *testing.T) {
			for round := range 3 {
				var wg sync.WaitGroup
				for range 64 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						n := &push.Notification{Kind: push.KindMessage, ConversationID: parley.NewID(), Seq: 1, Count: 1, Badge: 1,
							Expires: time.Now().Add(time.Hour)}
						if r := c.provider.Send(context.Background(), c.reg, n); r.Outcome != push.Accepted {
							t.Errorf("send: %+v", r)
						}
					}()
				}
				wg.Wait()
				if n := c.connections(); n != 1 {
					t.Fatalf("round %d: the provider accepted %d connections, want 1", round, n)
				}
			}
		})
	}
}
