// Package storetest is the contract suite of parley.Store: every storage
// engine runs it (store/sqlite now, store/postgres later) and must pass it
// unchanged.
//
// An engine's test calls Run with a function that returns a new, empty store
// and arranges (with tb.Cleanup) for it to be closed:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(tb testing.TB) parley.Store {
//			s, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "parley.db"), opts)
//			...
//			tb.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Times go through stores with millisecond precision; the suite compares
// them at that precision.
package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// Run runs every contract test, each as a subtest with its own store from
// newStore.
func Run(t *testing.T, newStore func(tb testing.TB) parley.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"Ping", testPing},
		{"LastSeqs", testLastSeqs},
		{"Users", testUsers},
		{"UserConflict", testUserConflict},
		{"UserRoleAndState", testUserRoleAndState},
		{"Sessions", testSessions},
		{"RefreshRotation", testRefreshRotation},
		{"RefreshReuseRevokesFamily", testRefreshReuse},
		{"RefreshExpiredAndUnknown", testRefreshExpiredAndUnknown},
		{"DeleteDevice", testDeleteDevice},
		{"DeleteDevices", testDeleteDevices},
		{"CreateGroup", testCreateGroup},
		{"CreateConversationUnknownUser", testCreateConversationUnknownUser},
		{"DirectUnique", testDirectUnique},
		{"AddMember", testAddMember},
		{"RemoveMember", testRemoveMember},
		{"SetMemberRoles", testSetMemberRoles},
		{"DeleteConversation", testDeleteConversation},
		{"AppendAndRead", testAppendAndRead},
		{"AppendGapFreeConcurrent", testAppendGapFreeConcurrent},
		{"AppendMessages", testAppendMessages},
		{"Idempotency", testIdempotency},
		{"IdempotencyConcurrent", testIdempotencyConcurrent},
		{"IdempotencyOtherConversation", testIdempotencyOtherConversation},
		{"AppendNotMember", testAppendNotMember},
		{"History", testHistory},
		{"HistoryLimit", testHistoryLimit},
		{"Expiry", testExpiry},
		{"PurgeExpired", testPurgeExpired},
		{"EditAndDelete", testEditAndDelete},
		{"MarkRead", testMarkRead},
		{"UnreadCount", testUnreadCount},
		{"Unread", testUnread},
		{"ConversationView", testConversationView},
		{"ConversationViewsOrder", testConversationViewsOrder},
		{"ChangeMembersAtomic", testChangeMembersAtomic},
		{"UpdateSeesTombstone", testUpdateSeesTombstone},
		{"IdempotencyAfterPurge", testIdempotencyAfterPurge},
		{"NonMemberReplayElsewhere", testNonMemberReplayElsewhere},
		{"SuspendEndsSessions", testSuspendEndsSessions},
		{"Member", testMember},
		{"SessionForSuspendedUser", testSessionForSuspendedUser},
		{"DeviceCap", testDeviceCap},
		{"DeviceCapCountsLiveSessions", testDeviceCapCountsLiveSessions},
		{"PurgeDeadDevices", testPurgeDeadDevices},
		{"ReplayOfPurgedWithEarlierClock", testReplayOfPurgedWithEarlierClock},
		{"MarkDelivered", testMarkDelivered},
		{"SyncFullState", testSyncFullState},
		{"SyncIncremental", testSyncIncremental},
		{"SyncRemoval", testSyncRemoval},
		{"SyncPaging", testSyncPaging},
		{"SyncBudget", testSyncBudget},
		{"SyncHidesExpiredAndPurged", testSyncHidesExpiredAndPurged},
		{"SyncQueryBounds", testSyncQueryBounds},
		{"SyncSeesCommitted", testSyncSeesCommitted},
		{"ConversationIDs", testConversationIDs},
		{"PurgeHistory", testPurgeHistory},
		{"Contacts", testContacts},
		{"ContactsBounded", testContactsBounded},
		{"MemberCount", testMemberCount},
		{"MembersPages", testMembersPages},
		{"Blocks", testBlocks},
		{"Withheld", testWithheld},
		{"Privacy", testPrivacy},
		{"ContactPeers", testContactPeers},
		{"ContactPeersSnapshot", testContactPeersSnapshot},
		{"Requests", testRequests},
		{"Reports", testReports},
		{"Push", testPush},
		{"PushDevices", testPushDevices},
		{"PushTargets", testPushTargets},
		{"PushFanOut", testPushFanOut},
		{"PushTarget", testPushTarget},
		{"PushTargetRequest", testPushTargetRequest},
		{"Mute", testMute},
		{"DND", testDND},
		{"Secrets", testSecrets},
		{"SecretsAtomic", testSecretsAtomic},
		{"Media", testMedia},
		{"MediaUsage", testMediaUsage},
		{"ExpiredMedia", testExpiredMedia},
		{"Attachments", testAttachments},
		{"DeviceKeys", testDeviceKeys},
		{"DeviceKeysExpiry", testDeviceKeysExpiry},
		{"DeviceKeysCreatedAt", testDeviceKeysCreatedAt},
		{"ConversationDeviceLists", testConversationDeviceLists},
		{"E2EEConversations", testE2EEConversations},
		{"EncryptedAppend", testEncryptedAppend},
		{"SetMessageKeys", testSetMessageKeys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fixture{
				tb:  t,
				s:   newStore(t),
				ctx: t.Context(),
				now: time.Now().UTC().Truncate(time.Millisecond),
			}
			tc.fn(t, f)
		})
	}
}

