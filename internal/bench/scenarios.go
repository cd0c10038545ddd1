package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
)

// connections: N idle authenticated connections; the server's RSS per
// connection (forced GC before each reading when Admin is set).
//
// Past PerProcess connections, worker processes hold them.
func (b *bench) connections(ctx context.Context) error {
	workers := b.o.Conns > b.o.PerProcess
	if workers && b.o.WorkerCommand == nil {
		return fmt.Errorf("%d connections need worker processes (more than %d per process)", b.o.Conns, b.o.PerProcess)
	}
	start := time.Now()
	devs, err := b.setupUsers(ctx, (b.o.Conns+b.o.PerToken-1)/b.o.PerToken)
	if err != nil {
		return err
	}
	b.res.SetupSeconds = time.Since(start).Seconds()
	b.o.Progress("reading the server's memory before connecting")
	before, err := b.steadyStats(ctx)
	if err != nil {
		return err
	}
	b.res.ServerRSSBefore = int64(before.rss)
	var ws []*worker
	if workers {
		tokens := make([]string, b.o.Conns)
		for i := range tokens {
			tokens[i] = devs[(i/b.o.PerToken)%len(devs)].token
		}
		began := time.Now()
		ws, err = b.startWorkers(ctx, tokens)
		defer func() {
			sum := stopWorkers(ws)
			b.closes.Add(sum.Closed)
		}()
		if err != nil {
			return err
		}
		var ready int64
		for _, w := range ws {
			s := w.status()
			ready += s.Ready
			b.failed.Add(s.Failed)
		}
		b.res.ConnectSeconds = time.Since(began).Seconds()
		b.res.ConnectsPerSec = float64(ready) / b.res.ConnectSeconds
	} else if _, err := b.connectAll(ctx, devs, b.o.Conns); err != nil {
		return err
	}
	b.o.Progress(fmt.Sprintf("connect: %d/%d ready in %.1fs; settling", b.o.Conns-int(b.failed.Load()), b.o.Conns, b.res.ConnectSeconds))
	time.Sleep(b.o.Duration)
	b.o.Progress("reading the server's memory with the connections open")
	after, err := b.steadyStats(ctx)
	if err != nil {
		return err
	}
	b.res.ServerRSSBytes = int64(after.rss)
	b.res.ServerCPUSeconds = after.cpu - before.cpu
	if n := b.o.Conns - int(b.failed.Load()); n > 0 {
		b.res.RSSPerConnBytes = (after.rss - before.rss) / float64(n)
	}
	b.res.DurationSeconds = b.o.Duration.Seconds()
	return nil
}

