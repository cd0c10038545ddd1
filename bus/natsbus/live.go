package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Which devices have a live session, across nodes: the notification
// service pushes a device with a live session only if it does not report
// delivered in time. The presence mirror tells which nodes hold sessions
// of a user; those nodes are asked, each on its own subject.

func liveSubject(node string) string { return "parley.live." + node }

// liveTimeout bounds one node's answer.
const liveTimeout = time.Second

// ServeLive answers other nodes' questions about this node's sessions:
// local returns the ids of the devices of the given users with a live
// session here. Close the subscription to stop.
func (p *Presence) ServeLive(local func(userIDs []string) []string) (*nats.Subscription, error) {
	return p.nc.Subscribe(liveSubject(p.node), func(m *nats.Msg) {
		var users []string
		if json.Unmarshal(m.Data, &users) != nil {
			return
		}
		devices := local(users)
		if devices == nil {
			devices = []string{}
		}
		data, _ := json.Marshal(devices)
		_ = m.Respond(data)
	})
}

// LiveDevices returns the devices of userIDs with a live session on any
// node, asking the nodes the presence mirror names. An error means some
// node did not answer: its users' devices are unknown.
func (p *Presence) LiveDevices(ctx context.Context, userIDs []string) (map[string]bool, error) {
	now := p.now().UnixMilli()
	byNode := map[string][]string{}
	p.mu.Lock()
	for _, id := range userIDs {
		for node, ms := range p.seen[id] {
			if now-ms < p.ttl.Milliseconds() {
				byNode[node] = append(byNode[node], id)
			}
		}
	}
	p.mu.Unlock()
	live := map[string]bool{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for node, users := range byNode {
		wg.Go(func() {
			data, _ := json.Marshal(users)
			rctx, cancel := context.WithTimeout(ctx, liveTimeout)
			defer cancel()
			reply, err := p.nc.RequestWithContext(rctx, liveSubject(node), data)
			var devices []string
			if err == nil {
				err = json.Unmarshal(reply.Data, &devices)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("node %s: %w", node, err))
				return
			}
			for _, d := range devices {
				live[d] = true
			}
		})
	}
	wg.Wait()
	return live, errors.Join(errs...)
}
