package ratelimit

import (
	"testing"
	"time"
)

func TestKeyed(t *testing.T) {
	k := New(1, 3)
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if ok, _ := k.Allow("a", now); !ok {
			t.Fatalf("request %d refused within burst", i)
		}
	}
	ok, retry := k.Allow("a", now)
	if ok || retry <= 0 || retry > time.Second {
		t.Fatalf("4th request: ok=%v retry=%v, want refused with retry in (0,1s]", ok, retry)
	}
	if ok, _ := k.Allow("b", now); !ok {
		t.Fatal("another key shares the bucket")
	}
	if ok, _ := k.Allow("a", now.Add(time.Second)); !ok {
		t.Fatal("token not refilled after 1s")
	}
	// Idle buckets are forgotten.
	k.Allow("c", now.Add(time.Hour))
	if n := k.Len(); n != 1 {
		t.Fatalf("after an hour idle, %d buckets held, want 1", n)
	}
}

func TestUnlimited(t *testing.T) {
	k := New(0, 1)
	for i := 0; i < 1000; i++ {
		if ok, _ := k.Allow("a", time.Unix(0, 0)); !ok {
			t.Fatal("unlimited bucket refused")
		}
	}
	var nilK *Keyed
	if ok, _ := nilK.Allow("a", time.Now()); !ok {
		t.Fatal("nil Keyed refused")
	}
}

func TestBlockedTake(t *testing.T) {
	k := New(1, 2)
	now := time.Unix(1000, 0)
	if b, _ := k.Blocked("h", now); b {
		t.Fatal("fresh key blocked")
	}
	k.Take("h", now)
	k.Take("h", now)
	b, retry := k.Blocked("h", now)
	if !b || retry <= 0 || retry > time.Second {
		t.Fatalf("after burst: blocked=%v retry=%v", b, retry)
	}
	if b, _ := k.Blocked("h", now.Add(time.Second)); b {
		t.Fatal("still blocked after refill")
	}
}
