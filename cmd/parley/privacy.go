package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// privacyCommand runs the abuse and privacy commands; ok is false for a
// command that is not one of them.
func (k *cli) privacyCommand(ctx context.Context, cmd string, args []string) (ok bool, err error) {
	switch cmd {
	case "block", "unblock":
		return true, k.block(ctx, cmd, args)
	case "blocks":
		return true, k.blocks(ctx)
	case "privacy":
		return true, k.privacy(ctx, args)
	case "requests":
		return true, k.requests(ctx)
	case "accept", "decline":
		return true, k.answerRequest(ctx, cmd, args)
	case "report":
		return true, k.report(ctx, args)
	case "admin":
		return true, k.admin(ctx, args)
	}
	return false, nil
}

// userRef resolves @HANDLE or HANDLE to a user.
func (k *cli) userRef(ctx context.Context, ref string) (*parley.User, error) {
	return k.c.FindUser(ctx, strings.TrimPrefix(ref, "@"))
}

func (k *cli) block(ctx context.Context, cmd string, args []string) error {
	if len(args) != 1 {
		return usageError("%s HANDLE", cmd)
	}
	if err := k.requireLogin(); err != nil {
		return err
	}
	u, err := k.userRef(ctx, args[0])
	if err != nil {
		return err
	}
	if cmd == "block" {
		err = k.c.Block(ctx, u.ID)
	} else {
		err = k.c.Unblock(ctx, u.ID)
	}
	if err != nil {
		return err
	}
	return k.print(map[string]any{"user_id": u.ID, "blocked": cmd == "block"}, func(w io.Writer) {
		fmt.Fprintf(w, "%sed %s\n", cmd, u.Handle)
	})
}

func (k *cli) blocks(ctx context.Context) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	bs, err := k.c.Blocks(ctx)
	if err != nil {
		return err
	}
	return k.print(map[string]any{"blocks": bs}, func(w io.Writer) {
		for _, b := range bs {
			fmt.Fprintf(w, "%s\t%s\n", b.UserID, b.CreatedAt.Format("2006-01-02 15:04"))
		}
	})
}

// privacy shows the privacy settings, or changes those given.
func (k *cli) privacy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("privacy", flag.ContinueOnError)
	fs.SetOutput(k.stderr)
	presence := fs.String("presence", "", "who sees your presence and last seen: everyone, contacts or nobody")
	receipts := fs.String("read-receipts", "", "who sees your read receipts: everyone, contacts or nobody")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return usageError("privacy [--presence everyone|contacts|nobody] [--read-receipts everyone|contacts|nobody]")
	}
	if err := k.requireLogin(); err != nil {
		return err
	}
	var p parley.Privacy
	var err error
	if *presence == "" && *receipts == "" {
		p, err = k.c.Privacy(ctx)
	} else {
		p, err = k.c.SetPrivacy(ctx, parley.Visibility(*presence), parley.Visibility(*receipts))
	}
	if err != nil {
		return err
	}
	return k.print(map[string]any{"privacy": p}, func(w io.Writer) {
		fmt.Fprintf(w, "presence\t%s\nread receipts\t%s\n", p.Presence, p.ReadReceipts)
	})
}

// requests lists the message requests.
func (k *cli) requests(ctx context.Context) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	rs, err := k.c.Requests(ctx, k.c.Tokens().UserID)
	if err != nil {
		return err
	}
	return k.print(map[string]any{"requests": rs}, func(w io.Writer) {
		for _, v := range rs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d members\n", v.ID, v.Kind, v.Title, v.Size())
		}
	})
}

// answerRequest accepts or declines a message request.
func (k *cli) answerRequest(ctx context.Context, cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(k.stderr)
	block := fs.Bool("block", false, "decline: also block who sent it")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || (cmd == "accept" && *block) {
		return usageError("accept CONV | decline [--block] CONV")
	}
	if err := k.requireLogin(); err != nil {
		return err
	}
	conv := fs.Arg(0)
	var err error
	if cmd == "accept" {
		_, err = k.c.AcceptConversation(ctx, conv)
	} else {
		err = k.c.DeclineConversation(ctx, conv, *block)
	}
	if err != nil {
		return err
	}
	return k.print(map[string]any{"conversation_id": conv, "action": cmd}, func(w io.Writer) {
		fmt.Fprintf(w, "%s: %sd\n", conv, cmd)
	})
}

