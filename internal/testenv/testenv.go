// Package testenv finds the machine's services for tests: PostgreSQL, NATS,
// Redis and Mosquitto on their standard local ports, or where an environment
// variable says. A test that needs one calls Service; when the service does
// not answer, the test is skipped with a message naming the variable, or
// fails if PARLEY_TEST_REQUIRE_SERVICES=1 (as .ci/run sets).
package testenv

import (
	"net"
	"net/url"
	"os"
	"testing"
	"time"
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
