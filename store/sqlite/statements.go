package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// writerStatements are the writer's prepared statements, prepared once on
// the writer connection and bound to each batch's transaction with
// txn.stmt. The append path's own three are hotStatements (hot.go).
type writerStatements struct {
	messageByClientID *sql.Stmt
	readState         *sql.Stmt
	setReadSeq        *sql.Stmt
	setSyncStamp      *sql.Stmt
}

// The append path's statements (hotStatements).
const (
	// The conversation's last_seq if the sender (?2) is a member of it
	// (?1); no row otherwise. This and setLastSeq cost about 20% less
	// than one UPDATE ... RETURNING last_seq with an EXISTS check.
	memberLastSeqSQL = `SELECT c.last_seq, c.e2ee FROM members m JOIN conversations c ON c.id = m.conversation_id
			WHERE m.conversation_id = ?1 AND m.user_id = ?2`
	// updated_at orders the conversation lists; stamp is the change stamp.
	setLastSeqSQL = `UPDATE conversations SET last_seq = ?, updated_at = max(updated_at, ?), stamp = ? WHERE id = ?`
	// A duplicate (sender_id, client_msg_id) inserts nothing: the
	// unique index finds it, so the append needs no lookup of its own.
	insertMessageSQL = `INSERT INTO messages (` + messageColumns + `, stamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (sender_id, client_msg_id) DO NOTHING`
)

// readerStatements are the hot reads, prepared on the reader pool at Open
// (each connection prepares them once, on first use, on itself: a read
// transaction's tx.StmtContext never needs a second connection). Parsing
// and planning is most of the cost of a small read: in a reconnect storm
// (parley bench storm) preparing the sync, session and snapshot queries
// anew for every request took 30% of the server's CPU.
type readerStatements struct {
	message        *sql.Stmt
	messagesNewest *sql.Stmt
	messagesBefore *sql.Stmt
	messagesAfter  *sql.Stmt

	syncSelect, syncNewest, syncChanged *sql.Stmt
	lastSeqs, conversationIDs, device   *sql.Stmt
	viewsAll, viewsByIDs                *sql.Stmt
	membersAll, membersByIDs            *sql.Stmt
	pushTargets, pushTarget, unread     *sql.Stmt
	// Every send and receipt asks for the sender's relations in the
	// conversation (blocks, a pending request): prepared, they cost half.
	relations, conversationKind, peers *sql.Stmt
	// Every connection coming online asks for its contacts for presence.
	contactPeers *sql.Stmt
}

func (w *writerStatements) prepare(ctx context.Context, db *sql.DB) error {
	return prepareAll(ctx, db, []stmtDef{
		// The message the sender already sent with a client_msg_id.
		{&w.messageByClientID, `SELECT ` + messageColumns + `, purged FROM messages WHERE sender_id = ? AND client_msg_id = ?`},
		{&w.readState, `SELECT m.read_seq, c.last_seq FROM members m JOIN conversations c ON c.id = m.conversation_id
			WHERE m.conversation_id = ? AND m.user_id = ?`},
		{&w.setReadSeq, `UPDATE members SET read_seq = ?, stamp = ? WHERE conversation_id = ? AND user_id = ?`},
		{&w.setSyncStamp, `UPDATE sync_stamp SET stamp = ?`},
	})
}

func (w *writerStatements) close() {
	closeAll(w.messageByClientID, w.readState, w.setReadSeq, w.setSyncStamp)
}

func (r *readerStatements) prepare(ctx context.Context, db *sql.DB) error {
	const from = `SELECT ` + messageColumns + ` FROM messages WHERE conversation_id = ? `
	return prepareAll(ctx, db, []stmtDef{
		{&r.message, from + `AND seq = ? AND ` + notExpired},
		{&r.messagesNewest, from + `AND ` + notExpired + ` ORDER BY seq DESC LIMIT ?`},
		{&r.messagesBefore, from + `AND seq < ? AND ` + notExpired + ` ORDER BY seq DESC LIMIT ?`},
		{&r.messagesAfter, from + `AND seq > ? AND ` + notExpired + ` ORDER BY seq LIMIT ?`},
		{&r.syncSelect, syncSelect},
		{&r.syncNewest, syncNewest},
		{&r.syncChanged, syncChanged},
		{&r.lastSeqs, `SELECT c.id, c.last_seq FROM members m JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = ?`},
		{&r.conversationIDs, `SELECT conversation_id FROM members WHERE user_id = ?`},
		{&r.device, `SELECT ` + deviceColumns + ` FROM devices WHERE id = ?`},
		{&r.viewsAll, viewsAllSQL},
		{&r.viewsByIDs, viewsByIDsSQL},
		{&r.membersAll, membersAllSQL},
		{&r.membersByIDs, membersByIDsSQL},
		{&r.pushTargets, pushTargetsSQL},
		{&r.pushTarget, pushTargetSQL},
		{&r.unread, unreadSQL},
		{&r.relations, relationsSQL},
		{&r.conversationKind, `SELECT kind FROM conversations WHERE id = ?`},
		{&r.peers, peersSQL},
		{&r.contactPeers, contactPeersSQL},
	})
}

func (r *readerStatements) close() {
	closeAll(r.message, r.messagesNewest, r.messagesBefore, r.messagesAfter,
		r.syncSelect, r.syncNewest, r.syncChanged, r.lastSeqs, r.conversationIDs, r.device,
		r.viewsAll, r.viewsByIDs, r.membersAll, r.membersByIDs, r.pushTargets, r.pushTarget, r.unread,
		r.relations, r.conversationKind, r.peers, r.contactPeers)
}

type stmtDef struct {
	stmt  **sql.Stmt
	query string
}

func prepareAll(ctx context.Context, db *sql.DB, defs []stmtDef) error {
	for _, d := range defs {
		st, err := db.PrepareContext(ctx, d.query)
		if err != nil {
			return fmt.Errorf("sqlite: prepare %q: %w", d.query, err)
		}
		*d.stmt = st
	}
	return nil
}

func closeAll(stmts ...*sql.Stmt) {
	for _, st := range stmts {
		if st != nil {
			st.Close()
		}
	}
}
