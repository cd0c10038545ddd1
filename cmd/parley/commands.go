package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/bench"
)

// cli is one invocation: global flags, the saved login, the SDK client.
type cli struct {
	env
	server    string
	asJSON    bool
	configDir string
	saved     savedConfig
	c         *client.Client
}

// savedConfig is what login keeps: the server and the tokens.
type savedConfig struct {
	Server string         `json:"server"`
	Tokens *client.Tokens `json:"tokens,omitempty"`
	// DeviceToken outlives a logout: the next login from this machine is
	// then a known device's (see client.Tokens.DeviceToken).
	DeviceToken string `json:"device_token,omitempty"`
}

const defaultServer = "http://127.0.0.1:8080"

func run(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	k := &cli{env: e}
	fs.StringVar(&k.server, "server", "", "server base URL (default: the one logged in to, else $PARLEY_SERVER, else "+defaultServer+")")
	fs.BoolVar(&k.asJSON, "json", false, "print JSON instead of text")
	fs.StringVar(&k.configDir, "config", "", "directory for the saved login (default: $PARLEY_CONFIG_DIR, else the user config directory/parley)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: parley [--server URL] [--json] [--config DIR] COMMAND [ARGS]")
		fmt.Fprintln(e.stderr, "commands: register, login, logout, whoami, users find, conversations list|create|add|remove, send, send-file, download, history, read, tail, chat, verify, block, unblock, blocks, privacy, requests, accept, decline, report, admin, bench")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	switch rest[0] {
	case "bench":
		return benchCommand(ctx, rest[1:], e)
	case "bench-worker": // started by parley bench connections
		return bench.RunWorker(ctx, e.stdin, e.stdout)
	}
	if err := k.load(); err != nil {
		return err
	}
	cmd, args := rest[0], rest[1:]
	switch cmd {
	case "register":
		return k.register(ctx, args)
	case "login":
		return k.login(ctx, args)
	case "logout":
		return k.logout(ctx)
	case "whoami":
		return k.whoami(ctx)
	case "users":
		if len(args) == 2 && args[0] == "find" {
			return k.findUser(ctx, args[1])
		}
		return usageError("users find HANDLE")
	case "conversations", "convs":
		return k.conversations(ctx, args)
	case "send":
		return k.send(ctx, args)
	case "send-file":
		return k.sendFile(ctx, args)
	case "download":
		return k.download(ctx, args)
	case "history":
		return k.history(ctx, args)
	case "read":
		return k.read(ctx, args)
	case "tail":
		return k.tail(ctx)
	case "chat":
		return k.chat(ctx, args)
	case "verify":
		return k.verify(ctx, args)
	}
	if ok, err := k.privacyCommand(ctx, cmd, args); ok {
		return err
	}
	return parley.Errorf(parley.CodeInvalidRequest, "unknown command %q (parley -h lists them)", cmd)
}

func usageError(format string, args ...any) error {
	return parley.Errorf(parley.CodeInvalidRequest, "usage: parley "+format, args...)
}

// load reads the saved login and makes the SDK client.
func (k *cli) load() error {
	if k.configDir == "" {
		k.configDir = k.getenv("PARLEY_CONFIG_DIR")
	}
	if k.configDir == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return fmt.Errorf("no config directory (set --config or PARLEY_CONFIG_DIR): %w", err)
		}
		k.configDir = filepath.Join(dir, "parley")
	}
	data, err := os.ReadFile(k.configPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &k.saved); err != nil {
			return fmt.Errorf("%s: %w", k.configPath(), err)
		}
	}
	switch {
	case k.server != "":
	case k.saved.Server != "":
		k.server = k.saved.Server
	case k.getenv("PARLEY_SERVER") != "":
		k.server = k.getenv("PARLEY_SERVER")
	default:
		k.server = defaultServer
	}
	// The device's end-to-end encryption keys live next to the login,
	// one file per device, mode 0600.
	cfg := client.Config{Server: k.server, OnTokens: k.saveTokens, KeyStore: &client.FileKeyStore{Dir: filepath.Join(k.configDir, "keys")}}
	if strings.TrimRight(k.saved.Server, "/") == strings.TrimRight(k.server, "/") {
		cfg.Tokens = k.saved.Tokens
		cfg.DeviceToken = k.saved.DeviceToken
	}
	k.c = client.New(cfg)
	return nil
}

