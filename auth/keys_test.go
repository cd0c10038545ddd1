package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

type jwksDoc struct {
	Keys []struct {
		Kty, Crv, X, Kid, Alg, Use string
	}
}

func jwksKIDs(tb testing.TB, k *Keys) []string {
	tb.Helper()
	var doc jwksDoc
	if err := json.Unmarshal(k.JWKS(), &doc); err != nil {
		tb.Fatal(err)
	}
	var kids []string
	for _, key := range doc.Keys {
		kids = append(kids, key.Kid)
	}
	return kids
}

func keyFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestLoadKeysCreatesFirstKey(t *testing.T) {
	k, dir := newTestKeys(t, KeyOptions{})
	kid := k.signer().kid
	if files := keyFiles(t, dir); !slices.Equal(files, []string{kid + ".pem"}) {
		t.Fatalf("files %v, want [%s.pem]", files, kid)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, kid+".pem"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}

	// The file is a standard PKCS #8 PEM key and its name is the kid.
	data, err := os.ReadFile(filepath.Join(dir, kid+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "created_at: 2026-03-01T12:00:00Z\n") || strings.Contains(string(data), "retired_at") {
		t.Errorf("key file text:\n%s", data)
	}
	block, _ := pem.Decode(data)
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := keyID(parsed.(ed25519.PrivateKey).Public().(ed25519.PublicKey)); got != kid {
		t.Errorf("kid of file %s, want %s", got, kid)
	}
	if len(kid) != 16 { // 12 bytes, unpadded base64url
		t.Errorf("kid %q: want 16 characters", kid)
	}
}

func TestJWKS(t *testing.T) {
	k, _ := newTestKeys(t, KeyOptions{})
	var doc jwksDoc
	if err := json.Unmarshal(k.JWKS(), &doc); err != nil {
		t.Fatal(err)
	}
	active := k.signer()
	if len(doc.Keys) != 1 {
		t.Fatalf("JWKS %s: want one key", k.JWKS())
	}
	got := doc.Keys[0]
	if got.Kty != "OKP" || got.Crv != "Ed25519" || got.Alg != "EdDSA" || got.Use != "sig" || got.Kid != active.kid {
		t.Errorf("JWK %+v", got)
	}
	if x, err := base64.RawURLEncoding.DecodeString(got.X); err != nil || !ed25519.PublicKey(x).Equal(active.public) {
		t.Errorf("x %q is not the public key", got.X)
	}
}

func TestRestartVerifiesOldTokens(t *testing.T) {
	k1, dir := newTestKeys(t, KeyOptions{})
	token := issue(t, k1, t0)
	k2, err := LoadKeys(dir, KeyOptions{}, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if k2.signer().kid != k1.signer().kid {
		t.Errorf("restart changed the active key")
	}
	if _, err := k2.Verify(token, t0.Add(time.Minute)); err != nil {
		t.Errorf("token of the first process: %v", err)
	}
}

func TestRotation(t *testing.T) {
	const ttl = 15 * time.Minute
	k, dir := newTestKeys(t, KeyOptions{AccessTTL: ttl})
	oldKID := k.signer().kid
	before := issue(t, k, t0.Add(time.Minute)) // expires at t0+16m

	rotatedAt := t0.Add(2 * time.Minute)
	newKID, err := k.Rotate(rotatedAt)
	if err != nil {
		t.Fatal(err)
	}
	if newKID == oldKID || k.signer().kid != newKID {
		t.Fatalf("Rotate returned %s, active %s, old %s", newKID, k.signer().kid, oldKID)
	}
	after := issue(t, k, rotatedAt)
	if h, _ := decodeSegments(t, after); !strings.Contains(h, newKID) {
		t.Errorf("new token's header %s lacks the new kid", h)
	}
	data, _ := os.ReadFile(filepath.Join(dir, oldKID+".pem"))
	if !strings.Contains(string(data), "retired_at: 2026-03-01T12:02:00Z\n") {
		t.Errorf("retired key file:\n%s", data)
	}
	if kids := jwksKIDs(t, k); !slices.Equal(kids, []string{newKID, oldKID}) {
		t.Errorf("JWKS kids %v, want [%s %s]", kids, newKID, oldKID)
	}

	// The old token verifies until it expires, even across Maintain and a
	// restart.
	if err := k.Maintain(t0.Add(10 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Verify(before, t0.Add(10*time.Minute)); err != nil {
		t.Errorf("pre-rotation token after rotation: %v", err)
	}
	restarted, err := LoadKeys(dir, KeyOptions{AccessTTL: ttl}, t0.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if restarted.signer().kid != newKID {
		t.Errorf("after restart the active key is %s, want %s", restarted.signer().kid, newKID)
	}
	if _, err := restarted.Verify(before, t0.Add(10*time.Minute)); err != nil {
		t.Errorf("pre-rotation token after restart: %v", err)
	}
	_, err = k.Verify(before, t0.Add(16*time.Minute))
	wantCode(t, err, parley.CodeTokenExpired)

	// Right at retired_at+TTL the key is still kept (retiredGrace covers
	// servers that have not reloaded yet); then Maintain drops it.
	if err := k.Maintain(rotatedAt.Add(ttl)); err != nil {
		t.Fatal(err)
	}
	if kids := jwksKIDs(t, k); len(kids) != 2 {
		t.Errorf("JWKS kids %v just at retired_at+TTL, want both", kids)
	}
	if err := k.Maintain(rotatedAt.Add(ttl + retiredGrace)); err != nil {
		t.Fatal(err)
	}
	if kids := jwksKIDs(t, k); !slices.Equal(kids, []string{newKID}) {
		t.Errorf("JWKS kids %v after drop, want [%s]", kids, newKID)
	}
	if files := keyFiles(t, dir); !slices.Equal(files, []string{newKID + ".pem"}) {
		t.Errorf("files %v after drop", files)
	}
	_, err = k.Verify(before, rotatedAt.Add(ttl+retiredGrace))
	wantCode(t, err, parley.CodeUnauthorized)
	if _, err := k.Verify(after, rotatedAt.Add(ttl-time.Second)); err != nil {
		t.Errorf("post-rotation token: %v", err)
	}
}

func TestMaintainRotatesOldKey(t *testing.T) {
	k, _ := newTestKeys(t, KeyOptions{RotateEvery: 24 * time.Hour})
	first := k.signer().kid
	if err := k.Maintain(t0.Add(23 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if k.signer().kid != first {
		t.Fatal("rotated before RotateEvery")
	}
	if err := k.Maintain(t0.Add(24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if k.signer().kid == first {
		t.Fatal("did not rotate after RotateEvery")
	}

	// RotateEvery zero: never automatically.
	never, _ := newTestKeys(t, KeyOptions{})
	first = never.signer().kid
	if err := never.Maintain(t0.Add(10 * 365 * 24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if never.signer().kid != first {
		t.Fatal("rotated with RotateEvery zero")
	}
}

// TestRotateFromAnotherProcess is `parleyd keys rotate` run next to a
// running server: the first token signed with the new key makes the
// server reload its keys, and it signs with the new one from then on.
func TestRotateFromAnotherProcess(t *testing.T) {
	server, dir := newTestKeys(t, KeyOptions{})
	old := server.signer().kid
	cli, err := LoadKeys(dir, KeyOptions{}, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	newKID, err := cli.Rotate(t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	fromCLI := issue(t, cli, t0.Add(time.Minute))
	if server.signer().kid != old {
		t.Fatal("the server changed keys before it reloaded them")
	}
	if _, err := server.Verify(fromCLI, t0.Add(time.Minute)); err != nil {
		t.Fatalf("the server refused a token of the rotated key: %v", err)
	}
	if server.signer().kid != newKID {
		t.Fatalf("server signs with %s, want %s (old %s)", server.signer().kid, newKID, old)
	}
	if _, err := server.Verify(fromCLI, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// TestTwoUnretiredKeys covers two processes rotating at once, or a crash
// between writing a new key and retiring the old one: the newest key is
// active and the other is retired when the newest was created.
func TestTwoUnretiredKeys(t *testing.T) {
	k, dir := newTestKeys(t, KeyOptions{})
	older := k.signer()
	token := issue(t, k, t0)
	newer, err := newSigningKey(t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	data, err := encodeKey(newer)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKeyFile(dir, newer.kid, data); err != nil {
		t.Fatal(err)
	}
	if err := k.Maintain(t0.Add(2 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if k.signer().kid != newer.kid {
		t.Fatalf("active %s, want the newest %s", k.signer().kid, newer.kid)
	}
	if _, err := k.Verify(token, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(filepath.Join(dir, older.kid+".pem"))
	if !strings.Contains(string(data), "retired_at: 2026-03-01T12:01:00Z\n") {
		t.Errorf("older key not retired at the newer one's creation:\n%s", data)
	}
}

func TestLoadKeysRejectsBadFiles(t *testing.T) {
	k, dir := newTestKeys(t, KeyOptions{})
	kid := k.signer().kid
	good, err := os.ReadFile(filepath.Join(dir, kid+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ file, data string }{
		"garbage":        {"AAAAAAAAAAAAAAAAAAAAAA.pem", "hello"},
		"renamed":        {"AAAAAAAAAAAAAAAAAAAAAA.pem", string(good)},
		"no created_at":  {kid + ".pem", strings.Replace(string(good), "created_at", "made", 1)},
		"bad created_at": {kid + ".pem", strings.Replace(string(good), "2026-03-01", "March 1", 1)},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, c.file), []byte(c.data), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadKeys(dir, KeyOptions{}, t0); err == nil {
				t.Error("LoadKeys succeeded")
			}
		})
	}
	// Files that are not keys are ignored.
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.Maintain(t0); err != nil {
		t.Fatal(err)
	}
}

func TestKeysConcurrentUse(t *testing.T) {
	k, _ := newTestKeys(t, KeyOptions{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				now := t0.Add(time.Duration(j) * time.Second)
				if i == 0 && j%10 == 0 {
					if _, err := k.Rotate(now); err != nil {
						t.Error(err)
					}
					continue
				}
				token, _, err := k.Issue(testClaims, now)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := k.Verify(token, now); err != nil {
					t.Error(err)
				}
				_ = k.JWKS()
			}
		})
	}
	wg.Wait()
}

// memKeyStore is a KeyStore whose updates are atomic, as the parley.Store
// secrets parleyd uses are: the nodes of a cluster share one.
type memKeyStore struct {
	mu      sync.Mutex
	keys    map[string][]byte
	updates int
}

func (m *memKeyStore) UpdateKeys(_ context.Context, change func(map[string][]byte) (map[string][]byte, []string, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.updates++
	put, drop, err := change(maps.Clone(m.keys))
	if err != nil {
		return err
	}
	if m.keys == nil {
		m.keys = map[string][]byte{}
	}
	maps.Copy(m.keys, put)
	for _, kid := range drop {
		delete(m.keys, kid)
	}
	return nil
}

// TestSharedKeyStore stands for three nodes on one store: they start with
// one key between them, a token one issues verifies on the others, and
// when rotation falls due on all at once exactly one new key is made,
// which all of them then sign with.
func TestSharedKeyStore(t *testing.T) {
	store := &memKeyStore{}
	opts := KeyOptions{RotateEvery: time.Hour, AccessTTL: 2 * time.Hour}
	nodes := make([]*Keys, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			k, err := NewKeys(store, opts, t0)
			if err != nil {
				t.Error(err)
				return
			}
			nodes[i] = k
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(store.keys) != 1 {
		t.Fatalf("%d keys after three nodes started, want 1", len(store.keys))
	}
	token := issue(t, nodes[0], t0)
	for i, k := range nodes {
		if _, err := k.Verify(token, t0.Add(time.Minute)); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	due := t0.Add(time.Hour + time.Minute)
	for _, k := range nodes {
		wg.Go(func() {
			if err := k.Maintain(due); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(store.keys) != 2 {
		t.Fatalf("%d keys after a due rotation on three nodes, want 2 (old and new)", len(store.keys))
	}
	active := nodes[0].signer().kid
	for i, k := range nodes {
		if k.signer().kid != active {
			t.Fatalf("node %d signs with %s, node 0 with %s", i, k.signer().kid, active)
		}
		if _, err := k.Verify(token, due); err != nil {
			t.Fatalf("node %d: the old key's token: %v", i, err)
		}
	}
	fresh := issue(t, nodes[2], due)
	if _, err := nodes[1].Verify(fresh, due); err != nil {
		t.Fatalf("node 1 verifying node 2's new token: %v", err)
	}

	// A rotation by one node: another verifies the new key's tokens at
	// once, reloading the keys for the unknown kid instead of waiting for
	// its next Maintain.
	later := due.Add(time.Minute)
	if _, err := nodes[0].Rotate(later); err != nil {
		t.Fatal(err)
	}
	rotated := issue(t, nodes[0], later)
	if _, err := nodes[2].Verify(rotated, later); err != nil {
		t.Fatalf("node 2 right after node 0 rotated: %v", err)
	}
	// A forged kid reloads at most once per reloadEvery.
	before := store.updates
	for range 5 {
		if _, err := nodes[1].Verify(forgeKid(t, rotated, "AAAAAAAAAAAAAAAAAAAAAA"), later.Add(time.Second)); err == nil {
			t.Fatal("a token with an unknown kid verified")
		}
	}
	if n := store.updates - before; n > 1 {
		t.Fatalf("5 unknown kids caused %d reloads, want at most 1", n)
	}
}

// forgeKid returns token with its header's kid replaced (the signature no
// longer matches, which does not matter to a key lookup).
func forgeKid(t *testing.T, token, kid string) string {
	t.Helper()
	header, rest, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	h["kid"] = kid
	raw, _ = json.Marshal(h)
	return base64.RawURLEncoding.EncodeToString(raw) + "." + rest
}
