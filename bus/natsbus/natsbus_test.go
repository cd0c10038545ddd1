package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/bus/bustest"
	"github.com/parleychat/parley/internal/testenv"
)

// TestEmbedded runs the contract suite on the embedded server, connecting
// in-process.
func TestEmbedded(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	if e.ClientURL() != "" {
		t.Fatalf("embedded server listens on %s without being asked", e.ClientURL())
	}
	bustest.Run(t, func(tb testing.TB) parley.Bus {
		b, err := ConnectEmbedded(e, Options{})
		if err != nil {
			tb.Fatal(err)
		}
		return b
	})
}

// TestEmbeddedListen: with Listen the embedded server also serves TCP
// clients that hold its secret, which see the in-process ones' events.
func TestEmbeddedListen(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	if e.ClientURL() == "" {
		t.Fatal("no client URL with Listen set")
	}
	n := 0
	bustest.Run(t, func(tb testing.TB) parley.Bus {
		n++
		var b *Bus
		var err error
		if n%2 == 0 {
			b, err = Connect(e.ClientURL(), Options{Token: e.token})
		} else {
			b, err = ConnectEmbedded(e, Options{})
		}
		if err != nil {
			tb.Fatal(err)
		}
		return b
	})
}

// TestEmbeddedRefusesStrangers: the embedded server's TCP port admits no
// client without its secret: none anonymous, none with another token, user
// or password.
func TestEmbeddedRefusesStrangers(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	for name, opts := range map[string][]nats.Option{
		"anonymous":      nil,
		"wrong token":    {nats.Token("not-the-secret")},
		"user/password":  {nats.UserInfo("parleyd", "guess")},
		"secret as user": {nats.UserInfo(e.token, "")},
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := nats.Connect(e.ClientURL(), append(opts, nats.NoReconnect())...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Fatalf("err = %v, want an authorization error", err)
			}
		})
	}
	// The server's own connection still works, and with the secret so
	// does TCP.
	b, err := ConnectEmbedded(e, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, err = Connect(e.ClientURL(), Options{Token: e.token})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// TestConnectOptionErrors: conflicting or incomplete credentials and TLS
// settings fail before any connection is tried, with a message that says
// what is wrong.
func TestConnectOptionErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		opts Options
		want string
	}{
		"two kinds":         {Options{Token: "t", User: "u", Password: "p"}, "one kind"},
		"password no user":  {Options{Password: "p"}, "needs a user"},
		"cert without key":  {Options{TLS: TLSOptions{CertFile: "c.pem"}}, "together"},
		"missing creds":     {Options{CredsFile: "/nonexistent/x.creds"}, "creds file"},
		"missing nkey seed": {Options{NKeySeedFile: "/nonexistent/seed"}, "nkey seed"},
		"missing CA":        {Options{TLS: TLSOptions{CAFile: "/nonexistent/ca.pem"}}, "rootCA"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Connect("nats://127.0.0.1:1", tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestExternal runs the suite against the machine's NATS
// (PARLEY_TEST_NATS_URL, default nats://127.0.0.1:4222).
func TestExternal(t *testing.T) {
	url := testenv.Service(t, "PARLEY_TEST_NATS_URL", "nats://127.0.0.1:4222")
	bustest.Run(t, func(tb testing.TB) parley.Bus {
		b, err := Connect(url, Options{})
		if err != nil {
			tb.Fatal(err)
		}
		return b
	})
}

func TestRedact(t *testing.T) {
	if got := redact("nats://u:secret@h1:4222,nats://h2:4222"); got != "nats://***@h1:4222,nats://h2:4222" {
		t.Fatalf("redact = %q", got)
	}
}

// TestSubscribeBatchMore: with each event SubscribeBatch says whether the
// client already holds more of the subscription's events: true while
// the handler is behind, false for the last one (and for a lone event).
func TestSubscribeBatchMore(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	b, err := ConnectEmbedded(e, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	type call struct {
		data string
		more bool
	}
	calls := make(chan call, 16)
	sub, err := b.SubscribeBatch("batch.>", func(_ string, data []byte, more bool) {
		if string(data) == "1" {
			close(entered)
			<-release // fall behind: the rest queue up meanwhile
		}
		calls <- call{string(data), more}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx := context.Background()
	// "1" is handled (and its more computed) before the rest are
	// published: publishing all four at once would race the handler's
	// first Pending call against the arrival of "2".."4".
	if err := b.Publish(ctx, "batch.x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not called for 1")
	}
	for _, d := range []string{"2", "3", "4"} {
		if err := b.Publish(ctx, "batch.x", []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	ns := sub.(*subscription).sub
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, _, _ := ns.Pending()
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending %d, want 4", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	var got []call
	for range 4 {
		got = append(got, <-calls)
	}
	if fmt.Sprint(got) != "[{1 false} {2 true} {3 true} {4 false}]" {
		t.Fatalf("got %v", got)
	}
	if err := b.Publish(ctx, "batch.y", []byte("5")); err != nil {
		t.Fatal(err)
	}
	if c := <-calls; c != (call{"5", false}) {
		t.Fatalf("lone event: %v", c)
	}
}
