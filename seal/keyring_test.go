package seal

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
)

func newMasterKey(tb testing.TB) []byte {
	tb.Helper()
	key := make([]byte, MasterKeySize)
	rand.Read(key)
	return key
}

func newKeyring(tb testing.TB, masterKeys ...[]byte) *Keyring {
	tb.Helper()
	k, err := NewKeyring(masterKeys)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := newKeyring(t, newMasterKey(t))
	for _, plaintext := range [][]byte{nil, []byte("hi"), bytes.Repeat([]byte("x"), 70000)} {
		id, sealed, err := k.Seal(plaintext, []byte("msg-1"))
		if err != nil {
			t.Fatal(err)
		}
		if id != k.ActiveKeyID() {
			t.Errorf("key id %08x, active %08x", id, k.ActiveKeyID())
		}
		if len(sealed) != 12+len(plaintext)+16 {
			t.Errorf("sealed %d bytes for %d: want nonce + ciphertext + tag", len(sealed), len(plaintext))
		}
		if len(plaintext) > 0 && bytes.Contains(sealed, plaintext) {
			t.Error("plaintext visible in sealed data")
		}
		got, err := k.Open(id, sealed, []byte("msg-1"))
		if err != nil || !bytes.Equal(got, plaintext) {
			t.Errorf("Open = %.20q, %v; want %.20q", got, err, plaintext)
		}
	}
	_, a, _ := k.Seal([]byte("same"), nil)
	_, b, _ := k.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Error("two seals of one plaintext are equal: nonce not random")
	}
}

func TestOpenRejects(t *testing.T) {
	k := newKeyring(t, newMasterKey(t))
	id, sealed, _ := k.Seal([]byte("hello, world"), []byte("msg-1"))
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	for name, c := range map[string]struct {
		id     uint32
		sealed []byte
		ad     string
		want   error
	}{
		"other additional data": {id, sealed, "msg-2", ErrOpen},
		"no additional data":    {id, sealed, "", ErrOpen},
		"nonce changed":         {id, flip(0), "msg-1", ErrOpen},
		"ciphertext changed":    {id, flip(14), "msg-1", ErrOpen},
		"tag changed":           {id, flip(len(sealed) - 1), "msg-1", ErrOpen},
		"truncated":             {id, sealed[:len(sealed)-1], "msg-1", ErrOpen},
		"extended":              {id, append(bytes.Clone(sealed), 0), "msg-1", ErrOpen},
		"shorter than a nonce":  {id, sealed[:5], "msg-1", ErrOpen},
		"empty":                 {id, nil, "msg-1", ErrOpen},
		"unknown key id":        {id + 1, sealed, "msg-1", ErrUnknownKey},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := k.Open(c.id, c.sealed, []byte(c.ad))
			if !errors.Is(err, c.want) || got != nil {
				t.Errorf("Open = %q, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	a, b := newMasterKey(t), newMasterKey(t)
	old := newKeyring(t, a)
	idA, sealedA, _ := old.Seal([]byte("before"), []byte("m1"))

	rotated := newKeyring(t, b, a)
	if rotated.ActiveKeyID() == idA {
		t.Fatal("rotated keyring still seals with the old key")
	}
	if got, err := rotated.Open(idA, sealedA, []byte("m1")); err != nil || string(got) != "before" {
		t.Errorf("Open(old key) = %q, %v", got, err)
	}
	idB, sealedB, _ := rotated.Seal([]byte("after"), []byte("m2"))
	if idB != rotated.ActiveKeyID() || idB == idA {
		t.Errorf("new seal with key %08x, want the new key %08x", idB, rotated.ActiveKeyID())
	}
	if _, err := old.Open(idB, sealedB, []byte("m2")); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old keyring opened a new-key seal: %v", err)
	}
	// Ciphertext of key A presented under key B's id fails authentication.
	if _, err := rotated.Open(idB, sealedA, []byte("m1")); !errors.Is(err, ErrOpen) {
		t.Errorf("Open(wrong id) = %v, want ErrOpen", err)
	}
}

func TestKeyIDIsStable(t *testing.T) {
	// Key ids are stored with every row: their derivation must never change.
	master := bytes.Repeat([]byte{0x42}, MasterKeySize)
	k := newKeyring(t, master)
	if got, want := k.ActiveKeyID(), uint32(0x7dc90305); got != want {
		t.Errorf("key id %08x, want %08x", got, want)
	}
	if newKeyring(t, master).ActiveKeyID() != k.ActiveKeyID() {
		t.Error("key id not deterministic")
	}
}

func TestOpenKnownAnswer(t *testing.T) {
	// Sealed by an independent implementation (Python's cryptography:
	// HKDF-SHA256 with no salt and the info string, then AES-256-GCM with
	// nonce 00..0b). Rows written today must open forever.
	k := newKeyring(t, bytes.Repeat([]byte{0x42}, MasterKeySize))
	sealed, _ := hex.DecodeString("000102030405060708090a0b987fdce3b877048bca92003159344955a3cc88268110658063b69528cc")
	got, err := k.Open(0x7dc90305, sealed, []byte("msg-1"))
	if err != nil || string(got) != "hello, parley" {
		t.Errorf("Open = %q, %v", got, err)
	}
}

func TestNewKeyringErrors(t *testing.T) {
	a := newMasterKey(t)
	for name, keys := range map[string][][]byte{
		"none":      nil,
		"short":     {a[:31]},
		"long":      {append(bytes.Clone(a), 0)},
		"duplicate": {a, newMasterKey(t), a},
	} {
		if _, err := NewKeyring(keys); err == nil {
			t.Errorf("%s: NewKeyring succeeded", name)
		}
	}
}

func TestParseMasterKeys(t *testing.T) {
	a, b := newMasterKey(t), newMasterKey(t)
	ea, eb := base64.StdEncoding.EncodeToString(a), base64.StdEncoding.EncodeToString(b)
	keys, err := ParseMasterKeys(ea + ", " + eb)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !bytes.Equal(keys[0], a) || !bytes.Equal(keys[1], b) {
		t.Errorf("ParseMasterKeys = %x", keys)
	}

	short := base64.StdEncoding.EncodeToString(a[:16])
	for name, s := range map[string]string{
		"empty":          "",
		"blank":          "  ",
		"empty element":  ea + ",," + eb,
		"trailing comma": ea + ",",
		"short":          short,
		"long":           base64.StdEncoding.EncodeToString(append(bytes.Clone(a), b...)),
		"unpadded":       strings.TrimRight(ea, "="),
		"url alphabet":   base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)),
		"not base64":     "this is not a key at all, really",
		"hex":            strings.Repeat("ab", 32),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseMasterKeys(s)
			if err == nil {
				t.Fatal("ParseMasterKeys succeeded")
			}
			if key := strings.TrimSpace(s); key != "" && strings.Contains(err.Error(), key) {
				t.Errorf("error %q shows the key", err)
			}
		})
	}
}

