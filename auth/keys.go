package auth

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of KeyOptions.
const (
	DefaultAccessTTL   = 15 * time.Minute
	DefaultRotateEvery = 30 * 24 * time.Hour
)

// KeyOptions configure the signing keys of access tokens.
type KeyOptions struct {
	// AccessTTL is the lifetime of an access token; zero means
	// DefaultAccessTTL (15 minutes). A retired key is kept for this long
	// after its retirement, so every token it signed can expire naturally.
	AccessTTL time.Duration
	// RotateEvery is the age at which Maintain replaces the active key;
	// zero means never automatically (only Rotate does). Servers normally
	// use DefaultRotateEvery (30 days).
	RotateEvery time.Duration
}

// Keys holds the Ed25519 keys that sign and verify access tokens: one active
// key that signs, and retired keys that still verify the tokens they signed
// until those have expired. Make one with NewKeys (or LoadKeys for a key
// directory); the zero value is not usable. All methods are safe for
// concurrent use, also with other processes (other nodes of a cluster, or
// `parleyd keys rotate`) sharing the KeyStore: Maintain picks up their
// changes.
//
// Each key is stored as text: a PEM "PRIVATE KEY" block (PKCS #8) preceded
// by explanatory text, which PEM readers ignore (RFC 7468, section 5.2),
// that records the key's life:
//
//	Parley access-token signing key. Keep secret.
//	created_at: 2026-01-02T03:04:05Z
//	retired_at: 2026-02-01T03:04:05Z
//	-----BEGIN PRIVATE KEY-----
//	...
//
// retired_at is absent while the key has not been retired. The kid is the
// unpadded base64url of the first 12 bytes of SHA-256 of the public key.
type Keys struct {
	store KeyStore
	opts  KeyOptions

	// storeMu serializes the methods that change the store (Maintain,
	// Rotate) within this process.
	storeMu sync.Mutex

	// lastReload is when a token with an unknown kid last made Verify
	// reload the keys (Unix ns); at most one reload per reloadEvery.
	lastReload atomic.Int64

	mu     sync.RWMutex // guards the fields below, which are replaced, never mutated
	active *signingKey
	byKID  map[string]*signingKey
	jwks   []byte
}

// KeyStore keeps the encoded signing keys, by kid. A cluster's nodes share
// one (the parley.Store's secrets), so that a token one node issued
// verifies on every other.
type KeyStore interface {
	// UpdateKeys calls change with every stored key (kid -> encoded key)
	// and stores the keys it puts and deletes the kids it drops,
	// atomically with respect to other UpdateKeys calls on the same store,
	// from any process, or at least without losing a key. change may run
	// more than once. If it fails, nothing changes and its error is
	// returned.
	UpdateKeys(ctx context.Context, change func(current map[string][]byte) (put map[string][]byte, drop []string, err error)) error
}

// signingKey is one key. It is immutable: retiring a key makes a new one.
type signingKey struct {
	kid       string
	private   ed25519.PrivateKey
	public    ed25519.PublicKey
	createdAt time.Time
	retiredAt time.Time // zero while not retired
}

// verifyLeeway is the clock skew tolerated when checking iat.
const verifyLeeway = 5 * time.Second

// retiredGrace is added to a retired key's life (AccessTTL after its
// retirement): a process that has not yet reloaded the keys (it does so
// every MaintainInterval, and a Maintain may take up to storeTimeout, and
// may fail once) may still sign with the retired key, and those tokens
// must live out their full lifetime.
const retiredGrace = 2*MaintainInterval + storeTimeout + verifyLeeway

// MaintainInterval is how often a server should call Maintain.
const MaintainInterval = time.Minute

// storeTimeout bounds one round of Maintain or Rotate against the store.
const storeTimeout = 30 * time.Second

// LoadKeys opens the key directory dir (see DirKeyStore), creating it and a
// first key when there is none, and then does what Maintain does.
func LoadKeys(dir string, opts KeyOptions, now time.Time) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: key directory: %w", err)
	}
	return NewKeys(DirKeyStore(dir), opts, now)
}

// NewKeys loads the keys of store, creating a first key when there is
// none, and then does what Maintain does. The returned Keys sign with the
// newest key that is not retired.
func NewKeys(store KeyStore, opts KeyOptions, now time.Time) (*Keys, error) {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = DefaultAccessTTL
	}
	if opts.RotateEvery < 0 {
		return nil, errors.New("auth: negative RotateEvery")
	}
	k := &Keys{store: store, opts: opts}
	if _, err := k.maintain(now, false); err != nil {
		return nil, err
	}
	return k, nil
}

// reloadEvery bounds how often tokens with an unknown kid make Verify
// reload the keys: a forged kid costs a reload at most this often.
const reloadEvery = 5 * time.Second

