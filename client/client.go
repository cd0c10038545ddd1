// Package client is the Go SDK for Parley: accounts and tokens over REST,
// and a WebSocket connection that reconnects by itself, resumes with the
// sync position, retries unacknowledged sends with their client_msg_id,
// drops duplicates, hands messages to the app in seq order per
// conversation, and reports delivery. It implements the client algorithm
// of docs/protocol.md, section 7.
//
// A Client is one device of one user. Typical use:
//
//	c := client.New(client.Config{Server: "http://127.0.0.1:8080"})
//	if err := c.Login(ctx, "alice", "correct horse battery", "laptop"); err != nil { ... }
//	if err := c.Connect(ctx); err != nil { ... }
//	defer c.Close()
//	go func() {
//		for ev := range c.Events() {
//			if ev.Kind == client.EventMessage { fmt.Println(ev.Message.Body) }
//		}
//	}()
//	msg, err := c.Send(ctx, conversationID, "hello")
//
// Media: UploadFile and Upload send a file over tus 1.0.0 at /v1/uploads
// in chunks, resuming after a dropped connection at the offset HEAD
// reports (and across process restarts with a ResumeStore); send it with
// WithAttachments(result.MediaID). Download fetches a media item through
// the signed link GET /v1/media/{id} redirects to, resuming with Range.
// Limits: an upload's size must be known up front (tus deferred length is
// not used), uploads are not parallelised (one PATCH at a time), and
// downloads write to an io.Writer, so a resume after a process restart is
// the caller's (a new Download starts at byte 0).
//
// End-to-end encryption (docs/design/e2ee.md): with Config.KeyStore set,
// Login makes the device's keys and publishes them, and the client
// encrypts what it sends to conversations created with e2ee
// (CreateDirectE2EE, CreateGroupE2EE) and decrypts what it receives;
// Event.E2EE and MessagePage.E2EE say how each encrypted message opened,
// and an undecryptable one is handed over with its reason, never dropped.
// Uploads to such conversations are encrypted on the device, and Download
// decrypts them. SafetyNumber and MarkVerified verify contacts.
//
// Every method that talks to the server takes a context. Methods are safe
// for concurrent use.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/e2ee"
)

// Config configures a Client. Only Server is required.
type Config struct {
	// Server is the base URL of parleyd: http://host:port or https://...
	Server string
	// HTTPClient makes the REST calls (default: a client with a 30 s
	// timeout).
	HTTPClient *http.Client
	// Platform is reported at login (default "cli").
	Platform parley.Platform
	// DeviceToken is the known-device token of an earlier login on this
	// device (Tokens.DeviceToken), for Login when Tokens has none.
	DeviceToken string
	// Tokens resumes a saved login (see Tokens and OnTokens).
	Tokens *Tokens
	// OnTokens is called with the new tokens after every login and
	// refresh, so the app can store them (refresh tokens rotate: the old
	// one stops working). It runs on the goroutine that refreshed, while
	// the client holds its token lock (so saves come in order): it must
	// not call the Client.
	OnTokens func(Tokens)
	// State resumes a saved realtime state: the sync position, what is
	// held per conversation, and the outbox (see Client.State).
	State *State
	// OnEvent, if set, receives every event on the client's connection
	// goroutine instead of the Events channel; it must return quickly.
	OnEvent func(Event)
	// EventBuffer is the Events channel's capacity (default 1024). Past
	// it, events wait in a queue in memory: the connection loop never
	// waits for the app, so acks, State and reconnects go on while the app
	// is busy.
	EventBuffer int
	// SyncLimit is the number of messages per conversation a sync asks for
	// (default 50, at most 100).
	SyncLimit int
	// BackoffMin and BackoffMax bound the reconnect delay, exponential with
	// full jitter (defaults 500 ms and 30 s).
	BackoffMin, BackoffMax time.Duration
	// ShutdownSpread bounds the random delay before reconnecting after
	// the server closed with 1001 (shutting down; default 5 s, as
	// protocol.md section 13 asks), so that a node's clients do not all
	// reconnect at the same moment. Negative: no extra delay.
	ShutdownSpread time.Duration
	// DeliveredDelay debounces delivered reports per conversation during
	// live traffic (default 500 ms; negative: report every message at
	// once). After a sync they are sent at once.
	DeliveredDelay time.Duration
	// MaxInFlight bounds sends awaiting their ack (default 16).
	MaxInFlight int
	// Logger gets connection-level news (default: discard).
	Logger *slog.Logger
	// KeyStore keeps this device's end-to-end encryption keys (see
	// e2ee.go): FileKeyStore for a device that lives on, MemoryKeyStore
	// for one that dies with the process. Without one the client has no
	// keys: it cannot send to e2ee conversations (the send fails) and
	// shows their messages as undecryptable (no_key).
	KeyStore KeyStore
	// KeyPolicy says how often to rotate the HPKE key and how long to keep
	// old keys and the content keys of sent messages (defaults: 7 days
	// each, e2ee.DefaultRotate and e2ee.DefaultGrace).
	KeyPolicy e2ee.Policy
}

