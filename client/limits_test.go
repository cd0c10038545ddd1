package client_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// TestConnectionCapErrorBeforeReady: when the server refuses a connection
// that raced past the handshake's cap (an error frame limit_exceeded
// before ready, then close 4008, as docs/protocol.md says), the client
// reports the server's error, not a protocol mix-up. The server is a
// stand-in speaking that sequence: the race that produces it on the real
// one cannot be brought about on demand.
func TestConnectionCapErrorBeforeReady(t *testing.T) {
	const msg = "this user has 50 connections on this node, the most allowed"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		_ = wsutil.WriteServerText(conn, []byte(`{"type":"error","error":{"code":"limit_exceeded","message":"`+msg+`"}}`))
		_ = ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(4008, "too many connections for this user")))
	}))
	t.Cleanup(srv.Close)

	errs := make(chan error, 16)
	c := client.New(client.Config{
		Server: srv.URL,
		Tokens: &client.Tokens{UserID: "u", DeviceID: "d", AccessToken: "access", AccessExpires: time.Now().Add(time.Hour), RefreshToken: "refresh"},
		OnEvent: func(e client.Event) {
			if e.Kind == client.EventDisconnected || e.Kind == client.EventStopped {
				select {
				case errs <- e.Err:
				default:
				}
			}
		},
		BackoffMin: time.Hour, BackoffMax: time.Hour, // one attempt is enough
	})
	t.Cleanup(func() { c.Close() })
	go c.Connect(ctxFor(t, time.Minute))
	var err error
	select {
	case err = <-errs:
	case <-time.After(time.Minute):
		t.Fatal("no disconnection reported")
	}
	if !client.IsCode(err, parley.CodeLimitExceeded) || parley.ErrorMessage(err) != msg {
		t.Fatalf("disconnected with %v (code %q); want the server's limit_exceeded: %s", err, parley.ErrorCode(err), msg)
	}
}
