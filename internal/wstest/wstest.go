// Package wstest is a small WebSocket client for tests of /v1/ws: it
// dials with a bearer token, reads frames on a goroutine, answers pings,
// and lets a test wait for frames of a given type. It uses gobwas/ws for
// the framing.
package wstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Frame is one server frame, decoded loosely, with its raw bytes.
type Frame struct {
	Type string          `json:"type"`
	ID   string          `json:"id"`
	Raw  json.RawMessage `json:"-"`
}

// Decode unmarshals the raw frame into v.
func (f Frame) Decode(v any) error { return json.Unmarshal(f.Raw, v) }

// Conn is one client connection.
type Conn struct {
	tb     testing.TB
	conn   net.Conn
	rw     io.ReadWriter
	frames chan Frame
	wmu    sync.Mutex

	mu        sync.Mutex
	closeCode ws.StatusCode // set when the server closed
	closeText string
	done      chan struct{}
}

type lenientWriter struct{ w io.Writer }

func (l lenientWriter) Write(p []byte) (int, error) {
	_, _ = l.w.Write(p)
	return len(p), nil
}

type readWriter struct {
	io.Reader
	io.Writer
}

// Dial connects to url (ws://host/v1/ws) with an Authorization header
// when token is set, and extra headers.
func Dial(ctx context.Context, url, token string, header http.Header) (*Conn, *http.Response, error) {
	h := http.Header{}
	for k, v := range header {
		h[k] = v
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	var resp *http.Response
	d := ws.Dialer{
		Header: ws.HandshakeHeaderHTTP(h),
		// r holds the whole response from its status line: parse it, so
		// the body ends at its Content-Length (or last chunk). Reading to
		// EOF would wait for the server to close an idle keep-alive
		// connection, minutes later.
		OnStatusError: func(status int, reason []byte, r io.Reader) {
			var body []byte
			if res, err := http.ReadResponse(bufio.NewReader(r), nil); err == nil {
				body, _ = io.ReadAll(io.LimitReader(res.Body, 1<<16))
				res.Body.Close()
			}
			resp = &http.Response{StatusCode: status, Status: string(reason), Body: io.NopCloser(bytes.NewReader(body))}
		},
	}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, resp, err
	}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	// Control replies (pong, the close echo) ignore write errors: when the
	// server closed right after its close frame, the echo fails, and the
	// close code must still be reported.
	c := &Conn{conn: conn, rw: readWriter{r, lenientWriter{conn}}, frames: make(chan Frame, 4096), done: make(chan struct{})}
	go c.read()
	return c, nil, nil
}

// MustDial is Dial that fails the test on error.
func MustDial(tb testing.TB, url, token string) *Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := Dial(ctx, url, token, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		tb.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	c.tb = tb
	tb.Cleanup(func() { c.Close() })
	return c
}

func (c *Conn) read() {
	defer close(c.done)
	defer close(c.frames)
	for {
		data, op, err := wsutil.ReadServerData(c.rw)
		if err != nil {
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				c.mu.Lock()
				c.closeCode, c.closeText = ce.Code, ce.Reason
				c.mu.Unlock()
			}
			return
		}
		if op != ws.OpText {
			continue
		}
		var f Frame
		if err := json.Unmarshal(data, &f); err != nil {
			f.Type = "!undecodable"
		}
		f.Raw = append(json.RawMessage(nil), data...)
		c.frames <- f
	}
}

// Write sends a text frame with the JSON of v (or v itself if it is a
// string or []byte).
func (c *Conn) Write(v any) error {
	var data []byte
	switch x := v.(type) {
	case string:
		data = []byte(x)
	case []byte:
		data = x
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			return err
		}
	}
	// One write per frame, as browsers do: a frame split over two writes
	// lets the server close after the header (oversized), and the second
	// write's reset can destroy the close frame before it is read.
	wire, err := ws.CompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame(data)))
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.conn.Write(wire)
	return err
}

// MustWrite is Write that fails the test on error.
func (c *Conn) MustWrite(v any) {
	c.tb.Helper()
	if err := c.Write(v); err != nil {
		c.tb.Fatalf("write frame: %v", err)
	}
}

// Next returns the next frame, or an error after timeout or when the
// connection closed.
func (c *Conn) Next(timeout time.Duration) (Frame, error) {
	select {
	case f, ok := <-c.frames:
		if !ok {
			code, text := c.CloseStatus()
			return Frame{}, fmt.Errorf("connection closed (code %d %q)", code, text)
		}
		return f, nil
	case <-time.After(timeout):
		return Frame{}, fmt.Errorf("no frame within %v", timeout)
	}
}

// Expect returns the next frame of type typ, skipping frames of the types
// in skip (other types fail the test).
func (c *Conn) Expect(typ string, skip ...string) Frame {
	c.tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := c.Next(time.Until(deadline))
		if err != nil {
			c.tb.Fatalf("waiting for a %s frame: %v", typ, err)
		}
		if f.Type == typ {
			return f
		}
		skipped := false
		for _, s := range skip {
			if s == "*" || s == f.Type {
				skipped = true
			}
		}
		if !skipped {
			c.tb.Fatalf("want a %s frame, got %s", typ, f.Raw)
		}
	}
}

// Quiet fails the test if a frame of one of types arrives within d
// (frames of other types are dropped).
func (c *Conn) Quiet(d time.Duration, types ...string) {
	c.tb.Helper()
	deadline := time.Now().Add(d)
	for {
		f, err := c.Next(time.Until(deadline))
		if err != nil {
			return
		}
		for _, t := range types {
			if f.Type == t {
				c.tb.Fatalf("unexpected frame %s", f.Raw)
			}
		}
	}
}

// WaitClosed waits until the server closed the connection and returns
// the close code (0 if the TCP connection ended without a close frame).
func (c *Conn) WaitClosed(timeout time.Duration) (ws.StatusCode, error) {
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-c.frames:
			if !ok {
				code, _ := c.CloseStatus()
				return code, nil
			}
		case <-deadline:
			return 0, fmt.Errorf("connection still open after %v", timeout)
		}
	}
}

// CloseStatus is the code and reason of the server's close frame.
func (c *Conn) CloseStatus() (ws.StatusCode, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.closeText
}

// Close closes the TCP connection.
func (c *Conn) Close() error { return c.conn.Close() }

// Raw returns the underlying connection (for tests that misbehave on
// purpose).
func (c *Conn) Raw() net.Conn { return c.conn }
