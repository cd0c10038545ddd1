package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/httpapi"
	"github.com/parleychat/parley/service"
)

// saturatedPasswords is the argon2id queue with every slot taken until
// free is closed: a call waits for that or for its context to end, as a
// call waiting its turn in auth.Argon2id does, then hashes for real.
type saturatedPasswords struct {
	service.Passwords
	free chan struct{}
}

func (p saturatedPasswords) wait(ctx context.Context) error {
	select {
	case <-p.free:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p saturatedPasswords) Hash(ctx context.Context, password string) (string, error) {
	if err := p.wait(ctx); err != nil {
		return "", err
	}
	return p.Passwords.Hash(ctx, password)
}

func (p saturatedPasswords) Verify(ctx context.Context, password, encoded string) (bool, error) {
	if err := p.wait(ctx); err != nil {
		return false, err
	}
	return p.Passwords.Verify(ctx, password, encoded)
}

func (p saturatedPasswords) DummyVerify(ctx context.Context, password string) error {
	if err := p.wait(ctx); err != nil {
		return err
	}
	return p.Passwords.DummyVerify(ctx, password)
}

// TestPasswordQueueWaitEndsBeforeWriteTimeout: a login that waited in the
// argon2id queue past the server's write timeout got no answer (the
// connection was cut) yet went on, once its turn came, to create a device
// its client never learnt of, which then counted against the device cap.
// Now the wait ends before the write timeout: the client gets 503
// unavailable with Retry-After, and neither the login nor the
// registration has created anything, even after the queue frees up.
func TestPasswordQueueWaitEndsBeforeWriteTimeout(t *testing.T) {
	const writeTimeout = 3 * time.Second
	params := auth.PasswordParams{Time: 1, MemoryKiB: 1024, Threads: 1}
	queue := saturatedPasswords{free: make(chan struct{})}
	e := buildEnv(t, httpapi.Config{LimitsOff: true, WriteTimeout: writeTimeout}, nil, func(p service.Passwords) service.Passwords {
		queue.Passwords = p
		return queue
	}, nil)
	hash, err := auth.HashPassword("correct horse battery", params)
	if err != nil {
		t.Fatal(err)
	}
	alice := &parley.User{ID: parley.NewID(), Handle: "alice", DisplayName: "Alice", PasswordHash: hash,
		Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: time.Now().UTC()}
	if err := e.store.CreateUser(context.Background(), alice); err != nil {
		t.Fatal(err)
	}

	post := func(path string, body any) (*http.Response, map[string]any, error) {
		js, _ := json.Marshal(body)
		res, err := http.Post(e.srv.URL+path, "application/json", bytes.NewReader(js))
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return res, out, nil
	}
	login := map[string]any{"handle": "alice", "password": "correct horse battery", "device": map[string]any{"platform": "cli", "name": "late"}}
	register := map[string]any{"handle": "bob", "password": "correct horse battery"}
	requests := []struct {
		path string
		body any
	}{{"/v1/sessions", login}, {"/v1/accounts", register}, {"/v1/sessions", login}}
	// The queue frees up after twice the write timeout, or as soon as
	// the three have their answers.
	release := sync.OnceFunc(func() { close(queue.free) })
	time.AfterFunc(2*writeTimeout, release)
	var wg sync.WaitGroup
	for _, rq := range requests {
		wg.Go(func() {
			start := time.Now()
			res, out, err := post(rq.path, rq.body)
			if err != nil {
				t.Errorf("POST %s with the queue full: %v after %v; want an answer before the write timeout (%v)", rq.path, err, time.Since(start), writeTimeout)
				return
			}
			errObj, _ := out["error"].(map[string]any)
			if res.StatusCode != http.StatusServiceUnavailable || errObj["code"] != "unavailable" || res.Header.Get("Retry-After") != "5" {
				t.Errorf("POST %s with the queue full: %d %v, Retry-After %q; want 503 unavailable with Retry-After 5", rq.path, res.StatusCode, out, res.Header.Get("Retry-After"))
			}
		})
	}
	wg.Wait()

	// The queue frees up: a login now gets through, and is the only device.
	release()
	res, out, err := post("/v1/sessions", login)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("login with the queue free: %v %v", err, out)
	}
	e.srv.Close() // waits for every handler to return
	devices, err := e.store.Devices(context.Background(), alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(devices) != 1 {
		t.Fatalf("alice has %d devices, want only the one whose login was answered: %+v", len(devices), devices)
	}
	if _, err := e.store.UserByHandle(context.Background(), "bob"); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("the registration answered 503 created its user: %v", err)
	}
}
