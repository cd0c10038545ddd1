package engine

import "github.com/parleychat/parley"

// The reads of push targets, in SQL both engines run with their own
// placeholders. Both select the same columns, in this order: user_id,
// device_id, the sealed registration and its key id, read_seq,
// delivered_seq, last_seq, muted_until, dnd_until, accepted.

// PushTargetsSQL returns the query that lists the targets of a
// conversation ($1) but for one user ($2): each registered device of
// every other member, by user id and device id in byte order, which
// collate gives in the engine's dialect (PostgreSQL: ` COLLATE "C"`,
// whatever the database's collation; SQLite: "", its default). The
// conversation row is joined to them from the left, so a conversation
// without targets is one row of NULL targets and a missing one is no
// row.
func PushTargetsSQL(collate string) string {
	return `
SELECT t.user_id, t.device_id, t.data, t.data_key, t.read_seq, t.delivered_seq, c.last_seq, t.muted_until, t.dnd_until, t.accepted
FROM conversations c
LEFT JOIN (
	SELECT m.user_id, p.device_id, p.data, p.data_key, m.read_seq, coalesce(dc.delivered_seq, 0) AS delivered_seq,
		m.muted_until, u.dnd_until, m.accepted
	FROM members m
	JOIN users u ON u.id = m.user_id
	JOIN push_registrations p ON p.user_id = m.user_id
	LEFT JOIN device_cursors dc ON dc.device_id = p.device_id AND dc.conversation_id = m.conversation_id
	WHERE m.conversation_id = $1 AND m.user_id <> $2
) t ON true
WHERE c.id = $1
ORDER BY t.user_id` + collate + `, t.device_id` + collate
}

// PushTargetSQL is one device's ($2) target in a conversation ($1): no
// row if the device has no registration, NULL member columns if its user
// is not a member.
const PushTargetSQL = `
SELECT p.user_id, p.device_id, p.data, p.data_key, m.read_seq, coalesce(dc.delivered_seq, 0), c.last_seq, m.muted_until, u.dnd_until, m.accepted
FROM push_registrations p
JOIN users u ON u.id = p.user_id
LEFT JOIN members m ON m.conversation_id = $1 AND m.user_id = p.user_id
LEFT JOIN conversations c ON c.id = m.conversation_id
LEFT JOIN device_cursors dc ON dc.device_id = p.device_id AND dc.conversation_id = $1
WHERE p.device_id = $2`

// FanOut is what the engines' parley.Store.PushFanOut and PushTargets do
// alike around their reads, for rows of type R (an engine's row of its
// push targets query, the registration still sealed): it collects each
// request's targets from the rows of its query, chooses whose unread
// counts to read, and assembles the answers. The engines differ only in
// how they read (SQLite in one read transaction, PostgreSQL in batches).
// Not safe for concurrent use.
type FanOut[R any] struct {
	reqs    []parley.PushFanOutRequest
	out     []parley.PushFanOut
	targets [][]R
	unread  map[UnreadKey][2]int64 // conversation's, total
}

// UnreadKey names unread counts to read: a user's, in a conversation.
type UnreadKey struct{ UserID, ConversationID string }

// NewFanOut starts the answers to reqs. CodeInvalidRequest if there are
// more than parley.MaxPushFanOut.
func NewFanOut[R any](reqs []parley.PushFanOutRequest) (*FanOut[R], error) {
	if len(reqs) > parley.MaxPushFanOut {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "at most %d push fan-outs at once", parley.MaxPushFanOut)
	}
	return &FanOut[R]{reqs: reqs, out: make([]parley.PushFanOut, len(reqs)), targets: make([][]R, len(reqs))}, nil
}

// Request returns request i.
func (f *FanOut[R]) Request(i int) parley.PushFanOutRequest { return f.reqs[i] }

// Row takes a row of the query of request i, in the query's order (by
// user, then device). Any row says that the conversation exists; target
// says that the row is a target, not the conversation's one row of NULL
// targets when it has none.
func (f *FanOut[R]) Row(i int, r R, target bool) {
	f.out[i].Found = true
	if target {
		f.targets[i] = append(f.targets[i], r)
	}
}

// Found reports whether request i's conversation exists: a row came.
func (f *FanOut[R]) Found(i int) bool { return f.out[i].Found }

// Unread returns the unread counts the answers carry, each once: those
// of the first parley.PushFanOutCounted users among each request's
// targets (a user already listed for an earlier request is not counted
// again). userID returns a row's user.
func (f *FanOut[R]) Unread(userID func(R) string) []UnreadKey {
	var keys []UnreadKey
	f.unread = map[UnreadKey][2]int64{}
	for i, rs := range f.targets {
		users := 0
		for _, r := range rs {
			k := UnreadKey{userID(r), f.reqs[i].ConversationID}
			if _, ok := f.unread[k]; ok {
				continue
			}
			if users++; users > parley.PushFanOutCounted {
				break // targets are ordered by user: the rest are others'
			}
			f.unread[k] = [2]int64{}
			keys = append(keys, k)
		}
	}
	return keys
}

// SetUnread records the counts read for k, one of Unread's: the
// conversation's (conv) and the user's total (the badge).
func (f *FanOut[R]) SetUnread(k UnreadKey, conv, total int64) {
	f.unread[k] = [2]int64{conv, total}
}

// Answers opens every target (open) and returns the answers in the
// requests' order, each target with its user's unread counts if Unread
// listed them (Counted).
func (f *FanOut[R]) Answers(open func(R) (parley.PushTarget, error)) ([]parley.PushFanOut, error) {
	for i, rs := range f.targets {
		f.out[i].Targets = make([]parley.PushTarget, len(rs))
		for j, r := range rs {
			t, err := open(r)
			if err != nil {
				return nil, err
			}
			c, ok := f.unread[UnreadKey{t.UserID, f.reqs[i].ConversationID}]
			t.Unread, t.Badge, t.Counted = c[0], c[1], ok
			f.out[i].Targets[j] = t
		}
	}
	return f.out, nil
}

// Targets is Answers for a FanOut of one request (PushTargets): its
// targets, or CodeConversationNotFound if its conversation does not exist.
func (f *FanOut[R]) Targets(open func(R) (parley.PushTarget, error)) ([]parley.PushTarget, error) {
	if !f.Found(0) {
		return nil, parley.Errorf(parley.CodeConversationNotFound, "no such conversation")
	}
	out, err := f.Answers(open)
	if err != nil {
		return nil, err
	}
	return out[0].Targets, nil
}
