package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// The append path's three statements run on the driver connection itself,
// skipping database/sql (argument conversion, the Tx/Stmt locks and
// lookups, the Rows wrapper), which was about 20% of their CPU.
//
// This is safe because the writer holds its connection for the life of the
// Store (Store.wconn, a *sql.Conn), so database/sql never hands the driver
// connection to anyone else, never resets or closes it while the Store is
// open, and uses it only from the writer goroutine, through the batch's
// *sql.Tx. The hot statements also run only on the writer goroutine, and
// only between a successful BEGIN and its COMMIT or ROLLBACK: they are part
// of the same SQLite transaction as everything else the batch writes. The
// driver connection is captured in Raw's callback and used after it
// returns, which database/sql's documentation forbids in general; the
// reasons above are why it holds here (nothing else can lock or use the
// connection while the writer does).

// hotStmt is a driver statement that can run with a context.
type hotStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// hotStatements are the append path's statements on the writer's driver
// connection, with argument buffers reused from call to call. Only the
// writer goroutine uses them.
type hotStatements struct {
	memberLastSeq hotStmt
	insertMessage hotStmt
	setLastSeq    hotStmt

	args [16]driver.NamedValue // ordinals set once
	dest [2]driver.Value
}

func (h *hotStatements) prepare(ctx context.Context, c *sql.Conn) error {
	return c.Raw(func(dc any) error {
		cp, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errors.New("sqlite: the driver connection cannot prepare with a context")
		}
		for _, d := range []struct {
			st    *hotStmt
			query string
		}{
			{&h.memberLastSeq, memberLastSeqSQL},
			{&h.insertMessage, insertMessageSQL},
			{&h.setLastSeq, setLastSeqSQL},
		} {
			st, err := cp.PrepareContext(ctx, d.query)
			if err != nil {
				return fmt.Errorf("sqlite: prepare %q: %w", d.query, err)
			}
			hs, ok := st.(hotStmt)
			if !ok {
				st.Close()
				return errors.New("sqlite: a driver statement cannot run with a context")
			}
			*d.st = hs
		}
		for i := range h.args {
			h.args[i].Ordinal = i + 1
		}
		return nil
	})
}

// close finalizes the statements; c must still be open.
func (h *hotStatements) close(c *sql.Conn) {
	if c == nil {
		return
	}
	// Through Raw, so that a connection database/sql has already closed is
	// not touched.
	c.Raw(func(any) error {
		for _, st := range []*hotStmt{&h.memberLastSeq, &h.insertMessage, &h.setLastSeq} {
			if *st != nil {
				(*st).Close()
				*st = nil
			}
		}
		return nil
	})
}

// clearArgs drops the references the argument buffer holds.
func (h *hotStatements) clearArgs(n int) {
	for i := range n {
		h.args[i].Value = nil
	}
}

// lastSeq returns the conversation's last_seq and whether it is e2ee if
// senderID is a member of it; found is false otherwise.
func (h *hotStatements) lastSeq(conversationID, senderID any) (seq int64, e2ee, found bool, err error) {
	h.args[0].Value = conversationID
	h.args[1].Value = senderID
	rows, err := h.memberLastSeq.QueryContext(bg, h.args[:2])
	h.clearArgs(2)
	if err != nil {
		return 0, false, false, err
	}
	dest := h.dest[:]
	err = rows.Next(dest)
	cerr := rows.Close()
	if err == io.EOF {
		return 0, false, false, cerr
	}
	if err == nil {
		err = cerr
	}
	if err != nil {
		return 0, false, false, err
	}
	v, ok := dest[0].(int64)
	flag, ok2 := dest[1].(int64)
	if !ok || !ok2 {
		err = fmt.Errorf("sqlite: last_seq, e2ee are %T, %T, not integers", dest[0], dest[1])
	}
	clear(dest)
	if err != nil {
		return 0, false, false, err
	}
	return v, flag != 0, true, nil
}

// exec runs st with the first n arguments and returns the number of rows
// changed.
func (h *hotStatements) exec(st hotStmt, n int) (int64, error) {
	res, err := st.ExecContext(bg, h.args[:n])
	h.clearArgs(n)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
