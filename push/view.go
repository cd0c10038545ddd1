package push

import (
	"context"
	"encoding/json"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/parleychat/parley"
)

// ViewStore is what the view reads: every registered device, and a
// conversation's members.
type ViewStore interface {
	PushDevices(ctx context.Context, each func(userID, deviceID string) error) error
	Conversation(ctx context.Context, id string) (*parley.Conversation, error)
}

// View is one gateway node's picture of who may need a notification: the
// users with a push registration, and the members of the conversations
// messages are sent to. With it, a message none of whose other members
// has a registration costs the push role nothing: no job, no query
// (Queue.MessageCommitted asks it first).
//
// It errs on the side of enqueueing. The registrations are loaded at
// start and again every ViewConfig.Reload; a new registration reaches
// every node's view at once through the bus (Queue.PushRegistered); a
// removed one stays until the next reload (a job too many, never one too
// few). Members are read from the store on a conversation's first
// message, dropped when the bus says the membership changed, and read
// again after viewMaxAge. Until the first load, and after the bus
// connection had a gap (events may have been missed) until a reload
// completes, every message is enqueued. A registration or membership
// change heard after messages were judged without it (another node's
// event still on its way) enqueues the newest of those messages of each
// affected conversation that were judged in the last viewRecent, so no
// notification is lost to the race.
//
// Ids are kept as 64-bit hashes: a collision makes a user without a
// registration look registered (a job too many); two members of one
// conversation colliding with each other (about 2^-64) is the only way
// for one to be missed.
type View struct {
	store   ViewStore
	bus     parley.Bus
	subject string
	q       *Queue
	cfg     ViewConfig
	log     *slog.Logger
	seed    maphash.Seed
	wake    chan struct{} // asks the reloader to reload now

	mu sync.Mutex
	// users maps each user with a registered device to those devices.
	users map[uint64][]uint64
	// version changes with every change to users (cached judgements in
	// convs are redone when it moved).
	version uint64
	// ready says users is loaded and no gap came since: messages may be
	// judged. gaps counts gaps; a reload that saw one is not enough.
	ready bool
	gaps  uint64
	// adds are the registrations heard while a reload reads the store,
	// applied on top of what it read.
	reloading bool
	adds      [][2]uint64
	// convs are the members of conversations recently sent to (at most
	// viewConvs, with at most viewMembers member ids in all), fills the
	// reads of members in flight: a fill during which the conversation
	// changed is not kept.
	convs   map[string]*convEntry
	members int
	fills   map[string]*viewFill
	// recent are the messages judged to need no job, newest last (a
	// ring of viewRecentMax).
	recent []judged
	next   int
}

// ViewConfig configures a View.
type ViewConfig struct {
	// Namespace names the bus subject of registration events (the push
	// queue's namespace). Default "main".
	Namespace string
	// Reload is how often the registrations are read again (removals
	// reach the view then). Default 5 minutes.
	Reload time.Duration
}

// Bounds and ages of the view.
const (
	viewConvs     = 100_000
	viewMembers   = 4_000_000
	viewFills     = 64
	viewMaxAge    = 30 * time.Second
	viewRecent    = 10 * time.Second
	viewRecentMax = 65536
	viewFillWait  = 10 * time.Second
)

// convEntry is one conversation's members (hashes, sorted), when they
// were read, and the judgement of the members against users at version.
type convEntry struct {
	users   []uint64
	at      time.Time
	version uint64
	// registered counts the members with a registration; only is one of
	// them (the only one when registered is 1).
	registered int
	only       uint64
}

type viewFill struct{ changed bool }

// judged is a message that got no job, for a later change to revisit.
type judged struct {
	job       MessageJob
	at        time.Time
	conv      *convEntry
	sender    uint64
	revisited bool
}