// Tokens is a login: the user and device it belongs to, a short-lived
// access token and the refresh token that renews it.
type Tokens struct {
	UserID        string    `json:"user_id"`
	DeviceID      string    `json:"device_id"`
	AccessToken   string    `json:"access_token"`
	AccessExpires time.Time `json:"access_expires"`
	RefreshToken  string    `json:"refresh_token"`
	// DeviceToken is the known-device token of the last login: Login
	// sends it, so that this device's logins are rate-limited apart from
	// strangers guessing the password. Keep it after a logout too.
	DeviceToken string `json:"device_token,omitempty"`
}

// Client is one device's connection to Parley.
type Client struct {
	cfg  Config
	http *http.Client
	log  *slog.Logger

	tokMu  sync.Mutex // held while refreshing, so refreshes never race
	tokens Tokens
	margin time.Duration // refresh this long before expiry

	rt *realtime // the WebSocket side, once Connect was called
	mu sync.Mutex

	crypt *crypt // end-to-end encryption
}

// New makes a client; it does not contact the server.
func New(cfg Config) *Client {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Platform == "" {
		cfg.Platform = parley.PlatformCLI
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = 1024
	}
	if cfg.SyncLimit <= 0 || cfg.SyncLimit > 100 {
		cfg.SyncLimit = 50
	}
	if cfg.ShutdownSpread == 0 {
		cfg.ShutdownSpread = 5 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 500 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(30*time.Second, cfg.BackoffMin)
	}
	if cfg.DeliveredDelay == 0 {
		cfg.DeliveredDelay = 500 * time.Millisecond
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Server = strings.TrimRight(cfg.Server, "/")
	c := &Client{cfg: cfg, http: cfg.HTTPClient, log: cfg.Logger}
	if cfg.Tokens != nil {
		c.tokens = *cfg.Tokens
	}
	c.crypt = newCrypt(c)
	return c
}

// Tokens returns the current login (zero before Login).
func (c *Client) Tokens() Tokens {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	return c.tokens
}

func (c *Client) setTokens(s sessionResponse) Tokens {
	t := Tokens{UserID: s.UserID, DeviceID: s.DeviceID, AccessToken: s.AccessToken,
		AccessExpires: time.Now().Add(time.Duration(s.ExpiresIn) * time.Second), RefreshToken: s.RefreshToken,
		DeviceToken: s.DeviceToken}
	if t.DeviceToken == "" { // a refresh: the login's stays
		t.DeviceToken = c.tokens.DeviceToken
	}
	c.tokens = t
	c.margin = min(time.Minute, time.Duration(s.ExpiresIn)*time.Second/5)
	if c.cfg.OnTokens != nil {
		c.cfg.OnTokens(t)
	}
	return t
}

type sessionResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
	UserID       string `json:"user_id"`
	DeviceID     string `json:"device_id"`
	DeviceToken  string `json:"device_token"` // login only
}