// reloadForUnknownKey reloads the keys (Maintain) unless that was done
// for an unknown kid within reloadEvery; it reports whether it did.
func (k *Keys) reloadForUnknownKey(now time.Time) bool {
	last := k.lastReload.Load()
	if now.UnixNano()-last < int64(reloadEvery) || !k.lastReload.CompareAndSwap(last, now.UnixNano()) {
		return false
	}
	return k.Maintain(now) == nil
}

// Maintain brings the keys up to date with the store and the clock: it
// rereads the store (so a rotation by another process takes effect here),
// rotates when the active key is older than RotateEvery, and deletes
// retired keys whose tokens have all expired (AccessTTL after retirement).
// Run it periodically, e.g. every minute. On error the keys in memory stay
// as they were.
func (k *Keys) Maintain(now time.Time) error {
	_, err := k.maintain(now, false)
	return err
}

// Rotate makes a new active key. The previous active key is retired at now
// and keeps verifying tokens until they have expired, then Maintain deletes
// it. It returns the new key's kid.
func (k *Keys) Rotate(now time.Time) (newKID string, err error) {
	return k.maintain(now, true)
}

// maintain does the work of Maintain, and rotates if rotate is set, in one
// KeyStore update, so that nodes sharing the store agree: when rotation is
// due, the first node to get there rotates and the others find its key. It
// returns the kid of the active key.
func (k *Keys) maintain(now time.Time, rotate bool) (activeKID string, err error) {
	k.storeMu.Lock()
	defer k.storeMu.Unlock()

	var (
		active *signingKey
		byKID  map[string]*signingKey
	)
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	err = k.store.UpdateKeys(ctx, func(current map[string][]byte) (map[string][]byte, []string, error) {
		active, byKID = nil, nil
		put := map[string][]byte{}
		var drop []string
		keys := make([]*signingKey, 0, len(current))
		for name, data := range current {
			key, err := parseKey(data)
			if err != nil {
				return nil, nil, fmt.Errorf("auth: key %s: %w", name, err)
			}
			if name != key.kid {
				return nil, nil, fmt.Errorf("auth: key %s: holds key %s", name, key.kid)
			}
			keys = append(keys, key)
		}
		// Newest first. The newest key that is not retired is active; any
		// other key not retired (two processes rotated at once, or a crash
		// between writing a new key and retiring the old one) is retired
		// when the active one was created, and keeps verifying as usual.
		slices.SortFunc(keys, func(a, b *signingKey) int {
			return cmp.Or(b.createdAt.Compare(a.createdAt), strings.Compare(a.kid, b.kid))
		})
		for i, key := range keys {
			if !key.retiredAt.IsZero() {
				continue
			}
			if active == nil {
				active = key
				continue
			}
			retired := *key
			retired.retiredAt = active.createdAt
			if put[retired.kid], err = encodeKey(&retired); err != nil {
				return nil, nil, err
			}
			keys[i] = &retired
		}
		due := active != nil && k.opts.RotateEvery > 0 && now.Sub(active.createdAt) >= k.opts.RotateEvery
		if active == nil || rotate || due {
			next, err := newSigningKey(now)
			if err != nil {
				return nil, nil, err
			}
			if put[next.kid], err = encodeKey(next); err != nil {
				return nil, nil, err
			}
			if active != nil {
				retired := *active
				retired.retiredAt = now.UTC()
				if put[retired.kid], err = encodeKey(&retired); err != nil {
					return nil, nil, err
				}
				keys[slices.Index(keys, active)] = &retired
			}
			keys = append([]*signingKey{next}, keys...)
			active = next
		}
		byKID = make(map[string]*signingKey, len(keys))
		for _, key := range keys {
			if key != active && !now.Before(key.retiredAt.Add(k.opts.AccessTTL+retiredGrace)) {
				drop = append(drop, key.kid)
				continue
			}
			byKID[key.kid] = key
		}
		return put, drop, nil
	})
	if err != nil {
		return "", err
	}
	jwks := encodeJWKS(active, byKID)

	k.mu.Lock()
	k.active, k.byKID, k.jwks = active, byKID, jwks
	k.mu.Unlock()
	return active.kid, nil
}

// JWKS returns the public keys that verify tokens, active first, as a JSON
// Web Key Set (RFC 7517, with RFC 8037 OKP keys), for
// /.well-known/jwks.json. The caller must not modify the returned slice.
func (k *Keys) JWKS() []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.jwks
}

// verificationKey returns the public key named kid, if it still verifies.
func (k *Keys) verificationKey(kid string) (ed25519.PublicKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok := k.byKID[kid]
	if !ok {
		return nil, false
	}
	return key.public, true
}

// signer returns the active key.
func (k *Keys) signer() *signingKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.active
}

