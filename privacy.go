package parley

import "time"

// Block is one user another user blocks (see Store.SetBlock).
type Block struct {
	UserID    string    `json:"user_id"`
	CreatedAt time.Time `json:"created_at"`
}

// MaxBlocks bounds how many users one user may block; one more is
// CodeLimitExceeded.
const MaxBlocks = 10_000

// Relations is how a user stands with other users, as the privacy rules
// in the core need it (Store.Relations).
type Relations struct {
	// Blocks maps each user this user blocks to the last_seq the direct
	// conversation between the two had when the block began (0 if there
	// was none): the highest seq of that conversation whose delivery
	// and read receipts the blocked user may still see.
	Blocks map[string]int64
	// BlockedBy maps each user who blocks this user the same way.
	BlockedBy map[string]int64
	// Kind is the kind of the conversation asked about, if a block is
	// listed ("" otherwise).
	Kind ConversationKind
	// Pending says the user's membership of the conversation asked about
	// is a message request not yet accepted.
	Pending bool
}

// Blocking reports whether either of the two users blocks the other.
func (r *Relations) Blocking(otherID string) bool {
	_, a := r.Blocks[otherID]
	_, b := r.BlockedBy[otherID]
	return a || b
}

// Visibility says who may see one kind of a user's state.
type Visibility string

// Visibilities. Contacts are the users who share an accepted
// conversation with the user (see Peer.Stranger).
const (
	VisibleEveryone Visibility = "everyone"
	VisibleContacts Visibility = "contacts"
	VisibleNobody   Visibility = "nobody"
)

// Valid reports whether v is a known visibility.
func (v Visibility) Valid() bool {
	return v == VisibleEveryone || v == VisibleContacts || v == VisibleNobody
}

// Allows reports whether a viewer may see what v guards, given whether
// the viewer is a contact of its owner. The zero Visibility is
// everyone.
func (v Visibility) Allows(contact bool) bool {
	switch v {
	case VisibleNobody:
		return false
	case VisibleContacts:
		return contact
	}
	return true
}

// Privacy is a user's privacy settings. Presence covers online, offline
// and last seen; ReadReceipts the user's read watermark as others see it
// (and, as in WhatsApp, whether the user sees others': with nobody, the
// user sees no one's).
type Privacy struct {
	Presence     Visibility `json:"presence"`
	ReadReceipts Visibility `json:"read_receipts"`
}

// DefaultPrivacy is every user's privacy until they change it.
var DefaultPrivacy = Privacy{Presence: VisibleEveryone, ReadReceipts: VisibleEveryone}

// Peer is another user who shares a conversation with a user, as
// Store.Peers and Store.ContactPeers list them.
type Peer struct {
	UserID  string
	Privacy Privacy
	// Stranger says the two share no conversation that both have
	// accepted: they are not contacts.
	Stranger bool
	// Unaccepted says the user has accepted no conversation shared with
	// the peer; PeerUnaccepted says the peer has accepted none shared
	// with the user. Either implies Stranger.
	Unaccepted, PeerUnaccepted bool
}
