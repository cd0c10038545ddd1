package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// unreadCount is the member me's unread count in me's conversation
// (ConversationView.UnreadCount, Unread): the messages from someone
// else after me's read_seq, neither deleted nor purged, and not expired
// at the time ?1. It reads the primary key range of the conversation's
// messages above read_seq, so its cost follows the unread messages, not
// the history.
const unreadCount = `(SELECT count(*) FROM messages u
		WHERE u.conversation_id = me.conversation_id AND u.seq > me.read_seq
		AND u.sender_id <> me.user_id AND u.deleted = 0 AND u.withheld = 0
		AND u.purged = 0 AND (u.expires_at IS NULL OR u.expires_at > ?1))`

// viewQuery selects, for the member ?2 (bound twice more below), each
// conversation with the member's read_seq, unread count, mute (NULL
// unless it ends after ?1) and newest visible message (NULL columns if
// none). The time ?1 decides what has expired. Callers append a filter
// and an order.
const viewQuery = `
SELECT c.id, c.kind, c.title, c.last_seq, c.created_at, c.e2ee, me.read_seq,
	` + unreadCount + `,
	CASE WHEN me.muted_until > ?1 THEN me.muted_until END,
	x.conversation_id, x.seq, x.id, x.sender_id, x.sender_device_id, x.client_msg_id, x.type,
	x.body, x.body_key, x.created_at, x.expires_at, x.edited_at, x.deleted, x.withheld, x.attachments
FROM members me
JOIN conversations c ON c.id = me.conversation_id
LEFT JOIN messages x ON x.conversation_id = me.conversation_id AND x.seq = (
	SELECT l.seq FROM messages l
	WHERE l.conversation_id = me.conversation_id AND l.purged = 0 AND (l.expires_at IS NULL OR l.expires_at > ?1)
	ORDER BY l.seq DESC LIMIT 1)
WHERE me.user_id = ?2`

// ConversationView returns the conversation as userID sees it at now: its
// members, the user's read_seq, the number of messages from others after it
// that are neither deleted nor expired, the user's mute if it ends after
// now, and the newest message not expired (a tombstone included).
// CodeConversationNotFound if none or userID is not a member.
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

// ConversationViews lists every conversation userID is a member of, as in
// ConversationView, the most recently active (created or appended to)
// first.
func (s *Store) ConversationViews(ctx context.Context, userID string, now time.Time) ([]parley.ConversationView, error) {
	defer s.track("conversation_views", time.Now())
	return s.views(ctx, userID, now, "")
}

// views reads the views of userID, of one conversation if onlyID is set,
// from one snapshot.
func (s *Store) views(ctx context.Context, userID string, now time.Time, onlyID string) ([]parley.ConversationView, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	tx, err := s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.internal("read conversations", err)
	}
	defer tx.Rollback()
	var only []string
	if onlyID != "" {
		only = []string{onlyID}
	}
	return s.readViews(ctx, tx, userID, now, only)
}

// The statements of readViews (prepared at Open, readerStatements): the
// views of all of a user's conversations, or of a list of ids passed as
// one JSON array, so that the SQL is the same whatever the list's length.
const (
	viewsAllSQL     = viewQuery + ` ORDER BY c.updated_at DESC, c.id DESC`
	viewsByIDsSQL   = viewQuery + ` AND me.conversation_id IN (SELECT value FROM json_each(?3))`
	membersColumns  = `SELECT conversation_id, user_id, role, read_seq, delivered_seq, joined_at, accepted FROM members `
	membersOrder    = ` ORDER BY conversation_id, joined_at, user_id`
	membersAllSQL   = membersColumns + `WHERE conversation_id IN (SELECT conversation_id FROM members WHERE user_id = ?)` + membersOrder
	membersByIDsSQL = membersColumns + `WHERE conversation_id IN (SELECT value FROM json_each(?))` + membersOrder
)

// readViews reads, in tx (a read transaction of the reader pool), the
// views of userID: of every conversation the user is a member of, most
// recently active first, if ids is nil; otherwise of those of ids the
// user is a member of, in no particular order.
func (s *Store) readViews(ctx context.Context, tx *sql.Tx, userID string, now time.Time, ids []string) ([]parley.ConversationView, error) {
	viewsStmt, membersStmt := s.rst.viewsAll, s.rst.membersAll
	args, membersArgs := []any{engine.Millis(now), userID}, []any{userID}
	if ids != nil {
		if len(ids) == 0 {
			return []parley.ConversationView{}, nil
		}
		list, err := json.Marshal(ids)
		if err != nil {
			return nil, s.internal("read conversations", err)
		}
		viewsStmt, membersStmt = s.rst.viewsByIDs, s.rst.membersByIDs
		args, membersArgs = append(args, string(list)), []any{string(list)}
	}
	rows, err := tx.StmtContext(ctx, viewsStmt).QueryContext(ctx, args...)
	if err != nil {
		return nil, s.internal("read conversations", err)
	}
	defer rows.Close()
	views := []parley.ConversationView{}
	var last []*messageRow // last[i] is views[i]'s newest message, or nil
	for rows.Next() {
		v, r, err := scanView(rows)
		if err != nil {
			return nil, s.internal("read conversations", err)
		}
		views = append(views, v)
		last = append(last, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read conversations", err)
	}
	rows.Close()
	if len(views) == 0 {
		return views, nil
	}

	mrows, err := tx.StmtContext(ctx, membersStmt).QueryContext(ctx, membersArgs...)
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
func scanView(rows *sql.Rows) (parley.ConversationView, *messageRow, error) {
	var (
		v       parley.ConversationView
		created int64
		muted   sql.NullInt64
		// The newest message's columns, all NULL when there is none.
		conversationID, id, senderID, senderDeviceID, typ, clientMsgID sql.NullString
		seq, bodyKey, msgCreated, expires, edited                      sql.NullInt64
		body, attachments                                              []byte
		deleted, withheld                                              sql.NullBool
	)
	err := rows.Scan(&v.ID, &v.Kind, &v.Title, &v.LastSeq, &created, &v.E2EE, &v.ReadSeq, &v.UnreadCount, &muted,
		&conversationID, &seq, &id, &senderID, &senderDeviceID, &clientMsgID, &typ,
		&body, &bodyKey, &msgCreated, &expires, &edited, &deleted, &withheld, &attachments)
	if err != nil {
		return v, nil, err
	}
	v.CreatedAt = engine.FromMillis(created)
	if muted.Valid {
		until := engine.FromMillis(muted.Int64)
		v.MutedUntil = &until
	}
	if !id.Valid {
		return v, nil, nil
	}
	return v, &messageRow{
		conversationID: conversationID.String,
		id:             id.String,
		senderID:       senderID.String,
		senderDeviceID: senderDeviceID.String,
		typ:            typ.String,
		clientMsgID:    clientMsgID,
		seq:            seq.Int64,
		bodyKey:        bodyKey.Int64,
		created:        msgCreated.Int64,
		expires:        expires,
		edited:         edited,
		body:           body,
		deleted:        deleted.Bool,
		withheld:       withheld.Bool,
		attachments:    attachments,
	}, nil
}
