package parley

import (
	"context"
	"time"
)

// Store is the system of record. Every engine (store/sqlite, later
// store/postgres) passes the contract suite in store/storetest. All methods
// are safe for concurrent use. Errors that a client may see are *Error with
// the codes documented per method; anything else is internal.
//
// The Store checks consistency (a sender must be a member when the message
// commits, a direct pair is unique), not permissions: who may do what is
// decided once, in the core (package service).
type Store interface {
	// Ping checks that the store answers; /readyz calls it.
	Ping(ctx context.Context) error
	// Close waits for queued writes to finish and releases the store.
	Close() error

	// CreateUser inserts u (ID and Handle set, Handle normalized).
	// CodeConflict if the handle is taken.
	CreateUser(ctx context.Context, u *User) error
	// User returns a user by id; CodeNotFound if none.
	User(ctx context.Context, id string) (*User, error)
	// UserByHandle returns a user by normalized handle; CodeNotFound if none.
	UserByHandle(ctx context.Context, handle string) (*User, error)
	// SetUserRole sets the system role; CodeNotFound if no such user.
	SetUserRole(ctx context.Context, userID string, role SystemRole) error
	// SetUserState sets the state; suspending also deletes every device of
	// the user with its tokens, in the same transaction. CodeNotFound if no
	// such user.
	SetUserState(ctx context.Context, userID string, state UserState) error

	// CreateSession inserts a new device and the first refresh token of its
	// session in one transaction. CodeNotFound if the user does not exist,
	// CodeSuspended if the user is not active at commit time,
	// CodeLimitExceeded if maxDevices > 0 and the user has maxDevices
	// devices or more at commit time (checked in the transaction, so
	// concurrent logins cannot pass it together; 0 means no cap). Only
	// devices with a refresh token unexpired at d.CreatedAt count: a
	// session that ran out holds no place.
	CreateSession(ctx context.Context, d *Device, t *RefreshToken, maxDevices int) error
	// RotateRefreshToken uses up the token whose hash is oldHash and stores
	// next (whose Hash and expiry the caller sets; the store fills the user,
	// device and session from the old token) in one transaction, and touches
	// the device's LastSeenAt. It returns the device. Errors: CodeUnauthorized
	// if the token is unknown, expired, or belongs to a device that is gone.
	// If the token was already used, the whole family is revoked (the device
	// and all its tokens are deleted) and the error is a *RefreshReuseError
	// naming the revoked device (CodeUnauthorized, ErrRefreshReuse in its
	// chain).
	RotateRefreshToken(ctx context.Context, oldHash string, next *RefreshToken, now time.Time) (*Device, error)
	// Device returns a device by id; CodeNotFound if none.
	Device(ctx context.Context, id string) (*Device, error)
	// Devices lists a user's devices, oldest first.
	Devices(ctx context.Context, userID string) ([]Device, error)
	// DeleteDevice deletes a device of userID with its refresh tokens and
	// delivery cursors; CodeNotFound if userID has no such device.
	DeleteDevice(ctx context.Context, userID, deviceID string) error
	// SetPush stores the push registration of deviceID, a device of userID,
	// replacing any it had (sealed at rest: a token is a capability to wake
	// the device). CodeNotFound if userID has no such device.
	SetPush(ctx context.Context, userID, deviceID string, r *PushRegistration) error
	// DeletePush removes the push registration of deviceID, a device of
	// userID; none is not an error. CodeNotFound if userID has no such
	// device. Deleting a device deletes its registration too.
	DeletePush(ctx context.Context, userID, deviceID string) error
	// Push returns the push registration of a device; CodeNotFound if it
	// has none (or there is no such device).
	Push(ctx context.Context, deviceID string) (*PushRegistration, error)
	// PushDevices calls each with the user and the id of every device
	// that has a push registration, in no particular order, reading the
	// registrations' ids only (never their tokens). It stops at the first
	// error each returns and returns it. The push role's view of who may
	// need a notification is loaded from it (push.View).
	PushDevices(ctx context.Context, each func(userID, deviceID string) error) error
	// PushTargets lists every device with a push registration of every
	// member of a conversation except exceptUserID, ordered by user id and
	// device id. CodeConversationNotFound if there is no such
	// conversation.
	PushTargets(ctx context.Context, conversationID, exceptUserID string) ([]PushTarget, error)
	// PushFanOut answers several PushTargets requests at once (at most
	// MaxPushFanOut; more is a CodeInvalidRequest error), the targets of
	// the first PushFanOutCounted users of each answer with their user's
	// unread counts as Unread counts them at now (Counted: the
	// notification's count and badge): the push role's one read for a
	// batch of messages. The answers are in the requests' order; an
	// unknown conversation is an answer with Found false, not an error.
	PushFanOut(ctx context.Context, reqs []PushFanOutRequest, now time.Time) ([]PushFanOut, error)
	// PushTarget returns one device's target in a conversation.
	// CodeNotFound if the device is gone or has no push registration;
	// CodeConversationNotFound if the conversation is gone or the device's
	// user is no longer a member.
	PushTarget(ctx context.Context, conversationID, deviceID string) (*PushTarget, error)
	// Unread returns userID's unread count in conversationID (as
	// ConversationView.UnreadCount counts it; 0 if conversationID is "" or
	// the user is not a member) and the sum of the user's unread counts
	// over every conversation the user is a member of (the badge).
	Unread(ctx context.Context, userID, conversationID string, now time.Time) (conv, total int64, err error)
	// SetMute mutes userID's notifications of a conversation until the
	// given time; the zero time unmutes. It raises the member's change
	// stamp (the user's other devices learn it by sync).
	// CodeConversationNotFound if userID is not a member.
	SetMute(ctx context.Context, conversationID, userID string, until time.Time) error
	// SetDND puts userID in do-not-disturb until the given time; the zero
	// time ends it. CodeNotFound if there is no such user.
	SetDND(ctx context.Context, userID string, until time.Time) error
	// DeleteDevices deletes every device of userID and returns how many.
	DeleteDevices(ctx context.Context, userID string) (int, error)

	// SetDeviceKeys publishes the keys of a device of k.UserID (k checked
	// by the caller, CreatedAt and UpdatedAt ignored: the store sets them
	// to now) and returns the user's device list version after it. The
	// first publish sets the identity key; a later one must give the same
	// identity key and a higher key id (CodeConflict otherwise), except
	// that republishing the stored key id with the same bytes changes
	// nothing (changed false). Otherwise the user's device list version
	// rises by one, in the same transaction. CodeNotFound if k.UserID has
	// no such device.
	SetDeviceKeys(ctx context.Context, k *DeviceKeys, now time.Time) (version int64, changed bool, err error)
	// DeviceList returns the keyed devices of a user (oldest first) with
	// the user's device list version; deleting a keyed device (logout,
	// removal, revocation, expiry, suspension) raises that version too.
	// CodeNotFound if there is no such user.
	DeviceList(ctx context.Context, userID string) (*DeviceList, error)
	// ConversationDeviceLists returns the device list of every member of
	// a conversation, by user id, read in one snapshot.
	// CodeConversationNotFound if there is no such conversation.
	ConversationDeviceLists(ctx context.Context, conversationID string) ([]DeviceList, error)
	// TakeDeviceListNews removes and returns up to limit (1..1000) ids of
	// users a keyed device of whom was deleted, by any path (an expired
	// session's purge included), since the news was last taken; each
	// deletion is news once, across every node sharing the store.
	TakeDeviceListNews(ctx context.Context, limit int) ([]string, error)
	// SharesConversation reports whether two users are members of a
	// common conversation.
	SharesConversation(ctx context.Context, userID, otherID string) (bool, error)
	// MessageKeys returns the stored keys of the messages fromSeq..toSeq
	// of a conversation for the given devices (at most 1,000; nil: every
	// device), by seq then device id.
	MessageKeys(ctx context.Context, conversationID string, fromSeq, toSeq int64, deviceIDs []string) ([]MessageKey, error)
	// SetMessageKeys adds or replaces keys of an encrypted message, for a
	// device of its sender (senderUserID), in one transaction with the
	// checks: each key must be for a current keyed device of a current
	// member, created before the message, whose user joined before it,
	// at its current key id (a *DeviceMismatchError otherwise, nothing
	// written). It returns the message. CodeNotFound if there is no such
	// message (or it expired at now, or is a tombstone); CodeForbidden
	// if senderUserID did not send it or it is not encrypted.
	SetMessageKeys(ctx context.Context, conversationID string, seq int64, senderUserID string, keys []EnvelopeKey, now time.Time) (*Message, error)

	// CreateConversation inserts c with its Members (IDs, kind, title,
	// E2EE, roles and CreatedAt set by the caller). For a direct
	// conversation whose pair of users already has one with the same E2EE,
	// it returns that one and created=false instead. CodeNotFound if a member user does not exist.
	CreateConversation(ctx context.Context, c *Conversation) (conv *Conversation, created bool, err error)
	// Conversation returns a conversation with its members;
	// CodeConversationNotFound if none.
	Conversation(ctx context.Context, id string) (*Conversation, error)
	// Member returns userID's membership of a conversation;
	// CodeConversationNotFound if there is no such conversation or userID is
	// not a member (the two are not told apart).
	Member(ctx context.Context, conversationID, userID string) (*Member, error)
	// ConversationView returns the conversation as userID sees it;
	// CodeConversationNotFound if none or userID is not a member.
	ConversationView(ctx context.Context, id, userID string, now time.Time) (*ConversationView, error)
	// ConversationViews lists every conversation userID is a member of, the
	// most recently active first.
	ConversationViews(ctx context.Context, userID string, now time.Time) ([]ConversationView, error)
	// ChangeMembers loads a conversation with its members inside a write
	// transaction, calls decide with it, and applies the change decide
	// returns, atomically: no other write lands between the decision and the
	// change, so permission checks made in decide (by the core) cannot race.
	// decide runs on the store's writer: it must not call the Store (a write
	// would deadlock) and should not block.
	// If decide fails, nothing changes and its error is returned. decide may
	// run more than once and must have no side effects. The result is the
	// conversation after the change (nil after Delete). Added members' ReadSeq
	// is clamped to 0..last_seq. Errors: CodeConversationNotFound if there is
	// no conversation; CodeNotFound if an added user does not exist (or is
	// not active) or a
	// removed or re-roled one is not a member; CodeConflict if an added one
	// is a member already; in all of these nothing changes.
	ChangeMembers(ctx context.Context, conversationID string, decide func(c *Conversation) (MemberChange, error)) (*Conversation, error)
	// MarkRead raises userID's read_seq to min(seq, last_seq) if that is
	// higher; it never lowers it. It returns the resulting read_seq and
	// whether this call raised it (a read receipt is due only then).
	// CodeConversationNotFound if userID is not a member.
	MarkRead(ctx context.Context, conversationID, userID string, seq int64) (Watermark, error)
	// MarkDelivered records that deviceID, a device of userID, has every
	// message up to min(seq, last_seq): it raises the device's delivered_seq
	// in the conversation and the member's delivered_seq (the highest over
	// the user's devices), never lowering either, in one transaction, and
	// returns both. user.Raised means the first of the user's devices just
	// passed a seq: a delivered receipt is due. CodeConversationNotFound if
	// userID is not a member; CodeNotFound if deviceID is not userID's.
	MarkDelivered(ctx context.Context, conversationID, userID, deviceID string, seq int64) (device, user Watermark, err error)

	// Sync returns the conversations of userID that changed after q.Since,
	// a page at a time (see SyncQuery), with their messages changed in the
	// stamp range (q.Since, page.Until]. Every write a member of a
	// conversation could see raises a store-wide change stamp: a new, edited
	// or deleted message; a membership, role or title change; any member's
	// read or delivered watermark rising. A conversation changed if its own
	// stamp or any of its members' stamps is above q.Since; a conversation
	// userID left or was removed from (or that was deleted) is reported with
	// Removed. With q.Since 0 every current membership is returned and no
	// removals. Pages are ordered by (stamp, conversation id), a stamp above
	// Until counting as Until, and continue after (q.AfterStamp, q.AfterID).
	// A conversation that changes while a client pages moves to the end of
	// the pass (so it may come twice) and is in the next pass too, with its
	// changes above Until: nothing is skipped. (It cannot simply be left to
	// the next pass: its stamp no longer tells that it also changed in this
	// range, and those changes would be lost.) A q.Since at or above the
	// store's current stamp gives an empty page; its Until is below q.Since
	// if the store went back (restored from a backup). q.Conversations must
	// be 1..MaxSyncConversations and q.Messages 0..MaxHistoryLimit.
	Sync(ctx context.Context, userID string, q SyncQuery, now time.Time) (*SyncPage, error)
	// ConversationIDs lists the ids of every conversation userID is a
	// member of, in no particular order.
	ConversationIDs(ctx context.Context, userID string) ([]string, error)
	// MemberCount returns the number of members of a conversation (0 if
	// there is no such conversation), counting at most upTo+1 of them when
	// upTo > 0: a result above upTo then means "more than upTo", and the
	// cost follows upTo, not the size of the conversation.
	MemberCount(ctx context.Context, conversationID string, upTo int) (int, error)
	// Members returns a page of a conversation's members (see
	// MembersQuery), by user id ascending, and the conversation's member
	// count, read in one snapshot. CodeConversationNotFound if there is
	// no such conversation; CodeInvalidRequest if q.Limit is out of
	// 1..MaxMembersPage.
	Members(ctx context.Context, conversationID string, q MembersQuery) (members []Member, count int, err error)
	// SetBlock makes blockerID block blockedID (blocked true), recording
	// the time and the last_seq of the direct conversation between the
	// two (0 if none; see Relations.Blocks), or lifts the block (blocked
	// false). Blocking a user blocked already keeps the first record;
	// lifting a block that does not exist changes nothing. CodeNotFound
	// if blockedID is not a user; CodeInvalidRequest if the two are the
	// same; CodeLimitExceeded if blockerID blocks MaxBlocks users already.
	SetBlock(ctx context.Context, blockerID, blockedID string, blocked bool, now time.Time) error
	// Blocks lists the users userID blocks, oldest block first.
	Blocks(ctx context.Context, userID string) ([]Block, error)
	// Relations returns how userID stands with other users: whom it
	// blocks and who blocks it. With a conversationID, only members of
	// that conversation are listed, and Kind is set if any is; without,
	// every user.
	Relations(ctx context.Context, userID, conversationID string) (*Relations, error)
	// AcceptConversation accepts userID's membership of a conversation
	// (see Member.Request), raising the member's change stamp, and
	// reports whether it was a request until now.
	// CodeConversationNotFound if userID is not a member.
	AcceptConversation(ctx context.Context, conversationID, userID string) (bool, error)
	// Strangers returns those of userIDs who share no accepted
	// conversation with userID (one both of them accepted), in the order
	// given. At most MaxGroupMembersCap ids.
	Strangers(ctx context.Context, userID string, userIDs []string) ([]string, error)
	// CreateReport stores r (every field but the resolution set by the
	// caller, State open), its Content sealed.
	CreateReport(ctx context.Context, r *Report) error
	// Reports returns a page of reports (see ReportQuery).
	Reports(ctx context.Context, q ReportQuery) ([]Report, error)
	// ResolveReport marks a report resolved by byUserID at now with a
	// resolution note and returns it; resolving a resolved report again
	// replaces the note. CodeNotFound if there is no such report.
	ResolveReport(ctx context.Context, id, byUserID, resolution string, now time.Time) (*Report, error)
	// SetPrivacy stores userID's privacy settings (both valid).
	// CodeNotFound if there is no such user.
	SetPrivacy(ctx context.Context, userID string, p Privacy) error
	// Peers lists, in no particular order, the users who share a
	// conversation with userID (only members of conversationID, if one
	// is named) and are exceptional: their settings are not the
	// defaults, or they are strangers to userID (see Peer). Others are
	// contacts with the default settings. The flags of a peer are over
	// every conversation the two share.
	Peers(ctx context.Context, userID, conversationID string) ([]Peer, error)
	// ContactPeers lists, in no particular order, the user's contacts for
	// presence: every user other than userID who shares a conversation
	// of at most maxMembers members (any size if maxMembers is 0) with
	// userID, the audience of the user's presence and those whose
	// presence the user may see. Each comes as a Peer, settings and flags
	// over every conversation the two share, of any size (an exceptional
	// one as Peers lists it). One snapshot: who is a contact and how each
	// may see the other never disagree while a membership changes.
	// Presence never flows through the larger conversations: the cost
	// follows the members of the user's conversations up to maxMembers
	// each (and their shared memberships), not the size of larger ones,
	// where Peers' follows every member of every conversation of the user.
	ContactPeers(ctx context.Context, userID string, maxMembers int) ([]Peer, error)
	// LastSeqs returns the last_seq of every conversation userID is a
	// member of, keyed by conversation id, read in one snapshot. The
	// WebSocket gateway starts live delivery from these.
	LastSeqs(ctx context.Context, userID string) (map[string]int64, error)

	// AppendMessage commits m, assigning m.Seq = last_seq+1 of its
	// conversation at commit, and returns only once the commit is durable.
	// A message of type MessageEncrypted (with its Envelope, Keys
	// included, its shape checked by the caller) goes only into an e2ee
	// conversation and every other type only elsewhere (CodeInvalidRequest
	// otherwise, checked at commit); its envelope is stored sealed like a
	// body and its keys as message keys, after these checks in the same
	// transaction: the sending device has published keys (CodeForbidden
	// otherwise) and the keys match the current keyed devices of every
	// current member but the sending device, at their current key ids
	// (*DeviceMismatchError otherwise). A retry of a stored client_msg_id
	// returns the original before any of these checks. It reads back
	// without Keys; MessageKeys gives them.
	// The caller sets every other field (Withheld is stored and read back
	// with the message; a withheld message does not count as unread). If SenderID already sent a message
	// with m.ClientMsgID, nothing is written and that original message is
	// returned with created=false (CodeConflict if it belongs to another
	// conversation, or has expired or been purged). CodeConversationNotFound if
	// the conversation is gone or the sender is not a member at commit time,
	// unless the original was sent in that very conversation. Concurrent calls share
	// transactions (group commit).
	AppendMessage(ctx context.Context, m *Message) (msg *Message, created bool, err error)
	// AppendMessages is AppendMessage for each of ms, in their order: the
	// store's writer takes them in that order, one after another (jobs of
	// other callers may come between them), so messages of one
	// conversation get rising seqs in the order given, and they share
	// group commits rather than waiting for one another's. Result i is
	// the outcome of ms[i], as AppendMessage would return it; one failing
	// fails none of the others. It returns once every one has committed or
	// failed. If ctx ends first, those the writer has not taken yet fail
	// with ctx.Err(): always the last ones, never one before a message
	// that commits. If each is not nil, it is called on the caller's
	// goroutine with every result in order of i, as soon as that result
	// and all before it are known (a message committed in an earlier
	// group commit than the next one is reported without waiting for
	// that), before AppendMessages returns.
	AppendMessages(ctx context.Context, ms []*Message, each func(i int, r AppendResult)) []AppendResult
	// Message returns one message unless it has expired at now;
	// CodeNotFound if there is none.
	Message(ctx context.Context, conversationID string, seq int64, now time.Time) (*Message, error)
	// Messages returns a page of history (see HistoryQuery), skipping
	// messages expired at now. q.Limit must be 1..MaxHistoryLimit.
	Messages(ctx context.Context, conversationID string, q HistoryQuery, now time.Time) ([]Message, error)
	// UpdateMessage loads a message that has not expired at now inside a
	// write transaction, calls change with it, and stores its Body, EditedAt
	// and Deleted as change left them, atomically (so an edit cannot race a
	// delete and revive a tombstone). If change fails, nothing is written and
	// its error is returned; change may run more than once, runs on the
	// store's writer and must not call the Store. A deleted
	// message keeps its row as a tombstone with an empty body. Returns the
	// stored message; CodeNotFound if there is none.
	UpdateMessage(ctx context.Context, conversationID string, seq int64, now time.Time, change func(m *Message) error) (*Message, error)
	// PurgeExpired deletes the content of up to limit messages expired at
	// now (and refresh tokens expired at now, and the devices, with their
	// push registrations and cursors, that this leaves with no refresh
	// token: their sessions have ended for good) and returns how many
	// messages it purged. A purged message keeps a bodiless row for IdempotencyHorizon
	// after it expired, so that a late retry of its client_msg_id is still
	// recognized (and refused) instead of stored anew; after that the row
	// goes too.
	PurgeExpired(ctx context.Context, now time.Time, limit int) (int, error)
	// PurgeHistory purges (as PurgeExpired does: the body goes, a bodiless
	// row keeps the client_msg_id for IdempotencyHorizon) up to limit
	// messages created before the given time, and returns how many. It is
	// the server-wide retention; purged messages are never returned again.
	PurgeHistory(ctx context.Context, before time.Time, limit int) (int, error)

	// UpdateSecrets loads the secrets whose names start with prefix inside
	// a write transaction, calls change with them (name -> value), and
	// applies the values it puts and the names it deletes, atomically: no
	// other write lands between the read and the change, on this node or
	// any other sharing the store, so nodes can coordinate (the token
	// signing keys rotate this way). Values are sealed at rest with the
	// store's Sealer, bound to their name. change runs on the store's
	// writer: it must not call the Store, may run more than once and must
	// have no side effects. If change fails, nothing changes and its error
	// is returned. Names put or deleted must start with prefix.
	UpdateSecrets(ctx context.Context, prefix string, change func(current map[string][]byte) (put map[string][]byte, del []string, err error)) error

	// CreateMedia inserts a media record (see Media; every field set by
	// the caller), its Filename sealed at rest bound to the id.
	// CodeConflict if the id exists.
	CreateMedia(ctx context.Context, m *Media) error
	// Media returns a media record by id, whatever its state; CodeNotFound
	// if none.
	Media(ctx context.Context, id string) (*Media, error)
	// UpdateMedia loads a media record inside a write transaction, calls
	// change with it, and stores every field but ID, UploaderID,
	// UploaderDeviceID, ConversationID, CreatedAt and DeclaredSize as change
	// left them, atomically. If change fails, nothing is written and its
	// error is returned; change may run more than once, runs on the store's
	// writer and must not call the Store. Returns the stored record;
	// CodeNotFound if there is none.
	UpdateMedia(ctx context.Context, id string, change func(m *Media) error) (*Media, error)
	// MediaUsage returns the bytes of userID's media for quotas: created,
	// the DeclaredSize of every upload created at or after since (whatever
	// became of it, so deleting does not give the daily allowance back);
	// stored, the bytes held now (Size of ready media, DeclaredSize of
	// those still uploading or processing; failed and deleted count 0).
	MediaUsage(ctx context.Context, userID string, since time.Time) (created, stored int64, err error)
	// ExpiredMedia lists up to limit media (1..1000) whose ExpiresAt is set
	// and at or before now, the earliest expiry first: the garbage
	// collector deletes their blobs, tus data and then the records.
	ExpiredMedia(ctx context.Context, now time.Time, limit int) ([]Media, error)
	// DeleteMedia deletes a media record; CodeNotFound if there is none.
	DeleteMedia(ctx context.Context, id string) error
}

