package engine

import "github.com/parleychat/parley"

// CheckMembersQuery checks q for parley.Store.Members:
// CodeInvalidRequest for a limit out of 1..parley.MaxMembersPage or an
// After that is neither empty nor a user id.
func CheckMembersQuery(q parley.MembersQuery) error {
	if q.Limit < 1 || q.Limit > parley.MaxMembersPage {
		return parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to %d", parley.MaxMembersPage)
	}
	if q.After != "" && !parley.ValidID(q.After) {
		return parley.Errorf(parley.CodeInvalidRequest, "after must be a user id")
	}
	return nil
}

// ContactsSQL is the query of parley.Store.Contacts, in SQL both engines
// run with their own placeholders: $1 the user, $2 maxMembers (0: any
// size). The conversations small enough are found first, each counted
// only up to maxMembers+1 members (LIMIT), so a big group costs a bounded
// index read, and only their members are joined.
const ContactsSQL = `WITH small AS MATERIALIZED (
	SELECT me.conversation_id FROM members me
	WHERE me.user_id = $1 AND ($2 = 0 OR (SELECT count(*) FROM
		(SELECT 1 FROM members k WHERE k.conversation_id = me.conversation_id LIMIT $2 + 1) AS b) <= $2)
)
SELECT DISTINCT o.user_id FROM small JOIN members o ON o.conversation_id = small.conversation_id
WHERE o.user_id <> $1`

// MemberCountSQL is the query of parley.Store.MemberCount: $1 the
// conversation, $2 the most members to count (a huge number for all).
const MemberCountSQL = `SELECT count(*) FROM (SELECT 1 FROM members WHERE conversation_id = $1 LIMIT $2) AS b`

// CountLimit is the LIMIT of MemberCountSQL for upTo (see
// parley.Store.MemberCount).
func CountLimit(upTo int) int64 {
	if upTo <= 0 {
		return int64(parley.MaxGroupMembersCap) * 100
	}
	return int64(upTo) + 1
}
