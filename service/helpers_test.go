package service_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/service"
	"github.com/parleychat/parley/store/sqlite"
)

// openStore opens a SQLite store with a test key in a temporary directory,
// closed when the test ends.
func openStore(tb testing.TB) *sqlite.Store {
	tb.Helper()
	kr, err := seal.NewKeyring([][]byte{bytes.Repeat([]byte{3}, 32)})
	if err != nil {
		tb.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "parley.db"), sqlite.Options{Sealer: kr})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// newService is a core on st without tokens or passwords, logging nowhere.
func newService(st parley.Store, cfg service.Config) *service.Service {
	return service.New(st, nil, nil, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

// createGroup stores a group conversation created at at, owned by owner,
// with members.
func createGroup(tb testing.TB, st parley.Store, at time.Time, owner *parley.User, members ...*parley.User) *parley.Conversation {
	tb.Helper()
	ms := []parley.Member{{UserID: owner.ID, Role: parley.MemberRoleOwner}}
	for _, u := range members {
		ms = append(ms, parley.Member{UserID: u.ID, Role: parley.MemberRoleMember})
	}
	c, _, err := st.CreateConversation(context.Background(), &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, CreatedAt: at, Members: ms})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// createUser stores an active user with handle.
func createUser(tb testing.TB, st parley.Store, handle string) *parley.User {
	tb.Helper()
	u := &parley.User{ID: parley.NewID(), Handle: handle, Role: parley.SystemRoleUser, State: parley.UserActive, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if err := st.CreateUser(context.Background(), u); err != nil {
		tb.Fatal(err)
	}
	return u
}
