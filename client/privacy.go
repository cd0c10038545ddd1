package client

import (
	"context"
	"net/url"
	"strconv"

	"github.com/parleychat/parley"
)

// Block blocks a user (docs/protocol.md, "Blocking"): their direct
// messages never reach you, they cannot add you to groups, and neither
// of you sees the other's presence or typing. Blocking twice is blocking
// once.
func (c *Client) Block(ctx context.Context, userID string) error {
	return c.do(ctx, "PUT", "/v1/blocks/"+url.PathEscape(userID), true, nil, nil)
}

// Unblock lifts a block; messages withheld meanwhile stay withheld.
func (c *Client) Unblock(ctx context.Context, userID string) error {
	return c.do(ctx, "DELETE", "/v1/blocks/"+url.PathEscape(userID), true, nil, nil)
}

// Blocks lists the users you block, oldest block first.
func (c *Client) Blocks(ctx context.Context) ([]parley.Block, error) {
	var out struct {
		Blocks []parley.Block `json:"blocks"`
	}
	err := c.do(ctx, "GET", "/v1/blocks", true, nil, &out)
	return out.Blocks, err
}

// Privacy returns your privacy settings.
func (c *Client) Privacy(ctx context.Context) (parley.Privacy, error) {
	var out struct {
		Privacy parley.Privacy `json:"privacy"`
	}
	err := c.do(ctx, "GET", "/v1/me/privacy", true, nil, &out)
	return out.Privacy, err
}

// SetPrivacy changes your privacy settings: presence (online and last
// seen) and read receipts, each everyone, contacts or nobody; "" keeps
// a setting. It returns the settings now.
func (c *Client) SetPrivacy(ctx context.Context, presence, readReceipts parley.Visibility) (parley.Privacy, error) {
	body := map[string]parley.Visibility{}
	if presence != "" {
		body["presence"] = presence
	}
	if readReceipts != "" {
		body["read_receipts"] = readReceipts
	}
	var out struct {
		Privacy parley.Privacy `json:"privacy"`
	}
	err := c.do(ctx, "PATCH", "/v1/me/privacy", true, body, &out)
	return out.Privacy, err
}

// AcceptConversation accepts a message request (a conversation in which
// your membership has Request set).
func (c *Client) AcceptConversation(ctx context.Context, conversationID string) (*parley.ConversationView, error) {
	var out struct {
		Conversation *parley.ConversationView `json:"conversation"`
	}
	err := c.do(ctx, "POST", "/v1/conversations/"+url.PathEscape(conversationID)+"/accept", true, nil, &out)
	return out.Conversation, err
}

// DeclineConversation declines a message request: you leave the
// conversation and, with block, block who sent it.
func (c *Client) DeclineConversation(ctx context.Context, conversationID string, block bool) error {
	return c.do(ctx, "POST", "/v1/conversations/"+url.PathEscape(conversationID)+"/decline", true, map[string]bool{"block": block}, nil)
}

// Requests lists your message requests: conversations you have not
// accepted.
func (c *Client) Requests(ctx context.Context, me string) ([]parley.ConversationView, error) {
	all, err := c.Conversations(ctx)
	if err != nil {
		return nil, err
	}
	var out []parley.ConversationView
	for _, v := range all {
		if m := v.MemberOf(me); m != nil && m.Request {
			out = append(out, v)
		}
	}
	return out, nil
}

// ReportRequest is a report of a message (ConversationID and Seq) or of
// a user (UserID). Content is what the message shows on this device: the
// server keeps it only when it holds no plaintext of the message (end-to-
// end encrypted conversations).
type ReportRequest struct {
	UserID         string              `json:"user_id,omitempty"`
	ConversationID string              `json:"conversation_id,omitempty"`
	Seq            int64               `json:"seq,omitempty"`
	Reason         parley.ReportReason `json:"reason"`
	Comment        string              `json:"comment,omitempty"`
	Content        string              `json:"content,omitempty"`
}

// Report files a report for the server's admins and returns its id.
//
// The server cannot read a message of an end-to-end encrypted
// conversation, so the admins would get the report without what was
// said: for such a message, with Config.KeyStore set and r.Content empty,
// Report fetches the message, decrypts it with this device's keys and
// sends its body as Content (content_source "client" in the admins'
// list). A message this device cannot decrypt is reported without
// content. A failure to fetch it fails the report.
func (c *Client) Report(ctx context.Context, r ReportRequest) (string, error) {
	if r.Content == "" && r.ConversationID != "" && r.Seq > 0 && c.crypt.store != nil {
		body, err := c.decryptedBody(ctx, r.ConversationID, r.Seq)
		if err != nil {
			return "", err
		}
		r.Content = body
	}
	var out struct {
		Report struct {
			ID string `json:"id"`
		} `json:"report"`
	}
	err := c.do(ctx, "POST", "/v1/reports", true, r, &out)
	return out.Report.ID, err
}

// decryptedBody returns the body of message seq of an end-to-end
// encrypted conversation as this device decrypts it; "" if the
// conversation is not encrypted, or the message is gone or does not open.
func (c *Client) decryptedBody(ctx context.Context, conversationID string, seq int64) (string, error) {
	encrypted, err := c.isE2EE(ctx, conversationID)
	if err != nil || !encrypted {
		return "", err
	}
	after := seq - 1
	page, err := c.HistoryPage(ctx, conversationID, HistoryQuery{After: &after, Limit: 1})
	if err != nil {
		return "", err
	}
	for _, m := range page.Messages {
		if m.Seq == seq && page.E2EE[seq].Decrypted() {
			return m.Body, nil
		}
	}
	return "", nil
}

// AdminReports lists reports, newest first (admins only): state "open",
// "resolved" or "" for both, before a report id ("" for the newest).
func (c *Client) AdminReports(ctx context.Context, state, before string, limit int) ([]parley.Report, error) {
	v := url.Values{}
	if state != "" {
		v.Set("state", state)
	}
	if before != "" {
		v.Set("before", before)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Reports []parley.Report `json:"reports"`
	}
	err := c.do(ctx, "GET", "/v1/admin/reports?"+v.Encode(), true, nil, &out)
	return out.Reports, err
}

// ResolveReport marks a report resolved with a note, and with suspend
// suspends the reported user (admins only).
func (c *Client) ResolveReport(ctx context.Context, id, resolution string, suspend bool) (*parley.Report, error) {
	var out struct {
		Report *parley.Report `json:"report"`
	}
	err := c.do(ctx, "POST", "/v1/admin/reports/"+url.PathEscape(id)+"/resolve", true, map[string]any{"resolution": resolution, "suspend": suspend}, &out)
	return out.Report, err
}

// Suspend suspends a user (admins only): their sessions end at once.
func (c *Client) Suspend(ctx context.Context, userID string) error {
	return c.do(ctx, "POST", "/v1/admin/users/"+url.PathEscape(userID)+"/suspend", true, nil, nil)
}
