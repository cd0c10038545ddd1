package natsbus

import (
	"testing"

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
// clients, which see the in-process ones' events.
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
			b, err = Connect(e.ClientURL(), Options{})
		} else {
			b, err = ConnectEmbedded(e, Options{})
		}
		if err != nil {
			tb.Fatal(err)
		}
		return b
	})
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
