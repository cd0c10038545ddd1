package postgres

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

// syncSelect pages the conversations of a user that changed after a
// stamp; see the SQLite engine's sync.go for the sort key and why it is
// lowered to the top of the range. Parameters: $1 user, $2 since, $3
// until, $4 after key, $5 after id, $6 the page size plus one.
const syncSelect = `
WITH changes AS MATERIALIZED (
	SELECT me.conversation_id AS id,
		least($3::bigint, greatest(c.stamp, (SELECT o.stamp FROM members o WHERE o.conversation_id = me.conversation_id
			ORDER BY o.stamp DESC LIMIT 1))) AS key,
		false AS removed
	FROM members me JOIN conversations c ON c.id = me.conversation_id
	WHERE me.user_id = $1
	UNION ALL
	SELECT conversation_id, least($3::bigint, stamp), true FROM membership_tombstones
	WHERE user_id = $1 AND $2::bigint > 0 AND stamp > $2::bigint
)
SELECT id, key, removed FROM changes
WHERE key > $2::bigint AND (key > $4::bigint OR key = $4::bigint AND id > $5::text)
ORDER BY key, id
LIMIT $6`

// The two reads of a conversation's messages changed in a range (see the
// SQLite engine's sync.go). syncNewest reads the history newest first, a
// chunk at a time below a seq, with each row's stamp and whether it is
// purged. syncChanged reads the messages changed in the range below the
// first row stamped at or below it: $1 conversation, $2 since, $3 until,
// $4 below this seq, $5 the time that decides expiry, $6 the limit.
const (
	syncNewest = `SELECT ` + messageColumns + `, stamp, purged FROM messages
		WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3`
	syncChanged = `SELECT ` + messageColumns + ` FROM messages
		WHERE conversation_id = $1 AND changed AND stamp > $2 AND stamp <= $3 AND seq < $4
		AND NOT purged AND (expires_at IS NULL OR expires_at > $5)
		ORDER BY seq DESC LIMIT $6`
)

// Sync implements parley.Store. Everything is read from one snapshot whose
// stamp is the top of the range: write transactions commit in stamp order
// (see the package comment), so the snapshot holds every change up to it.
//
// With a replica, the snapshot is taken there if the replica has replayed
// up to the primary's current stamp (one primary-key read on the primary
// tells); otherwise on the primary. A sync therefore never returns less
// than a sync from the primary would have at that moment.
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
	useReplica := s.replicaUsable()
	if s.replica != nil && !useReplica {
		s.replicaMisses.Add(1)
	}
	page, onReplica, err := s.sync(ctx, userID, q, now, useReplica)
	if err != nil && onReplica && ctx.Err() == nil {
		// The replica failed mid-read (gone, or a recovery conflict
		// cancelled the query): it is skipped for a while, and the primary
		// answers.
		s.replicaFailed(err)
		page, _, err = s.sync(ctx, userID, q, now, false)
	}
	return page, err
}

// sync reads one page as Sync describes, on the replica if useReplica
// (and it has caught up) else on the primary; onReplica says where.
func (s *Store) sync(ctx context.Context, userID string, q parley.SyncQuery, now time.Time, useReplica bool) (page *parley.SyncPage, onReplica bool, err error) {
	tx, until, onReplica, err := s.syncSnapshot(ctx, useReplica)
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback(ctx)
	page, err = s.syncIn(ctx, tx, userID, q, until, now)
	return page, onReplica, err
}

// syncIn reads one page in the snapshot tx, whose stamp is until.
func (s *Store) syncIn(ctx context.Context, tx pgx.Tx, userID string, q parley.SyncQuery, until int64, now time.Time) (*parley.SyncPage, error) {
	if q.Until > 0 && q.Until < until {
		until = q.Until
	}
	page := &parley.SyncPage{Until: until, Conversations: []parley.SyncConversation{}}
	if q.Since >= until {
		return page, nil
	}

	type changed struct {
		id      string
		key     int64
		removed bool
	}
	rows, err := tx.Query(ctx, syncSelect, userID, q.Since, until, q.AfterStamp, q.AfterID, q.Conversations+1)
	if err != nil {
		return nil, s.internal("sync", err)
	}
	var list []changed
	for rows.Next() {
		var c changed
		if err := rows.Scan(&c.id, &c.key, &c.removed); err != nil {
			rows.Close()
			return nil, s.internal("sync", err)
		}
		list = append(list, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.internal("sync", err)
	}
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
	page.Conversations = make([]parley.SyncConversation, 0, len(list))
	left := q.Budget
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
				return nil, s.internal("sync", fmt.Errorf("no view of listed conversation %s", c.id))
			}
			sc.View = *v
			left -= parley.EstimatedConversationBytes + parley.EstimatedMembersBytes(len(v.Members), q.InlineMembers)
			var budget *int
			if q.Budget > 0 {
				budget = &left
			}
			if sc.Messages, sc.MoreMessages, err = s.syncMessages(ctx, tx, c.id, q.Since, until, now, q.Messages, budget); err != nil {
				return nil, err
			}
		}
		page.Conversations = append(page.Conversations, sc)
	}
	return page, nil
}

