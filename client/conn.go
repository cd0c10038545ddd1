package client

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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/parleychat/parley"
)

// Conn is one WebSocket connection to /v1/ws: framing (gobwas/ws), pings
// answered, every frame written whole under one lock. It knows nothing of
// the protocol's state; the Client's connection loop and `parley bench`
// build on it.
type Conn struct {
	nc net.Conn
	br *bufio.Reader

	wmu sync.Mutex

	lastRead atomic.Int64 // unix nanos of the last frame of any kind

	// MaxFrame, when set (from ready.max_frame_bytes), makes Write refuse
	// a larger frame with payload_too_large instead of sending it (the
	// server would close the connection with 1009).
	MaxFrame int
}

// CloseError is how a connection ended when the server closed it with a
// close frame.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("closed by the server: %d %s", e.Code, e.Reason)
}

// WSURL turns a server base URL (http://host:port) into its /v1/ws URL.
func WSURL(server string) string {
	u := strings.TrimRight(server, "/")
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + u[len("https://"):]
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + u[len("http://"):]
	}
	return u + "/v1/ws"
}

// Dial opens /v1/ws with the access token. An HTTP refusal comes back as
// *Error with the server's code. dialer may be nil; set it to choose the
// local address (parley bench spreads connections over 127.0.0.x).
func Dial(ctx context.Context, server, token string, dialer *net.Dialer) (*Conn, error) {
	var herr error
	d := ws.Dialer{
		Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}}),
		OnStatusError: func(status int, reason []byte, r io.Reader) {
			body, _ := io.ReadAll(io.LimitReader(r, 1<<16))
			herr = responseError(&http.Response{StatusCode: status, Status: string(reason), Header: http.Header{}}, body)
		},
	}
	if dialer != nil {
		d.NetDial = dialer.DialContext
	}
	nc, br, _, err := d.Dial(ctx, WSURL(server))
	if err != nil {
		if herr != nil {
			return nil, herr
		}
		return nil, err
	}
	c := &Conn{nc: nc, br: br}
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, 4096)
	}
	c.lastRead.Store(time.Now().UnixNano())
	return c, nil
}

// Write sends one frame (JSON of v, without HTML escaping: "<" stays one
// byte) in one write.
func (c *Conn) Write(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	data := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if c.MaxFrame > 0 && len(data) > c.MaxFrame {
		return parley.Errorf(parley.CodePayloadTooLarge, "the frame is %d bytes; the server takes at most %d", len(data), c.MaxFrame)
	}
	return c.writeFrame(ws.NewTextFrame(data))
}

func (c *Conn) writeFrame(f ws.Frame) error {
	wire, err := ws.CompileFrame(ws.MaskFrameInPlace(f))
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = c.nc.Write(wire)
	return err
}

// Read returns the next text frame's bytes. It answers pings and returns
// *CloseError when the server closed the connection.
func (c *Conn) Read() ([]byte, error) {
	rd := wsutil.Reader{Source: c.br, State: ws.StateClientSide, CheckUTF8: true, OnIntermediate: c.control}
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			return nil, err
		}
		c.lastRead.Store(time.Now().UnixNano())
		if hdr.OpCode.IsControl() {
			if err := c.control(hdr, &rd); err != nil {
				return nil, err
			}
			continue
		}
		data, err := io.ReadAll(&rd)
		if err != nil {
			return nil, err
		}
		if hdr.OpCode == ws.OpText {
			return data, nil
		}
	}
}

// ReadFrame reads and decodes the next frame.
func (c *Conn) ReadFrame() (*InFrame, []byte, error) {
	data, err := c.Read()
	if err != nil {
		return nil, nil, err
	}
	f := new(InFrame)
	if err := json.Unmarshal(data, f); err != nil {
		return nil, data, fmt.Errorf("undecodable frame from the server: %w", err)
	}
	return f, data, nil
}

// control handles a ping, pong or close frame.
func (c *Conn) control(h ws.Header, r io.Reader) error {
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(r, payload); err != nil {
		return err
	}
	if h.Masked {
		ws.Cipher(payload, h.Mask, 0)
	}
	switch h.OpCode {
	case ws.OpPing:
		return c.writeFrame(ws.NewPongFrame(payload))
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(payload)
		_ = c.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))
		return &CloseError{Code: int(code), Reason: reason}
	}
	return nil
}

// SetReadDeadline bounds the wait of Read (zero: no bound).
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// LastRead is when the last frame of any kind arrived.
func (c *Conn) LastRead() time.Time { return time.Unix(0, c.lastRead.Load()) }

// Close sends a normal close (1000) and closes the socket.
func (c *Conn) Close() error {
	_ = c.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
	return c.nc.Close()
}

// Abort closes the socket without a close frame (a dead network).
func (c *Conn) Abort() error { return c.nc.Close() }

// closeCodeOf returns the close code an error carries (0 for none).
func closeCodeOf(err error) int {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// errOf turns an error frame into an error.
func errOf(f *InFrame) error {
	if f.Error == nil {
		return parley.Errorf(parley.CodeInternal, "error frame without an error")
	}
	return &parley.Error{Code: f.Error.Code, Message: f.Error.Message}
}
