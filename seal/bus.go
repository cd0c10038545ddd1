package seal

import (
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/parleychat/parley"
)

// busKeyInfo is the HKDF info that derives the bus event key from a master
// key: the same master key, another key (see dataKeyInfo).
const busKeyInfo = "parley bus events v1"

// The sealed form of a bus event:
//
//	version (1 byte, busVersion) || key id (4, big-endian) ||
//	sealed at (8, Unix milliseconds, big-endian) ||
//	nonce (24) || ciphertext || tag (16)
//
// XChaCha20-Poly1305 with a random 192-bit nonce: the bus carries far more
// events than the store holds messages (receipts, typing, presence), more
// than a 96-bit random nonce allows under one key. The additional data is
// the header (the first 13 bytes) and the subject, so an event cannot be
// moved to another subject, re-dated or re-labelled.
const (
	busVersion    = 1
	busHeaderSize = 1 + 4 + 8
	// BusOverhead is how many bytes sealing adds to an event.
	BusOverhead = busHeaderSize + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
)

// Reasons an event does not open; ErrOpen or ErrUnknownKey is in each
// chain too.
var (
	errBusFormat = errors.New("seal: not a sealed bus event")
	errBusStale  = errors.New("seal: bus event outside the replay window")
)

// Bus is a parley.Bus that seals every event it publishes and opens every
// event it delivers, over another parley.Bus (NATS): whoever can read or
// publish on NATS without the master key sees no event's content and
// cannot make a subscriber accept an event it forged or altered; it can
// replay a sealed event on its own subject within the replay window
// (MaxAge; no nonce is remembered). Events that do not open
// (forged, altered, moved to another subject, sealed under a key this
// node does not have, or sealed longer ago than the replay window) are
// dropped and counted (Rejected), never delivered. Safe for concurrent
// use.
//
// Keys follow the master keys: the first one seals, all of them open, so
// a rotation first adds the new key after the old one on every node, then
// moves it first (docs/operations.md).
type Bus struct {
	inner    parley.Bus
	activeID uint32
	aeads    map[uint32]cipher.AEAD
	maxAge   time.Duration
	now      func() time.Time
	log      *slog.Logger

	rejected atomic.Uint64
	lastWarn atomic.Int64 // Unix nanoseconds of the last warning logged
}

var _ parley.Bus = (*Bus)(nil)

