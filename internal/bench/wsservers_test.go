package bench

import "testing"

// TestWSServersRoundRobin: with WSServers, connection i dials server
// i mod n; without, every connection dials Server.
func TestWSServersRoundRobin(t *testing.T) {
	b := &bench{o: Options{Server: "http://127.0.0.1:1"}}
	if got := b.wsServer(5); got != "http://127.0.0.1:1" {
		t.Fatalf("without WSServers: %s", got)
	}
	b.o.WSServers = []string{"http://127.0.0.1:2", "http://127.0.0.1:3", "http://127.0.0.1:4"}
	for i, want := range []string{"http://127.0.0.1:2", "http://127.0.0.1:3", "http://127.0.0.1:4", "http://127.0.0.1:2"} {
		if got := b.wsServer(i); got != want {
			t.Fatalf("connection %d dials %s, want %s", i, got, want)
		}
	}
}
