package auth

import (
	"strings"
	"testing"
)

// cheapParams keep tests fast; the format and code paths are the same.
var cheapParams = PasswordParams{Time: 1, MemoryKiB: 64, Threads: 1}

func TestHashPasswordRoundTrip(t *testing.T) {
	for _, p := range []PasswordParams{cheapParams, DefaultPasswordParams, {Time: 3, MemoryKiB: 256, Threads: 4}} {
		encoded, err := HashPassword("correct horse battery staple", p)
		if err != nil {
			t.Fatal(err)
		}
		got, _, key, err := decodePasswordHash(encoded)
		if err != nil {
			t.Fatalf("decode %q: %v", encoded, err)
		}
		if got != p || len(key) != passwordKeyLen {
			t.Errorf("decode %q = %+v, %d-byte key; want %+v, %d", encoded, got, len(key), p, passwordKeyLen)
		}
		if ok, err := VerifyPassword("correct horse battery staple", encoded); !ok || err != nil {
			t.Errorf("VerifyPassword(right) = %v, %v", ok, err)
		}
		if ok, err := VerifyPassword("correct horse battery stapl", encoded); ok || err != nil {
			t.Errorf("VerifyPassword(wrong) = %v, %v", ok, err)
		}
	}
}

func TestHashPasswordFormat(t *testing.T) {
	encoded, err := HashPassword("pw", DefaultPasswordParams)
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "$argon2id$v=19$m=19456,t=2,p=1$"
	rest, ok := strings.CutPrefix(encoded, prefix)
	if !ok {
		t.Fatalf("%q does not start with %q", encoded, prefix)
	}
	salt, key, _ := strings.Cut(rest, "$")
	if len(salt) != 22 || len(key) != 43 { // 16 and 32 bytes, unpadded
		t.Errorf("salt %q, key %q: want 22 and 43 base64 characters", salt, key)
	}
	again, _ := HashPassword("pw", DefaultPasswordParams)
	if again == encoded {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

func TestHashPasswordRejectsBadParams(t *testing.T) {
	for _, p := range []PasswordParams{
		{},
		{Time: 0, MemoryKiB: 64, Threads: 1},
		{Time: 1, MemoryKiB: 4, Threads: 1},
		{Time: 1, MemoryKiB: 64, Threads: 0},
		{Time: 1, MemoryKiB: 1 << 30, Threads: 1},
		{Time: 100, MemoryKiB: 64, Threads: 1},
	} {
		if _, err := HashPassword("pw", p); err == nil {
			t.Errorf("HashPassword(%+v) succeeded", p)
		}
	}
}

func TestVerifyPasswordTampered(t *testing.T) {
	encoded, err := HashPassword("secret", cheapParams)
	if err != nil {
		t.Fatal(err)
	}
	// Change one character of the key, then of the salt: still well formed,
	// so the answer is a plain "no".
	i := strings.LastIndexByte(encoded, '$')
	for _, pos := range []int{i + 1, i - 3} {
		b := []byte(encoded)
		if b[pos] == 'A' {
			b[pos] = 'B'
		} else {
			b[pos] = 'A'
		}
		if ok, err := VerifyPassword("secret", string(b)); ok || err != nil {
			t.Errorf("VerifyPassword(tampered at %d) = %v, %v; want false, nil", pos, ok, err)
		}
	}
	// Other parameters give another key.
	weaker := strings.Replace(encoded, "t=1", "t=2", 1)
	if ok, err := VerifyPassword("secret", weaker); ok || err != nil {
		t.Errorf("VerifyPassword(other params) = %v, %v; want false, nil", ok, err)
	}
}

func TestVerifyPasswordMalformed(t *testing.T) {
	const salt = "c2FsdHNhbHRzYWx0c2FsdA"                     // 16 bytes
	const key = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U" // 32 bytes
	if _, err := VerifyPassword("x", "$argon2id$v=19$m=64,t=1,p=1$"+salt+"$"+key); err != nil {
		t.Fatalf("the well-formed base case fails: %v", err)
	}
	for name, encoded := range map[string]string{
		"empty":           "",
		"bcrypt":          "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"argon2i":         "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"version 16":      "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"no version":      "$argon2id$m=64,t=1,p=1$" + salt + "$" + key,
		"params order":    "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key,
		"two params":      "$argon2id$v=19$m=64,t=1$" + salt + "$" + key,
		"signed param":    "$argon2id$v=19$m=+64,t=1,p=1$" + salt + "$" + key,
		"space":           "$argon2id$v=19$m= 64,t=1,p=1$" + salt + "$" + key,
		"memory too low":  "$argon2id$v=19$m=7,t=1,p=1$" + salt + "$" + key,
		"memory huge":     "$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + key,
		"memory overflow": "$argon2id$v=19$m=99999999999,t=1,p=1$" + salt + "$" + key,
		"time zero":       "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key,
		"time huge":       "$argon2id$v=19$m=64,t=1000000,p=1$" + salt + "$" + key,
		"threads zero":    "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,
		"threads 300":     "$argon2id$v=19$m=4096,t=1,p=300$" + salt + "$" + key,
		"padded salt":     "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key,
		"bad base64":      "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key[:40] + "!!!",
		"short salt":      "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key,
		"short key":       "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$a2V5",
		"no key":          "$argon2id$v=19$m=64,t=1,p=1$" + salt,
		"extra field":     "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "$",
		"leading text":    "x$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key,
	} {
		t.Run(name, func(t *testing.T) {
			if ok, err := VerifyPassword("x", encoded); ok || err == nil {
				t.Errorf("VerifyPassword(%q) = %v, %v; want an error", encoded, ok, err)
			}
		})
	}
}

func TestDummyVerifyMatchesDefaults(t *testing.T) {
	// The dummy hash must cost what a real one costs.
	p, _, _, err := decodePasswordHash(dummyPasswordHash)
	if err != nil {
		t.Fatal(err)
	}
	if p != DefaultPasswordParams {
		t.Errorf("dummy hash params %+v, DefaultPasswordParams %+v: regenerate the dummy hash", p, DefaultPasswordParams)
	}
	DummyVerify("anything")
}

func FuzzVerifyPassword(f *testing.F) {
	good, err := HashPassword("pw", cheapParams)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("pw", good)
	f.Add("pw", dummyPasswordHash)
	f.Add("", "$argon2id$v=19$m=64,t=1,p=1$$")
	f.Add("x", "$argon2id$v=19$m=262144,t=16,p=16$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5")
	f.Fuzz(func(t *testing.T, password, encoded string) {
		p, _, _, decodeErr := decodePasswordHash(encoded)
		if decodeErr == nil && uint64(p.MemoryKiB)*uint64(p.Time) > 4096 {
			return // valid but too slow to run thousands of times a second
		}
		ok, err := VerifyPassword(password, encoded)
		if (err == nil) != (decodeErr == nil) {
			t.Fatalf("decode error %v, VerifyPassword error %v", decodeErr, err)
		}
		if ok && err != nil {
			t.Fatal("ok with an error")
		}
	})
}

func BenchmarkHashPassword(b *testing.B) {
	for b.Loop() {
		if _, err := HashPassword("correct horse battery staple", DefaultPasswordParams); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyPassword(b *testing.B) {
	encoded, err := HashPassword("correct horse battery staple", DefaultPasswordParams)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _ := VerifyPassword("correct horse battery staple", encoded); !ok {
			b.Fatal("no match")
		}
	}
}