func TestKeyringConcurrentUse(t *testing.T) {
	k := newKeyring(t, newMasterKey(t), newMasterKey(t))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				id, sealed, _ := k.Seal([]byte("body"), []byte("ad"))
				if got, err := k.Open(id, sealed, []byte("ad")); err != nil || string(got) != "body" {
					t.Errorf("Open = %q, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzOpen(f *testing.F) {
	k := newKeyring(f, bytes.Repeat([]byte{1}, MasterKeySize), bytes.Repeat([]byte{2}, MasterKeySize))
	id, sealed, _ := k.Seal([]byte("hello"), []byte("ad"))
	f.Add(id, sealed, []byte("ad"))
	f.Add(id, sealed[:12], []byte("ad"))
	f.Add(id, []byte{}, []byte{})
	f.Add(uint32(0), []byte("garbage"), []byte("ad"))
	f.Fuzz(func(t *testing.T, id uint32, data, ad []byte) {
		got, err := k.Open(id, data, ad)
		if err != nil {
			if got != nil {
				t.Fatal("plaintext with an error")
			}
			if !errors.Is(err, ErrOpen) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		// Only a seal made by a Keyring opens; each fuzzing process makes
		// its own (random nonces), so compare what it says.
		if id != k.ActiveKeyID() || string(got) != "hello" || string(ad) != "ad" {
			t.Fatalf("forged input opened: %q", got)
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	k := newKeyring(b, newMasterKey(b))
	body := bytes.Repeat([]byte("x"), 150)
	ad := []byte("0195f0e4-7a1b-7c3d-9e2f-0123456789ab")
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, err := k.Seal(body, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	k := newKeyring(b, newMasterKey(b))
	ad := []byte("0195f0e4-7a1b-7c3d-9e2f-0123456789ab")
	id, sealed, _ := k.Seal(bytes.Repeat([]byte("x"), 150), ad)
	b.SetBytes(150)
	for b.Loop() {
		if _, err := k.Open(id, sealed, ad); err != nil {
			b.Fatal(err)
		}
	}
}
