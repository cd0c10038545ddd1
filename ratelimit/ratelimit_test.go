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

func TestReserveCancel(t *testing.T) {
	k := New(1, 2)
	now := time.Unix(1000, 0)
	for i := 0; i < 5; i++ { // successes give their token back
		ok, _, cancel := k.Reserve("h", now)
		if !ok {
			t.Fatalf("attempt %d refused although every one was cancelled", i)
		}
		cancel()
	}
	k.Reserve("h", now)
	k.Reserve("h", now)
	ok, retry, cancel := k.Reserve("h", now)
	if ok || cancel != nil || retry <= 0 || retry > time.Second {
		t.Fatalf("after two kept reservations: ok=%v retry=%v", ok, retry)
	}
	if ok, _, _ := k.Reserve("h", now.Add(time.Second)); !ok {
		t.Fatal("still refused after refill")
	}
}