// report files a report of a user or a message. For a message of an
// end-to-end encrypted conversation the client's Report sends the body
// this device decrypts (the server has none to copy).
func (k *cli) report(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(k.stderr)
	user := fs.String("user", "", "the HANDLE of the user to report")
	conv := fs.String("conversation", "", "the conversation of the message to report")
	seq := fs.Int64("seq", 0, "the seq of the message to report")
	reason := fs.String("reason", "", "spam, harassment, inappropriate or other")
	comment := fs.String("comment", "", "what the admins should know")
	usage := "report (--user HANDLE | --conversation CONV --seq N) --reason spam|harassment|inappropriate|other [--comment TEXT]"
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return usageError(usage)
	}
	if err := k.requireLogin(); err != nil {
		return err
	}
	req := client.ReportRequest{Reason: parley.ReportReason(*reason), Comment: *comment}
	switch {
	case *user != "" && *conv == "":
		u, err := k.userRef(ctx, *user)
		if err != nil {
			return err
		}
		req.UserID = u.ID
	case *user == "" && *conv != "":
		id, err := k.resolveConv(ctx, *conv)
		if err != nil {
			return err
		}
		req.ConversationID, req.Seq = id, *seq
	default:
		return usageError(usage)
	}
	id, err := k.c.Report(ctx, req)
	if err != nil {
		return err
	}
	return k.print(map[string]any{"report_id": id}, func(w io.Writer) {
		fmt.Fprintf(w, "reported: %s\n", id)
	})
}

// admin runs the admin commands: reports, resolve, suspend.
func (k *cli) admin(ctx context.Context, args []string) error {
	usage := "admin reports [--state open|resolved|all] | admin resolve [--suspend] [--note TEXT] REPORT | admin suspend HANDLE"
	if len(args) == 0 {
		return usageError(usage)
	}
	if err := k.requireLogin(); err != nil {
		return err
	}
	fs := flag.NewFlagSet("admin "+args[0], flag.ContinueOnError)
	fs.SetOutput(k.stderr)
	switch args[0] {
	case "reports":
		state := fs.String("state", "open", "open, resolved or all")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
			return usageError(usage)
		}
		if *state == "all" {
			*state = ""
		}
		rs, err := k.c.AdminReports(ctx, *state, "", 0)
		if err != nil {
			return err
		}
		return k.print(map[string]any{"reports": rs}, func(w io.Writer) {
			for _, r := range rs {
				fmt.Fprintf(w, "%s\t%s\t%s\tuser %s\tby %s\t%s\t%q\n", r.ID, r.CreatedAt.Format("2006-01-02 15:04"), r.State, r.UserID, r.ReporterID, r.Reason, r.Content)
			}
		})
	case "resolve":
		suspend := fs.Bool("suspend", false, "also suspend the reported user")
		note := fs.String("note", "", "the resolution, for the record")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 {
			return usageError(usage)
		}
		r, err := k.c.ResolveReport(ctx, fs.Arg(0), *note, *suspend)
		if err != nil {
			return err
		}
		return k.print(map[string]any{"report": r}, func(w io.Writer) {
			fmt.Fprintf(w, "%s: resolved%s\n", r.ID, map[bool]string{true: ", user suspended"}[*suspend])
		})
	case "suspend":
		if len(args) != 2 {
			return usageError(usage)
		}
		u, err := k.userRef(ctx, args[1])
		if err != nil {
			return err
		}
		if err := k.c.Suspend(ctx, u.ID); err != nil {
			return err
		}
		return k.print(map[string]any{"user_id": u.ID, "state": "suspended"}, func(w io.Writer) {
			fmt.Fprintf(w, "suspended %s\n", u.Handle)
		})
	}
	return usageError(usage)
}
