// Package engine holds what the storage engines (store/sqlite,
// store/postgres) do alike before and after their SQL: checking and
// normalizing what a caller hands the store, the stored form of times,
// and the names of sealed secrets. The SQL itself differs and stays in
// each engine.
package engine

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/parleychat/parley"
)

// Millis converts t to the stored form: Unix milliseconds.
func Millis(t time.Time) int64 { return t.UnixMilli() }

// FromMillis converts a stored time back: UTC, millisecond precision.
func FromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// NormalTime returns t as it reads back from a store; the zero time stays
// zero.
func NormalTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return FromMillis(Millis(t))
}

// DirectKey is the unique key of the direct conversation between two
// users: their ids in order, joined, and ":e2ee" for the end-to-end
// encrypted one (a pair may have one of each).
func DirectKey(a, b string, e2ee bool) string {
	if b < a {
		a, b = b, a
	}
	if e2ee {
		return a + ":" + b + ":e2ee"
	}
	return a + ":" + b
}

// PrepareConversation checks c for parley.Store.CreateConversation and
// sets its defaults and precision: empty member roles become
// MemberRoleMember, a zero JoinedAt becomes c.CreatedAt, LastSeq and
// ReadSeq start at 0. A direct conversation has exactly two different
// members. CodeInvalidRequest for a bad kind, role or member list.
func PrepareConversation(c *parley.Conversation) error {
	if c.ID == "" {
		return parley.Errorf(parley.CodeInvalidRequest, "a conversation needs an id")
	}
	switch c.Kind {
	case parley.KindDirect:
		if len(c.Members) != 2 || c.Members[0].UserID == c.Members[1].UserID {
			return parley.Errorf(parley.CodeInvalidRequest, "a direct conversation has exactly two different members")
		}
	case parley.KindGroup:
		if len(c.Members) > parley.MaxGroupMembersCap {
			return parley.Errorf(parley.CodeInvalidRequest, "a group has at most %d members", parley.MaxGroupMembersCap)
		}
	default:
		return parley.Errorf(parley.CodeInvalidRequest, "unknown conversation kind %q", c.Kind)
	}
	c.CreatedAt = NormalTime(c.CreatedAt)
	c.LastSeq = 0
	seen := make(map[string]bool, len(c.Members))
	for i := range c.Members {
		m := &c.Members[i]
		if seen[m.UserID] {
			return parley.Errorf(parley.CodeInvalidRequest, "user %s is listed twice", m.UserID)
		}
		seen[m.UserID] = true
		if m.Role == "" {
			m.Role = parley.MemberRoleMember
		}
		if !m.Role.Valid() {
			return parley.Errorf(parley.CodeInvalidRequest, "unknown member role %q", m.Role)
		}
		if m.JoinedAt.IsZero() {
			m.JoinedAt = c.CreatedAt
		}
		m.JoinedAt = NormalTime(m.JoinedAt)
		m.ReadSeq = 0
	}
	return nil
}

// PrepareAddedMember sets the defaults of a member that ChangeMembers
// adds to a conversation whose last seq is lastSeq: role member, joined
// now, ReadSeq clamped to 0..lastSeq. CodeInvalidRequest for a bad role.
func PrepareAddedMember(m *parley.Member, lastSeq int64) error {
	if m.Role == "" {
		m.Role = parley.MemberRoleMember
	}
	if !m.Role.Valid() {
		return parley.Errorf(parley.CodeInvalidRequest, "unknown member role %q", m.Role)
	}
	if m.JoinedAt.IsZero() {
		m.JoinedAt = time.Now()
	}
	m.JoinedAt = NormalTime(m.JoinedAt)
	m.ReadSeq = min(max(m.ReadSeq, 0), lastSeq)
	return nil
}

// PrepareMessage checks m for parley.Store.AppendMessage and fills it: an
// empty ID is parley.NewID(), a zero CreatedAt the current time, times
// are set to their stored precision, a tombstone's body is empty.
func PrepareMessage(m *parley.Message) error {
	if m.ConversationID == "" || m.SenderID == "" {
		return parley.Errorf(parley.CodeInvalidRequest, "a message needs a conversation and a sender")
	}
	if m.ID == "" {
		m.ID = parley.NewID()
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now()
	}
	m.CreatedAt = NormalTime(m.CreatedAt)
	m.ExpiresAt = NormalTime(m.ExpiresAt)
	m.EditedAt = NormalTime(m.EditedAt)
	if m.Deleted {
		m.Body = ""
	}
	return nil
}