func (k *cli) configPath() string { return filepath.Join(k.configDir, "config.json") }

// saveTokens writes the login, mode 0600 (refresh tokens rotate, so every
// refresh is saved).
func (k *cli) saveTokens(t client.Tokens) {
	k.saved.Server = k.server
	k.saved.Tokens = &t
	if t.DeviceToken != "" {
		k.saved.DeviceToken = t.DeviceToken
	}
	if err := k.writeConfig(); err != nil {
		fmt.Fprintln(k.stderr, "parley: saving the login:", err)
	}
}

func (k *cli) writeConfig() error {
	if err := os.MkdirAll(k.configDir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(k.saved, "", "  ")
	if err != nil {
		return err
	}
	tmp := k.configPath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, k.configPath())
}

func (k *cli) requireLogin() error {
	if k.c.Tokens().AccessToken == "" {
		return parley.Errorf(parley.CodeUnauthorized, "not logged in to %s (parley login HANDLE)", k.server)
	}
	return nil
}

// flags parses a subcommand's flags, which may come before, between or
// after its positional arguments.
func (k *cli) flags(name string, args []string, define func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	fs.SetOutput(k.stderr)
	define(fs)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// password reads the password: PARLEY_PASSWORD, one line of stdin with
// --password-stdin, or a prompt.
func (k *cli) password(fromStdin bool, prompt string) (string, error) {
	if p := k.getenv("PARLEY_PASSWORD"); p != "" {
		return p, nil
	}
	if !fromStdin {
		fmt.Fprint(k.stderr, prompt)
		restore := noEcho(k.stdin)
		defer func() {
			restore()
			fmt.Fprintln(k.stderr)
		}()
	}
	line, err := bufio.NewReader(k.stdin).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (k *cli) print(v any, text func(w io.Writer)) error {
	if k.asJSON {
		enc := json.NewEncoder(k.stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	text(k.stdout)
	return nil
}

func (k *cli) register(ctx context.Context, args []string) error {
	var display string
	var stdin bool
	pos, err := k.flags("register", args, func(fs *flag.FlagSet) {
		fs.StringVar(&display, "display-name", "", "name shown to others (default: the handle)")
		fs.BoolVar(&stdin, "password-stdin", false, "read the password from the first line of stdin")
	})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("register HANDLE [--display-name NAME]")
	}
	if display == "" {
		display = pos[0]
	}
	pw, err := k.password(stdin, "password: ")
	if err != nil {
		return err
	}
	u, err := k.c.Register(ctx, pos[0], pw, display)
	if err != nil {
		return err
	}
	return k.print(map[string]any{"user": u}, func(w io.Writer) {
		fmt.Fprintf(w, "registered %s (%s) on %s; now: parley login %s\n", u.Handle, u.ID, k.server, u.Handle)
	})
}

func (k *cli) login(ctx context.Context, args []string) error {
	device := "cli"
	if h, err := os.Hostname(); err == nil {
		device = "cli@" + h
	}
	var stdin bool
	pos, err := k.flags("login", args, func(fs *flag.FlagSet) {
		fs.StringVar(&device, "device", device, "this device's name, as listed in GET /v1/devices")
		fs.BoolVar(&stdin, "password-stdin", false, "read the password from the first line of stdin")
	})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("login HANDLE [--device NAME]")
	}
	pw, err := k.password(stdin, "password for "+pos[0]+": ")
	if err != nil {
		return err
	}
	if err := k.c.Login(ctx, pos[0], pw, device); err != nil {
		return err
	}
	t := k.c.Tokens()
	return k.print(map[string]any{"user_id": t.UserID, "device_id": t.DeviceID, "server": k.server}, func(w io.Writer) {
		fmt.Fprintf(w, "logged in as %s on %s (device %s); login saved in %s\n", pos[0], k.server, t.DeviceID, k.configPath())
	})
}

func (k *cli) logout(ctx context.Context) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	err := k.c.Logout(ctx)
	k.saved.Tokens = nil
	if werr := k.writeConfig(); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	return k.print(map[string]any{"logged_out": true}, func(w io.Writer) { fmt.Fprintln(w, "logged out") })
}

func (k *cli) whoami(ctx context.Context) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	u, err := k.c.Me(ctx)
	if err != nil {
		return err
	}
	return k.print(map[string]any{"user": u, "device_id": k.c.Tokens().DeviceID, "server": k.server}, func(w io.Writer) {
		fmt.Fprintf(w, "%s (%s), id %s, device %s, on %s\n", u.Handle, u.DisplayName, u.ID, k.c.Tokens().DeviceID, k.server)
	})
}

