package wsgate

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// pipeCore records the sends and receipts a session hands the core.
type pipeCore struct {
	fakeCore
	mu        sync.Mutex
	batches   [][]string // client_msg_ids of each SendMany, in order
	single    []string   // client_msg_ids of Send
	delivered []int64    // seqs of MarkDelivered
	read      []int64    // seqs of MarkRead
	last      int64
}

func (c *pipeCore) send(r *service.SendRequest) service.SendResult {
	if r.Body == "bad" {
		return service.SendResult{Err: parley.Errorf(parley.CodeInvalidRequest, "bad body")}
	}
	c.last++
	return service.SendResult{Message: &parley.Message{ConversationID: r.ConversationID, Seq: c.last, ClientMsgID: r.ClientMsgID, Body: r.Body}, Created: true}
}

func (c *pipeCore) SendMany(_ context.Context, _ *parley.Principal, reqs []service.SendRequest, each func(int, service.SendResult)) []service.SendResult {
	c.mu.Lock()
	var ids []string
	out := make([]service.SendResult, len(reqs))
	for i := range reqs {
		ids = append(ids, reqs[i].ClientMsgID)
		out[i] = c.send(&reqs[i])
	}
	c.batches = append(c.batches, ids)
	c.mu.Unlock()
	for i, r := range out {
		each(i, r)
	}
	return out
}

func (c *pipeCore) Send(_ context.Context, _ *parley.Principal, req service.SendRequest) (*parley.Message, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.single = append(c.single, req.ClientMsgID)
	r := c.send(&req)
	return r.Message, r.Created, r.Err
}

func (c *pipeCore) MarkDelivered(_ context.Context, _ *parley.Principal, conv string, seq int64) (parley.Watermark, parley.Watermark, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conv == "gone" {
		return parley.Watermark{}, parley.Watermark{}, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	c.delivered = append(c.delivered, seq)
	return parley.Watermark{Seq: seq, Raised: true}, parley.Watermark{Seq: seq, Raised: true}, nil
}

func (c *pipeCore) MarkRead(_ context.Context, _ *parley.Principal, _ string, seq int64) (parley.Watermark, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read = append(c.read, seq)
	return parley.Watermark{Seq: seq, Raised: true}, nil
}

// replies returns the id and type of each frame written but ready.
func (r *recorder) replies(t *testing.T) []string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, f := range r.frames {
		var m struct {
			Type  string
			ID    string
			Error struct{ Code string }
		}
		if err := json.Unmarshal(f, &m); err != nil {
			t.Fatal(err)
		}
		switch m.Type {
		case FrameReady:
		case FrameError:
			out = append(out, m.ID+":"+m.Error.Code)
		default:
			out = append(out, m.ID+":"+m.Type)
		}
	}
	return out
}

// TestPipelinedSends: sends a client pipelines on one connection reach
// the core together (one SendMany, so one group commit), in order; their
// acks come back in order, a send the core refuses gets its error in its
// place, a malformed frame its error at once; receipts of one kind and
// conversation become one raise to the highest seq, after the sends.
func TestPipelinedSends(t *testing.T) {
	core := &pipeCore{}
	h := newTestHub(t, &core.fakeCore)
	h.g.core = core
	r := &recorder{}
	s := newSession(h.g, &parley.Principal{UserID: "u", DeviceID: "d", ExpiresAt: time.Now().Add(time.Hour)})
	s.setConn(r)
	h.g.sessions.Add(1)
	h.begin(s)
	// Everything below arrives before live delivery is ready, so it is
	// all queued when the session starts running requests.
	in := func(f string) { s.receive(websocket.TextMessage, []byte(f)) }
	send := func(id, body string) {
		in(fmt.Sprintf(`{"type":"send","id":%q,"conversation_id":"c","client_msg_id":"cm%s","body":%q}`, id, id, body))
	}
	receipt := func(typ, id, conv string, seq int) {
		in(fmt.Sprintf(`{"type":%q,"id":%q,"conversation_id":%q,"seq":%d}`, typ, id, conv, seq))
	}
	send("1", "one")
	receipt(FrameDelivered, "d1", "c", 3)
	send("2", "two")
	in(`{"type":"send","id":"x",`) // malformed: answered at once
	send("3", "bad")
	receipt(FrameDelivered, "d2", "c", 5)
	receipt(FrameRead, "r1", "c", 4)
	receipt(FrameDelivered, "d3", "c", 4) // lower than d2: the highest wins
	receipt(FrameDelivered, "g1", "gone", 1)
	receipt(FrameDelivered, "g2", "gone", 2)
	send("4", "four")
	receipt(FrameRead, "r2", "c", 2)
	h.finish(s, map[string]int64{})

	want := []string{":invalid_request", "1:ack", "2:ack", "3:invalid_request", "4:ack", "g1:conversation_not_found", "g2:conversation_not_found"}
	deadline := time.Now().Add(10 * time.Second)
	for len(r.replies(t)) < len(want) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := r.replies(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replies %v, want %v", got, want)
	}
	core.mu.Lock()
	defer core.mu.Unlock()
	if fmt.Sprint(core.batches) != "[[cm1 cm2 cm3 cm4]]" || len(core.single) != 0 {
		t.Fatalf("sends reached the core as SendMany %v and Send %v, want one SendMany of all four in order", core.batches, core.single)
	}
	if fmt.Sprint(core.delivered) != "[5]" || fmt.Sprint(core.read) != "[4]" {
		t.Fatalf("receipts: delivered %v, read %v; want one of each at the highest seq", core.delivered, core.read)
	}
}

// TestSendAloneUsesSend: a send with nothing queued beside it runs as
// before, alone.
func TestSendAloneUsesSend(t *testing.T) {
	core := &pipeCore{}
	h := newTestHub(t, &core.fakeCore)
	h.g.core = core
	r := &recorder{}
	s := newSession(h.g, &parley.Principal{UserID: "u", DeviceID: "d", ExpiresAt: time.Now().Add(time.Hour)})
	s.setConn(r)
	h.g.sessions.Add(1)
	h.begin(s)
	h.finish(s, map[string]int64{})
	s.receive(websocket.TextMessage, []byte(`{"type":"send","id":"1","conversation_id":"c","client_msg_id":"a","body":"x"}`))
	deadline := time.Now().Add(10 * time.Second)
	for len(r.replies(t)) < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	core.mu.Lock()
	defer core.mu.Unlock()
	if got := r.replies(t); fmt.Sprint(got) != "[1:ack]" || fmt.Sprint(core.single) != "[a]" || len(core.batches) != 0 {
		t.Fatalf("replies %v, Send %v, SendMany %v", got, core.single, core.batches)
	}
}
