package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// smallBuffers shrinks the send buffer of accepted connections, so that a
// client that reads slowly holds the server's writes back at once instead
// of after megabytes of kernel buffers.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// TestStreamedListWriteTimeout: with the server's write timeout set, a
// streamed list (GET /v1/conversations' jsonList) reaches a client that
// reads slowly but steadily however long the whole download takes, and a
// client that stops reading is still cut off.
func TestStreamedListWriteTimeout(t *testing.T) {
	// 3 s, read in pauses of a twentieth: a reader descheduled for a
	// moment on a loaded machine stays well inside it, and the 25 pauses
	// still add up to more than it.
	const timeout = 3 * time.Second
	elems := make([]string, 8000) // about 800 KB encoded
	for i := range elems {
		elems[i] = strings.Repeat("x", 100)
	}
	done := make(chan error, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done <- jsonList(w, http.StatusOK, "items", elems, "", timeout)
	}))
	srv.Config.WriteTimeout = timeout
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)

	get := func(t *testing.T) *http.Response {
		t.Helper()
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)       // fixed: no autotuning to megabytes
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute)) // a hung test fails, eventually
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4<<10), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	t.Run("slow reader", func(t *testing.T) {
		resp := get(t)
		start := time.Now()
		var body []byte
		buf := make([]byte, 32<<10)
		for {
			n, err := io.ReadFull(resp.Body, buf)
			body = append(body, buf[:n]...)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) && n < len(buf) {
				break
			}
			if err != nil {
				t.Fatalf("reading the list after %d bytes, %v: %v", len(body), time.Since(start), err)
			}
			time.Sleep(timeout / 20)
		}
		if err := <-done; err != nil {
			t.Fatalf("the handler could not write the whole list: %v", err)
		}
		var got struct{ Items []string }
		if err := json.Unmarshal(body, &got); err != nil || len(got.Items) != len(elems) {
			t.Fatalf("list of %d bytes: %d items, %v; want %d", len(body), len(got.Items), err, len(elems))
		}
		// The pauses alone add up to more than the timeout: the download
		// went on past it.
		if d := time.Since(start); d <= timeout {
			t.Fatalf("the download took %v, not past the write timeout %v: the test proves nothing", d, timeout)
		}
	})

	t.Run("stopped reader", func(t *testing.T) {
		resp := get(t)
		// The client reads nothing more: the handler's writes must fail.
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("the whole list was written to a client that reads nothing")
			}
		case <-time.After(time.Minute):
			t.Fatal("a client that stopped reading was not cut off")
		}
		body, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Fatalf("read the whole reply (%d bytes) from a connection that was cut off", len(body))
		}
	})
}
