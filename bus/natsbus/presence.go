package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PresenceBucket is the default key-value bucket of Presence.
const PresenceBucket = "parley_presence"

// Presence is the cluster's presence directory (wsgate.Directory) on a
// NATS key-value bucket. Each node keeps one key per user with a live
// session on it, "<user id>.<node id>", whose value is the time of its
// last refresh (Unix milliseconds); a user is online while any node's key
// is fresher than the TTL. Every node watches the bucket into a local
// mirror, so Online needs no round trip.
//
// A record's value also carries the revision at which the node joined
// (formatRecord), which orders joins. Freshness is read from the values, not from the bucket's expiry: the
// bucket's MaxAge removes old entries silently (servers before 2.11 send
// watchers no marker), so a node that died without leaving is forgotten
// by the mirrors when its values go stale, and by the bucket soon after.
type Presence struct {
	kv   jetstream.KeyValue
	nc   *nats.Conn
	node string
	ttl  time.Duration
	now  func() time.Time

	mu     sync.Mutex
	seen   map[string]map[string]int64 // user -> node -> last refresh, Unix ms
	joined map[string]uint64           // user -> revision of our join (our records)

	stop context.CancelFunc
	done chan struct{}
}

// PresenceOptions configure NewPresence.
type PresenceOptions struct {
	// Bucket is the key-value bucket; default PresenceBucket.
	Bucket string
	// Node identifies this process; it must be unique in the cluster.
	Node string
	// TTL is how long a record lives without a refresh; default 30 s.
	// Refreshes run every TTL/3.
	TTL time.Duration
}

// NewPresence creates (or opens: creating is idempotent) the bucket and
// starts mirroring it. Close stops the mirror.
func NewPresence(ctx context.Context, b *Bus, opts PresenceOptions) (*Presence, error) {
	if opts.Bucket == "" {
		opts.Bucket = PresenceBucket
	}
	if opts.TTL <= 0 {
		opts.TTL = 30 * time.Second
	}
	if opts.Node == "" || strings.ContainsAny(opts.Node, ".*> ") {
		return nil, fmt.Errorf("natsbus: presence needs a node id without dots, wildcards or spaces, got %q", opts.Node)
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: presence: %w", err)
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      opts.Bucket,
		Description: "Parley presence: <user>.<node> -> last refresh (Unix ms)",
		History:     1,
		// Twice the TTL: a record is judged by its value, the bucket only
		// has to drop what no node will ever delete.
		TTL: 2 * opts.TTL,
		// On disk, so a restarted NATS server still has the bucket.
		Storage: jetstream.FileStorage,
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		// A bucket made by an earlier version with settings that cannot
		// be changed in place (the storage type): its records are
		// refreshed every Interval anyway, so make it anew.
		b.log.Warn("natsbus: presence bucket made anew", "bucket", opts.Bucket, "err", err)
		if derr := js.DeleteKeyValue(ctx, opts.Bucket); derr != nil && !errors.Is(derr, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("natsbus: presence bucket %s: %w (and deleting it: %w)", opts.Bucket, err, derr)
		}
		if kv, err = js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return nil, fmt.Errorf("natsbus: presence bucket %s: %w", opts.Bucket, err)
		}
	}
	wctx, stop := context.WithCancel(context.Background())
	w, err := kv.WatchAll(wctx)
	if err != nil {
		stop()
		return nil, fmt.Errorf("natsbus: watch presence bucket: %w", err)
	}
	p := &Presence{kv: kv, nc: b.nc, node: opts.Node, ttl: opts.TTL, now: time.Now,
		seen: map[string]map[string]int64{}, joined: map[string]uint64{}, stop: stop, done: make(chan struct{})}
	initial := make(chan struct{})
	go p.mirror(w, initial)
	select {
	case <-initial:
	case <-ctx.Done():
		p.Close()
		return nil, ctx.Err()
	}
	return p, nil
}

// mirror applies the bucket's updates to p.seen until the watcher stops;
// it closes initial once the current values have all arrived.
func (p *Presence) mirror(w jetstream.KeyWatcher, initial chan struct{}) {
	defer close(p.done)
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			close(initial)
			continue
		}
		user, node, ok := splitKey(e.Key())
		if !ok {
			continue
		}
		p.mu.Lock()
		if e.Operation() == jetstream.KeyValuePut {
			if ms, _, ok := parseRecord(e.Value()); ok {
				p.record(user, node, ms)
			}
		} else {
			p.forget(user, node)
		}
		p.mu.Unlock()
	}
}

func splitKey(key string) (user, node string, ok bool) {
	i := strings.LastIndexByte(key, '.')
	if i <= 0 || i == len(key)-1 {
		return "", "", false
	}
	return key[:i], key[i+1:], true
}

// record and forget change the mirror; callers hold p.mu.
func (p *Presence) record(user, node string, ms int64) {
	nodes := p.seen[user]
	if nodes == nil {
		nodes = map[string]int64{}
		p.seen[user] = nodes
	}
	if ms > nodes[node] {
		nodes[node] = ms
	}
}