// fixture is one test's store and its helpers. now is the test's clock:
// helpers stamp what they create with it, and tests move it on explicitly.
type fixture struct {
	tb  testing.TB
	s   parley.Store
	ctx context.Context
	now time.Time
	n   atomic.Int64 // counter for unique handles and client message ids
}

// next returns a number unique in the test; safe for concurrent use.
func (f *fixture) next() int64 { return f.n.Add(1) }

// user creates a user with a fresh handle.
func (f *fixture) user() *parley.User {
	f.tb.Helper()
	u := &parley.User{
		ID:           parley.NewID(),
		Handle:       fmt.Sprintf("user%d", f.next()),
		DisplayName:  "User Name",
		Role:         parley.SystemRoleUser,
		State:        parley.UserActive,
		CreatedAt:    f.now,
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA",
	}
	if err := f.s.CreateUser(f.ctx, u); err != nil {
		f.tb.Fatalf("CreateUser: %v", err)
	}
	return u
}

// group creates a group owned by owner with the other users as members.
func (f *fixture) group(owner *parley.User, others ...*parley.User) *parley.Conversation {
	f.tb.Helper()
	c := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindGroup, Title: "group", CreatedAt: f.now}
	c.Members = append(c.Members, parley.Member{UserID: owner.ID, Role: parley.MemberRoleOwner, JoinedAt: f.now})
	for _, u := range others {
		c.Members = append(c.Members, parley.Member{UserID: u.ID, Role: parley.MemberRoleMember, JoinedAt: f.now})
	}
	got, created, err := f.s.CreateConversation(f.ctx, c)
	if err != nil || !created {
		f.tb.Fatalf("CreateConversation: created=%v, %v", created, err)
	}
	return got
}

// direct creates (or finds) the direct conversation of a and b.
func (f *fixture) direct(a, b *parley.User) (*parley.Conversation, bool) {
	f.tb.Helper()
	c := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: f.now, Members: []parley.Member{
		{UserID: a.ID, Role: parley.MemberRoleMember, JoinedAt: f.now},
		{UserID: b.ID, Role: parley.MemberRoleMember, JoinedAt: f.now},
	}}
	got, created, err := f.s.CreateConversation(f.ctx, c)
	if err != nil {
		f.tb.Fatalf("CreateConversation(direct): %v", err)
	}
	return got, created
}

// request creates a direct conversation that from asks to, who has not
// accepted it: a message request.
func (f *fixture) request(from, to *parley.User) *parley.Conversation {
	f.tb.Helper()
	c := &parley.Conversation{ID: parley.NewID(), Kind: parley.KindDirect, CreatedAt: f.now, Members: []parley.Member{
		{UserID: from.ID, Role: parley.MemberRoleMember, JoinedAt: f.now},
		{UserID: to.ID, Role: parley.MemberRoleMember, JoinedAt: f.now, Request: true},
	}}
	got, _, err := f.s.CreateConversation(f.ctx, c)
	if err != nil {
		f.tb.Fatalf("CreateConversation(request): %v", err)
	}
	return got
}

