package client_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// cutProxy is a TCP proxy that closes the connection carrying the byte
// at which the client-to-server traffic passes cutAt, once.
type cutProxy struct {
	ln       net.Listener
	target   string
	cutAt    int64
	upstream atomic.Int64
	cut      atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn // closed at the end (idle keep-alive connections)
}

func newCutProxy(t *testing.T, target string, cutAt int64) *cutProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: u.Host, cutAt: cutAt}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { // server to client
			defer p.wg.Done()
			io.Copy(c, s)
			c.Close()
		}()
		go func() { // client to server, counted and cut
			defer p.wg.Done()
			defer s.Close()
			defer c.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					total := p.upstream.Add(int64(n))
					if p.cutAt > 0 && total >= p.cutAt && p.cut.CompareAndSwap(false, true) {
						keep := int64(n) - (total - p.cutAt)
						s.Write(buf[:keep])
						return // both sides closed mid-request
					}
					if _, err := s.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// Through the real server: upload 10 MB with the connection cut at 60%,
// resume, finish, send it; the other member receives the message with
// the attachment and downloads the same bytes.
func TestMediaEndToEnd(t *testing.T) {
	srv := startServer(t)
	const size = 10 << 20
	proxy := newCutProxy(t, srv.Base, size*6/10)
	alice := user(t, proxy.URL(), "alice", "laptop", client.Config{})
	bob := user(t, srv.Base, "bob", "phone", client.Config{})
	ctx := ctxFor(t, 2*time.Minute)
	conv, err := alice.CreateDirect(ctx, bob.Tokens().UserID)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "noise.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var last, backTo int64 = 0, -1
	res, err := alice.UploadFile(ctx, conv.ID, path, client.UploadOptions{ContentType: "application/octet-stream",
		Progress: func(sent, total int64) {
			if sent < last && backTo < 0 {
				backTo = sent // where the server's HEAD said to go on
			}
			last = sent
		}})
	if err != nil {
		t.Fatalf("upload: %v\nserver log:\n%s", err, srv.Logs())
	}
	if !proxy.cut.Load() || !res.Resumed {
		t.Fatalf("the upload was not cut and resumed (cut %v, %+v)", proxy.cut.Load(), res)
	}
	// The second 4 MiB chunk was cut at 6 MB: tusd kept what arrived, and
	// the upload went on from there, not from the chunk's start.
	t.Logf("cut at %d, resumed at %d", size*6/10, backTo)
	if backTo <= 4<<20 || backTo > size*6/10 {
		t.Fatalf("resumed at %d", backTo)
	}
	sum := sha256.Sum256(data)
	a := res.Attachment
	if res.State != "ready" || a == nil || a.Size != size || a.SHA256 != hex.EncodeToString(sum[:]) || a.Filename != "noise.bin" {
		t.Fatalf("upload result %+v, attachment %+v", res, a)
	}

	if err := bob.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	col := collect(bob)
	m, err := alice.SendREST(ctx, conv.ID, "the file", client.WithType(parley.MessageFile), client.WithAttachments(res.MediaID))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].MediaID != res.MediaID {
		t.Fatalf("sent %+v", m)
	}
	var got *parley.Message
	col.waitFor(t, 30*time.Second, "the message at bob", func(evs []client.Event) bool {
		for _, e := range evs {
			if e.Kind == client.EventMessage && e.Message.Seq == m.Seq && e.ConversationID == conv.ID {
				got = e.Message
				return true
			}
		}
		return false
	})
	if len(got.Attachments) != 1 {
		t.Fatalf("bob got %+v", got)
	}
	ga := got.Attachments[0]
	if ga.MediaID != res.MediaID || ga.Size != size || ga.SHA256 != a.SHA256 || ga.Filename != "noise.bin" {
		t.Fatalf("bob's attachment %+v", ga)
	}
	var buf bytes.Buffer
	n, ct, err := bob.Download(ctx, ga.MediaID, "", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || sha256.Sum256(buf.Bytes()) != sum {
		t.Fatalf("downloaded %d bytes (%s), not the same", n, ct)
	}
	// Over the WebSocket too: Send carries the attachment in the send
	// frame, and the ack has it filled in.
	small, err := alice.Upload(ctx, conv.ID, bytes.NewReader([]byte("a small note")), 12, client.UploadOptions{Filename: "note.txt"})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	wm, err := alice.Send(ctx, conv.ID, "", client.WithType(parley.MessageFile), client.WithAttachments(small.MediaID))
	if err != nil {
		t.Fatal(err)
	}
	if len(wm.Attachments) != 1 || wm.Attachments[0].MediaID != small.MediaID || wm.Attachments[0].Size != 12 || wm.Attachments[0].Filename != "note.txt" {
		t.Fatalf("ack %+v", wm)
	}
	col.waitFor(t, 30*time.Second, "the WebSocket-sent message at bob", func(evs []client.Event) bool {
		for _, e := range evs {
			if e.Kind == client.EventMessage && e.Message.Seq == wm.Seq && len(e.Message.Attachments) == 1 &&
				e.Message.Attachments[0].MediaID == small.MediaID {
				return true
			}
		}
		return false
	})
	buf.Reset()
	if _, _, err := bob.Download(ctx, small.MediaID, "", &buf); err != nil || buf.String() != "a small note" {
		t.Fatalf("small download %q %v", buf.String(), err)
	}

	// A second send of the same media is refused.
	if _, err := alice.SendREST(ctx, conv.ID, "again", client.WithAttachments(res.MediaID)); parley.ErrorCode(err) != parley.CodeInvalidRequest {
		t.Fatalf("attaching twice: %v", err)
	}
}
