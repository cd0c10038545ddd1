package push

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley"
)

// knownPushHosts are the browsers' push services: hosts (or, starting with
// a dot, domains) that answer fast and at volume. Sends to them get the
// full sendTimeout and no per-host limit; any other Web Push host is
// treated as a stranger (a short timeout, a per-host limit).
var knownPushHosts = []string{
	"fcm.googleapis.com",                // Chrome, Edge, Opera, Samsung
	".push.apple.com",                   // Safari (web.push.apple.com)
	"updates.push.services.mozilla.com", // Firefox
	".notify.windows.com",               // Edge legacy (WNS)
}

// KnownPushHost reports whether host is one of the browsers' push
// services.
func KnownPushHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, k := range knownPushHosts {
		if host == k || strings.HasPrefix(k, ".") && strings.HasSuffix(host, k) {
			return true
		}
	}
	return false
}

// webPushHost returns the host of a Web Push registration's endpoint,
// lower case; "" if it has none.
func webPushHost(reg *parley.PushRegistration) string {
	if reg == nil || reg.Provider != parley.PushWebPush || reg.Subscription == nil {
		return ""
	}
	u, err := url.Parse(reg.Subscription.Endpoint)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
}

// sendLimits bounds the sends in flight on this node per endpoint host
// (strangers only: see knownPushHosts) and per user, so that one user's or
// one host's slow sends cannot take the worker pool. Safe for concurrent
// use.
type sendLimits struct {
	perHost, perUser int

	mu    sync.Mutex
	hosts map[string]int
	users map[string]int
}

func newSendLimits(perHost, perUser int) *sendLimits {
	return &sendLimits{perHost: perHost, perUser: perUser, hosts: map[string]int{}, users: map[string]int{}}
}

// acquire takes a slot for a send to host ("" for none limited) for
// userID. If either is at its limit it takes nothing and returns which
// ("host_busy" or "user_busy"); otherwise release gives the slots back.
func (l *sendLimits) acquire(host, userID string) (release func(), busy string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if host != "" && l.hosts[host] >= l.perHost {
		return nil, "host_busy"
	}
	if l.users[userID] >= l.perUser {
		return nil, "user_busy"
	}
	if host != "" {
		l.hosts[host]++
	}
	l.users[userID]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if host != "" {
				if l.hosts[host]--; l.hosts[host] <= 0 {
					delete(l.hosts, host)
				}
			}
			if l.users[userID]--; l.users[userID] <= 0 {
				delete(l.users, userID)
			}
		})
	}, ""
}

// busyDelay is how long a job that found its host or user at the limit
// waits before it looks again: it gives its worker back meanwhile.
func busyDelay() time.Duration {
	return 500*time.Millisecond + rand.N(500*time.Millisecond)
}
