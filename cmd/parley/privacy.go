package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/parleychat/parley"
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
			fmt.Fprintf(w, "%s\t%s\t%s\t%d members\n", v.ID, v.Kind, v.Title, len(v.Members))
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