func (k *cli) findUser(ctx context.Context, handle string) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	u, err := k.c.FindUser(ctx, strings.TrimPrefix(handle, "@"))
	if err != nil {
		return err
	}
	return k.print(map[string]any{"user": u}, func(w io.Writer) {
		fmt.Fprintf(w, "%s\t%s\t%s\n", u.Handle, u.DisplayName, u.ID)
	})
}

// resolveConv turns CONV (an id, or @HANDLE) into a conversation id.
func (k *cli) resolveConv(ctx context.Context, ref string) (string, error) {
	handle, ok := strings.CutPrefix(ref, "@")
	if !ok {
		return ref, nil
	}
	u, err := k.c.FindUser(ctx, handle)
	if err != nil {
		return "", err
	}
	conv, err := k.c.CreateDirect(ctx, u.ID)
	if err != nil {
		return "", err
	}
	return conv.ID, nil
}

func (k *cli) conversations(ctx context.Context, args []string) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	if len(args) == 0 {
		args = []string{"list"}
	}
	switch args[0] {
	case "list":
		cs, err := k.c.Conversations(ctx)
		if err != nil {
			return err
		}
		return k.print(map[string]any{"conversations": cs}, func(w io.Writer) {
			names := k.names(ctx)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tNAME\tUNREAD\tLAST")
			for _, c := range cs {
				last := ""
				if m := c.LastMessage; m != nil {
					body := m.Body
					if m.Type == parley.MessageEncrypted && !m.Deleted {
						body = "[encrypted]" // not readable on this device
					}
					last = names(m.SenderID) + ": " + oneLine(body, 40)
				}
				kind := string(c.Kind)
				if c.E2EE {
					kind += " e2ee"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", c.ID, kind, k.convName(&c.Conversation, names), c.UnreadCount, last)
			}
			tw.Flush()
		})
	case "create":
		var direct, group string
		var encrypted bool
		pos, err := k.flags("conversations create", args[1:], func(fs *flag.FlagSet) {
			fs.StringVar(&direct, "direct", "", "HANDLE: the direct conversation with this user")
			fs.StringVar(&group, "group", "", "TITLE: a new group; the positional arguments are member handles")
			fs.BoolVar(&encrypted, "e2ee", false, "end-to-end encrypted (for good): only the members' devices can read it")
		})
		if err != nil {
			return err
		}
		var conv *parley.Conversation
		switch {
		case direct != "" && group == "" && len(pos) == 0:
			u, err := k.c.FindUser(ctx, strings.TrimPrefix(direct, "@"))
			if err != nil {
				return err
			}
			create := k.c.CreateDirect
			if encrypted {
				create = k.c.CreateDirectE2EE
			}
			if conv, err = create(ctx, u.ID); err != nil {
				return err
			}
		case group != "" && direct == "":
			ids := []string{}
			for _, h := range pos {
				u, err := k.c.FindUser(ctx, strings.TrimPrefix(h, "@"))
				if err != nil {
					return fmt.Errorf("%s: %w", h, err)
				}
				ids = append(ids, u.ID)
			}
			create := k.c.CreateGroup
			if encrypted {
				create = k.c.CreateGroupE2EE
			}
			if conv, err = create(ctx, group, ids...); err != nil {
				return err
			}
		default:
			return usageError("conversations create [--e2ee] --direct HANDLE | --group TITLE [HANDLE...]")
		}
		return k.print(map[string]any{"conversation": conv}, func(w io.Writer) {
			e2ee := ""
			if conv.E2EE {
				e2ee = "\tend-to-end encrypted"
			}
			fmt.Fprintf(w, "%s\t%s\t%d members%s\n", conv.ID, conv.Kind, conv.Size(), e2ee)
		})
	case "add", "remove":
		if len(args) != 3 {
			return usageError("conversations %s CONV HANDLE", args[0])
		}
		conv, err := k.resolveConv(ctx, args[1])
		if err != nil {
			return err
		}
		u, err := k.c.FindUser(ctx, strings.TrimPrefix(args[2], "@"))
		if err != nil {
			return err
		}
		if args[0] == "add" {
			err = k.c.AddMember(ctx, conv, u.ID)
		} else {
			err = k.c.RemoveMember(ctx, conv, u.ID)
		}
		if err != nil {
			return err
		}
		return k.print(map[string]any{"conversation_id": conv, "user_id": u.ID, "action": args[0]}, func(w io.Writer) {
			fmt.Fprintf(w, "%s: %s %s\n", conv, map[string]string{"add": "added", "remove": "removed"}[args[0]], u.Handle)
		})
	}
	return usageError("conversations list|create|add|remove")
}

