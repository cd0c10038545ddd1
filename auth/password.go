// Package auth provides Parley's credentials: argon2id password hashes,
// EdDSA-signed access tokens with rotating signing keys, and opaque refresh
// tokens that are stored only as hashes.
//
// Errors that a client may see are *parley.Error; everything else is an
// internal error whose text is for the log.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are the argon2id cost parameters of a new password hash.
// A stored hash carries its own parameters, so they can be raised over time
// without invalidating existing hashes.
type PasswordParams struct {
	Time      uint32 // passes over memory (argon2 t)
	MemoryKiB uint32 // memory in KiB (argon2 m)
	Threads   uint8  // lanes (argon2 p)
}

// DefaultPasswordParams are OWASP's recommended argon2id parameters
// (m=19456 KiB, t=2, p=1): about 20 ms and 19 MiB per hash.
var DefaultPasswordParams = PasswordParams{Time: 2, MemoryKiB: 19456, Threads: 1}

// Limits on the parameters of a hash. A stored hash outside them is
// rejected rather than run: a corrupted or planted row must not make a login
// take gigabytes or minutes.
const (
	maxPasswordMemoryKiB   = 256 * 1024 // 256 MiB
	maxPasswordTime        = 16
	maxPasswordThreads     = 16
	minSaltLen, maxSaltLen = 8, 64
	minKeyLen, maxKeyLen   = 16, 64

	passwordSaltLen = 16
	passwordKeyLen  = 32
)

// dummyPasswordHash is a hash, with DefaultPasswordParams, of a random
// password nobody knows. DummyVerify checks against it.
const dummyPasswordHash = "$argon2id$v=19$m=19456,t=2,p=1$S7xl7bn21xoGfMpbPidFew$tvplqFiUBbVa7F8zRuldJFQPmFWBAj3wRmpTkeA304E"

func (p PasswordParams) validate() error {
	switch {
	case p.Time < 1 || p.Time > maxPasswordTime:
		return fmt.Errorf("time %d out of range 1..%d", p.Time, maxPasswordTime)
	case p.Threads < 1 || p.Threads > maxPasswordThreads:
		return fmt.Errorf("threads %d out of range 1..%d", p.Threads, maxPasswordThreads)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxPasswordMemoryKiB:
		return fmt.Errorf("memory %d KiB out of range %d..%d", p.MemoryKiB, 8*uint32(p.Threads), maxPasswordMemoryKiB)
	}
	return nil
}

// HashPassword returns the argon2id hash of password with a fresh 16-byte
// salt, encoded as a PHC string:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// with salt and the 32-byte key in unpadded standard base64. It fails only
// when p is out of the accepted range. Safe for concurrent use; each call
// allocates p.MemoryKiB of memory while it runs.
func HashPassword(password string, p PasswordParams) (string, error) {
	if err := p.validate(); err != nil {
		return "", fmt.Errorf("auth: password params: %w", err)
	}
	salt := make([]byte, passwordSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, passwordKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches encoded, a hash made by
// HashPassword (with any parameters). The comparison is constant-time.
// A wrong password is (false, nil); an error means encoded is not a
// well-formed argon2id hash or its parameters are out of the accepted range
// (memory up to 256 MiB, time up to 16, up to 16 threads), and is internal:
// the stored hash is broken. Safe for concurrent use.
func VerifyPassword(password, encoded string) (bool, error) {
	p, salt, key, err := decodePasswordHash(encoded)
	if err != nil {
		return false, fmt.Errorf("auth: stored password hash: %w", err)
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// DummyVerify spends the time and memory of one VerifyPassword with
// DefaultPasswordParams and discards the result. A login for an unknown
// handle calls it so that it takes as long as a wrong password, and does not
// reveal which handles exist. Safe for concurrent use.
func DummyVerify(password string) {
	_, _ = VerifyPassword(password, dummyPasswordHash)
}

var errPasswordHashFormat = errors.New("not an argon2id PHC string")

// decodePasswordHash parses "$argon2id$v=19$m=M,t=T,p=P$salt$key" strictly.
func decodePasswordHash(encoded string) (p PasswordParams, salt, key []byte, err error) {
	fields := strings.Split(encoded, "$")
	if len(fields) != 6 || fields[0] != "" || fields[1] != "argon2id" {
		return p, nil, nil, errPasswordHashFormat
	}
	if fields[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errors.New("unsupported argon2 version")
	}
	params := strings.Split(fields[3], ",")
	if len(params) != 3 {
		return p, nil, nil, errPasswordHashFormat
	}
	m, err1 := parseParam(params[0], "m=", 32)
	t, err2 := parseParam(params[1], "t=", 32)
	threads, err3 := parseParam(params[2], "p=", 8)
	if err := errors.Join(err1, err2, err3); err != nil {
		return p, nil, nil, err
	}
	p = PasswordParams{Time: uint32(t), MemoryKiB: uint32(m), Threads: uint8(threads)}
	if err := p.validate(); err != nil {
		return p, nil, nil, err
	}
	b64 := base64.RawStdEncoding.Strict()
	if salt, err = b64.DecodeString(fields[4]); err != nil || len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return p, nil, nil, errors.New("bad salt")
	}
	if key, err = b64.DecodeString(fields[5]); err != nil || len(key) < minKeyLen || len(key) > maxKeyLen {
		return p, nil, nil, errors.New("bad key")
	}
	return p, salt, key, nil
}

func parseParam(s, prefix string, bits int) (uint64, error) {
	digits, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return 0, errPasswordHashFormat
	}
	n, err := strconv.ParseUint(digits, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("bad parameter %q", prefix)
	}
	return n, nil
}
