package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// unreadCount is the member me's unread count in me's conversation
// (ConversationView.UnreadCount, Unread): the messages from someone
// else after me's read_seq, neither deleted nor purged, and not expired
// at the time $1. It reads the primary key range of the conversation's
// messages above read_seq, so its cost follows the unread messages, not
// the history.
const unreadCount = `(SELECT count(*) FROM messages u
		WHERE u.conversation_id = me.conversation_id AND u.seq > me.read_seq
		AND u.sender_id <> me.user_id AND NOT u.deleted AND NOT u.withheld
		AND NOT u.purged AND (u.expires_at IS NULL OR u.expires_at > $1))`

// viewQuery selects, for the member $2, each conversation with the
// member's read_seq, unread count, mute (NULL unless it ends after $1)
// and newest visible message (NULL columns if none). $1 is the time that
// decides what has expired. Callers append a filter and an order.
const viewQuery = `
SELECT c.id, c.kind, c.title, c.last_seq, c.created_at, c.e2ee, me.read_seq,
	` + unreadCount + `,
	CASE WHEN me.muted_until > $1 THEN me.muted_until END,
	x.conversation_id, x.seq, x.id, x.sender_id, x.sender_device_id, x.client_msg_id, x.type,
	x.body, x.body_key, x.created_at, x.expires_at, x.edited_at, x.deleted, x.withheld, x.attachments
FROM members me
JOIN conversations c ON c.id = me.conversation_id
LEFT JOIN LATERAL (
	SELECT * FROM messages l
	WHERE l.conversation_id = me.conversation_id AND NOT l.purged AND (l.expires_at IS NULL OR l.expires_at > $1)
	ORDER BY l.seq DESC LIMIT 1) x ON true
WHERE me.user_id = $2`

const (
	viewsAllSQL     = viewQuery + ` ORDER BY c.updated_at DESC, c.id DESC`
	viewsByIDsSQL   = viewQuery + ` AND me.conversation_id = ANY($3::text[])`
	membersAllSQL   = membersColumns + `WHERE conversation_id IN (SELECT conversation_id FROM members WHERE user_id = $1)` + membersOrder
	membersByIDsSQL = membersColumns + `WHERE conversation_id = ANY($1::text[])` + membersOrder
)

// ConversationView implements parley.Store (see the SQLite engine for the
// definition of the unread count). It reads the primary.
func (s *Store) ConversationView(ctx context.Context, id, userID string, now time.Time) (*parley.ConversationView, error) {
	defer s.track("conversation_view", time.Now())
	views, err := s.views(ctx, userID, now, id)
	if err != nil {
		return nil, err
	}
	if len(views) == 0 {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	return &views[0], nil
}

// ConversationViews lists every conversation userID is a member of, the
// most recently active first.
func (s *Store) ConversationViews(ctx context.Context, userID string, now time.Time) ([]parley.ConversationView, error) {
	defer s.track("conversation_views", time.Now())
	return s.views(ctx, userID, now, "")
}

func (s *Store) views(ctx context.Context, userID string, now time.Time, onlyID string) ([]parley.ConversationView, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	tx, err := s.pool.BeginTx(ctx, snapshot)
	if err != nil {
		return nil, s.internal("read conversations", err)
	}
	defer tx.Rollback(ctx)
	var only []string
	if onlyID != "" {
		only = []string{onlyID}
	}
	return s.readViews(ctx, tx, userID, now, only)
}

// readViews reads, in tx, the views of userID: of every conversation the
// user is a member of, most recently active first, if ids is nil;
// otherwise of those of ids the user is a member of, in no particular
// order.
func (s *Store) readViews(ctx context.Context, tx pgx.Tx, userID string, now time.Time, ids []string) ([]parley.ConversationView, error) {
	viewsSQL, membersSQL := viewsAllSQL, membersAllSQL
	args, membersArgs := []any{engine.Millis(now), userID}, []any{userID}
	if ids != nil {
		if len(ids) == 0 {
			return []parley.ConversationView{}, nil
		}
		viewsSQL, membersSQL = viewsByIDsSQL, membersByIDsSQL
		args, membersArgs = append(args, ids), []any{ids}
	}
	rows, err := tx.Query(ctx, viewsSQL, args...)
	if err != nil {
		return nil, s.internal("read conversations", err)
	}
	views := []parley.ConversationView{}
	var last []*messageRow // last[i] is views[i]'s newest message, or nil
	for rows.Next() {
		v, r, err := scanView(rows)
		if err != nil {
			rows.Close()
			return nil, s.internal("read conversations", err)
		}
		views = append(views, v)
		last = append(last, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.internal("read conversations", err)
	}
	if len(views) == 0 {
		return views, nil
	}
	mrows, err := tx.Query(ctx, membersSQL, membersArgs...)
	if err != nil {
		return nil, s.internal("read members", err)
	}
	byConv, err := scanMembers(mrows)
	if err != nil {
		return nil, s.internal("read members", err)
	}
	for i := range views {
		v := &views[i]
		v.Members = byConv[v.ID]
		if last[i] != nil {
			m, err := s.open(last[i])
			if err != nil {
				return nil, err
			}
			v.LastMessage = &m
		}
	}
	return views, nil
}

// scanView reads a row of viewQuery: the view without its members and the
// newest message, nil if there is none.
func scanView(rows pgx.Rows) (parley.ConversationView, *messageRow, error) {
	var (
		v       parley.ConversationView
		created int64
		muted   *int64
		// The newest message's columns, all NULL when there is none.
		conversationID, id, senderID, senderDeviceID, typ, clientMsgID *string
		seq, bodyKey, msgCreated, expires, edited                      *int64
		body, attachments                                              []byte
		deleted, withheld                                              *bool
	)
	err := rows.Scan(&v.ID, &v.Kind, &v.Title, &v.LastSeq, &created, &v.E2EE, &v.ReadSeq, &v.UnreadCount, &muted,
		&conversationID, &seq, &id, &senderID, &senderDeviceID, &clientMsgID, &typ,
		&body, &bodyKey, &msgCreated, &expires, &edited, &deleted, &withheld, &attachments)
	if err != nil {
		return v, nil, err
	}
	v.CreatedAt = engine.FromMillis(created)
	if muted != nil {
		until := engine.FromMillis(*muted)
		v.MutedUntil = &until
	}
	if id == nil {
		return v, nil, nil
	}
	return v, &messageRow{
		conversationID: *conversationID,
		id:             *id,
		senderID:       *senderID,
		senderDeviceID: *senderDeviceID,
		typ:            *typ,
		clientMsgID:    clientMsgID,
		seq:            *seq,
		bodyKey:        *bodyKey,
		created:        *msgCreated,
		expires:        expires,
		edited:         edited,
		body:           body,
		deleted:        *deleted,
		withheld:       *withheld,
		attachments:    attachments,
	}, nil
}