func encodeJWKS(active *signingKey, byKID map[string]*signingKey) []byte {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	keys := slices.SortedFunc(func(yield func(*signingKey) bool) {
		for _, key := range byKID {
			if !yield(key) {
				return
			}
		}
	}, func(a, b *signingKey) int {
		return cmp.Or(
			cmp.Compare(boolRank(b == active), boolRank(a == active)),
			b.createdAt.Compare(a.createdAt),
			strings.Compare(a.kid, b.kid))
	})
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, key := range keys {
		set.Keys = append(set.Keys, jwk{
			Kty: "OKP", Crv: "Ed25519", Alg: "EdDSA", Use: "sig", Kid: key.kid,
			X: base64.RawURLEncoding.EncodeToString(key.public),
		})
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err) // strings only; cannot fail
	}
	return b
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// keyID returns the kid of a public key.
func keyID(public ed25519.PublicKey) string {
	sum := sha256.Sum256(public)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

func newSigningKey(now time.Time) (*signingKey, error) {
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("auth: generate key: %w", err)
	}
	return &signingKey{
		kid: keyID(public), private: private, public: public,
		createdAt: now.UTC(),
	}, nil
}

const (
	keyFileTitle      = "Parley access-token signing key. Keep secret."
	keyFileCreatedAt  = "created_at: "
	keyFileRetiredAt  = "retired_at: "
	keyFileTimeFormat = time.RFC3339Nano
)

// encodeKey returns the stored form of key (see Keys).
func encodeKey(key *signingKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key.private)
	if err != nil {
		return nil, fmt.Errorf("auth: encode key %s: %w", key.kid, err)
	}
	var buf bytes.Buffer
	buf.WriteString(keyFileTitle + "\n")
	buf.WriteString(keyFileCreatedAt + key.createdAt.UTC().Format(keyFileTimeFormat) + "\n")
	if !key.retiredAt.IsZero() {
		buf.WriteString(keyFileRetiredAt + key.retiredAt.UTC().Format(keyFileTimeFormat) + "\n")
	}
	if err := pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return nil, fmt.Errorf("auth: encode key %s: %w", key.kid, err)
	}
	return buf.Bytes(), nil
}

// DirKeyStore is a KeyStore in a directory: one file per key, named
// <kid>.pem, mode 0600, replaced atomically (write, fsync, rename), so
// `openssl pkey -in` reads them and a crash leaves either the old or the
// new content. Processes sharing the directory are not serialized; the
// rule in Keys.maintain resolves two rotations at once. parleyd keeps its
// keys in its store instead and imports such a directory once (ReadKeyDir).
type DirKeyStore string

// UpdateKeys implements KeyStore.
func (d DirKeyStore) UpdateKeys(_ context.Context, change func(map[string][]byte) (map[string][]byte, []string, error)) error {
	dir := string(d)
	current, err := ReadKeyDir(dir)
	if err != nil {
		return err
	}
	put, drop, err := change(current)
	if err != nil {
		return err
	}
	for kid, data := range put {
		if err := writeKeyFile(dir, kid, data); err != nil {
			return err
		}
	}
	for _, kid := range drop {
		if err := os.Remove(keyPath(dir, kid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("auth: drop key %s: %w", kid, err)
		}
	}
	return syncDir(dir)
}

func keyPath(dir, kid string) string { return filepath.Join(dir, kid+".pem") }

// writeKeyFile writes data to <dir>/<kid>.pem atomically with mode 0600.
// The caller syncs the directory.
func writeKeyFile(dir, kid string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+kid+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("auth: write key: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), keyPath(dir, kid))
	}
	if err != nil {
		return fmt.Errorf("auth: write key %s: %w", kid, err)
	}
	return nil
}

// ReadKeyDir reads every <kid>.pem file of dir, by kid; a directory that
// does not exist holds none. A file deleted while it runs (by another
// process dropping a key) is skipped.
func ReadKeyDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: key directory: %w", err)
	}
	keys := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".pem") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("auth: read key: %w", err)
		}
		keys[strings.TrimSuffix(name, ".pem")] = data
	}
	return keys, nil
}

func parseKey(data []byte) (*signingKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PRIVATE KEY block")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS #8 private key")
	}
	private, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("not an Ed25519 key")
	}
	public := private.Public().(ed25519.PublicKey)
	key := &signingKey{kid: keyID(public), private: private, public: public}

	text, _, _ := bytes.Cut(data, []byte("-----BEGIN"))
	lines := bufio.NewScanner(bytes.NewReader(text))
	for lines.Scan() {
		line := strings.TrimSpace(lines.Text())
		for _, f := range []struct {
			prefix string
			t      *time.Time
		}{{keyFileCreatedAt, &key.createdAt}, {keyFileRetiredAt, &key.retiredAt}} {
			value, ok := strings.CutPrefix(line, f.prefix)
			if !ok {
				continue
			}
			if *f.t, err = time.Parse(keyFileTimeFormat, value); err != nil {
				return nil, fmt.Errorf("bad %s", strings.TrimSuffix(f.prefix, ": "))
			}
		}
	}
	if key.createdAt.IsZero() {
		return nil, errors.New("no created_at")
	}
	return key, nil
}

// syncDir makes renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("auth: sync key directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("auth: sync key directory: %w", err)
	}
	return nil
}