// Register creates an account. It does not log in.
func (c *Client) Register(ctx context.Context, handle, password, displayName string) (*parley.User, error) {
	var out struct {
		User *parley.User `json:"user"`
	}
	err := c.do(ctx, "POST", "/v1/accounts", false, map[string]string{"handle": handle, "password": password, "display_name": displayName}, &out)
	return out.User, err
}

// Login logs in as a new device named deviceName and keeps the tokens.
// With a Config.KeyStore it then makes the device's end-to-end encryption
// keys and publishes them; a failure there is logged, not returned (the
// login stands; EnsureKeys or the next send tries again).
func (c *Client) Login(ctx context.Context, handle, password, deviceName string) error {
	var s sessionResponse
	body := map[string]any{"handle": handle, "password": password, "device": map[string]any{"platform": c.cfg.Platform, "name": deviceName}}
	c.tokMu.Lock()
	known := c.tokens.DeviceToken
	c.tokMu.Unlock()
	if known == "" {
		known = c.cfg.DeviceToken
	}
	if known != "" {
		body["device_token"] = known
	}
	if err := c.do(ctx, "POST", "/v1/sessions", false, body, &s); err != nil {
		return err
	}
	c.tokMu.Lock()
	c.setTokens(s)
	c.tokMu.Unlock()
	if c.crypt.store != nil {
		if err := c.ensureKeys(ctx, true); err != nil {
			c.log.Warn("parley: e2ee: publishing this device's keys after login", "err", err)
		}
	}
	return nil
}

// Refresh renews the access token with the refresh token (which rotates).
func (c *Client) Refresh(ctx context.Context) error {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	return c.refreshLocked(ctx)
}

func (c *Client) refreshLocked(ctx context.Context) error {
	if c.tokens.RefreshToken == "" {
		return parley.Errorf(parley.CodeUnauthorized, "not logged in")
	}
	var s sessionResponse
	if err := c.do(ctx, "POST", "/v1/sessions/refresh", false, map[string]string{"refresh_token": c.tokens.RefreshToken}, &s); err != nil {
		return err
	}
	c.setTokens(s)
	return nil
}

// accessToken returns an access token valid for at least the next minute
// (or 20% of its lifetime, if that is shorter), refreshing first if needed.
func (c *Client) accessToken(ctx context.Context) (string, error) {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if c.tokens.AccessToken == "" {
		return "", parley.Errorf(parley.CodeUnauthorized, "not logged in")
	}
	if c.needsRefresh(time.Now()) {
		if err := c.refreshLocked(ctx); err != nil {
			return "", err
		}
	}
	return c.tokens.AccessToken, nil
}

// needsRefresh: the token expires within a minute, or within a fifth of
// a short lifetime. Caller holds tokMu.
func (c *Client) needsRefresh(now time.Time) bool {
	if c.tokens.AccessExpires.IsZero() {
		return false
	}
	margin := c.margin
	if margin == 0 {
		margin = time.Minute
	}
	return now.Add(margin).After(c.tokens.AccessExpires) && c.tokens.RefreshToken != ""
}

// Logout ends this device's session on the server and forgets the tokens
// and the device's end-to-end encryption keys (the device is gone: no
// message is sealed to it any more).
func (c *Client) Logout(ctx context.Context) error {
	err := c.do(ctx, "DELETE", "/v1/sessions/current", true, nil, nil)
	c.tokMu.Lock()
	device := c.tokens.DeviceID
	c.tokens = Tokens{}
	c.tokMu.Unlock()
	if c.crypt.store != nil && device != "" && err == nil {
		c.crypt.mu.Lock()
		c.crypt.ks = nil
		c.crypt.mu.Unlock()
		if derr := c.crypt.store.Delete(device); derr != nil {
			c.log.Warn("parley: e2ee: erasing the keys of the logged out device", "err", derr)
		}
	}
	return err
}

// maxRateLimitRetries is how often a call refused with rate_limited is
// retried after the server's Retry-After.
const maxRateLimitRetries = 5

