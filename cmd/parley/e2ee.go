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

// verify prints the safety number of the logged-in user and another
// (both compare it, in person or on a call); --mark records that they
// did: the contact's devices as they are now are trusted, and a later
// change of their keys is warned about.
func (k *cli) verify(ctx context.Context, args []string) error {
	if err := k.requireLogin(); err != nil {
		return err
	}
	var mark bool
	pos, err := k.flags("verify", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&mark, "mark", false, "mark the user verified (after comparing the number with them)")
	})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("verify @HANDLE [--mark]")
	}
	handle := strings.TrimPrefix(pos[0], "@")
	u, err := k.c.FindUser(ctx, handle)
	if err != nil {
		return err
	}
	if err := k.c.EnsureKeys(ctx); err != nil {
		return err
	}
	if mark {
		if err := k.c.MarkVerified(ctx, u.ID); err != nil {
			return err
		}
	}
	number, verified, err := k.c.SafetyNumber(ctx, u.ID)
	if err != nil {
		return err
	}
	return k.print(map[string]any{"user_id": u.ID, "handle": u.Handle, "safety_number": number, "verified": verified}, func(w io.Writer) {
		fmt.Fprintf(w, "safety number with @%s:\n", u.Handle)
		groups := strings.Fields(number)
		for i := 0; i < len(groups); i += 4 {
			fmt.Fprintf(w, "  %s\n", strings.Join(groups[i:min(i+4, len(groups))], " "))
		}
		switch v, _ := k.c.Verified(u.ID); {
		case verified:
			fmt.Fprintf(w, "@%s is verified\n", u.Handle)
		case v:
			fmt.Fprintf(w, "@%s's security code CHANGED since you verified it: compare the number again, then parley verify @%s --mark\n", u.Handle, u.Handle)
		default:
			fmt.Fprintf(w, "not verified: compare the number with @%s, then parley verify @%s --mark\n", u.Handle, u.Handle)
		}
	})
}

// deviceNotices are the lines that tell of a user's device change.
func deviceNotices(d *client.DeviceChange, names func(string) string) []string {
	var out []string
	who := "@" + names(d.UserID)
	if d.SecurityCodeChanged {
		out = append(out, fmt.Sprintf("WARNING: %s's security code changed: compare the safety number again (parley verify %s)", who, who))
	}
	for range d.Added {
		out = append(out, who+" added a new device")
	}
	for _, u := range d.Untrusted {
		out = append(out, fmt.Sprintf("WARNING: a device of %s is not trusted and gets no messages: %v", who, u.Err))
	}
	return out
}

func decryptionJSON(d *client.Decryption) map[string]any {
	if d.Decrypted() {
		return map[string]any{"decrypted": true}
	}
	return map[string]any{"decrypted": false, "reason": d.Reason}
}

func e2eeJSON(m map[int64]*client.Decryption) map[string]any {
	out := map[string]any{}
	for seq, d := range m {
		out[fmt.Sprint(seq)] = decryptionJSON(d)
	}
	return out
}

// findMediaKey reads an e2ee conversation's history, newest first, until
// the message carrying the media is found (its content holds the key).
func (k *cli) findMediaKey(ctx context.Context, convRef, mediaID string) error {
	conv, err := k.resolveConv(ctx, convRef)
	if err != nil {
		return err
	}
	var before int64
	for range 25 { // at most 5,000 messages back
		p, err := k.c.HistoryPage(ctx, conv, client.HistoryQuery{Before: before, Limit: 200})
		if err != nil {
			return err
		}
		if _, ok := k.c.DecryptedMedia(mediaID); ok {
			return nil
		}
		if len(p.Messages) == 0 {
			break
		}
		before = p.Messages[0].Seq
		if before <= 1 {
			break
		}
	}
	return parley.Errorf(parley.CodeNotFound, "no message this device can read in %s carries media %s", convRef, mediaID)
}