func (p *Presence) forget(user, node string) {
	if nodes := p.seen[user]; nodes != nil {
		delete(nodes, node)
		if len(nodes) == 0 {
			delete(p.seen, user)
		}
	}
}

// Join implements wsgate.Directory. Whether the user was online elsewhere
// is read from the bucket itself, not the mirror, which may lag: the user
// is new online unless another node's fresh record is older than ours (so
// of two nodes joining at once exactly one says first).
func (p *Presence) Join(ctx context.Context, userID string) (bool, error) {
	now := p.now().UnixMilli()
	rev, err := p.kv.Put(ctx, userID+"."+p.node, formatRecord(now, 0))
	if err != nil {
		return false, fmt.Errorf("natsbus: presence join: %w", err)
	}
	p.mu.Lock()
	p.record(userID, p.node, now)
	p.joined[userID] = rev
	p.mu.Unlock()
	others, err := p.others(ctx, userID, now)
	if err != nil {
		return false, err
	}
	for _, r := range others {
		if r < rev {
			return false, nil
		}
	}
	return true, nil
}

// Leave implements wsgate.Directory. As Join, it reads the bucket: after
// our delete, the user is gone unless another node has a fresh record (of
// two nodes leaving at once, at least one sees the other's delete).
func (p *Presence) Leave(ctx context.Context, userID string) (bool, error) {
	if err := p.kv.Delete(ctx, userID+"."+p.node); err != nil {
		return false, fmt.Errorf("natsbus: presence leave: %w", err)
	}
	p.mu.Lock()
	p.forget(userID, p.node)
	delete(p.joined, userID)
	p.mu.Unlock()
	others, err := p.others(ctx, userID, p.now().UnixMilli())
	if err != nil {
		return false, err
	}
	return len(others) == 0, nil
}

// others returns the join revisions of the other nodes' fresh records of
// user, read from the bucket.
func (p *Presence) others(ctx context.Context, userID string, nowMs int64) ([]uint64, error) {
	lister, err := p.kv.ListKeysFiltered(ctx, userID+".*")
	if err != nil {
		return nil, fmt.Errorf("natsbus: presence: list %s: %w", userID, err)
	}
	var keys []string
	for key := range lister.Keys() {
		keys = append(keys, key)
	}
	// The channel closes once every key is listed, and the lister with
	// it; Stop only releases one left half-read.
	_ = lister.Stop()
	var revs []uint64
	for _, key := range keys {
		if _, node, ok := splitKey(key); !ok || node == p.node {
			continue
		}
		e, err := p.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("natsbus: presence: %w", err)
		}
		if ms, joined, ok := parseRecord(e.Value()); ok && nowMs-ms < p.ttl.Milliseconds() {
			if joined == 0 {
				joined = e.Revision() // not refreshed since its join
			}
			revs = append(revs, joined)
		}
	}
	return revs, nil
}

// Online implements wsgate.Directory from the mirror.
func (p *Presence) Online(userIDs []string) []string {
	now := p.now().UnixMilli()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, id := range userIDs {
		for _, ms := range p.seen[id] {
			if now-ms < p.ttl.Milliseconds() {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

// Keepalive implements wsgate.Directory: it rewrites this node's records of
// userIDs with the current time.
func (p *Presence) Keepalive(ctx context.Context, userIDs []string) error {
	now := p.now().UnixMilli()
	var errs []error
	for _, id := range userIDs {
		p.mu.Lock()
		joined := p.joined[id]
		p.mu.Unlock()
		if _, err := p.kv.Put(ctx, id+"."+p.node, formatRecord(now, joined)); err != nil {
			err = fmt.Errorf("natsbus: presence: %w", err)
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// Interval implements wsgate.Directory: a third of the TTL, so a record
// survives two missed refreshes.
func (p *Presence) Interval() time.Duration { return p.ttl / 3 }

// A record's value is "<refreshed, Unix ms>:<join revision>": the join
// revision is the revision of the Put that made the record (0 in that Put
// itself, which has no revision yet), kept through refreshes, so that
// Join orders nodes by when they joined, not when they last refreshed.
func formatRecord(ms int64, joined uint64) []byte {
	return []byte(strconv.FormatInt(ms, 10) + ":" + strconv.FormatUint(joined, 10))
}

func parseRecord(v []byte) (ms int64, joined uint64, ok bool) {
	a, b, _ := strings.Cut(string(v), ":")
	ms, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if b != "" {
		if joined, err = strconv.ParseUint(b, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return ms, joined, true
}

// Close stops mirroring the bucket. This node's records stay until they
// go stale (TTL): users whose sessions a stopping node closes reconnect to
// another node within that time and stay online without a flap; one that
// does not is shown online until then, and no offline is announced for
// them (docs/protocol.md, known limits).
func (p *Presence) Close() error {
	p.stop()
	<-p.done
	return nil
}
