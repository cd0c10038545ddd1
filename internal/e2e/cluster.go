package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/testenv"
)

// ClusterEnv is the environment of the nodes of one test cluster: one
// PostgreSQL schema, the machine's NATS, one master key.
func ClusterEnv(t *testing.T) []string {
	t.Helper()
	dsn := testenv.Postgres(t)
	nats := testenv.Service(t, "PARLEY_TEST_NATS_URL", "nats://127.0.0.1:4222")
	key := make([]byte, 32)
	rand.Read(key)
	return []string{
		"PARLEY_STORE=" + dsn,
		"PARLEY_NATS_URL=" + nats,
		"PARLEY_MASTER_KEY=" + base64.StdEncoding.EncodeToString(key),
		"PARLEY_LIMITS=off",
		"PARLEY_PUSH_NAMESPACE=" + PushNamespace(t, nats),
	}
}

// PushNamespace names a push queue of the test's own on the machine's
// NATS, and deletes its streams and buckets when the test ends (they
// would pile up on a server other tests and CI share).
func PushNamespace(t *testing.T, natsURL string) string {
	ns := "test-" + parley.NewID()[24:]
	t.Cleanup(func() {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, name := range []string{"PARLEY_PUSH_" + ns, "PARLEY_PUSH_DEAD_" + ns, "KV_parley_push_state_" + ns, "KV_parley_push_trace_" + ns} {
			_ = js.DeleteStream(ctx, name)
		}
	})
	return ns
}
