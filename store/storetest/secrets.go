package storetest

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/parleychat/parley"
)

// readSecrets returns the secrets under prefix, through a change that
// changes nothing.
func (f *fixture) readSecrets(prefix string) map[string][]byte {
	f.tb.Helper()
	var got map[string][]byte
	err := f.s.UpdateSecrets(f.ctx, prefix, func(cur map[string][]byte) (map[string][]byte, []string, error) {
		got = maps.Clone(cur)
		return nil, nil, nil
	})
	if err != nil {
		f.tb.Fatalf("UpdateSecrets(read %q): %v", prefix, err)
	}
	return got
}

// putSecrets puts and deletes secrets under prefix.
func (f *fixture) putSecrets(prefix string, put map[string][]byte, del ...string) error {
	return f.s.UpdateSecrets(f.ctx, prefix, func(map[string][]byte) (map[string][]byte, []string, error) {
		return put, del, nil
	})
}

func testSecrets(t *testing.T, f *fixture) {
	if got := f.readSecrets("keys/"); len(got) != 0 {
		t.Fatalf("a new store holds secrets %v", slices.Collect(maps.Keys(got)))
	}
	if err := f.putSecrets("keys/", map[string][]byte{"keys/a": []byte("alpha"), "keys/b": {0, 1, 2}}); err != nil {
		t.Fatalf("put: %v", err)
	}
	if err := f.putSecrets("other/", map[string][]byte{"other/x": []byte("x")}); err != nil {
		t.Fatalf("put other: %v", err)
	}
	got := f.readSecrets("keys/")
	if len(got) != 2 || string(got["keys/a"]) != "alpha" || string(got["keys/b"]) != "\x00\x01\x02" {
		t.Fatalf("read back %q", got)
	}
	// Replace one, delete the other.
	if err := f.putSecrets("keys/", map[string][]byte{"keys/a": []byte("alpha 2")}, "keys/b"); err != nil {
		t.Fatalf("replace: %v", err)
	}
	if got := f.readSecrets("keys/"); len(got) != 1 || string(got["keys/a"]) != "alpha 2" {
		t.Fatalf("after replace and delete: %q", got)
	}
	if got := f.readSecrets("other/"); len(got) != 1 {
		t.Fatalf("another prefix changed: %q", got)
	}
	// A failing change changes nothing; a name outside the prefix is refused.
	boom := errors.New("boom")
	err := f.s.UpdateSecrets(f.ctx, "keys/", func(map[string][]byte) (map[string][]byte, []string, error) {
		return map[string][]byte{"keys/c": []byte("c")}, nil, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("failing change: %v, want boom", err)
	}
	err = f.putSecrets("keys/", map[string][]byte{"keys/d": []byte("d"), "elsewhere": []byte("e")})
	wantCode(t, err, parley.CodeInvalidRequest, "a name outside the prefix")
	if got := f.readSecrets("keys/"); len(got) != 1 {
		t.Fatalf("after refused changes: %q", got)
	}
}

// testSecretsAtomic increments one counter from many goroutines: no
// update is lost.
func testSecretsAtomic(t *testing.T, f *fixture) {
	incrementConcurrently(t, []*fixture{f}, 24)
}

// incrementConcurrently runs n increments of one counter spread over the
// stores of fs, and checks that each counted.
func incrementConcurrently(t *testing.T, fs []*fixture, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		sf := fs[i%len(fs)]
		wg.Go(func() {
			err := sf.s.UpdateSecrets(sf.ctx, "counter/", func(cur map[string][]byte) (map[string][]byte, []string, error) {
				v, _ := strconv.Atoi(string(cur["counter/n"]))
				return map[string][]byte{"counter/n": []byte(strconv.Itoa(v + 1))}, nil, nil
			})
			if err != nil {
				t.Errorf("increment: %v", err)
			}
		})
	}
	wg.Wait()
	for i, sf := range fs {
		if got := string(sf.readSecrets("counter/")["counter/n"]); got != strconv.Itoa(n) {
			t.Fatalf("store %d: counter %q after %d increments", i, got, n)
		}
	}
}
