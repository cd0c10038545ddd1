package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// tail prints live events until interrupted. What the first sync brings
// (history) is not printed; use history for that.
func (k *cli) tail(ctx context.Context) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	if err := k.c.Connect(ctx); err != nil {
		return err
	}
	defer k.c.Close()
	names := k.names(ctx)
	synced := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-k.c.Events():
			if !ok {
				return nil
			}
			if ev.Kind == client.EventStopped {
				return ev.Err
			}
			if ev.Kind == client.EventSynced && !synced {
				synced = true
				fmt.Fprintln(k.stderr, "parley: connected; waiting for events (Ctrl-C to stop)")
				continue
			}
			if !synced && (ev.Kind == client.EventMessage || ev.Kind == client.EventConversation || ev.Kind == client.EventStale) {
				continue // the initial sync: history, not news
			}
			k.printEvent(ev, names)
		}
	}
}

// printEvent writes one event as a line of text, or of JSON.
func (k *cli) printEvent(ev client.Event, names func(string) string) {
	if k.asJSON {
		out := map[string]any{"event": ev.Kind}
		if ev.ConversationID != "" {
			out["conversation_id"] = ev.ConversationID
		}
		switch {
		case ev.Message != nil:
			out["message"] = ev.Message
			if ev.E2EE != nil {
				out["e2ee"] = decryptionJSON(ev.E2EE)
			}
		case ev.Devices != nil:
			out["user_id"], out["added"], out["removed"] = ev.Devices.UserID, ev.Devices.Added, ev.Devices.Removed
			if ev.Devices.SecurityCodeChanged {
				out["security_code_changed"] = true
			}
			if len(ev.Devices.Untrusted) > 0 {
				var ids []string
				for _, u := range ev.Devices.Untrusted {
					ids = append(ids, u.DeviceID)
				}
				out["untrusted"] = ids
			}
		case ev.Receipt != nil:
			out["user_id"], out["kind"], out["seq"] = ev.Receipt.UserID, ev.Receipt.Kind, ev.Receipt.Seq
		case ev.Typing != nil:
			out["user_id"], out["state"] = ev.Typing.UserID, ev.Typing.State
		case ev.Presence != nil:
			out["user_id"], out["state"] = ev.Presence.UserID, ev.Presence.State
			if !ev.Presence.LastSeen.IsZero() {
				out["last_seen"] = ev.Presence.LastSeen
			}
		case ev.Conversation != nil:
			out["action"], out["conversation"] = ev.Conversation.Action, ev.Conversation.Conversation
		}
		if ev.Err != nil {
			out["error"] = ev.Err.Error()
		}
		data, _ := json.Marshal(out)
		fmt.Fprintln(k.stdout, string(data))
		return
	}
	short := func(id string) string {
		if len(id) > 8 {
			return id[:8]
		}
		return id
	}
	switch ev.Kind {
	case client.EventMessage, client.EventMessageChanged:
		fmt.Fprintf(k.stdout, "[%s] %s\n", short(ev.ConversationID), formatMessage(ev.Message, ev.E2EE, names))
	case client.EventDevices:
		for _, line := range deviceNotices(ev.Devices, names) {
			fmt.Fprintln(k.stderr, "parley: "+line)
		}
	case client.EventReceipt:
		fmt.Fprintf(k.stdout, "[%s] %s %s up to #%d\n", short(ev.ConversationID), names(ev.Receipt.UserID), ev.Receipt.Kind, ev.Receipt.Seq)
	case client.EventTyping:
		fmt.Fprintf(k.stdout, "[%s] %s typing: %s\n", short(ev.ConversationID), names(ev.Typing.UserID), ev.Typing.State)
	case client.EventPresence:
		fmt.Fprintf(k.stdout, "%s is %s\n", names(ev.Presence.UserID), ev.Presence.State)
	case client.EventConversation:
		fmt.Fprintf(k.stdout, "[%s] conversation %s\n", short(ev.ConversationID), ev.Conversation.Action)
	case client.EventDisconnected:
		fmt.Fprintf(k.stderr, "parley: disconnected (%v); reconnecting\n", ev.Err)
	case client.EventSendFailed:
		fmt.Fprintf(k.stderr, "parley: not sent: %v\n", ev.Err)
	}
}

// chat is an interactive conversation: the last messages, then whatever
// arrives; every line typed is sent. At the end of input it waits until
// every line is acknowledged.
func (k *cli) chat(ctx context.Context, args []string) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	if len(args) != 1 {
		return usageError("chat CONV")
	}
	conv, err := k.resolveConv(ctx, args[0])
	if err != nil {
		return err
	}
	names := k.names(ctx)
	page, err := k.c.HistoryPage(ctx, conv, client.HistoryQuery{Limit: 10})
	if err != nil {
		return err
	}
	recent := page.Messages
	for i := range recent {
		k.printChat(client.Event{Kind: client.EventMessage, ConversationID: conv, Message: &recent[i], E2EE: page.E2EE[recent[i].Seq]}, names)
	}
	if err := k.c.Connect(ctx); err != nil {
		return err
	}
	defer k.c.Close()

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(k.stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	if !k.asJSON {
		fmt.Fprintln(k.stderr, "parley: connected; type a line and press Enter to send, Ctrl-D to end")
	}
	var pending []*client.Pending
	var lastSeq int64
	if len(recent) > 0 {
		lastSeq = recent[len(recent)-1].Seq
	}
	synced := false
	var readSeq int64
	input := lines
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-input:
			if !ok {
				input = nil
				return k.waitSent(ctx, pending)
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			pending = append(pending, k.c.Enqueue(conv, line))
		case ev, ok := <-k.c.Events():
			if !ok {
				return nil
			}
			switch ev.Kind {
			case client.EventStopped:
				return ev.Err
			case client.EventSynced:
				synced = true
			case client.EventMessage, client.EventMessageChanged:
				if ev.ConversationID != conv || (ev.Kind == client.EventMessage && ev.Message.Seq <= lastSeq) {
					continue
				}
				if ev.Kind == client.EventMessage {
					lastSeq = ev.Message.Seq
				}
				k.printChat(ev, names)
				if synced && ev.Message.SenderID != k.c.Tokens().UserID && ev.Message.Seq > readSeq {
					readSeq = ev.Message.Seq // shown: mark it read
					go func(seq int64) { _ = k.c.MarkRead(ctx, conv, seq) }(readSeq)
				}
			case client.EventTyping, client.EventSendFailed, client.EventDisconnected, client.EventDevices:
				if ev.ConversationID == conv || ev.Kind == client.EventDisconnected || ev.Kind == client.EventDevices {
					k.printEvent(ev, names)
				}
			}
		}
	}
}

func (k *cli) printChat(ev client.Event, names func(string) string) {
	if k.asJSON {
		k.printEvent(ev, names)
		return
	}
	fmt.Fprintln(k.stdout, formatMessage(ev.Message, ev.E2EE, names))
}

// waitSent waits until every line typed is acknowledged (or refused).
func (k *cli) waitSent(ctx context.Context, pending []*client.Pending) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, p := range pending {
		if _, err := p.Wait(ctx); err != nil {
			if parley.ErrorCode(err) == "" {
				return err
			}
			return fmt.Errorf("%q not sent: %w", oneLine(p.Body, 30), err)
		}
	}
	return nil
}