// MaxExpiredMedia bounds one Store.ExpiredMedia page.
const MaxExpiredMedia = 1000

// MaxSyncConversations bounds the conversations in one sync page.
const MaxSyncConversations = 500

// SyncQuery asks Store.Sync for one page of changes.
type SyncQuery struct {
	// Since is the position the client holds: changes with a stamp above it
	// are returned. 0 means the client holds nothing (full state).
	Since int64
	// Until bounds the range from above; 0 means the store's current stamp,
	// which the page reports in SyncPage.Until. Later pages of one sync pass
	// the first page's Until back. An Until above the store's current stamp
	// is lowered to it.
	Until int64
	// AfterStamp and AfterID continue a paged sync after the last
	// conversation of the previous page (SyncPage.NextStamp, NextID).
	AfterStamp int64
	AfterID    string
	// Conversations is the page size; Messages the most messages returned
	// per conversation.
	Conversations int
	Messages      int
	// Budget, if positive, bounds the page's estimated size in bytes
	// (about 300 per conversation, 160 per member, 400 per message plus its
	// stored body): messages beyond it are left out (MoreMessages, oldest
	// first) and the page ends early (HasMore) once it is spent, always
	// keeping at least one conversation with one message. Messages past
	// the budget are never read or decrypted.
	Budget int
	// InlineMembers is the most members a conversation object lists
	// (0: no limit); a bigger one is charged to the budget as paged
	// (see EstimatedMembersBytes).
	InlineMembers int
}

