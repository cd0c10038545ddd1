// Package ratelimit holds keyed token buckets: one bucket per key (an IP, a
// user id, a handle), created on first use and forgotten when idle.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed is a set of token buckets with the same rate and burst, one per key.
// The zero value is not usable; call New. Safe for concurrent use. Memory is
// bounded by the number of keys seen within the idle window: buckets idle for
// longer than it takes to refill are dropped by Allow itself, amortized.
type Keyed struct {
	limit rate.Limit
	burst int
	idle  time.Duration

	mu        sync.Mutex
	buckets   map[string]*bucket
	nextSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// New returns buckets that allow perSecond events per second with bursts of
// burst. A perSecond of 0 or less means no limit at all.
func New(perSecond float64, burst int) *Keyed {
	if burst < 1 {
		burst = 1
	}
	k := &Keyed{limit: rate.Limit(perSecond), burst: burst, buckets: make(map[string]*bucket)}
	if perSecond > 0 {
		// A bucket idle this long is full again: forgetting it loses nothing.
		k.idle = time.Duration(float64(burst)/perSecond*float64(time.Second)) + time.Minute
	}
	return k
}

// Allow takes one token from key's bucket at now. When the bucket is empty
// it takes nothing and returns false with how long until a token is free.
func (k *Keyed) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	ok, retryAfter, _ = k.Reserve(key, now)
	return ok, retryAfter
}

// Reserve is Allow with a way back: cancel returns the token, so a limit
// can count only failures (reserve before an attempt, cancel when it
// succeeds) without letting parallel attempts slip past it. cancel is nil
// when ok is false.
func (k *Keyed) Reserve(key string, now time.Time) (ok bool, retryAfter time.Duration, cancel func()) {
	if k == nil || k.limit <= 0 {
		return true, 0, func() {}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.After(k.nextSweep) {
		k.sweep(now)
	}
	b := k.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(k.limit, k.burst)}
		k.buckets[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d, nil
	}
	return true, 0, func() { r.CancelAt(now) }
}

// sweep drops idle buckets. k.mu must be held.
func (k *Keyed) sweep(now time.Time) {
	for key, b := range k.buckets {
		if now.Sub(b.seen) > k.idle {
			delete(k.buckets, key)
		}
	}
	k.nextSweep = now.Add(k.idle)
}

// Len returns the number of buckets held, for tests and metrics.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.buckets)
}