// do makes a JSON REST call; authed calls carry the access token, and a
// token_expired answer is retried once after a refresh. Errors from the
// server are *Error with its code and message. A rate_limited answer is
// retried after its Retry-After, up to maxRateLimitRetries times.
func (c *Client) do(ctx context.Context, method, path string, authed bool, in, out any) error {
	for attempt := 0; ; attempt++ {
		var token string
		if authed {
			var err error
			if token, err = c.accessToken(ctx); err != nil {
				return err
			}
		}
		err := c.doOnce(ctx, method, path, token, in, out)
		if authed && attempt == 0 && parley.ErrorCode(err) == parley.CodeTokenExpired {
			if err := c.Refresh(ctx); err != nil {
				return err
			}
			continue
		}
		// A rate-limited request changed nothing: wait as asked and
		// retry, a few times.
		var he *Error
		if errors.As(err, &he) && he.Code == parley.CodeRateLimited && attempt < maxRateLimitRetries {
			wait := max(he.RetryAfter, 100*time.Millisecond)
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return err
			}
		}
		return err
	}
}

func (c *Client) doOnce(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.Server+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return responseError(resp, data)
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// Error is a server's refusal over REST: the HTTP status, the error code
// and message, and for rate_limited the Retry-After the server asked for.
// parley.ErrorCode and errors.As(err, **parley.Error) see its code.
type Error struct {
	Status     int
	Code       parley.Code
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Unwrap exposes the code as a *parley.Error.
func (e *Error) Unwrap() error { return &parley.Error{Code: e.Code, Message: e.Message} }

func responseError(resp *http.Response, data []byte) error {
	var body struct {
		Error *parley.Error `json:"error"`
	}
	if json.Unmarshal(data, &body) != nil || body.Error == nil || body.Error.Code == "" {
		code := parley.CodeInternal
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable:
			code = parley.CodeUnavailable
		case resp.StatusCode == http.StatusNotFound:
			code = parley.CodeNotFound
		case resp.StatusCode < 500:
			code = parley.CodeInvalidRequest
		}
		body.Error = parley.Errorf(code, "HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	e := &Error{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// Me returns the logged-in user.
func (c *Client) Me(ctx context.Context) (*parley.User, error) {
	var out struct {
		User *parley.User `json:"user"`
	}
	err := c.do(ctx, "GET", "/v1/me", true, nil, &out)
	return out.User, err
}

// FindUser looks a user up by handle.
func (c *Client) FindUser(ctx context.Context, handle string) (*parley.User, error) {
	var out struct {
		User *parley.User `json:"user"`
	}
	err := c.do(ctx, "GET", "/v1/users?handle="+url.QueryEscape(handle), true, nil, &out)
	return out.User, err
}

// User returns a user by id.
func (c *Client) User(ctx context.Context, id string) (*parley.User, error) {
	var out struct {
		User *parley.User `json:"user"`
	}
	err := c.do(ctx, "GET", "/v1/users/"+url.PathEscape(id), true, nil, &out)
	return out.User, err
}

// Conversations lists the user's conversations, each with read_seq,
// unread_count and last_message.
func (c *Client) Conversations(ctx context.Context) ([]parley.ConversationView, error) {
	var out struct {
		Conversations []parley.ConversationView `json:"conversations"`
	}
	err := c.do(ctx, "GET", "/v1/conversations", true, nil, &out)
	for i := range out.Conversations {
		c.crypt.noteConversation(&out.Conversations[i].Conversation)
		if m := out.Conversations[i].LastMessage; m != nil {
			c.decryptFetching(ctx, m, map[string]bool{})
		}
	}
	return out.Conversations, err
}

// Conversation returns one conversation.
func (c *Client) Conversation(ctx context.Context, id string) (*parley.ConversationView, error) {
	var out struct {
		Conversation *parley.ConversationView `json:"conversation"`
	}
	err := c.do(ctx, "GET", "/v1/conversations/"+url.PathEscape(id), true, nil, &out)
	if err == nil && out.Conversation != nil {
		c.crypt.noteConversation(&out.Conversation.Conversation)
		if m := out.Conversation.LastMessage; m != nil {
			c.decryptFetching(ctx, m, map[string]bool{})
		}
	}
	return out.Conversation, err
}

// CreateDirect returns the direct conversation with userID, creating it
// if there is none. Without options it is the plaintext one; the e2ee one
// MembersPage is one page of a conversation's members.
type MembersPage struct {
	MemberCount int             `json:"member_count"`
	Members     []parley.Member `json:"members"`
	// Next, if not empty, is the after of the next page.
	Next string `json:"next"`
}

// Members returns a page of a conversation's members by user id,
// after the user id after ("" from the start), at most limit of them
// (0: the server's default, 200; at most 1,000). It is how the members of
// a paged conversation (MembersPaged: a big group) are read; it works for
// every conversation.
func (c *Client) Members(ctx context.Context, conversationID, after string, limit int) (*MembersPage, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/conversations/" + url.PathEscape(conversationID) + "/members"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out MembersPage
	if err := c.do(ctx, "GET", path, true, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllMembers reads every member of a conversation, a page of 1,000 at a
// time.
func (c *Client) AllMembers(ctx context.Context, conversationID string) ([]parley.Member, error) {
	var all []parley.Member
	after := ""
	for {
		p, err := c.Members(ctx, conversationID, after, parley.MaxMembersPage)
		if err != nil {
			return nil, err
		}
		all = append(all, p.Members...)
		if p.Next == "" || len(p.Members) == 0 {
			return all, nil
		}
		after = p.Next
	}
}

// (CreateDirectE2EE) is another conversation.
func (c *Client) CreateDirect(ctx context.Context, userID string) (*parley.Conversation, error) {
	return c.createConversation(ctx, map[string]any{"kind": parley.KindDirect, "members": []string{userID}})
}

// CreateDirectE2EE returns the end-to-end encrypted direct conversation
// with userID, creating it if there is none.
func (c *Client) CreateDirectE2EE(ctx context.Context, userID string) (*parley.Conversation, error) {
	return c.createConversation(ctx, map[string]any{"kind": parley.KindDirect, "members": []string{userID}, "e2ee": true})
}

// CreateGroup creates a group with the given members (the caller is its
// owner).
func (c *Client) CreateGroup(ctx context.Context, title string, memberIDs ...string) (*parley.Conversation, error) {
	if memberIDs == nil {
		memberIDs = []string{}
	}
	return c.createConversation(ctx, map[string]any{"kind": parley.KindGroup, "title": title, "members": memberIDs})
}

// CreateGroupE2EE creates an end-to-end encrypted group (it can never be
// turned off): every message in it is sealed to each device of each
// member.
func (c *Client) CreateGroupE2EE(ctx context.Context, title string, memberIDs ...string) (*parley.Conversation, error) {
	if memberIDs == nil {
		memberIDs = []string{}
	}
	return c.createConversation(ctx, map[string]any{"kind": parley.KindGroup, "title": title, "members": memberIDs, "e2ee": true})
}

func (c *Client) createConversation(ctx context.Context, body any) (*parley.Conversation, error) {
	var out struct {
		Conversation *parley.Conversation `json:"conversation"`
	}
	err := c.do(ctx, "POST", "/v1/conversations", true, body, &out)
	if err == nil && out.Conversation != nil {
		c.crypt.noteConversation(out.Conversation)
	}
	return out.Conversation, err
}

// AddMember adds a user to a group.
func (c *Client) AddMember(ctx context.Context, conversationID, userID string) error {
	defer c.crypt.forgetRecipients(conversationID, "", 0)
	return c.do(ctx, "POST", "/v1/conversations/"+url.PathEscape(conversationID)+"/members", true, map[string]string{"user_id": userID}, nil)
}

// RemoveMember removes a user from a group (or leaves it, with one's own id).
func (c *Client) RemoveMember(ctx context.Context, conversationID, userID string) error {
	defer c.crypt.forgetRecipients(conversationID, "", 0)
	return c.do(ctx, "DELETE", "/v1/conversations/"+url.PathEscape(conversationID)+"/members/"+url.PathEscape(userID), true, nil, nil)
}

// History is a page of messages over REST: the newest limit messages,
// those before a seq, or those after one (see HistoryQuery). A page may
// hold fewer than limit messages without being the end of the history
// when the server cut it to its size budget: HistoryPage says so.
func (c *Client) History(ctx context.Context, conversationID string, q HistoryQuery) ([]parley.Message, error) {
	p, err := c.HistoryPage(ctx, conversationID, q)
	return p.Messages, err
}

// MessagePage is a page of history. Truncated: the server cut it to its size
// budget (256 KiB); page on from its edge (Before its first seq, or After
// its last when paging forward). E2EE says, by seq, how each encrypted
// message opened (the messages themselves carry the decrypted type, body
// and attachments; see Decryption).
type MessagePage struct {
	Messages  []parley.Message      `json:"messages"`
	Truncated bool                  `json:"truncated"`
	E2EE      map[int64]*Decryption `json:"-"`
}

// HistoryPage is History with the page's Truncated mark.
func (c *Client) HistoryPage(ctx context.Context, conversationID string, q HistoryQuery) (MessagePage, error) {
	v := url.Values{}
	if q.Before > 0 {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	}
	if q.After != nil {
		v.Set("after", strconv.FormatInt(*q.After, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out MessagePage
	path := "/v1/conversations/" + url.PathEscape(conversationID) + "/messages"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	err := c.do(ctx, "GET", path, true, nil, &out)
	fetched := map[string]bool{}
	for i := range out.Messages {
		if d := c.decryptFetching(ctx, &out.Messages[i], fetched); d != nil {
			if out.E2EE == nil {
				out.E2EE = map[int64]*Decryption{}
			}
			out.E2EE[out.Messages[i].Seq] = d
		}
	}
	return out, err
}

// HistoryQuery selects a page of history: Before a seq (older messages),
// or After a seq (newer ones, oldest first; After of 0 starts at the
// beginning), or neither for the newest page. Limit is 1-200 (default 50).
type HistoryQuery struct {
	Before int64
	After  *int64
	Limit  int
}

// SendREST sends one message over REST (no WebSocket needed), with a
// fresh client_msg_id unless opts gives one. Retrying with the same
// ClientMsgID is safe.
//
// In an e2ee conversation the message is encrypted for the members'
// devices (see e2ee.go); a device_mismatch answer makes it fetch the
// devices again and resend, a few times.
func (c *Client) SendREST(ctx context.Context, conversationID, body string, opts ...SendOption) (*parley.Message, error) {
	o := sendOptions(opts)
	encrypted, err := c.isE2EE(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	if encrypted {
		p := &Pending{ClientMsgID: o.ClientMsgID, ConversationID: conversationID, Type: o.Type, Body: body, TTL: o.TTL}
		if err := c.resolveUploads(p, o.Attachments); err != nil {
			return nil, err
		}
		return c.sendEncryptedREST(ctx, p)
	}
	var out struct {
		Message *parley.Message `json:"message"`
	}
	in := map[string]any{"client_msg_id": o.ClientMsgID, "type": o.Type, "body": body}
	if o.TTL > 0 {
		in["ttl_seconds"] = int64(o.TTL / time.Second)
	}
	if refs := attachmentRefs(o.Attachments); refs != nil {
		in["attachments"] = refs
	}
	err = c.do(ctx, "POST", "/v1/conversations/"+url.PathEscape(conversationID)+"/messages", true, in, &out)
	return out.Message, err
}

// MarkReadREST raises the read watermark over REST.
func (c *Client) MarkReadREST(ctx context.Context, conversationID string, seq int64) error {
	return c.do(ctx, "POST", "/v1/conversations/"+url.PathEscape(conversationID)+"/read", true, map[string]int64{"seq": seq}, nil)
}

// IsCode reports whether err carries the given Parley error code.
func IsCode(err error, code parley.Code) bool {
	var pe *parley.Error
	return errors.As(err, &pe) && pe.Code == code
}
