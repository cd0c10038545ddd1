package client

import (
	"context"
	"net/url"

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
