// Package testenv finds the machine's services for tests: PostgreSQL and
// NATS on their standard local ports, or where an environment
// variable says. A test that needs one calls Service; when the service does
// not answer, the test is skipped with a message naming the variable, or
// fails if PARLEY_TEST_REQUIRE_SERVICES=1 (as .ci/run sets).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Service returns the address of a service the test needs: the value of
// envVar, or def when it is unset. addr may be host:port or a URL with a
// host. The test is skipped (or, with PARLEY_TEST_REQUIRE_SERVICES=1,
// failed) when nothing answers there within two seconds.
func Service(tb testing.TB, envVar, def string) string {
	tb.Helper()
	addr := os.Getenv(envVar)
	if addr == "" {
		addr = def
	}
	hostPort := addr
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		hostPort = u.Host
	}
	conn, err := net.DialTimeout("tcp", hostPort, 2*time.Second)
	if err == nil {
		conn.Close()
		return addr
	}
	if os.Getenv("PARLEY_TEST_REQUIRE_SERVICES") == "1" {
		tb.Fatalf("service at %s (set %s to change it) does not answer: %v; PARLEY_TEST_REQUIRE_SERVICES=1 makes that a failure", addr, envVar, err)
	}
	tb.Skipf("skipping: no service at %s (%v); set %s to its address, PARLEY_TEST_REQUIRE_SERVICES=1 to fail instead", addr, err, envVar)
	return ""
}

// Postgres returns the DSN of a new, empty schema on the machine's
// PostgreSQL (PARLEY_TEST_POSTGRES, default the database test on
// 127.0.0.1:5432 as user postgres), dropped when the test ends. Every
// connection made with the DSN has the schema as its search_path, so a
// store opened on it sees only its own tables; a schema is created in
// milliseconds, a database in a few hundred. The test is skipped (or
// failed) as Service says when PostgreSQL does not answer.
func Postgres(tb testing.TB) string {
	tb.Helper()
	base := Service(tb, "PARLEY_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connect to %s: %v", base, err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("PARLEY_TEST_POSTGRES: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