// SyncPage is one page of Store.Sync.
type SyncPage struct {
	// Until is the upper bound of the range; once HasMore is false it is
	// the client's next Since.
	Until         int64
	Conversations []SyncConversation
	// HasMore says another page follows; continue with NextStamp, NextID.
	HasMore   bool
	NextStamp int64
	NextID    string
}

// SyncConversation is one changed conversation in a SyncPage.
type SyncConversation struct {
	// View is the conversation as the user sees it now (read_seq, unread
	// count, last_seq, members with their watermarks). With Removed only
	// View.ID is set.
	View ConversationView
	// Removed says the user is no longer a member, or it was deleted.
	Removed bool
	// Messages are the newest (by seq) up to SyncQuery.Messages messages of
	// the conversation created, edited or deleted in the range, in
	// ascending seq order, skipping expired and purged ones; with Since 0,
	// the newest messages. MoreMessages says there were more; the client
	// pages older ones with history.
	Messages     []Message
	MoreMessages bool
	// Key is the conversation's place in the pass: a caller that returns
	// only the page's first k conversations continues after
	// (Conversations[k-1].Key, Conversations[k-1].View.ID).
	Key int64
}

// AppendResult is the outcome of one message of Store.AppendMessages:
// what AppendMessage would return for it.
type AppendResult struct {
	Message *Message
	Created bool
	Err     error
}