// syncSnapshot begins the read-only snapshot of a sync and returns it with
// its change stamp: on the replica if useReplica and it has caught up with
// the primary's stamp, else on the primary.
func (s *Store) syncSnapshot(ctx context.Context, useReplica bool) (tx pgx.Tx, stamp int64, onReplica bool, err error) {
	const stampSQL = `SELECT stamp FROM sync_stamp`
	if useReplica {
		var primary int64
		if err := s.pool.QueryRow(ctx, stampSQL).Scan(&primary); err != nil {
			return nil, 0, false, s.internal("sync", err)
		}
		tx, err := s.replica.BeginTx(ctx, snapshot)
		if err == nil {
			err = tx.QueryRow(ctx, stampSQL).Scan(&stamp)
			if err == nil && stamp >= primary {
				s.replicaReads.Add(1)
				return tx, stamp, true, nil
			}
			tx.Rollback(ctx)
		}
		if err != nil {
			s.replicaFailed(err)
		}
		s.replicaMisses.Add(1)
	}
	tx, err = s.pool.BeginTx(ctx, snapshot)
	if err != nil {
		return nil, 0, false, s.internal("sync", err)
	}
	if err := tx.QueryRow(ctx, stampSQL).Scan(&stamp); err != nil {
		tx.Rollback(ctx)
		return nil, 0, false, s.internal("sync", err)
	}
	return tx, stamp, false, nil
}

// syncMessages reads up to limit of the newest messages of a conversation
// stamped in (since, until] and visible at now, in ascending seq order, and
// whether there were more; see the SQLite engine's syncMessages. Here the
// newest-first read goes in chunks, since a query's rows all cross the
// network: the cost follows what changed, not the length of the history.
func (s *Store) syncMessages(ctx context.Context, tx pgx.Tx, conversationID string, since, until int64, now time.Time, limit int, budget *int) ([]parley.Message, bool, error) {
	var sealed []*messageRow
	spent := false
	charge := func(r *messageRow) {
		if budget != nil {
			*budget -= parley.EstimatedMessageBytes + len(r.body) + len(r.attachments)
			spent = *budget <= 0
		}
	}
	nowMillis := engine.Millis(now)
	boundary := int64(-1) // the seq of the first row stamped at or below since
	below := int64(math.MaxInt64)
	chunk := max(limit+1, 16)
	for more := true; more && boundary < 0 && len(sealed) <= limit && !spent; {
		rows, err := tx.Query(ctx, syncNewest, conversationID, below, chunk)
		if err != nil {
			return nil, false, s.internal("sync messages", err)
		}
		n := 0
		for rows.Next() {
			n++
			var r messageRow
			var stamp int64
			if err := rows.Scan(append(r.fields(), &stamp, &r.purged)...); err != nil {
				rows.Close()
				return nil, false, s.internal("sync messages", err)
			}
			below = r.seq
			if stamp <= since {
				boundary = r.seq
				break
			}
			if stamp > until || r.purged || r.expires != nil && *r.expires <= nowMillis {
				continue
			}
			sealed = append(sealed, &r)
			charge(&r)
			if len(sealed) > limit || spent {
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, false, s.internal("sync messages", err)
		}
		more = n == chunk
	}

	if boundary >= 0 && len(sealed) <= limit && !spent {
		rows, err := tx.Query(ctx, syncChanged, conversationID, since, until, boundary+1, nowMillis, limit+1-len(sealed))
		if err != nil {
			return nil, false, s.internal("sync messages", err)
		}
		for !spent && rows.Next() {
			r, err := scanMessageRow(rows)
			if err != nil {
				rows.Close()
				return nil, false, s.internal("sync messages", err)
			}
			sealed = append(sealed, r)
			charge(r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, false, s.internal("sync messages", err)
		}
	}

	more := len(sealed) > limit || spent
	if len(sealed) > limit {
		sealed = sealed[:limit]
	}
	slices.Reverse(sealed)
	msgs := make([]parley.Message, len(sealed))
	for i, r := range sealed {
		var err error
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
	rows, err := s.pool.Query(ctx, `SELECT conversation_id FROM members WHERE user_id = $1`, userID)
	if err != nil {
		return nil, s.internal("read conversation ids", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.internal("read conversation ids", err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

// LastSeqs implements parley.Store: one query, one snapshot, on the
// primary (live delivery starts from these).
func (s *Store) LastSeqs(ctx context.Context, userID string) (map[string]int64, error) {
	defer s.track("last_seqs", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	rows, err := s.pool.Query(ctx, `SELECT c.id, c.last_seq FROM members m JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = $1`, userID)
	if err != nil {
		return nil, s.internal("read last seqs", err)
	}
	defer rows.Close()
	seqs := map[string]int64{}
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			return nil, s.internal("read last seqs", err)
		}
		seqs[id] = seq
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read last seqs", err)
	}
	return seqs, nil
}
