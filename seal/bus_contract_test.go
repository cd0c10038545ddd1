package seal_test

import (
	"testing"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/bus/bustest"
	"github.com/parleychat/parley/bus/natsbus"
	"github.com/parleychat/parley/seal"
)

// TestBusContract: the sealing Bus over NATS still keeps the parley.Bus
// contract (delivery across connections, order, wildcards, fan-out,
// unsubscribe, publish after close).
func TestBusContract(t *testing.T) {
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	key := make([]byte, seal.MasterKeySize)
	bustest.Run(t, func(tb testing.TB) parley.Bus {
		nb, err := natsbus.ConnectEmbedded(e, natsbus.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		b, err := seal.NewBus(nb, [][]byte{key}, seal.BusOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		return b
	})
}