// Watermark is a "everything up to Seq" marker after an attempt to raise
// it: Seq is its value now, Raised whether the attempt moved it.
type Watermark struct {
	Seq    int64
	Raised bool
}

// MemberChange is what ChangeMembers applies, in this order: remove, set
// roles, add; or, with Delete, delete the conversation with its history.
type MemberChange struct {
	Remove []string
	Roles  map[string]MemberRole
	Add    []Member
	Delete bool
}

// IdempotencyHorizon is how long after expiry a purged message's
// client_msg_id stays reserved.
const IdempotencyHorizon = 30 * 24 * time.Hour

// ErrRefreshReuse is in the chain of the error RotateRefreshToken returns
// when an already-used refresh token is presented (a sign of theft).
var ErrRefreshReuse = &Error{Code: CodeUnauthorized, Message: "refresh token was already used; the session has been revoked"}

// RefreshReuseError is the error RotateRefreshToken returns when an
// already-used refresh token is presented: it names the session it
// revoked, so that the core can close that session's live connections at
// once. ErrRefreshReuse is in its chain.
type RefreshReuseError struct {
	UserID, DeviceID string
}

func (e *RefreshReuseError) Error() string { return ErrRefreshReuse.Error() }

// Unwrap returns ErrRefreshReuse.
func (e *RefreshReuseError) Unwrap() error { return ErrRefreshReuse }

// Sealer encrypts message bodies at rest. Store engines seal a body before
// writing it and open it after reading; additionalData binds the ciphertext
// to its row (the message id) so it cannot be moved to another. KeyID names
// the key used, so keys can rotate: Open must accept every key id Seal ever
// returned. Safe for concurrent use.
type Sealer interface {
	Seal(plaintext, additionalData []byte) (keyID uint32, ciphertext []byte, err error)
	Open(keyID uint32, ciphertext, additionalData []byte) ([]byte, error)
}