// NewView makes a view for q. bus carries registration events between
// nodes (the sealed bus). Call Run to load and keep it; until then every
// message is enqueued.
func NewView(q *Queue, store ViewStore, bus parley.Bus, cfg ViewConfig, log *slog.Logger) *View {
	if cfg.Namespace == "" {
		cfg.Namespace = "main"
	}
	if cfg.Reload <= 0 {
		cfg.Reload = 5 * time.Minute
	}
	return &View{store: store, bus: bus, subject: registrationSubject(cfg.Namespace), q: q, cfg: cfg, log: log,
		seed: maphash.MakeSeed(), wake: make(chan struct{}, 1), users: map[uint64][]uint64{},
		convs: map[string]*convEntry{}, fills: map[string]*viewFill{}, recent: make([]judged, viewRecentMax)}
}

// registrationSubject is the bus subject of new registrations.
func registrationSubject(namespace string) string { return "parley.pushreg." + namespace }

// registration is the bus event of a new registration.
type registration struct {
	UserID   string `json:"u"`
	DeviceID string `json:"d"`
}

// Run listens for registrations on the bus and loads the registrations,
// again every Reload and after each gap, until ctx ends.
func (v *View) Run(ctx context.Context) error {
	sub, err := v.bus.Subscribe(v.subject, func(_ string, data []byte) {
		var r registration
		if json.Unmarshal(data, &r) == nil && r.UserID != "" && r.DeviceID != "" {
			v.registered(r.UserID, r.DeviceID)
		}
	})
	if err != nil {
		return err
	}
	defer sub.Close()
	retry := time.Second
	for {
		wait := v.cfg.Reload
		if err := v.load(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			v.log.Warn("push: registrations not loaded; every message gets a push job meanwhile", "err", err, "retry_in", retry.String())
			wait, retry = retry, min(retry*2, time.Minute)
		} else {
			retry = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-v.wake:
		case <-time.After(wait):
		}
	}
}

// load reads the registrations and puts them in place, with those heard
// meanwhile; the view is ready after it unless a gap came meanwhile (then
// it loads again).
func (v *View) load(ctx context.Context) error {
	v.mu.Lock()
	gaps := v.gaps
	v.reloading, v.adds = true, nil
	v.mu.Unlock()
	users := map[uint64][]uint64{}
	err := v.store.PushDevices(ctx, func(userID, deviceID string) error {
		addDevice(users, v.hash(userID), v.hash(deviceID))
		return nil
	})
	v.mu.Lock()
	defer v.mu.Unlock()
	v.reloading = false
	adds := v.adds
	v.adds = nil
	if err != nil {
		return err
	}
	for _, a := range adds {
		addDevice(users, a[0], a[1])
	}
	v.users = users
	v.version++
	if v.gaps == gaps {
		v.ready = true
		v.q.m.viewReady.Set(1)
	} else {
		v.reload()
	}
	v.q.m.viewUsers.Set(float64(len(users)))
	return nil
}

// reload asks Run to load again now.
func (v *View) reload() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

func (v *View) hash(id string) uint64 { return maphash.String(v.seed, id) }

// addDevice records device as registered for user; it reports whether it
// was new.
func addDevice(users map[uint64][]uint64, user, device uint64) bool {
	devices := users[user]
	if slices.Contains(devices, device) {
		return false
	}
	users[user] = append(devices, device)
	return true
}

// registered records a new registration (heard on the bus, or made on
// this node) and revisits the messages judged recently without it.
func (v *View) registered(userID, deviceID string) {
	user, device := v.hash(userID), v.hash(deviceID)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.reloading {
		v.adds = append(v.adds, [2]uint64{user, device})
	}
	if !addDevice(v.users, user, device) {
		return
	}
	v.version++
	v.q.m.viewUsers.Set(float64(len(v.users)))
	v.revisit(func(j *judged) bool {
		_, found := slices.BinarySearch(j.conv.users, user)
		return found && j.sender != user
	})
}

// conversationChanged drops a conversation's members (its membership
// changed, or it was deleted) and revisits its messages judged recently.
func (v *View) conversationChanged(conversationID string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.dropConv(conversationID)
	if f := v.fills[conversationID]; f != nil {
		f.changed = true
	}
	v.revisit(func(j *judged) bool { return j.job.ConversationID == conversationID })
}

