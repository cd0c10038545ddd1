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