func (k *cli) send(ctx context.Context, args []string) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	var ttl time.Duration
	var id string
	pos, err := k.flags("send", args, func(fs *flag.FlagSet) {
		fs.DurationVar(&ttl, "ttl", 0, "the message expires after this long")
		fs.StringVar(&id, "client-msg-id", "", "idempotency key (default: random); resending with the same key sends once")
	})
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usageError("send CONV TEXT...")
	}
	conv, err := k.resolveConv(ctx, pos[0])
	if err != nil {
		return err
	}
	opts := []client.SendOption{client.WithTTL(ttl)}
	if id != "" {
		opts = append(opts, client.WithClientMsgID(id))
	}
	m, err := k.c.SendREST(ctx, conv, strings.Join(pos[1:], " "), opts...)
	if err != nil {
		return err
	}
	return k.print(map[string]any{"message": m}, func(w io.Writer) {
		fmt.Fprintf(w, "sent: %s seq %d\n", conv, m.Seq)
	})
}

func (k *cli) history(ctx context.Context, args []string) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	var before, after int64 = 0, -1
	limit := 20
	pos, err := k.flags("history", args, func(fs *flag.FlagSet) {
		fs.Int64Var(&before, "before", 0, "messages before this seq")
		fs.Int64Var(&after, "after", -1, "messages after this seq, oldest first (0: from the start)")
		fs.IntVar(&limit, "limit", 20, "how many (1-200)")
	})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("history CONV [--before SEQ|--after SEQ] [--limit N]")
	}
	conv, err := k.resolveConv(ctx, pos[0])
	if err != nil {
		return err
	}
	q := client.HistoryQuery{Before: before, Limit: limit}
	if after >= 0 {
		q.After = &after
	}
	p, err := k.c.HistoryPage(ctx, conv, q)
	if err != nil {
		return err
	}
	ms := p.Messages
	if ms == nil {
		ms = []parley.Message{}
	}
	out := map[string]any{"conversation_id": conv, "messages": ms, "truncated": p.Truncated}
	if len(p.E2EE) > 0 {
		out["e2ee"] = e2eeJSON(p.E2EE)
	}
	return k.print(out, func(w io.Writer) {
		names := k.names(ctx)
		for i := range ms {
			fmt.Fprintln(w, formatMessage(&ms[i], p.E2EE[ms[i].Seq], names))
		}
		if p.Truncated && len(ms) > 0 {
			// Not the end: the server cut the page to its size budget.
			// Go on from the edge received, in the same direction.
			lo, hi := ms[0].Seq, ms[0].Seq
			for _, m := range ms {
				lo, hi = min(lo, m.Seq), max(hi, m.Seq)
			}
			next := fmt.Sprintf("--before %d", lo)
			if q.After != nil {
				next = fmt.Sprintf("--after %d", hi)
			}
			name := pos[0]
			if strings.ContainsAny(name, " \t'\"\\$`") {
				name = conv // the id needs no quoting
			}
			fmt.Fprintf(w, "(truncated: %d messages fit the server's reply size budget; for more: parley history %s %s)\n", len(ms), name, next)
		}
	})
}

