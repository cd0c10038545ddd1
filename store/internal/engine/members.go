package engine

import (
	"slices"
	"strings"

	"github.com/parleychat/parley"
)

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

// smallConversations is the common table small: the conversations of $1
// with at most $2 members (any size if $2 is 0), each counted only up to
// $2+1 members (LIMIT), so a big group costs a bounded index read.
const smallConversations = `WITH small AS MATERIALIZED (
	SELECT me.conversation_id FROM members me
	WHERE me.user_id = $1 AND ($2 = 0 OR (SELECT count(*) FROM
		(SELECT 1 FROM members k WHERE k.conversation_id = me.conversation_id LIMIT $2 + 1) AS b) <= $2)
)`

// ContactPeersSQL is the query of parley.Store.ContactPeers, in SQL both
// engines run with their own placeholders ($1 the user, $2 maxMembers,
// 0: any size). It selects the contacts (near: the members of the small
// conversations), then each one's memberships by index (members_user)
// matched to the user's own (mine, read once), so the flags are over
// every conversation the two share while a big group costs one bounded
// count and one row per near peer who is in it, never a read of its
// members. The planner cannot know which conversation of mine is big
// (PostgreSQL guessed two members each and read all of a 10,000-member
// group's through members_stamp), so the match is on o.conversation_id
// concatenated with an empty string: an expression no index serves,
// which leaves members_user the only way to o. One statement: the
// contacts and their flags come from one snapshot.
//
// The rows (see Peers): the exceptional contacts, one a row as Peers
// lists them, and one row of every contact's id joined with commas (user
// ids, made by parley.NewID, hold none), its settings empty. The many
// contacts with the defaults so cost a share of one row, not a row each
// (a row costs more than its share of the query in either driver). A
// truth value is written max(CASE ...) = 1, which both dialects read as
// a boolean.
const ContactPeersSQL = smallConversations + `, mine AS MATERIALIZED (
	SELECT conversation_id, accepted FROM members WHERE user_id = $1
), near AS MATERIALIZED (
	SELECT DISTINCT o.user_id FROM small JOIN members o ON o.conversation_id = small.conversation_id
	WHERE o.user_id <> $1
)
SELECT near.user_id, u.presence_visibility, u.receipts_visibility,
	max(CASE WHEN me.accepted AND o.accepted THEN 1 ELSE 0 END) = 1,
	max(CASE WHEN me.accepted THEN 1 ELSE 0 END) = 1,
	max(CASE WHEN o.accepted THEN 1 ELSE 0 END) = 1
FROM near JOIN users u ON u.id = near.user_id
JOIN members o ON o.user_id = near.user_id
JOIN mine me ON me.conversation_id = o.conversation_id || ''
GROUP BY near.user_id, u.presence_visibility, u.receipts_visibility
HAVING u.presence_visibility <> 'everyone' OR u.receipts_visibility <> 'everyone'
	OR max(CASE WHEN me.accepted AND o.accepted THEN 1 ELSE 0 END) = 0
UNION ALL
SELECT coalesce(string_agg(user_id, ','), ''), '', '', true, true, true FROM near`

// Peers gathers the answer of a peers query (parley.Store.Peers' or
// ContactPeersSQL) from its rows, whose columns are Row's arguments in
// order. The zero value is ready to use; not safe for concurrent use.
type Peers struct {
	exceptional []parley.Peer
	contacts    string // ContactPeersSQL's list of every contact
}

// Row takes a row: a peer's id, its settings, and over every
// conversation it shares with the user whether both accepted one (a
// contact), whether the user accepted one and whether the peer did. A
// row with empty settings is instead the list of every contact, their
// ids joined with commas, that ContactPeersSQL adds.
func (ps *Peers) Row(id string, presence, readReceipts parley.Visibility, contact, userAccepted, peerAccepted bool) {
	if presence == "" {
		ps.contacts = id
		return
	}
	ps.exceptional = append(ps.exceptional, parley.Peer{
		UserID:   id,
		Privacy:  parley.Privacy{Presence: presence, ReadReceipts: readReceipts},
		Stranger: !contact, Unaccepted: !userAccepted, PeerUnaccepted: !peerAccepted,
	})
}

// List returns the peers: the exceptional ones, and after a list of
// every contact, every other contact too, with the defaults (see
// parley.Peer).
func (ps *Peers) List() []parley.Peer {
	if ps.contacts == "" {
		return ps.exceptional
	}
	listed := func(id string) bool { // few are exceptional, as a rule
		return slices.ContainsFunc(ps.exceptional, func(p parley.Peer) bool { return p.UserID == id })
	}
	if len(ps.exceptional) > 16 {
		m := make(map[string]bool, len(ps.exceptional))
		for _, p := range ps.exceptional {
			m[p.UserID] = true
		}
		listed = func(id string) bool { return m[id] }
	}
	peers := make([]parley.Peer, len(ps.exceptional), strings.Count(ps.contacts, ",")+1)
	copy(peers, ps.exceptional)
	for id := range strings.SplitSeq(ps.contacts, ",") {
		if !listed(id) {
			peers = append(peers, parley.Peer{UserID: id, Privacy: parley.DefaultPrivacy})
		}
	}
	return peers
}

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
