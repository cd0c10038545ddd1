package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// syncSelect pages the conversations of a user that changed after a
// stamp. A membership's stamp is the newest of its conversation row and of
// the conversation's members (one seek in members_stamp each, computed
// once: MATERIALIZED keeps SQLite from copying the subquery into every use
// of key); a tombstone's is its own. Tombstones are reported only to a
// client that holds a position (?2 > 0).
//
// The sort key is that stamp lowered to the top of the range (?3). A
// stamp cannot be kept below the top once its row changes again, so a
// conversation that changes during a paged pass cannot be left out until
// the next range (its changes up to the top would be skipped for good).
// It moves to key = top instead, which no cursor of the pass has passed
// unless it was already there: it comes (again) at the end of this pass,
// with its messages up to the top, and in the next range with the rest.
// A key never moves otherwise, so the cursor (key, id) skips nothing and
// repeats only what changed during the pass.
//
// Parameters: ?1 user, ?2 since, ?3 until, ?4 after key, ?5 after id,
// ?6 the page size plus one.
const syncSelect = `
WITH changes AS MATERIALIZED (
	SELECT me.conversation_id AS id,
		min(?3, max(c.stamp, (SELECT o.stamp FROM members o WHERE o.conversation_id = me.conversation_id
			ORDER BY o.stamp DESC LIMIT 1))) AS key,
		0 AS removed
	FROM members me JOIN conversations c ON c.id = me.conversation_id
	WHERE me.user_id = ?1
	UNION ALL
	SELECT conversation_id, min(?3, stamp), 1 FROM membership_tombstones
	WHERE user_id = ?1 AND ?2 > 0 AND stamp > ?2
)
SELECT id, key, removed FROM changes
WHERE key > ?2 AND (key > ?4 OR key = ?4 AND id > ?5)
ORDER BY key, id
LIMIT ?6`

// The two reads of a conversation's messages changed in a range (see
// migrations/0004_sync.sql). syncNewest reads the history newest first
// with each row's stamp and whether it is purged; the caller stops at the
// first row stamped at or below the range, below which only changed
// messages can be in it. syncChanged reads those, newest first, from the
// partial index of changed messages: ?1 conversation, ?2 since, ?3 until,
// ?4 below this seq, ?5 the time that decides expiry, ?6 the limit.
const (
	syncNewest  = `SELECT ` + messageColumns + `, stamp, purged FROM messages WHERE conversation_id = ? ORDER BY seq DESC`
	syncChanged = `SELECT ` + messageColumns + ` FROM messages INDEXED BY messages_changed
		WHERE conversation_id = ?1 AND changed = 1 AND stamp > ?2 AND stamp <= ?3 AND seq < ?4
		AND (purged = 0 AND (expires_at IS NULL OR expires_at > ?5))
		ORDER BY seq DESC LIMIT ?6`
)

// Sync implements parley.Store. Everything is read from one snapshot,
// begun after the range's top is fixed, so the page is consistent and
// holds every change up to the top. An Until above the store's current
// stamp (a position from before a restore) is lowered to it; a Since at or
// above Until gives an empty page, whose Until tells the caller.
// CodeInvalidRequest for a query out of bounds.
func (s *Store) Sync(ctx context.Context, userID string, q parley.SyncQuery, now time.Time) (*parley.SyncPage, error) {
	defer s.track("sync", time.Now())
	if q.Conversations < 1 || q.Conversations > parley.MaxSyncConversations {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "conversations must be 1 to %d", parley.MaxSyncConversations)
	}
	if q.Messages < 0 || q.Messages > parley.MaxHistoryLimit {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "messages must be 0 to %d", parley.MaxHistoryLimit)
	}
	if q.Since < 0 || q.Until < 0 || q.AfterStamp < 0 {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "stamps must not be negative")
	}
	if s.closed.Load() {
		return nil, errClosed
	}
	// Before the snapshot: everything stamped up to here has committed.
	until := s.stamp.Load()
	if q.Until > 0 && q.Until < until {
		until = q.Until
	}
	page := &parley.SyncPage{Until: until, Conversations: []parley.SyncConversation{}}
	if q.Since >= until {
		return page, nil
	}

	tx, err := s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.internal("sync", err)
	}
	defer tx.Rollback()

	type changed struct {
		id      string
		key     int64
		removed bool
	}
	rows, err := tx.StmtContext(ctx, s.rst.syncSelect).QueryContext(ctx, userID, q.Since, until, q.AfterStamp, q.AfterID, q.Conversations+1)
	if err != nil {
		return nil, s.internal("sync", err)
	}
	defer rows.Close()
	var list []changed
	for rows.Next() {
		var c changed
		if err := rows.Scan(&c.id, &c.key, &c.removed); err != nil {
			return nil, s.internal("sync", err)
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("sync", err)
	}
	rows.Close()
	if len(list) > q.Conversations {
		list = list[:q.Conversations]
		last := list[len(list)-1]
		page.HasMore, page.NextStamp, page.NextID = true, last.key, last.id
	}
	if len(list) == 0 {
		return page, nil
	}

	var ids []string
	for _, c := range list {
		if !c.removed {
			ids = append(ids, c.id)
		}
	}
	views, err := s.readViews(ctx, tx, userID, now, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*parley.ConversationView, len(views))
	for i := range views {
		byID[views[i].ID] = &views[i]
	}

	var st syncStatements
	defer st.close()
	st.bind(ctx, s, tx)
	page.Conversations = make([]parley.SyncConversation, 0, len(list))
	left := q.Budget // bytes of the budget left; unused when q.Budget <= 0
	for i, c := range list {
		if q.Budget > 0 && left <= 0 && i > 0 {
			last := list[i-1]
			page.HasMore, page.NextStamp, page.NextID = true, last.key, last.id
			break
		}
		sc := parley.SyncConversation{View: parley.ConversationView{Conversation: parley.Conversation{ID: c.id}}, Removed: c.removed, Key: c.key}
		if !c.removed {
			v := byID[c.id]
			if v == nil {
				// The same snapshot listed the membership; this cannot be.
				return nil, s.internal("sync", fmt.Errorf("no view of listed conversation %s", c.id))
			}
			sc.View = *v
			left -= parley.EstimatedConversationBytes + parley.EstimatedMembersBytes(len(v.Members), q.InlineMembers)
			var budget *int
			if q.Budget > 0 {
				budget = &left
			}
			if sc.Messages, sc.MoreMessages, err = s.syncMessages(ctx, &st, c.id, q.Since, until, now, q.Messages, budget); err != nil {
				return nil, err
			}
		}
		page.Conversations = append(page.Conversations, sc)
	}
	return page, nil
}