// Gap says events may have been missed (the bus connection dropped, or
// a subscription fell behind): until the registrations are read again,
// every message is enqueued; members are read again; and every message
// judged recently is revisited.
func (v *View) Gap() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gaps++
	v.ready = false
	v.q.m.viewReady.Set(0)
	v.convs, v.members = map[string]*convEntry{}, 0
	for _, f := range v.fills {
		f.changed = true
	}
	v.revisit(func(*judged) bool { return true })
	v.reload()
}

// revisit enqueues, for each conversation, the newest message judged in
// the last viewRecent that match selects, once. Caller holds v.mu.
func (v *View) revisit(match func(*judged) bool) {
	now := time.Now()
	seen := map[string]bool{}
	for i := range len(v.recent) {
		j := &v.recent[(v.next-1-i+2*len(v.recent))%len(v.recent)]
		if j.conv == nil || now.Sub(j.at) > viewRecent {
			break // older ones are older still
		}
		if seen[j.job.ConversationID] || !match(j) {
			continue
		}
		seen[j.job.ConversationID] = true
		if j.revisited {
			continue
		}
		j.revisited = true
		job := j.job
		job.EnqueuedAt = now.UnixMilli()
		v.q.m.revisited.Inc()
		v.q.enqueue(v.q.n.msg, job.msgID(), &job)
	}
}

// unneeded reports whether j's message needs no push job: no member of
// its conversation but the sender has a registration. It starts reading
// the members of a conversation it does not know (the message is
// enqueued meanwhile).
func (v *View) unneeded(j *MessageJob) bool {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.ready {
		return false
	}
	e := v.convs[j.ConversationID]
	if e == nil || now.Sub(e.at) > viewMaxAge {
		v.fill(j.ConversationID)
		return false
	}
	if e.version != v.version {
		e.registered, e.only = 0, 0
		for _, u := range e.users {
			if _, ok := v.users[u]; ok {
				e.registered++
				e.only = u
			}
		}
		e.version = v.version
	}
	sender := v.hash(j.SenderID)
	if e.registered > 1 || e.registered == 1 && e.only != sender {
		return false
	}
	v.recent[v.next] = judged{job: *j, at: now, conv: e, sender: sender}
	v.next = (v.next + 1) % len(v.recent)
	return true
}

// fill starts reading a conversation's members, unless a read is in
// flight or too many are. Caller holds v.mu.
func (v *View) fill(conversationID string) {
	if v.fills[conversationID] != nil || len(v.fills) >= viewFills {
		return
	}
	f := &viewFill{}
	v.fills[conversationID] = f
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), viewFillWait)
		defer cancel()
		c, err := v.store.Conversation(ctx, conversationID)
		v.mu.Lock()
		defer v.mu.Unlock()
		delete(v.fills, conversationID)
		if err != nil || f.changed {
			return
		}
		users := make([]uint64, len(c.Members))
		for i := range c.Members {
			users[i] = v.hash(c.Members[i].UserID)
		}
		slices.Sort(users)
		v.putConv(conversationID, &convEntry{users: users, at: time.Now(), version: v.version - 1})
	}()
}

// putConv keeps e as a conversation's members, evicting others at random
// to stay within the bounds. Caller holds v.mu.
func (v *View) putConv(id string, e *convEntry) {
	v.dropConv(id)
	if len(e.users) > viewMembers {
		return
	}
	for k := range v.convs {
		if len(v.convs) < viewConvs && v.members+len(e.users) <= viewMembers {
			break
		}
		v.dropConv(k)
	}
	v.convs[id] = e
	v.members += len(e.users)
}

// dropConv forgets a conversation's members. Caller holds v.mu.
func (v *View) dropConv(id string) {
	if e := v.convs[id]; e != nil {
		v.members -= len(e.users)
		delete(v.convs, id)
	}
}