// PrepareSession checks a device and its first refresh token for
// parley.Store.CreateSession and fills them: empty UserID, DeviceID or
// SessionID of t come from d, a zero d.LastSeenAt is d.CreatedAt, times
// are set to their stored precision.
func PrepareSession(d *parley.Device, t *parley.RefreshToken) error {
	if d.ID == "" || d.UserID == "" || t.Hash == "" {
		return parley.Errorf(parley.CodeInvalidRequest, "a session needs a device id, a user id and a token hash")
	}
	d.CreatedAt = NormalTime(d.CreatedAt)
	if d.LastSeenAt.IsZero() {
		d.LastSeenAt = d.CreatedAt
	}
	d.LastSeenAt = NormalTime(d.LastSeenAt)
	if t.UserID == "" {
		t.UserID = d.UserID
	}
	if t.DeviceID == "" {
		t.DeviceID = d.ID
	}
	if t.SessionID == "" {
		t.SessionID = d.SessionID
	}
	t.CreatedAt = NormalTime(t.CreatedAt)
	t.ExpiresAt = NormalTime(t.ExpiresAt)
	return nil
}

// TooManyDevices is the error of parley.Store.CreateSession for a user
// at the device cap, the same from every engine.
func TooManyDevices(maxDevices int) error {
	return parley.Errorf(parley.CodeLimitExceeded,
		"this account has %d devices logged in, the most allowed; log out one of them first (GET /v1/devices lists them, DELETE /v1/devices/{id} logs one out)", maxDevices)
}

// PrepareUser checks u for parley.Store.CreateUser and fills it: an empty
// Role is user, an empty State active, CreatedAt at its stored precision.
func PrepareUser(u *parley.User) error {
	if u.ID == "" || u.Handle == "" {
		return parley.Errorf(parley.CodeInvalidRequest, "a user needs an id and a handle")
	}
	if u.Role == "" {
		u.Role = parley.SystemRoleUser
	}
	if u.State == "" {
		u.State = parley.UserActive
	}
	u.CreatedAt = NormalTime(u.CreatedAt)
	return nil
}

// SecretAD binds a sealed secret to its name.
func SecretAD(name string) []byte { return []byte("secret:" + name) }

// CheckSecretNames refuses, with CodeInvalidRequest, a name put or
// deleted outside prefix.
func CheckSecretNames(prefix string, put map[string][]byte, del []string) error {
	for name := range put {
		if !strings.HasPrefix(name, prefix) {
			return parley.Errorf(parley.CodeInvalidRequest, "secret %q is outside %q", name, prefix)
		}
	}
	for _, name := range del {
		if !strings.HasPrefix(name, prefix) {
			return parley.Errorf(parley.CodeInvalidRequest, "secret %q is outside %q", name, prefix)
		}
	}
	return nil
}

// SealPush returns a push registration in its stored form (JSON, sealed,
// bound to the device) with the registration's time at stored precision.
func SealPush(sealer parley.Sealer, deviceID string, r *parley.PushRegistration) (keyID uint32, sealed []byte, err error) {
	r.UpdatedAt = NormalTime(r.UpdatedAt)
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = NormalTime(time.Now())
	}
	data, err := json.Marshal(r)
	if err != nil {
		return 0, nil, err
	}
	return sealer.Seal(data, pushAD(deviceID))
}

// OpenPush reads a stored push registration back.
func OpenPush(sealer parley.Sealer, deviceID string, keyID uint32, sealed []byte) (*parley.PushRegistration, error) {
	data, err := sealer.Open(keyID, sealed, pushAD(deviceID))
	if err != nil {
		return nil, err
	}
	var r parley.PushRegistration
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func pushAD(deviceID string) []byte { return []byte("push:" + deviceID) }

// AppendResults collects the results of Store.AppendMessages, passing
// each to a callback in order of index as soon as it and all before it
// are set.
type AppendResults struct {
	Out  []parley.AppendResult
	set  []bool
	next int
	each func(int, parley.AppendResult)
}

// NewAppendResults returns the collector of n results, each (may be nil)
// the callback.
func NewAppendResults(n int, each func(int, parley.AppendResult)) *AppendResults {
	return &AppendResults{Out: make([]parley.AppendResult, n), set: make([]bool, n), each: each}
}

// Set records result i, and passes on those now due.
func (r *AppendResults) Set(i int, res parley.AppendResult) {
	r.Out[i], r.set[i] = res, true
	for r.next < len(r.Out) && r.set[r.next] {
		if r.each != nil {
			r.each(r.next, r.Out[r.next])
		}
		r.next++
	}
}