func (k *cli) read(ctx context.Context, args []string) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	if len(args) < 1 || len(args) > 2 {
		return usageError("read CONV [SEQ]")
	}
	conv, err := k.resolveConv(ctx, args[0])
	if err != nil {
		return err
	}
	var seq int64
	if len(args) == 2 {
		if seq, err = strconv.ParseInt(args[1], 10, 64); err != nil || seq < 0 {
			return usageError("read CONV [SEQ]: SEQ must be a number")
		}
	} else {
		c, err := k.c.Conversation(ctx, conv)
		if err != nil {
			return err
		}
		seq = c.LastSeq
	}
	if err := k.c.MarkRead(ctx, conv, seq); err != nil {
		return err
	}
	return k.print(map[string]any{"conversation_id": conv, "read_seq": seq}, func(w io.Writer) {
		fmt.Fprintf(w, "%s: read up to %d\n", conv, seq)
	})
}

// names returns a cached lookup of display names by user id.
func (k *cli) names(ctx context.Context) func(string) string {
	cache := map[string]string{}
	return func(id string) string {
		if n, ok := cache[id]; ok {
			return n
		}
		n := id
		if len(n) > 8 {
			n = n[:8]
		}
		if u, err := k.c.User(ctx, id); err == nil {
			n = u.Handle
		}
		cache[id] = n
		return n
	}
}

func (k *cli) convName(c *parley.Conversation, names func(string) string) string {
	if c.Kind == parley.KindGroup {
		return c.Title
	}
	me := k.c.Tokens().UserID
	for _, m := range c.Members {
		if m.UserID != me {
			return "@" + names(m.UserID)
		}
	}
	return ""
}

// formatMessage is a message in one line of text. d is how an encrypted
// message opened (nil for others): an undecryptable one shows as
// [undecryptable: reason].
func formatMessage(m *parley.Message, d *client.Decryption, names func(string) string) string {
	body := m.Body
	switch {
	case m.Deleted:
		body = "(deleted)"
	case d != nil && !d.Decrypted():
		body = "[undecryptable: " + string(d.Reason) + "]"
	case m.Type == parley.MessageEncrypted:
		body = "[undecryptable: no_key]"
	case m.Type != parley.MessageText && m.Type != "":
		body = "[" + string(m.Type) + "] " + body
	}
	if !m.Deleted && (d == nil || d.Decrypted()) && m.Type != parley.MessageEncrypted {
		for i := range m.Attachments {
			if body != "" {
				body += " "
			}
			body += formatAttachment(&m.Attachments[i])
		}
	}
	edited := ""
	if !m.EditedAt.IsZero() && !m.Deleted {
		edited = " (edited)"
	}
	return fmt.Sprintf("#%d %s %s: %s%s", m.Seq, m.CreatedAt.Local().Format("15:04:05"), names(m.SenderID), body, edited)
}

func oneLine(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
