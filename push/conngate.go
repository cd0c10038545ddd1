package push

import (
	"context"
	"sync"
	"sync/atomic"
)

// connGate makes the sends to one host share a connection from the
// first. An HTTP client that does not yet hold a connection to a host
// dials one for every request that arrives meanwhile (it cannot know the
// host speaks HTTP/2 before the handshake); a burst of 64 sends on a cold
// start made 64 TLS handshakes, all but one connection then closed. The
// gate lets one send at a time through while no send to the host has been
// answered since the last that failed to get an answer; once one is
// answered, the others go at once and are multiplexed on that connection
// (HTTP/2), or use the pool as usual (HTTP/1.1). A send that gets no
// answer (the connection died, a timeout) closes the gate again.
//
// The zero value is not ready: use newConnGate. Safe for concurrent use.
// (http.Transport.MaxConnsPerHost = 1 would do the same for HTTP/2, but
// it serializes HTTP/1.1 hosts, and with HTTP/2 it can hang: Go issue
// 34941.)
type connGate struct {
	warm atomic.Bool
	turn chan struct{} // one send at a time while cold
}

func newConnGate() *connGate { return &connGate{turn: make(chan struct{}, 1)} }

// do runs send, which reports whether the host answered, through the
// gate. A send whose ctx ends while it waits runs at once (and fails on
// its ctx).
func (g *connGate) do(ctx context.Context, send func() (answered bool)) {
	if !g.warm.Load() {
		select {
		case g.turn <- struct{}{}:
			if g.warm.Load() {
				<-g.turn // answered while this one waited: no need to wait
			} else {
				defer func() { <-g.turn }()
			}
		case <-ctx.Done():
		}
	}
	g.warm.Store(send())
}

// connGates are the gates of Web Push hosts, at most maxGates of them
// (forgotten all at once beyond: a gate only saves handshakes).
type connGates struct {
	mu    sync.Mutex
	gates map[string]*connGate
}

const maxGates = 4096

func (c *connGates) get(host string) *connGate {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.gates[host]
	if g == nil {
		if c.gates == nil || len(c.gates) >= maxGates {
			c.gates = map[string]*connGate{}
		}
		g = newConnGate()
		c.gates[host] = g
	}
	return g
}