// message returns a new message from sender in c, not yet sent.
func (f *fixture) message(c *parley.Conversation, sender *parley.User, body string) *parley.Message {
	return &parley.Message{
		ID:             parley.NewID(),
		ConversationID: c.ID,
		SenderID:       sender.ID,
		SenderDeviceID: parley.NewID(),
		ClientMsgID:    fmt.Sprintf("client-%d", f.next()),
		Type:           parley.MessageText,
		Body:           body,
		CreatedAt:      f.now,
	}
}

// send appends a new message and checks it was created.
func (f *fixture) send(c *parley.Conversation, sender *parley.User, body string) *parley.Message {
	f.tb.Helper()
	return f.append(f.message(c, sender, body))
}

// append appends m and checks it was created.
func (f *fixture) append(m *parley.Message) *parley.Message {
	f.tb.Helper()
	got, created, err := f.s.AppendMessage(f.ctx, m)
	if err != nil || !created {
		f.tb.Fatalf("AppendMessage: created=%v, %v", created, err)
	}
	return got
}

// conversation reads c again.
func (f *fixture) conversation(id string) *parley.Conversation {
	f.tb.Helper()
	c, err := f.s.Conversation(f.ctx, id)
	if err != nil {
		f.tb.Fatalf("Conversation: %v", err)
	}
	return c
}

// view reads the view of conversation id for user at f.now.
func (f *fixture) view(id string, u *parley.User) *parley.ConversationView {
	f.tb.Helper()
	v, err := f.s.ConversationView(f.ctx, id, u.ID, f.now)
	if err != nil {
		f.tb.Fatalf("ConversationView: %v", err)
	}
	return v
}

// history reads every visible message of a conversation at f.now, paging
// backwards from the newest, and returns them in ascending order.
func (f *fixture) history(id string) []parley.Message {
	f.tb.Helper()
	var all []parley.Message
	q := parley.HistoryQuery{Limit: parley.MaxHistoryLimit}
	for {
		page, err := f.s.Messages(f.ctx, id, q, f.now)
		if err != nil {
			f.tb.Fatalf("Messages(before %d): %v", q.Before, err)
		}
		all = append(page, all...)
		if len(page) < q.Limit || page[0].Seq <= 1 {
			return all
		}
		q.Before = page[0].Seq
	}
}

// wantCode fails unless err has the given code.
func wantCode(tb testing.TB, err error, code parley.Code, what string) {
	tb.Helper()
	if got := parley.ErrorCode(err); got != code {
		tb.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

// sameTime reports whether a and b are equal at millisecond precision.
func sameTime(a, b time.Time) bool {
	return a.Truncate(time.Millisecond).Equal(b.Truncate(time.Millisecond))
}

// checkMessage fails unless got matches want in every field.
func checkMessage(tb testing.TB, got, want *parley.Message) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("message is nil, want seq %d", want.Seq)
	}
	if got.ID != want.ID || got.ConversationID != want.ConversationID || got.Seq != want.Seq ||
		got.SenderID != want.SenderID || got.SenderDeviceID != want.SenderDeviceID ||
		got.ClientMsgID != want.ClientMsgID || got.Type != want.Type || got.Body != want.Body ||
		got.Deleted != want.Deleted || !sameTime(got.CreatedAt, want.CreatedAt) ||
		!sameTime(got.ExpiresAt, want.ExpiresAt) || !sameTime(got.EditedAt, want.EditedAt) {
		tb.Fatalf("message:\n got %+v\nwant %+v", *got, *want)
	}
}

// seqs returns the seqs of msgs.
func seqs(msgs []parley.Message) []int64 {
	s := make([]int64, len(msgs))
	for i, m := range msgs {
		s[i] = m.Seq
	}
	return s
}

// seqRange returns from..to.
func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func testPing(t *testing.T, f *fixture) {
	if err := f.s.Ping(f.ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
