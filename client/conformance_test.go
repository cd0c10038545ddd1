package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// TestConformance runs the shared protocol scenarios of
// testdata/conformance (README.md there says what they mean) against the
// Go SDK, with this file playing the server. The TypeScript SDK runs the
// same files (clients/sdk/test/conformance).
func TestConformance(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "conformance", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata/conformance")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var sc scenario
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&sc); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			runScenario(t, name, &sc)
		})
	}
}

type scenario struct {
	Description string         `json:"description"`
	State       scenarioState  `json:"state"`
	Ignore      []string       `json:"ignore"`
	Events      []string       `json:"events"`
	Steps       []scenarioStep `json:"steps"`
}

type scenarioState struct {
	UserID          string            `json:"user_id"`
	DeviceID        string            `json:"device_id"`
	AccessToken     string            `json:"access_token"`
	RefreshToken    string            `json:"refresh_token"`
	AccessExpiresIn int               `json:"access_expires_in"`
	Position        string            `json:"position"`
	Held            map[string]int64  `json:"held"`
	Outbox          []json.RawMessage `json:"outbox"`
}

type scenarioStep struct {
	SDK       string `json:"sdk"`
	Note      string `json:"note"`
	TimeoutMs int    `json:"timeout_ms"`

	Action        map[string]any `json:"action"`
	ExpectConnect map[string]any `json:"expect_connect"`
	Server        map[string]any `json:"server"`
	Expect        map[string]any `json:"expect"`
	Event         map[string]any `json:"event"`
	Rest          *restStep      `json:"rest"`
	Disconnect    *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"disconnect"`
	ExpectClose map[string]any `json:"expect_close"`
	NoFrame     *struct {
		Ms int `json:"ms"`
	} `json:"no_frame"`
	State map[string]any `json:"state"`
}

type restStep struct {
	Method   string         `json:"method"`
	Path     string         `json:"path"`
	Request  map[string]any `json:"request"`
	Status   int            `json:"status"`
	Response any            `json:"response"`
}

// kind names the one step key that is set.
func (s *scenarioStep) kind() string {
	var kinds []string
	add := func(set bool, k string) {
		if set {
			kinds = append(kinds, k)
		}
	}
	add(s.Action != nil, "action")
	add(s.ExpectConnect != nil, "expect_connect")
	add(s.Server != nil, "server")
	add(s.Expect != nil, "expect")
	add(s.Event != nil, "event")
	add(s.Rest != nil, "rest")
	add(s.Disconnect != nil, "disconnect")
	add(s.ExpectClose != nil, "expect_close")
	add(s.NoFrame != nil, "no_frame")
	add(s.State != nil, "state")
	if len(kinds) != 1 {
		return fmt.Sprintf("invalid(%v)", kinds)
	}
	return kinds[0]
}

// fakeServer is the server side of one scenario: /v1/ws and REST.
type fakeServer struct {
	srv   *httptest.Server
	conns chan *fakeConn
	rests chan *restCall
}

type restCall struct {
	method, path string
	body         map[string]any
	reply        chan restReply
}

type restReply struct {
	status int
	body   []byte
}

// fakeConn is one WebSocket the SDK opened.
type fakeConn struct {
	token  string
	nc     net.Conn
	wmu    sync.Mutex
	frames chan map[string]any // client frames, pings answered and left out
	closed chan int            // the client's close code (1006: no close frame)
}

func newFakeServer(t *testing.T) *fakeServer {
	fs := &fakeServer{conns: make(chan *fakeConn, 16), rests: make(chan *restCall, 16)}
	fs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/ws" {
			token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok {
				http.Error(w, `{"error":{"code":"unauthorized","message":"no token"}}`, http.StatusUnauthorized)
				return
			}
			nc, _, _, err := ws.UpgradeHTTP(r, w)
			if err != nil {
				return
			}
			fc := &fakeConn{token: token, nc: nc, frames: make(chan map[string]any, 256), closed: make(chan int, 1)}
			go fc.read()
			fs.conns <- fc
			return
		}
		var body map[string]any
		data, _ := io.ReadAll(r.Body)
		if len(data) > 0 {
			_ = json.Unmarshal(data, &body)
		}
		call := &restCall{method: r.Method, path: r.URL.Path, body: body, reply: make(chan restReply, 1)}
		fs.rests <- call
		select {
		case rep := <-call.reply:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(rep.status)
			_, _ = w.Write(rep.body)
		case <-time.After(10 * time.Second):
			http.Error(w, `{"error":{"code":"internal","message":"the scenario did not answer"}}`, http.StatusInternalServerError)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(fs.srv.Close)
	return fs
}

func (fc *fakeConn) read() {
	for {
		data, op, err := wsutil.ReadClientData(fc.nc)
		if err != nil {
			code := 1006
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				code = int(ce.Code)
			}
			fc.closed <- code
			close(fc.frames)
			return
		}
		if op != ws.OpText {
			continue
		}
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			f = map[string]any{"type": "<undecodable>", "raw": string(data)}
		}
		if f["type"] == "ping" {
			pong := map[string]any{"type": "pong"}
			if id, ok := f["id"]; ok {
				pong["id"] = id
			}
			_ = fc.write(pong)
			continue
		}
		fc.frames <- f
	}
}

func (fc *fakeConn) write(f map[string]any) error {
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	return wsutil.WriteServerText(fc.nc, data)
}

func (fc *fakeConn) disconnect(code int, reason string) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	if code != 0 {
		_ = ws.WriteFrame(fc.nc, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), reason)))
	}
	_ = fc.nc.Close()
}

// eventLog keeps the SDK's events, normalised, in one queue per kind.
type eventLog struct {
	mu      sync.Mutex
	watched map[string]bool
	queues  map[string][]map[string]any
	wake    chan struct{}
}

func (l *eventLog) add(evs ...map[string]any) {
	l.mu.Lock()
	for _, e := range evs {
		k, _ := e["kind"].(string)
		if l.watched[k] {
			l.queues[k] = append(l.queues[k], e)
		}
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *eventLog) take(kind string, timeout time.Duration) (map[string]any, bool) {
	deadline := time.Now().Add(timeout)
	for {
		l.mu.Lock()
		if q := l.queues[kind]; len(q) > 0 {
			l.queues[kind] = q[1:]
			l.mu.Unlock()
			return q[0], true
		}
		l.mu.Unlock()
		left := time.Until(deadline)
		if left <= 0 {
			return nil, false
		}
		select {
		case <-l.wake:
		case <-time.After(min(left, 20*time.Millisecond)):
		}
	}
}

func (l *eventLog) leftover() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	kinds := make([]string, 0, len(l.queues))
	for k := range l.queues {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		out = append(out, l.queues[k]...)
	}
	return out
}

// normalise turns a Go SDK event into the suite's shape (README.md, Events).
func normalise(e client.Event, me string) []map[string]any {
	msg := func(kind string, m *parley.Message) map[string]any {
		out := map[string]any{"kind": kind, "conversation_id": m.ConversationID, "seq": m.Seq, "body": m.Body,
			"client_msg_id": m.ClientMsgID, "sender_id": m.SenderID}
		if m.Deleted {
			out["deleted"] = true
		}
		if !m.EditedAt.IsZero() {
			out["edited_at"] = m.EditedAt.UTC().Format(time.RFC3339Nano)
		}
		return out
	}
	switch e.Kind {
	case client.EventConnected:
		return []map[string]any{{"kind": "connected", "reconnect": e.Reconnect}}
	case client.EventSynced:
		return []map[string]any{{"kind": "synced"}}
	case client.EventDisconnected:
		out := map[string]any{"kind": "disconnected"}
		var ce *client.CloseError
		if errors.As(e.Err, &ce) {
			out["code"] = ce.Code
		}
		return []map[string]any{out}
	case client.EventStopped:
		var ce *client.CloseError
		code := parley.ErrorCode(e.Err)
		if (errors.As(e.Err, &ce) && ce.Code == 4003) || code == parley.CodeUnauthorized || code == parley.CodeSuspended {
			return []map[string]any{{"kind": "session_ended"}, {"kind": "stopped"}}
		}
		return []map[string]any{{"kind": "stopped"}}
	case client.EventMessage:
		return []map[string]any{msg("message", e.Message)}
	case client.EventMessageChanged:
		return []map[string]any{msg("message_changed", e.Message)}
	case client.EventReceipt:
		r := e.Receipt
		return []map[string]any{{"kind": "receipt", "conversation_id": r.ConversationID, "user_id": r.UserID, "device_id": r.DeviceID,
			"receipt": r.Kind, "seq": r.Seq}}
	case client.EventTyping:
		return []map[string]any{{"kind": "typing", "conversation_id": e.Typing.ConversationID, "user_id": e.Typing.UserID, "state": e.Typing.State}}
	case client.EventPresence:
		out := map[string]any{"kind": "presence", "user_id": e.Presence.UserID, "state": e.Presence.State}
		if !e.Presence.LastSeen.IsZero() {
			out["last_seen"] = e.Presence.LastSeen.UTC().Format(time.RFC3339Nano)
		}
		return []map[string]any{out}
	case client.EventConversation:
		ch := e.Conversation
		aboutMe := false
		for _, u := range ch.UserIDs {
			aboutMe = aboutMe || u == me
		}
		if ch.Action == "removed" || ch.Action == "deleted" || (ch.Action == "member_removed" && aboutMe) {
			return []map[string]any{{"kind": "conversation_removed", "conversation_id": e.ConversationID}}
		}
		return []map[string]any{{"kind": "conversation", "conversation_id": e.ConversationID, "action": ch.Action}}
	case client.EventSendFailed:
		return []map[string]any{{"kind": "send_failed", "conversation_id": e.Pending.ConversationID, "client_msg_id": e.Pending.ClientMsgID,
			"code": string(parley.ErrorCode(e.Err))}}
	case client.EventStale:
		return []map[string]any{{"kind": "stale", "conversation_id": e.ConversationID, "seq": e.Seq}}
	}
	return nil
}

// runner drives one scenario.
type runner struct {
	t       *testing.T
	name    string
	sc      *scenario
	fs      *fakeServer
	c       *client.Client
	log     *eventLog
	ignore  map[string]bool
	caps    map[string]any
	conn    *fakeConn
	me      string
	device  string
	stepIdx int
	stepTag string
	ctx     context.Context
}

func (r *runner) failf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("scenario %s, step %d (%s): %s", r.name, r.stepIdx, r.stepTag, fmt.Sprintf(format, args...))
}

func runScenario(t *testing.T, name string, sc *scenario) {
	st := sc.State
	if st.UserID == "" {
		st.UserID = "u-me"
	}
	if st.DeviceID == "" {
		st.DeviceID = "d-me"
	}
	if st.AccessToken == "" {
		st.AccessToken = "at-1"
	}
	if st.RefreshToken == "" {
		st.RefreshToken = "rt-1"
	}
	if st.AccessExpiresIn == 0 {
		st.AccessExpiresIn = 900
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := &runner{t: t, name: name, sc: sc, fs: newFakeServer(t), caps: map[string]any{}, me: st.UserID, device: st.DeviceID,
		ignore: map[string]bool{}, ctx: ctx}
	for _, k := range sc.Ignore {
		r.ignore[k] = true
	}
	watched := map[string]bool{}
	for _, k := range sc.Events {
		watched[k] = true
	}
	for i := range sc.Steps {
		if s := &sc.Steps[i]; s.Event != nil && (s.SDK == "" || s.SDK == "go") {
			k, _ := s.Event["kind"].(string)
			watched[k] = true
		}
	}
	r.log = &eventLog{watched: watched, queues: map[string][]map[string]any{}, wake: make(chan struct{}, 1)}
	state := &client.State{Position: st.Position, Held: st.Held}
	for _, raw := range st.Outbox {
		var e client.OutboxEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("scenario %s: state.outbox: %v", name, err)
		}
		if e.Type == "" {
			e.Type = parley.MessageText
		}
		state.Outbox = append(state.Outbox, e)
	}
	me := st.UserID
	r.c = client.New(client.Config{
		Server: r.fs.srv.URL,
		Tokens: &client.Tokens{UserID: st.UserID, DeviceID: st.DeviceID, AccessToken: st.AccessToken, RefreshToken: st.RefreshToken,
			AccessExpires: time.Now().Add(time.Duration(st.AccessExpiresIn) * time.Second)},
		State:          state,
		OnEvent:        func(e client.Event) { r.log.add(normalise(e, me)...) },
		BackoffMin:     10 * time.Millisecond,
		BackoffMax:     50 * time.Millisecond,
		DeliveredDelay: 300 * time.Millisecond,
	})
	defer func() {
		done := make(chan struct{})
		go func() { _ = r.c.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("scenario %s: Close did not return", name)
		}
	}()
	for i := range sc.Steps {
		s := &sc.Steps[i]
		if s.SDK != "" && s.SDK != "go" {
			continue
		}
		r.stepIdx, r.stepTag = i, s.kind()
		r.step(s)
	}
	r.stepIdx, r.stepTag = len(sc.Steps), "end"
	r.quiet(300*time.Millisecond, true)
}

func (r *runner) timeout(s *scenarioStep) time.Duration {
	if s.TimeoutMs > 0 {
		return time.Duration(s.TimeoutMs) * time.Millisecond
	}
	return 5 * time.Second
}

func (r *runner) step(s *scenarioStep) {
	r.t.Helper()
	switch r.stepTag {
	case "action":
		r.action(s.Action)
	case "expect_connect":
		select {
		case fc := <-r.fs.conns:
			r.conn = fc
			if want, ok := s.ExpectConnect["token"]; ok && want != fc.token {
				r.failf("the socket was opened with token %q, want %q", fc.token, want)
			}
		case <-time.After(r.timeout(s)):
			r.failf("no new socket within %v%s", r.timeout(s), r.pendingREST())
		}
	case "server":
		if r.conn == nil {
			r.failf("no socket to send on")
		}
		f, err := substitute(s.Server, r.caps)
		if err != nil {
			r.failf("%v", err)
		}
		fillDefaults(f.(map[string]any), r.me, r.device)
		if err := r.conn.write(f.(map[string]any)); err != nil {
			r.failf("writing %v: %v", f, err)
		}
	case "expect":
		f := r.nextFrame(r.timeout(s))
		if f == nil {
			r.failf("no client frame within %v, want %s%s", r.timeout(s), js(s.Expect), r.pendingREST())
		}
		if err := match(s.Expect, f, r.caps, ""); err != nil {
			r.failf("client frame %s does not match %s: %v", js(f), js(s.Expect), err)
		}
	case "event":
		kind, _ := s.Event["kind"].(string)
		e, ok := r.log.take(kind, r.timeout(s))
		if !ok {
			r.failf("no %s event within %v, want %s", kind, r.timeout(s), js(s.Event))
		}
		if err := match(s.Event, e, r.caps, ""); err != nil {
			r.failf("event %s does not match %s: %v", js(e), js(s.Event), err)
		}
	case "rest":
		r.rest(s)
	case "disconnect":
		if r.conn == nil {
			r.failf("no socket to drop")
		}
		r.conn.disconnect(s.Disconnect.Code, s.Disconnect.Reason)
	case "expect_close":
		if r.conn == nil {
			r.failf("no socket")
		}
		deadline := time.After(r.timeout(s))
		for {
			select {
			case f, ok := <-r.conn.frames: // a nil channel (ended) never fires
				if !ok {
					r.conn.frames = nil
					continue
				}
				if !r.ignore[str(f["type"])] {
					r.failf("client frame %s while waiting for the close", js(f))
				}
			case code := <-r.conn.closed:
				if want, ok := s.ExpectClose["code"]; ok && !numEqual(want, code) {
					r.failf("the SDK closed with %d, want %v", code, want)
				}
				return
			case <-deadline:
				r.failf("the SDK did not close the socket within %v", r.timeout(s))
			}
		}
	case "no_frame":
		r.quiet(time.Duration(s.NoFrame.Ms)*time.Millisecond, false)
	case "state":
		r.checkState(s)
	default:
		r.failf("a step needs exactly one of action, expect_connect, server, expect, event, rest, disconnect, expect_close, no_frame, state")
	}
}

// nextFrame returns the next client frame on the newest socket that is
// not ignored (nil on timeout or when the socket ended).
func (r *runner) nextFrame(d time.Duration) map[string]any {
	if r.conn == nil {
		time.Sleep(d)
		return nil
	}
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-r.conn.frames:
			if !ok {
				r.conn.frames = nil // closed: wait out the deadline
				continue
			}
			if r.ignore[str(f["type"])] {
				continue
			}
			return f
		case <-deadline:
			return nil
		}
	}
}

// quiet checks that nothing happens for d: no client frame, socket or
// REST call (and, at the end, no unconsumed watched event).
func (r *runner) quiet(d time.Duration, end bool) {
	r.t.Helper()
	if f := r.nextFrame(d); f != nil {
		r.failf("unexpected client frame %s", js(f))
	}
	select {
	case fc := <-r.fs.conns:
		r.failf("unexpected new socket (token %q)", fc.token)
	default:
	}
	select {
	case call := <-r.fs.rests:
		call.reply <- restReply{status: 500, body: []byte(`{"error":{"code":"internal","message":"unexpected"}}`)}
		r.failf("unexpected REST call %s %s %s", call.method, call.path, js(call.body))
	default:
	}
	if end {
		if left := r.log.leftover(); len(left) > 0 {
			r.failf("events left unconsumed: %s", js(left))
		}
	}
}

func (r *runner) pendingREST() string {
	select {
	case call := <-r.fs.rests:
		call.reply <- restReply{status: 500, body: []byte(`{"error":{"code":"internal","message":"unexpected"}}`)}
		return fmt.Sprintf(" (meanwhile an unexpected REST call: %s %s %s)", call.method, call.path, js(call.body))
	default:
		return ""
	}
}

func (r *runner) rest(s *scenarioStep) {
	r.t.Helper()
	rs := s.Rest
	var call *restCall
	select {
	case call = <-r.fs.rests:
	case <-time.After(r.timeout(s)):
		r.failf("no REST call within %v, want %s %s", r.timeout(s), rs.Method, rs.Path)
	}
	status := rs.Status
	if status == 0 {
		status = 200
	}
	var body []byte
	if rs.Response != nil {
		resp, err := substitute(rs.Response, r.caps)
		if err != nil {
			r.failf("%v", err)
		}
		body, _ = json.Marshal(resp)
	}
	call.reply <- restReply{status: status, body: body}
	if call.method != rs.Method || call.path != rs.Path {
		r.failf("REST call %s %s, want %s %s", call.method, call.path, rs.Method, rs.Path)
	}
	if rs.Request != nil {
		if err := match(rs.Request, call.body, r.caps, ""); err != nil {
			r.failf("REST body %s does not match %s: %v", js(call.body), js(rs.Request), err)
		}
	}
}

func (r *runner) action(a map[string]any) {
	r.t.Helper()
	str := func(k string) string { s, _ := a[k].(string); return s }
	// Calls that block (Connect, MarkRead) run on their own goroutine:
	// the scenario answers them in later steps.
	switch str("do") {
	case "connect":
		go func() { _ = r.c.Connect(r.ctx) }()
	case "send":
		opts := []client.SendOption{}
		if id := str("client_msg_id"); id != "" {
			opts = append(opts, client.WithClientMsgID(id))
		}
		r.c.Enqueue(str("conversation_id"), str("body"), opts...)
	case "read":
		seq, _ := a["seq"].(float64)
		go func() { _ = r.c.MarkRead(r.ctx, str("conversation_id"), int64(seq)) }()
	case "typing":
		r.c.Typing(str("conversation_id"), str("state"))
	case "close":
		go func() { _ = r.c.Close() }()
	default:
		r.failf("unknown action %q", str("do"))
	}
}

func (r *runner) checkState(s *scenarioStep) {
	r.t.Helper()
	deadline := time.Now().Add(r.timeout(s))
	for {
		st, err := r.c.State(r.ctx)
		if err != nil {
			r.failf("State: %v", err)
		}
		got := map[string]any{}
		if _, ok := s.State["position"]; ok {
			got["position"] = st.Position
		}
		if _, ok := s.State["outbox"]; ok {
			ids := []any{}
			for _, e := range st.Outbox {
				ids = append(ids, e.ClientMsgID)
			}
			got["outbox"] = ids
		}
		if want, ok := s.State["conversations"].(map[string]any); ok {
			convs := map[string]any{}
			for id := range want {
				_, held := st.Held[id]
				convs[id] = held
			}
			got["conversations"] = convs
		}
		err = match(s.State, normaliseJSON(got), map[string]any{}, "")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.failf("state %s does not match %s: %v", js(got), js(s.State), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// match checks actual against pattern (README.md, Matching), binding
// captures in caps.
func match(pattern, actual any, caps map[string]any, path string) error {
	actual = normaliseJSON(actual)
	switch p := pattern.(type) {
	case nil:
		if actual == nil || actual == "" {
			return nil
		}
		return fmt.Errorf("%s: got %s, want absent or empty", where(path), js(actual))
	case string:
		if strings.HasPrefix(p, "$") && len(p) > 1 {
			if v, ok := caps[p]; ok {
				if !reflect.DeepEqual(v, actual) {
					return fmt.Errorf("%s: got %s, want %s = %s", where(path), js(actual), p, js(v))
				}
				return nil
			}
			if actual == nil {
				return fmt.Errorf("%s: absent, want a value for %s", where(path), p)
			}
			caps[p] = actual
			return nil
		}
		if actual != p {
			return fmt.Errorf("%s: got %s, want %q", where(path), js(actual), p)
		}
	case float64, int, int64, bool:
		if !reflect.DeepEqual(normaliseJSON(p), actual) {
			return fmt.Errorf("%s: got %s, want %s", where(path), js(actual), js(p))
		}
	case map[string]any:
		a, ok := actual.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %s, want an object", where(path), js(actual))
		}
		keys := make([]string, 0, len(p))
		for k := range p {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := match(p[k], a[k], caps, path+"."+k); err != nil {
				return err
			}
		}
	case []any:
		a, ok := actual.([]any)
		if !ok {
			if actual == nil && len(p) == 0 {
				return nil
			}
			return fmt.Errorf("%s: got %s, want an array", where(path), js(actual))
		}
		if len(a) != len(p) {
			return fmt.Errorf("%s: got %d elements %s, want %d", where(path), len(a), js(a), len(p))
		}
		for i := range p {
			if err := match(p[i], a[i], caps, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s: unsupported pattern %T", where(path), pattern)
	}
	return nil
}

func where(path string) string {
	if path == "" {
		return "value"
	}
	return strings.TrimPrefix(path, ".")
}

// normaliseJSON round-trips v through JSON, so that numbers are float64
// and structs are maps.
func normaliseJSON(v any) any {
	switch v.(type) {
	case nil, string, float64, bool:
		return v
	}
	data, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(data, &out)
	return out
}

func numEqual(a any, b int) bool {
	f, ok := a.(float64)
	return ok && int(f) == b
}

// nowPattern is a time relative to now in a server frame: "$now+120s".
var nowPattern = regexp.MustCompile(`^\$now\+(\d+)s$`)

// substitute replaces "$name" strings with their captured values, and
// "$now+Ns" with the time N seconds from now.
func substitute(v any, caps map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		if m := nowPattern.FindStringSubmatch(x); m != nil {
			secs, _ := strconv.Atoi(m[1])
			return time.Now().Add(time.Duration(secs) * time.Second).UTC().Format(time.RFC3339), nil
		}
		if strings.HasPrefix(x, "$") && len(x) > 1 {
			val, ok := caps[x]
			if !ok {
				return nil, fmt.Errorf("%s is not captured yet", x)
			}
			return val, nil
		}
		return x, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			s, err := substitute(e, caps)
			if err != nil {
				return nil, err
			}
			out[k] = s
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			s, err := substitute(e, caps)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}
	return v, nil
}

// fillDefaults completes a server frame (README.md, Defaults).
func fillDefaults(f map[string]any, me, device string) {
	def := func(m map[string]any, k string, v any) {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	switch f["type"] {
	case "ready":
		def(f, "user_id", me)
		def(f, "device_id", device)
		def(f, "ping_interval", 25)
		def(f, "token_expires_at", "2036-01-01T00:00:00Z")
		def(f, "max_frame_bytes", 131072)
	case "message", "ack":
		if m, ok := f["message"].(map[string]any); ok {
			fillMessage(m)
		}
	case "history_result":
		for _, m := range asList(f["messages"]) {
			fillMessage(m)
		}
	case "sync_result":
		def(f, "has_more", false)
		for _, e := range asList(f["conversations"]) {
			def(e, "read_seq", 0)
			def(e, "unread_count", 0)
			def(e, "messages", []any{})
			last := 0.0
			for _, m := range asList(e["messages"]) {
				fillMessage(m)
				if s, _ := m["seq"].(float64); s > last {
					last = s
				}
			}
			if c, ok := e["conversation"].(map[string]any); ok && e["removed"] != true {
				fillConversation(c, me, last)
			}
		}
	case "conversation":
		if c, ok := f["conversation"].(map[string]any); ok && f["action"] != "deleted" {
			fillConversation(c, me, 0)
		}
	}
}

func asList(v any) []map[string]any {
	l, _ := v.([]any)
	out := make([]map[string]any, 0, len(l))
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func fillMessage(m map[string]any) {
	conv, _ := m["conversation_id"].(string)
	seq := m["seq"]
	def := func(k string, v any) {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	def("id", fmt.Sprintf("m-%s-%v", conv, seq))
	def("sender_id", "u-bob")
	def("sender_device_id", "d-bob")
	def("client_msg_id", fmt.Sprintf("cm-%s-%v", conv, seq))
	def("type", "text")
	def("body", fmt.Sprintf("message %v", seq))
	def("created_at", "2026-11-27T09:00:00Z")
}

func fillConversation(c map[string]any, me string, lastSeq float64) {
	def := func(k string, v any) {
		if _, ok := c[k]; !ok {
			c[k] = v
		}
	}
	def("kind", "direct")
	def("title", "")
	def("created_at", "2026-11-27T08:00:00Z")
	def("last_seq", lastSeq)
	member := func(u string) map[string]any {
		return map[string]any{"user_id": u, "role": "member", "read_seq": 0, "delivered_seq": 0, "joined_at": c["created_at"]}
	}
	def("members", []any{member(me), member("u-bob")})
}

func str(v any) string { s, _ := v.(string); return s }

func js(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSpace(buf.String())
}
