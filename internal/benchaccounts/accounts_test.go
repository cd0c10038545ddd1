package benchaccounts

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleychat/parley"
)

func sample(n int) *File {
	f := &File{Prefix: "load"}
	for i := range n {
		f.Accounts = append(f.Accounts, Account{
			Handle: "load_" + string(rune('a'+i)), UserID: parley.NewID(), DeviceID: parley.NewID(),
			RefreshToken: strings.Repeat("t", 43),
		})
	}
	return f
}

func TestWriteReadReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.json")
	f := sample(3)
	if err := Write(path, f); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", st.Mode(), err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != Version || got.Prefix != "load" || len(got.Accounts) != 3 || got.Accounts[2] != f.Accounts[2] {
		t.Fatalf("read back %+v", got)
	}
	// Write never replaces a file of credentials.
	if err := Write(path, sample(1)); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Write over an existing file: %v, want ErrExist", err)
	}
	// Replace does, atomically and with mode 0600 whatever the umask,
	// and leaves no temporary file behind.
	got.Accounts[0].RefreshToken = strings.Repeat("n", 43)
	if err := Replace(path, got); err != nil {
		t.Fatal(err)
	}
	again, err := Read(path)
	if err != nil || again.Accounts[0].RefreshToken != strings.Repeat("n", 43) {
		t.Fatalf("after Replace: %+v, %v", again, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode after Replace %v, %v; want 0600", st.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("files beside the accounts: %v", entries)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := sample(2)
	for name, change := range map[string]func(f *File){
		"version":         func(f *File) { f.Version = 2 },
		"no accounts":     func(f *File) { f.Accounts = nil },
		"handle":          func(f *File) { f.Accounts[0].Handle = "Load_A" },
		"short handle":    func(f *File) { f.Accounts[0].Handle = "ab" },
		"user id":         func(f *File) { f.Accounts[0].UserID = "42" },
		"device id":       func(f *File) { f.Accounts[1].DeviceID = "" },
		"no token":        func(f *File) { f.Accounts[1].RefreshToken = "" },
		"long token":      func(f *File) { f.Accounts[1].RefreshToken = strings.Repeat("t", 129) },
		"handle twice":    func(f *File) { f.Accounts[1].Handle = f.Accounts[0].Handle },
		"device twice":    func(f *File) { f.Accounts[1].DeviceID = f.Accounts[0].DeviceID },
		"fine, for check": nil,
	} {
		t.Run(name, func(t *testing.T) {
			f := *good
			f.Version = Version
			f.Accounts = append([]Account(nil), good.Accounts...)
			if change != nil {
				change(&f)
			}
			data, err := encode(&f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(data)
			if change == nil && err != nil {
				t.Fatalf("a good file refused: %v", err)
			}
			if change != nil && err == nil {
				t.Fatal("accepted")
			}
		})
	}
	for name, data := range map[string]string{
		"unknown field": `{"version":1,"accounts":[],"extra":1}`,
		"trailing data": `{"version":1,"accounts":[]} {}`,
		"not json":      `version=1`,
		"empty":         ``,
	} {
		if _, err := Decode([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	tooMany := `{"version":1,"accounts":[` + strings.Repeat(`{},`, MaxAccounts) + `{}]}`
	if _, err := Decode([]byte(tooMany)); err == nil || !strings.Contains(err.Error(), "accounts, want 1 to") {
		t.Errorf("%d accounts: %v, want refused for their number", MaxAccounts+1, err)
	}
	if _, err := Decode(make([]byte, MaxFileBytes+1)); err == nil {
		t.Error("an oversized file accepted")
	}
}

func TestLockTakesTurns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.json")
	unlock, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan struct{})
	go func() {
		u, err := Lock(path)
		if err != nil {
			t.Error(err)
		} else {
			u()
		}
		close(second)
	}()
	select {
	case <-second:
		t.Fatal("a second Lock did not wait for the first")
	default:
	}
	unlock()
	<-second
}

// FuzzDecode: whatever the file holds, Decode returns an error or a file
// that satisfies its checks, and never panics.
func FuzzDecode(f *testing.F) {
	data, _ := encode(sample(2))
	f.Add(data)
	f.Add([]byte(`{"version":1,"accounts":[{"handle":"abc"}]}`))
	f.Add([]byte(`{"version":1,"accounts":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Decode(data)
		if err != nil {
			return
		}
		if file.Version != Version || len(file.Accounts) == 0 {
			t.Fatalf("accepted %+v", file)
		}
		for _, a := range file.Accounts {
			if h, err := parley.NormalizeHandle(a.Handle); err != nil || h != a.Handle || !parley.ValidID(a.UserID) || !parley.ValidID(a.DeviceID) || a.RefreshToken == "" || len(a.RefreshToken) > maxTokenLen {
				t.Fatalf("accepted account %+v", a)
			}
		}
	})
}
