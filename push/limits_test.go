package push

import (
	"context"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

func TestSendLimits(t *testing.T) {
	l := newSendLimits(2, 3)
	var releases []func()
	take := func(host, user, wantBusy string) {
		t.Helper()
		release, busy := l.acquire(host, user)
		if busy != wantBusy {
			t.Fatalf("acquire(%q, %q) busy %q, want %q", host, user, busy, wantBusy)
		}
		if release != nil {
			releases = append(releases, release)
		}
	}
	take("tarpit.example", "mallory", "")
	take("tarpit.example", "mallory", "")
	take("tarpit.example", "mallory", "host_busy")
	take("tarpit.example", "alice", "host_busy") // the host's limit holds for everyone
	take("", "mallory", "")                      // a known service: only the user's limit
	take("", "mallory", "user_busy")
	take("", "bob", "") // another user is not held up
	releases[0]()
	releases[0]() // twice is harmless
	take("tarpit.example", "alice", "")
	for _, r := range releases {
		r()
	}
	if len(l.hosts) != 0 || len(l.users) != 0 {
		t.Fatalf("slots left after every release: %v %v", l.hosts, l.users)
	}
}

func TestKnownPushHost(t *testing.T) {
	for host, known := range map[string]bool{
		"fcm.googleapis.com": true, "web.push.apple.com": true, "api.push.apple.com": true, "FCM.googleapis.com.": true,
		"updates.push.services.mozilla.com": true, "wns2-by3p.notify.windows.com": true,
		"push.apple.com.evil.example": false, "evilpush.apple.com": false, "googleapis.com": false, "tarpit.example": false,
	} {
		if KnownPushHost(host) != known {
			t.Errorf("KnownPushHost(%q) = %v", host, !known)
		}
	}
}

// TestEndpointAccounting: failures in a row back a registration off
// (from the second, doubling), a new registration starts over, and a
// success clears the record.
func TestEndpointAccounting(t *testing.T) {
	q := testQueue(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	reg := &parley.PushRegistration{Provider: parley.PushWebPush, UpdatedAt: now.Add(-time.Hour)}
	s, err := q.endpointFailed(ctx, "d", reg, time.Minute, now)
	if err != nil || s.Failures != 1 || s.Until != 0 {
		t.Fatalf("first failure: %+v %v", s, err)
	}
	s, _ = q.endpointFailed(ctx, "d", reg, time.Minute, now)
	if s.Failures != 2 || time.UnixMilli(s.Until).Sub(now) != time.Minute {
		t.Fatalf("second failure: %+v", s)
	}
	s, _ = q.endpointFailed(ctx, "d", reg, time.Minute, now.Add(time.Second))
	if s.Failures != 3 || time.UnixMilli(s.Until).Sub(now.Add(time.Second)) != 2*time.Minute || s.First != now.UnixMilli() {
		t.Fatalf("third failure: %+v", s)
	}
	for range 30 {
		s, _ = q.endpointFailed(ctx, "d", reg, time.Minute, now)
	}
	if time.UnixMilli(s.Until).Sub(now) != endpointBackoffMax {
		t.Fatalf("backoff not capped: %+v", s)
	}
	if got, _ := q.loadEndpoint(ctx, "d", reg); got != s {
		t.Fatalf("loaded %+v, want %+v", got, s)
	}
	renewed := *reg
	renewed.UpdatedAt = now
	if got, _ := q.loadEndpoint(ctx, "d", &renewed); got.Failures != 0 {
		t.Fatalf("a new registration inherits failures: %+v", got)
	}
	if err := q.endpointSucceeded(ctx, "d", s); err != nil {
		t.Fatal(err)
	}
	if got, _ := q.loadEndpoint(ctx, "d", reg); got.Failures != 0 {
		t.Fatalf("after a success: %+v", got)
	}
}