// syncStatements are syncNewest and syncChanged bound to one Sync's
// transaction, for all its conversations.
type syncStatements struct{ newest, changed *sql.Stmt }

func (st *syncStatements) bind(ctx context.Context, s *Store, tx *sql.Tx) {
	st.newest = tx.StmtContext(ctx, s.rst.syncNewest)
	st.changed = tx.StmtContext(ctx, s.rst.syncChanged)
}

func (st *syncStatements) close() { closeAll(st.newest, st.changed) }

// syncMessages reads up to limit of the newest messages of a conversation
// stamped in (since, until] and visible at now, in ascending seq order, and
// whether there were more.
//
// Insert stamps grow with seq, so reading down from the newest message, every
// row is in the range (created in it, or changed in it) until the first one
// stamped at or below since; below that one, only messages changed since
// can be in the range, and syncChanged finds them. Either read stops as
// soon as it has limit+1, so the cost follows what changed, not the length
// of the history.
//
// With budget set, rows are also counted against *budget (see
// parley.SyncQuery.Budget); once it is spent, reading stops (after at
// least one row) and the result says there were more.
func (s *Store) syncMessages(ctx context.Context, st *syncStatements, conversationID string, since, until int64, now time.Time, limit int, budget *int) ([]parley.Message, bool, error) {
	var sealed []*messageRow
	spent := false // the budget ran out: more rows may exist
	charge := func(r *messageRow) {
		if budget != nil {
			*budget -= parley.EstimatedMessageBytes + len(r.body) + len(r.attachments)
			spent = *budget <= 0
		}
	}
	boundary := int64(-1) // the seq of the first row stamped at or below since
	rows, err := st.newest.QueryContext(ctx, conversationID)
	if err != nil {
		return nil, false, s.internal("sync messages", err)
	}
	nowMillis := engine.Millis(now)
	for len(sealed) <= limit && !spent && rows.Next() {
		var r messageRow
		var stamp int64
		if err := rows.Scan(&r.conversationID, &r.seq, &r.id, &r.senderID, &r.senderDeviceID, &r.clientMsgID, &r.typ,
			&r.body, &r.bodyKey, &r.created, &r.expires, &r.edited, &r.deleted, &r.withheld, &r.attachments, &stamp, &r.purged); err != nil {
			rows.Close()
			return nil, false, s.internal("sync messages", err)
		}
		if stamp <= since {
			boundary = r.seq
			break
		}
		if stamp > until || r.purged || r.expires.Valid && r.expires.Int64 <= nowMillis {
			continue
		}
		sealed = append(sealed, &r)
		charge(&r)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, false, s.internal("sync messages", err)
	}
	rows.Close()

	if boundary >= 0 && len(sealed) <= limit && !spent {
		rows, err := st.changed.QueryContext(ctx, conversationID, since, until, boundary+1, nowMillis, limit+1-len(sealed))
		if err != nil {
			return nil, false, s.internal("sync messages", err)
		}
		defer rows.Close()
		for !spent && rows.Next() {
			r, err := scanMessageRow(rows)
			if err != nil {
				return nil, false, s.internal("sync messages", err)
			}
			sealed = append(sealed, r)
			charge(r)
		}
		if err := rows.Err(); err != nil {
			return nil, false, s.internal("sync messages", err)
		}
	}

	more := len(sealed) > limit || spent
	if len(sealed) > limit {
		sealed = sealed[:limit]
	}
	slices.Reverse(sealed) // read newest first
	msgs := make([]parley.Message, len(sealed))
	for i, r := range sealed {
		if msgs[i], err = s.open(r); err != nil {
			return nil, false, err
		}
	}
	return msgs, more, nil
}

// ConversationIDs implements parley.Store with one index scan.
func (s *Store) ConversationIDs(ctx context.Context, userID string) ([]string, error) {
	defer s.track("conversation_ids", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.rst.conversationIDs.QueryContext(ctx, userID)
	if err != nil {
		return nil, s.internal("read conversation ids", err)
	}
	defer rows.Close()
	ids := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.internal("read conversation ids", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read conversation ids", err)
	}
	return ids, nil
}