// BusOptions configure a Bus. Zero values mean the defaults given.
type BusOptions struct {
	// MaxAge bounds replays: an event sealed longer ago than this, or
	// dated this far in the future, is dropped. Default 5m; the nodes'
	// clocks must agree to well within it.
	MaxAge time.Duration
	// Logger receives the rejected events: each at debug, and a warning
	// with the running count at most once a minute. Default: discard.
	Logger *slog.Logger
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// NewBus returns a sealing Bus over inner with the given master keys (the
// first one seals). It fails like NewKeyring on bad keys.
func NewBus(inner parley.Bus, masterKeys [][]byte, opts BusOptions) (*Bus, error) {
	if len(masterKeys) == 0 {
		return nil, errors.New("seal: no master key")
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Bus{inner: inner, aeads: make(map[uint32]cipher.AEAD, len(masterKeys)), maxAge: opts.MaxAge, now: opts.Now, log: opts.Logger}
	for i, master := range masterKeys {
		if len(master) != MasterKeySize {
			return nil, fmt.Errorf("seal: master key %d is %d bytes, want %d", i+1, len(master), MasterKeySize)
		}
		id := keyID(master)
		if _, dup := b.aeads[id]; dup {
			return nil, fmt.Errorf("seal: master key %d repeats an earlier key", i+1)
		}
		key, err := hkdf.Key(sha256.New, master, nil, busKeyInfo, chacha20poly1305.KeySize)
		if err != nil {
			return nil, fmt.Errorf("seal: derive key: %w", err)
		}
		aead, err := chacha20poly1305.NewX(key)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		b.aeads[id] = aead
		if i == 0 {
			b.activeID = id
		}
	}
	return b, nil
}

// Publish implements parley.Bus: it seals data and publishes the result.
func (b *Bus) Publish(ctx context.Context, subject string, data []byte) error {
	return b.inner.Publish(ctx, subject, b.sealEvent(subject, data))
}

// Subscribe implements parley.Bus: handle gets the opened events; the
// others are dropped (see Bus).
func (b *Bus) Subscribe(pattern string, handle func(subject string, data []byte)) (parley.Subscription, error) {
	return b.inner.Subscribe(pattern, func(subject string, sealed []byte) {
		data, err := b.openEvent(subject, sealed)
		if err != nil {
			b.reject(subject, len(sealed), err)
			return
		}
		handle(subject, data)
	})
}

// SubscribeBatch implements parley.BatchSubscriber over an inner bus that
// does (otherwise every event comes with more false). An event that does
// not open and ends a burst is passed on with nil data.
func (b *Bus) SubscribeBatch(pattern string, handle func(subject string, data []byte, more bool)) (parley.Subscription, error) {
	inner, ok := b.inner.(parley.BatchSubscriber)
	if !ok {
		return b.Subscribe(pattern, func(subject string, data []byte) { handle(subject, data, false) })
	}
	return inner.SubscribeBatch(pattern, func(subject string, sealed []byte, more bool) {
		data, err := b.openEvent(subject, sealed)
		if err != nil {
			b.reject(subject, len(sealed), err)
			if !more {
				handle(subject, nil, false)
			}
			return
		}
		handle(subject, data, more)
	})
}

// Close closes the underlying bus.
func (b *Bus) Close() error { return b.inner.Close() }

// Rejected returns how many events did not open so far.
func (b *Bus) Rejected() uint64 { return b.rejected.Load() }

func (b *Bus) reject(subject string, size int, err error) {
	n := b.rejected.Add(1)
	b.log.Debug("bus event rejected", "subject", subject, "bytes", size, "err", err)
	now := b.now().UnixNano()
	last := b.lastWarn.Load()
	if now-last >= int64(time.Minute) && b.lastWarn.CompareAndSwap(last, now) {
		b.log.Warn("bus events rejected: they do not open under this node's master keys (forged, altered, replayed, or from a node with other keys)",
			"rejected_total", n, "subject", subject, "err", err)
	}
}

// sealEvent returns data sealed for subject under the active key.
func (b *Bus) sealEvent(subject string, data []byte) []byte {
	out := make([]byte, busHeaderSize+chacha20poly1305.NonceSizeX, BusOverhead+len(data))
	out[0] = busVersion
	binary.BigEndian.PutUint32(out[1:5], b.activeID)
	binary.BigEndian.PutUint64(out[5:13], uint64(b.now().UnixMilli()))
	nonce := out[busHeaderSize:]
	rand.Read(nonce) // never fails (crypto/rand)
	return b.aeads[b.activeID].Seal(out, nonce, data, additionalData(out[:busHeaderSize], subject))
}

// openEvent returns the event sealed in sealed for subject, or why not.
func (b *Bus) openEvent(subject string, sealed []byte) ([]byte, error) {
	if len(sealed) < BusOverhead || sealed[0] != busVersion {
		return nil, fmt.Errorf("%w: %w", ErrOpen, errBusFormat)
	}
	id := binary.BigEndian.Uint32(sealed[1:5])
	aead, ok := b.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w %08x", ErrUnknownKey, id)
	}
	at := int64(binary.BigEndian.Uint64(sealed[5:13]))
	if age := b.now().UnixMilli() - at; age > b.maxAge.Milliseconds() || age < -b.maxAge.Milliseconds() {
		return nil, fmt.Errorf("%w: %w", ErrOpen, errBusStale)
	}
	nonce := sealed[busHeaderSize : busHeaderSize+chacha20poly1305.NonceSizeX]
	data, err := aead.Open(nil, nonce, sealed[busHeaderSize+chacha20poly1305.NonceSizeX:], additionalData(sealed[:busHeaderSize], subject))
	if err != nil {
		return nil, ErrOpen
	}
	return data, nil
}

// additionalData is header || subject.
func additionalData(header []byte, subject string) []byte {
	ad := make([]byte, 0, len(header)+len(subject))
	return append(append(ad, header...), subject...)
}
