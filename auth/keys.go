package auth

import (
	"bufio"
	"bytes"
	"cmp"
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
// until those have expired. Make one with LoadKeys; the zero value is not
// usable. All methods are safe for concurrent use, also with other processes
// (such as `parleyd keys rotate`) working on the same directory: Maintain
// picks up their changes.
//
// On disk, dir holds one file per key, named <kid>.pem, mode 0600 (the
// directory is 0700). The file is a PEM "PRIVATE KEY" block (PKCS #8) preceded
// by explanatory text, which PEM readers ignore (RFC 7468, section 5.2), that
// records the key's life:
//
//	Parley access-token signing key. Keep secret.
//	created_at: 2026-01-02T03:04:05Z
//	retired_at: 2026-02-01T03:04:05Z
//	-----BEGIN PRIVATE KEY-----
//	...
//
// retired_at is absent while the key has not been retired. Files are
// replaced atomically (write, fsync, rename), so `openssl pkey -in` reads
// them and a crash leaves either the old or the new content. The kid is the
// unpadded base64url of the first 12 bytes of SHA-256 of the public key.
type Keys struct {
	dir  string
	opts KeyOptions

	// diskMu serializes the methods that change the directory (Maintain,
	// Rotate) within this process.
	diskMu sync.Mutex

	mu     sync.RWMutex // guards the fields below, which are replaced, never mutated
	active *signingKey
	byKID  map[string]*signingKey
	jwks   []byte
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
// retirement): a process that has not yet reloaded the key directory (it
// does so every MaintainInterval) may still sign with the retired key, and
// those tokens must live out their full lifetime.
const retiredGrace = MaintainInterval + verifyLeeway

// MaintainInterval is how often a server should call Maintain.
const MaintainInterval = time.Minute

// LoadKeys opens the key directory dir, creating it and a first key when
// there is none, and then does what Maintain does. The returned Keys sign
// with the newest key that is not retired.
func LoadKeys(dir string, opts KeyOptions, now time.Time) (*Keys, error) {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = DefaultAccessTTL
	}
	if opts.RotateEvery < 0 {
		return nil, errors.New("auth: negative RotateEvery")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: key directory: %w", err)
	}
	k := &Keys{dir: dir, opts: opts}
	if _, err := k.maintain(now, false); err != nil {
		return nil, err
	}
	return k, nil
}

// Maintain brings the keys up to date with the directory and the clock: it
// rereads the directory (so a rotation by another process takes effect
// here), rotates when the active key is older than RotateEvery, and deletes
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

// maintain does the work of Maintain, and rotates if rotate is set. It
// returns the kid of the active key.
func (k *Keys) maintain(now time.Time, rotate bool) (activeKID string, err error) {
	k.diskMu.Lock()
	defer k.diskMu.Unlock()

	keys, err := readKeyDir(k.dir)
	if err != nil {
		return "", err
	}
	// Newest first. The newest key that is not retired is active; any other
	// key not retired (two processes rotated at once, or a crash between
	// writing a new key and retiring the old one) is retired when the active
	// one was created, and keeps verifying as usual.
	slices.SortFunc(keys, func(a, b *signingKey) int {
		return cmp.Or(b.createdAt.Compare(a.createdAt), strings.Compare(a.kid, b.kid))
	})
	var active *signingKey
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
		if err := writeKeyFile(k.dir, &retired); err != nil {
			return "", err
		}
		keys[i] = &retired
	}
	due := active != nil && k.opts.RotateEvery > 0 && now.Sub(active.createdAt) >= k.opts.RotateEvery
	if active == nil || rotate || due {
		next, err := newSigningKey(now)
		if err != nil {
			return "", err
		}
		// Write the new key first: a crash before the old one is marked
		// retired leaves two unretired keys, which the rule above resolves.
		if err := writeKeyFile(k.dir, next); err != nil {
			return "", err
		}
		if active != nil {
			retired := *active
			retired.retiredAt = now.UTC()
			if err := writeKeyFile(k.dir, &retired); err != nil {
				return "", err
			}
			keys[slices.Index(keys, active)] = &retired
		}
		keys = append([]*signingKey{next}, keys...)
		active = next
	}

	byKID := make(map[string]*signingKey, len(keys))
	for _, key := range keys {
		if key != active && !now.Before(key.retiredAt.Add(k.opts.AccessTTL+retiredGrace)) {
			if err := os.Remove(keyPath(k.dir, key.kid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("auth: drop key %s: %w", key.kid, err)
			}
			continue
		}
		byKID[key.kid] = key
	}
	if err := syncDir(k.dir); err != nil {
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

func keyPath(dir, kid string) string { return filepath.Join(dir, kid+".pem") }

const (
	keyFileTitle      = "Parley access-token signing key. Keep secret."
	keyFileCreatedAt  = "created_at: "
	keyFileRetiredAt  = "retired_at: "
	keyFileTimeFormat = time.RFC3339Nano
)

// writeKeyFile writes key to <dir>/<kid>.pem atomically with mode 0600.
// The caller syncs the directory.
func writeKeyFile(dir string, key *signingKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key.private)
	if err != nil {
		return fmt.Errorf("auth: encode key %s: %w", key.kid, err)
	}
	var buf bytes.Buffer
	buf.WriteString(keyFileTitle + "\n")
	buf.WriteString(keyFileCreatedAt + key.createdAt.UTC().Format(keyFileTimeFormat) + "\n")
	if !key.retiredAt.IsZero() {
		buf.WriteString(keyFileRetiredAt + key.retiredAt.UTC().Format(keyFileTimeFormat) + "\n")
	}
	if err := pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return fmt.Errorf("auth: encode key %s: %w", key.kid, err)
	}

	f, err := os.CreateTemp(dir, "."+key.kid+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("auth: write key: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), keyPath(dir, key.kid))
	}
	if err != nil {
		return fmt.Errorf("auth: write key %s: %w", key.kid, err)
	}
	return nil
}

// readKeyDir reads every <kid>.pem file of dir. A file deleted while it
// runs (by another process dropping a key) is skipped.
func readKeyDir(dir string) ([]*signingKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("auth: key directory: %w", err)
	}
	var keys []*signingKey
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
		key, err := parseKeyFile(data)
		if err != nil {
			return nil, fmt.Errorf("auth: key file %s: %w", name, err)
		}
		if name != key.kid+".pem" {
			return nil, fmt.Errorf("auth: key file %s: holds key %s", name, key.kid)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

func parseKeyFile(data []byte) (*signingKey, error) {
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