// messaging: users in conversations of size members (2: direct pairs), the
// first senders of each sending at the rate (or as fast as acks allow)
// for the duration.
func (b *bench) messaging(ctx context.Context, members, senders int) error {
	groups := b.o.Conns / members
	if groups == 0 {
		return fmt.Errorf("--conns %d is less than one conversation of %d", b.o.Conns, members)
	}
	n := groups * members
	b.res.Conns = n
	start := time.Now()
	devs, err := b.setupUsers(ctx, n)
	if err != nil {
		return err
	}
	convs := make([]string, groups)
	err = forEach(ctx, groups, b.o.SetupConc, func(ctx context.Context, g int) error {
		owner := devs[g*members]
		var others []string
		for _, d := range devs[g*members+1 : (g+1)*members] {
			others = append(others, d.userID)
		}
		rest := b.rest(owner)
		if members == 2 {
			c, err := rest.CreateDirect(ctx, others[0])
			if err != nil {
				return err
			}
			convs[g] = c.ID
			return nil
		}
		c, err := rest.CreateGroup(ctx, fmt.Sprintf("bench %d", g), others...)
		if err != nil {
			return err
		}
		convs[g] = c.ID
		return nil
	})
	if err != nil {
		return err
	}
	b.res.SetupSeconds = time.Since(start).Seconds()
	if _, err := b.connectAll(ctx, devs, n); err != nil {
		return err
	}
	if f := b.failed.Load(); f > 0 {
		return fmt.Errorf("%d connections failed", f)
	}
	if b.o.Reconnect {
		// Each connection takes a position to resync from after a
		// reconnect: a full-state sync, cheap while the conversations are
		// empty.
		err := forEach(ctx, n, b.o.DialConc, func(ctx context.Context, i int) error {
			if err := b.conns[i].catchUp(ctx); err != nil && !errors.Is(err, errSocketClosed) {
				return fmt.Errorf("first sync: %w", err)
			}
			return nil // closed meanwhile: the reconnect resyncs
		})
		if err != nil {
			return err
		}
	}
	var senderConns []*conn
	var senderConv []string
	for g := range groups {
		for s := range senders {
			senderConns = append(senderConns, b.conns[g*members+s])
			senderConv = append(senderConv, convs[g])
		}
	}
	b.o.Progress(fmt.Sprintf("connected; settling for %s", b.o.Settle))
	time.Sleep(b.o.Settle) // presence and the initial frames settle
	return b.measureServer(ctx, true, func() error {
		began := time.Now()
		b.perUnit = true
		b.res.RateOffered = b.o.Rate
		var readers sync.WaitGroup
		if b.o.HistoryRate > 0 {
			readers.Go(func() { b.readHistory(ctx, convs, members) })
		}
		b.sendFor(ctx, senderConns, senderConv)
		readers.Wait()
		if b.o.Reconnect {
			drainEnd := time.Now().Add(b.o.Drain)
			b.waitAcks(ctx, b.o.Drain)
			b.exact = true
			var stray int64
			b.res.Expected, b.exactLost, stray = b.settleExact(ctx, groups, members, convs, drainEnd)
			b.dups.Add(stray)
			b.timeRates(began)
			return nil
		}
		b.waitAcks(ctx, 30*time.Second)
		// Expected: every acked message at every member connection but
		// its sender's.
		perConv := map[string]int64{}
		perSender := map[*conn]int64{}
		for _, k := range senderConns {
			perSender[k] = k.ackedN.Load()
		}
		for i, k := range senderConns {
			perConv[senderConv[i]] += perSender[k]
		}
		var expected int64
		for g := range groups {
			for m := range members {
				k := b.conns[g*members+m]
				expected += perConv[convs[g]] - perSender[k]
			}
		}
		b.res.Expected = expected
		b.settle(ctx, expected, 30*time.Second)
		b.timeRates(began)
		return nil
	})
}

// timeRates sets the run's durations once the acks and deliveries are in
// (or given up on): to the last ack, and to the later of the last ack
// and the last delivery, which the rates divide by (finish). began is
// when sending started.
func (b *bench) timeRates(began time.Time) {
	lastAck := b.latest(func(k *conn) int64 { return k.lastAck.Load() })
	if lastAck.IsZero() {
		lastAck = time.Now()
	}
	lastDelivery := b.latest(func(k *conn) int64 { return k.lastDelivery.Load() })
	end := lastAck
	if lastDelivery.After(end) {
		end = lastDelivery
	}
	b.res.DurationToLastAckSeconds = lastAck.Sub(began).Seconds()
	b.res.DurationSeconds = end.Sub(began).Seconds()
	if !lastDelivery.IsZero() && lastDelivery.After(lastAck) {
		b.res.DeliveryLagSeconds = lastDelivery.Sub(lastAck).Seconds()
	}
}

