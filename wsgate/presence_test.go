package wsgate

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// flakyDirectory fails its first failures calls, then records joins and
// leaves; every user is the only one anywhere.
type flakyDirectory struct {
	mu       sync.Mutex
	failures int
	events   []string
}

func (d *flakyDirectory) call(what string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failures > 0 {
		d.failures--
		return errors.New("nats: no responders")
	}
	d.events = append(d.events, what)
	return nil
}

func (d *flakyDirectory) Join(_ context.Context, u string) (bool, error) {
	return true, d.call("join " + u)
}
func (d *flakyDirectory) Leave(_ context.Context, u string) (bool, error) {
	return true, d.call("leave " + u)
}
func (d *flakyDirectory) Online([]string) []string                  { return nil }
func (d *flakyDirectory) Keepalive(context.Context, []string) error { return nil }
func (d *flakyDirectory) Interval() time.Duration                   { return time.Hour }

func (d *flakyDirectory) seen() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.events...)
}

// presenceCore records the presence news the hub publishes.
type presenceCore struct {
	*fakeCore
	mu        sync.Mutex
	published []string
}

func (c *presenceCore) Presence(_ context.Context, userID string, online bool, _ time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	state := "offline"
	if online {
		state = "online"
	}
	c.published = append(c.published, userID+" "+state)
	return nil
}

func (c *presenceCore) Contacts(context.Context, string) ([]string, error) { return nil, nil }

// TestPresenceRetries: news the directory could not take (NATS down) is
// retried until it goes through, and a retry that a later change overtook
// is dropped.
func TestPresenceRetries(t *testing.T) {
	core := &presenceCore{fakeCore: &fakeCore{}}
	h := newTestHub(t, core.fakeCore)
	h.g.core = core
	dir := &flakyDirectory{failures: 2}
	h.g.cfg.Directory = dir
	h.g.cfg.PresenceGrace = 10 * time.Millisecond
	h.g.wg.Add(1)
	go h.presenceLoop()
	defer h.stopPresence()

	r := connectFake(h, "alice", nil)
	_ = r
	// The first two Joins fail; the retries (1 s, then 2 s) succeed.
	deadline := time.Now().Add(6 * time.Second)
	for {
		core.mu.Lock()
		n := len(core.published)
		core.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's online never published; directory saw %v", dir.seen())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := dir.seen(); len(got) != 1 || got[0] != "join alice" {
		t.Fatalf("directory saw %v", got)
	}

	// A failed join overtaken by the user leaving is not retried.
	dir.mu.Lock()
	dir.failures = 1
	dir.mu.Unlock()
	bob := connectFake(h, "bob", nil)
	_ = bob
	time.Sleep(50 * time.Millisecond) // bob's join failed
	for _, s := range h.users["bob"].sessions {
		h.detach(s)
	}
	time.Sleep(1500 * time.Millisecond) // past the first retry
	for _, e := range dir.seen() {
		if e == "join bob" {
			t.Fatalf("a join retried after bob left: %v", dir.seen())
		}
	}
}

// contactsCore answers Contacts from a fixed map and counts the calls.
type contactsCore struct {
	*fakeCore
	contacts map[string][]string
	mu       sync.Mutex
	calls    map[string]int
}

func (c *contactsCore) Contacts(_ context.Context, userID string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[userID]++
	return append([]string(nil), c.contacts[userID]...), nil
}

// presenceFrames returns the presence frames r received, as "user state".
func presenceFrames(t *testing.T, r *recorder) []string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, data := range r.frames {
		var f PresenceFrame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		if f.Type == FramePresence {
			out = append(out, f.UserID+" "+f.State)
		}
	}
	return out
}

// TestPresenceListPerUser: the new sessions of one user waiting in one
// batch of presence news are listed with one read of the user's contacts,
// each told of every online contact once; a session that comes in a later
// batch gets a read of its own.
func TestPresenceListPerUser(t *testing.T) {
	core := &contactsCore{fakeCore: &fakeCore{}, calls: map[string]int{},
		contacts: map[string][]string{"alice": {"bob", "carol", "dave"}, "bob": {"alice"}}}
	h := newTestHub(t, core.fakeCore)
	h.g.core = core
	// No presence loop: the test runs the batches itself.
	take := func() []presenceNews {
		h.presenceMu.Lock()
		defer h.presenceMu.Unlock()
		q := h.presenceQ
		h.presenceQ = nil
		return q
	}
	connectFake(h, "bob", nil)
	connectFake(h, "carol", nil)
	h.runPresence(take())
	var alice []*recorder
	for range 3 {
		alice = append(alice, connectFake(h, "alice", nil))
	}
	h.runPresence(take())
	if n := core.calls["alice"]; n != 1 {
		t.Fatalf("alice's contacts read %d times for 3 sessions in one batch, want 1", n)
	}
	want := []string{"bob online", "carol online"} // dave is not connected
	for i, r := range alice {
		if got := presenceFrames(t, r); !slices.Equal(got, want) {
			t.Fatalf("alice's session %d got presence %v, want %v", i, got, want)
		}
	}
	late := connectFake(h, "alice", nil)
	h.runPresence(take())
	if n := core.calls["alice"]; n != 2 {
		t.Fatalf("alice's contacts read %d times after a session in a later batch, want 2", n)
	}
	if got := presenceFrames(t, late); !slices.Equal(got, want) {
		t.Fatalf("the later session got presence %v, want %v", got, want)
	}
	for i, r := range alice {
		if got := presenceFrames(t, r); !slices.Equal(got, want) {
			t.Fatalf("alice's session %d was listed again: %v", i, got)
		}
	}
}