// latest is the latest of a per-connection time (Unix ns, 0: none), or
// the zero time.
func (b *bench) latest(get func(*conn) int64) time.Time {
	var ns int64
	for _, k := range b.conns {
		if k != nil {
			ns = max(ns, get(k))
		}
	}
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// settleExact waits until every acked message is held by every member
// connection but its sender's, or until deadline, and returns what
// deliveryCheck found (Reconnect). When the loss stops shrinking for 2 s,
// every open connection syncs once more, as a client that stays connected
// does now and then: a node that dies between committing a message and
// announcing it leaves connections on other nodes to learn of it from
// the next message of the conversation or from sync (docs/protocol.md,
// section 6), and after the last message only sync remains. What that
// sync brought is Result.FinalSyncDeliveries.
func (b *bench) settleExact(ctx context.Context, groups, members int, convs []string, deadline time.Time) (expected, lost, stray int64) {
	lastLost, lastChange, finalSynced := int64(-1), time.Now(), false
	for {
		expected, lost, stray = 0, 0, 0
		for g := range groups {
			e, l, s := deliveryCheck(convs[g], b.conns[g*members:(g+1)*members])
			expected, lost, stray = expected+e, lost+l, stray+s
		}
		if lost == 0 || !time.Now().Before(deadline) || ctx.Err() != nil {
			return expected, lost, stray
		}
		if lost != lastLost {
			lastLost, lastChange = lost, time.Now()
		} else if !finalSynced && time.Since(lastChange) > 2*time.Second {
			finalSynced = true
			before := b.delivered.Load()
			b.finalSync(ctx, deadline)
			b.res.FinalSyncDeliveries = b.delivered.Load() - before
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// finalSync runs a catch-up on every connection that is up (the others
// are reconnecting and will resync anyway), until deadline at most.
func (b *bench) finalSync(ctx context.Context, deadline time.Time) {
	b.o.Progress("deliveries stalled short of the acks: syncing every connection once more")
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	_ = forEach(ctx, len(b.conns), b.o.DialConc, func(ctx context.Context, i int) error {
		k := b.conns[i]
		k.mu.Lock()
		up := k.rc.up
		k.mu.Unlock()
		if up {
			_ = k.catchUp(ctx) // a failure here shows as loss
		}
		return nil
	})
}

// sendFor runs the senders for the duration.
func (b *bench) sendFor(ctx context.Context, senders []*conn, convs []string) {
	start := time.Now()
	end := start.Add(b.o.Duration)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var wg sync.WaitGroup
	progressDone := make(chan struct{})
	go b.progressLoop(progressDone)
	defer close(progressDone)
	for i, k := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.o.Rate > 0 {
				// Open loop: the n-th send is due at start + phase +
				// n*interval, the phases spread over one interval. A
				// sender that wakes late sends what is due at once rather
				// than skipping it, so the offered rate holds (a ticker
				// would drop ticks on a loaded machine).
				interval := float64(time.Second) * float64(len(senders)) / b.o.Rate
				first := start.Add(time.Duration(interval * float64(i) / float64(len(senders))))
				for n := 0; ; n++ {
					due := first.Add(time.Duration(interval * float64(n)))
					if !due.Before(end) {
						return
					}
					if wait := time.Until(due); wait > 0 {
						t := time.NewTimer(wait)
						select {
						case <-t.C:
						case <-ctx.Done():
							t.Stop()
							return
						}
					}
					if k.send(convs[i], time.Now()) != nil {
						return
					}
				}
			}
			for {
				select {
				case k.window <- struct{}{}:
				case <-ctx.Done():
					return
				}
				if k.send(convs[i], time.Now()) != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// readHistory reads the newest history page (the default 50 messages) of
// a random conversation, through one of its member connections, at
// HistoryRate in all for the sending time: what apps do when a user opens
// a conversation. The round trips go into the result's history_ms.
func (b *bench) readHistory(ctx context.Context, convs []string, members int) {
	ctx, cancel := context.WithTimeout(ctx, b.o.Duration)
	defer cancel()
	const readers = 16
	interval := time.Duration(float64(time.Second) * readers / b.o.HistoryRate)
	var (
		mu    sync.Mutex
		times []time.Duration
		wg    sync.WaitGroup
	)
	for r := range readers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(r), uint64(time.Now().UnixNano())))
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
				g := rnd.IntN(len(convs))
				k := b.conns[g*members+rnd.IntN(members)]
				start := time.Now()
				if _, err := k.roundTrip(ctx, client.OutFrame{Type: "history", ID: probeID, ConversationID: convs[g]}); err != nil {
					if ctx.Err() == nil {
						b.countError("history:" + string(parley.ErrorCode(err)))
					}
					continue
				}
				mu.Lock()
				times = append(times, time.Since(start))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(times) == 0 {
		return
	}
	slices.Sort(times)
	at := func(q float64) float64 { return float64(times[int(q*float64(len(times)-1))].Microseconds()) / 1000 }
	b.res.HistoryReads = int64(len(times))
	b.res.HistoryMs = &Quantiles{P50: at(0.5), P99: at(0.99), Max: at(1)}
}

func (b *bench) progressLoop(done chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastAcked, lastDelivered int64
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		a, d := b.acked.Load(), b.delivered.Load()
		line := fmt.Sprintf("sent %d, acked %d (%d/s), delivered %d (%d/s), dup %d, reordered %d, errors %d",
			b.sent.Load(), a, a-lastAcked, d, d-lastDelivered, b.dups.Load(), b.reordered.Load(), b.errorCount())
		if b.o.Reconnect {
			line += fmt.Sprintf(", reconnects %d", b.reconnects.Load())
		}
		b.o.Progress(line)
		lastAcked, lastDelivered = a, d
	}
}

func (b *bench) errorCount() int64 {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	var n int64
	for _, v := range b.res.Errors {
		n += v
	}
	return n
}

// waitAcks waits until no send is in flight.
func (b *bench) waitAcks(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n := 0
		for _, k := range b.conns {
			if k != nil {
				n += k.inFlight()
			}
		}
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settle waits until the deliveries reach expected, or stop growing for
// 3 s, or limit passes.
func (b *bench) settle(ctx context.Context, expected int64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	last, lastChange := b.delivered.Load(), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		d := b.delivered.Load()
		if d >= expected {
			return
		}
		if d != last {
			last, lastChange = d, time.Now()
		} else if time.Since(lastChange) > 3*time.Second {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncAll brings a connection up to date as a client would: sync pages
// from position until has_more is false, then history for conversations
// the sync cut (more_messages), back to their first message (the bench's
// devices held nothing older). It returns the new position and the round
// trips.
func (k *conn) syncAll(ctx context.Context, position string, limit int) (string, int, error) {
	rounds := 0
	cut := map[string]int64{} // conversation -> lowest seq returned
	for {
		f, err := k.roundTrip(ctx, client.OutFrame{Type: "sync", Position: position, Limit: &limit})
		rounds++
		if err != nil {
			return position, rounds, err
		}
		for _, c := range f.Conversations {
			if c.MoreMessages && len(c.Messages) > 0 {
				cut[c.Conversation.ID] = c.Messages[0].Seq
			}
		}
		position = f.Position
		if !f.HasMore {
			break
		}
	}
	for conv, before := range cut {
		for before > 1 {
			hl := 200
			f, err := k.roundTrip(ctx, client.OutFrame{Type: "history", ConversationID: conv, Before: &before, Limit: &hl})
			rounds++
			if err != nil {
				return position, rounds, err
			}
			if len(f.Messages) == 0 {
				break
			}
			before = f.Messages[0].Seq
		}
	}
	return position, rounds, nil
}

// roundTrip sends a request and waits (at most 30 s) for its reply. With
// Reconnect, a socket that does not answer within 30 s is aborted (the
// supervisor reconnects) and the error wraps errSocketClosed.
func (k *conn) roundTrip(ctx context.Context, f client.OutFrame) (*client.InFrame, error) {
	id, ch, sock, done, err := k.request(f)
	if err != nil {
		k.forget(id)
		if k.rc != nil {
			_ = sock.Abort()
			return nil, fmt.Errorf("writing %s: %w (%w)", f.Type, errSocketClosed, err)
		}
		return nil, err
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case <-timeout.C:
		k.forget(id)
		if k.rc != nil {
			_ = sock.Abort()
			return nil, fmt.Errorf("no reply to %s within 30s: %w", f.Type, errSocketClosed)
		}
		return nil, fmt.Errorf("no reply to %s within 30s", f.Type)
	case r := <-ch:
		if r.Type == "error" {
			return r, r.Error
		}
		return r, nil
	case <-done:
		k.forget(id)
		return nil, fmt.Errorf("%w during %s", errSocketClosed, f.Type)
	case <-ctx.Done():
		k.forget(id)
		return nil, ctx.Err()
	}
}

// forget drops a request whose reply is no longer awaited.
func (k *conn) forget(id string) {
	k.mu.Lock()
	delete(k.reqs, id)
	k.mu.Unlock()
}

// offline: devices go away, messages pile up in many conversations, the
// devices come back and sync; catch-up time and bytes per device.
func (b *bench) offline(ctx context.Context) error {
	receivers := b.o.Conns
	start := time.Now()
	devs, err := b.setupUsers(ctx, receivers+1)
	if err != nil {
		return err
	}
	sender := devs[receivers]
	convs := make([][]string, receivers)
	for r := range convs {
		convs[r] = make([]string, b.o.Convs)
	}
	senderREST := b.rest(sender)
	err = forEach(ctx, receivers*b.o.Convs, b.o.SetupConc, func(ctx context.Context, i int) error {
		r, c := i/b.o.Convs, i%b.o.Convs
		g, err := senderREST.CreateGroup(ctx, fmt.Sprintf("offline %d/%d", r, c), devs[r].userID)
		if err != nil {
			return err
		}
		convs[r][c] = g.ID
		return nil
	})
	if err != nil {
		return err
	}
	b.res.SetupSeconds = time.Since(start).Seconds()
	// Each receiver connects once and syncs: it has a position.
	if _, err := b.connectAll(ctx, devs[:receivers], receivers); err != nil {
		return err
	}
	positions := make([]string, receivers)
	err = forEach(ctx, receivers, b.o.DialConc, func(ctx context.Context, r int) error {
		k := b.conns[r]
		if k == nil {
			return fmt.Errorf("receiver %d did not connect", r)
		}
		var err error
		positions[r], _, err = k.syncAll(ctx, "", b.o.SyncLimit)
		return err
	})
	if err != nil {
		return err
	}
	for _, k := range b.conns {
		k.dropped.Store(true)
		_ = k.socket().Close()
	}
	// Messages pile up: the sender sends Messages per receiver, round
	// robin over its conversations, as fast as acks allow.
	sk, err := b.dial(ctx, receivers, sender)
	if err != nil {
		return err
	}
	defer func() { sk.dropped.Store(true); _ = sk.socket().Close() }()
	total := receivers * b.o.Messages
	sendStart := time.Now()
	for i := range total {
		r := i % receivers
		c := (i / receivers) % b.o.Convs
		sk.window <- struct{}{}
		if err := sk.send(convs[r][c], time.Now()); err != nil {
			return err
		}
	}
	b.conns = append(b.conns, sk)
	b.waitAcks(ctx, 60*time.Second)
	b.sendSeconds = time.Since(sendStart).Seconds()
	b.conns = b.conns[:0]
	b.o.Progress(fmt.Sprintf("%d messages waiting for %d devices; reconnecting", b.acked.Load(), receivers))
	b.res.Expected = b.acked.Load()
	// Back: each device connects and syncs from its position.
	times := make([]time.Duration, receivers)
	rounds := make([]int, receivers)
	bytes := make([]int64, receivers)
	conns := make([]*conn, receivers)
	return b.measureServer(ctx, false, func() error {
		began := time.Now()
		err := forEach(ctx, receivers, b.o.DialConc, func(ctx context.Context, r int) error {
			t0 := time.Now()
			k, err := b.dial(ctx, r, devs[r])
			if err != nil {
				b.failed.Add(1)
				return err
			}
			k.noE2E = true // what the sync brings was sent long ago: catch-up time instead
			conns[r] = k
			_, rounds[r], err = k.syncAll(ctx, positions[r], b.o.SyncLimit)
			times[r] = time.Since(t0)
			bytes[r] = k.bytesIn.Load()
			return err
		})
		b.res.DurationSeconds = time.Since(began).Seconds()
		b.conns = conns
		if err != nil {
			return err
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		q := func(p float64) float64 {
			return float64(times[min(len(times)-1, int(p*float64(len(times))))].Microseconds()) / 1000
		}
		b.res.CatchUpP50Ms, b.res.CatchUpP99Ms, b.res.CatchUpMaxMs = q(0.5), q(0.99), float64(times[len(times)-1].Microseconds())/1000
		for r := range receivers {
			b.res.CatchUpRounds = max(b.res.CatchUpRounds, float64(rounds[r]))
			b.res.CatchUpBytes += bytes[r]
		}
		b.res.CatchUpBytes /= int64(receivers)
		return nil
	})
}

// storm: every connection drops at once and reconnects; the time until
// all are resynced.
func (b *bench) storm(ctx context.Context) error {
	if b.o.Conns > b.o.PerProcess {
		return fmt.Errorf("%d connections exceed --per-process (%d); the storm runs in one process", b.o.Conns, b.o.PerProcess)
	}
	start := time.Now()
	devs, err := b.setupUsers(ctx, (b.o.Conns+b.o.PerToken-1)/b.o.PerToken)
	if err != nil {
		return err
	}
	// Each user in one direct conversation with the next, so a sync has
	// something to say.
	err = forEach(ctx, len(devs)/2, b.o.SetupConc, func(ctx context.Context, i int) error {
		_, err := b.rest(devs[2*i]).CreateDirect(ctx, devs[2*i+1].userID)
		return err
	})
	if err != nil {
		return err
	}
	b.res.SetupSeconds = time.Since(start).Seconds()
	if _, err := b.connectAll(ctx, devs, b.o.Conns); err != nil {
		return err
	}
	positions := make([]string, b.o.Conns)
	err = forEach(ctx, b.o.Conns, b.o.DialConc, func(ctx context.Context, i int) error {
		if k := b.conns[i]; k != nil {
			var err error
			if positions[i], _, err = k.syncAll(ctx, "", b.o.SyncLimit); err != nil {
				b.failed.Add(1)
				b.countError(errCode(err))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	old := b.conns
	var resynced atomic.Int64
	return b.measureServer(ctx, false, func() error {
		began := time.Now()
		for _, k := range old {
			if k != nil {
				k.dropped.Store(true)
				_ = k.socket().Abort()
			}
		}
		done := make(chan struct{})
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					b.o.Progress(fmt.Sprintf("storm: %d/%d resynced after %.1fs", resynced.Load(), b.o.Conns, time.Since(began).Seconds()))
				}
			}
		}()
		fresh := make([]*conn, b.o.Conns)
		times := make([]time.Duration, b.o.Conns)
		dialTimes := make([]time.Duration, b.o.Conns)
		syncTimes := make([]time.Duration, b.o.Conns)
		err := forEach(ctx, b.o.Conns, b.o.DialConc, func(ctx context.Context, i int) error {
			if old[i] == nil {
				return nil
			}
			t0 := time.Now()
			k, err := b.dial(ctx, i, old[i].dev)
			if err != nil {
				b.failed.Add(1)
				b.countError(errCode(err))
				return nil
			}
			t1 := time.Now()
			fresh[i] = k
			if _, _, err := k.syncAll(ctx, positions[i], b.o.SyncLimit); err != nil {
				b.failed.Add(1)
				b.countError(errCode(err))
				return nil
			}
			dialTimes[i], syncTimes[i] = t1.Sub(t0), time.Since(t1)
			times[i] = time.Since(began)
			resynced.Add(1)
			return nil
		})
		close(done)
		b.conns = fresh
		b.res.ResyncSeconds = time.Since(began).Seconds()
		b.res.ResyncDialMaxMs = float64(slices.Max(dialTimes).Microseconds()) / 1000
		b.res.ResyncSyncMaxMs = float64(slices.Max(syncTimes).Microseconds()) / 1000
		b.res.DurationSeconds = b.res.ResyncSeconds
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		if len(times) > 0 {
			b.res.CatchUpP50Ms = float64(times[len(times)/2].Microseconds()) / 1000
			b.res.CatchUpP99Ms = float64(times[min(len(times)-1, len(times)*99/100)].Microseconds()) / 1000
			b.res.CatchUpMaxMs = float64(times[len(times)-1].Microseconds()) / 1000
		}
		return err
	})
}
