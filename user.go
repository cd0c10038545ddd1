package parley

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// SystemRole is a user's server-wide role.
type SystemRole string

// System roles.
const (
	SystemRoleUser  SystemRole = "user"
	SystemRoleAdmin SystemRole = "admin"
)

// UserState says whether a user may log in and use the service.
type UserState string

// User states.
const (
	UserActive    UserState = "active"
	UserSuspended UserState = "suspended"
)

// User is an account. PasswordHash is an encoded argon2id hash and never
// leaves the server.
type User struct {
	ID           string     `json:"id"`
	Handle       string     `json:"handle"`
	DisplayName  string     `json:"display_name"`
	Role         SystemRole `json:"role,omitempty"`
	State        UserState  `json:"state,omitempty"`
	CreatedAt    time.Time  `json:"created_at,omitzero"`
	PasswordHash string     `json:"-"`
	// DNDUntil is when the user's do-not-disturb ends; zero if none. It
	// is the user's own: the API shows it only to the user.
	DNDUntil time.Time `json:"-"`
	// Privacy is the user's privacy settings, the user's own (GET
	// /v1/me/privacy). Stores return the defaults for a user who never
	// set them.
	Privacy Privacy `json:"-"`
}

// Limits on account fields.
const (
	HandleMinLen      = 3
	HandleMaxLen      = 32
	PasswordMinLen    = 10  // bytes
	PasswordMaxLen    = 256 // bytes; argon2 hashes any length, this bounds the work
	DisplayNameMaxLen = 64  // characters
	DeviceNameMaxLen  = 64  // characters
	TitleMaxLen       = 128 // characters
)

// NormalizeHandle lowercases a handle and checks the rules: 3 to 32
// characters from a-z, 0-9, '_' and '.', starting with a letter or digit.
// Handles are compared case-insensitively, so the result is the stored form.
func NormalizeHandle(h string) (string, error) {
	h = strings.ToLower(h)
	if len(h) < HandleMinLen || len(h) > HandleMaxLen {
		return "", Errorf(CodeInvalidRequest, "handle must be %d to %d characters", HandleMinLen, HandleMaxLen)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (i > 0 && (c == '_' || c == '.'))
		if !ok {
			return "", Errorf(CodeInvalidRequest, "handle may contain only a-z, 0-9, '_' and '.', and must start with a letter or digit")
		}
	}
	return h, nil
}

// CheckPassword enforces the password length rules.
func CheckPassword(p string) error {
	if len(p) < PasswordMinLen || len(p) > PasswordMaxLen {
		return Errorf(CodeInvalidRequest, "password must be %d to %d bytes", PasswordMinLen, PasswordMaxLen)
	}
	return nil
}

// CleanText trims s and checks it is valid UTF-8, at most max characters
// long, without control characters and without invisible format
// characters: bidirectional overrides and isolates (U+202A-U+202E,
// U+2066-U+2069, U+200E, U+200F, U+061C), which make a name display as
// something else ("photo\u202Egnp.exe" shows as "photoexe.png"), zero-width
// spaces and joiners, the BOM, and tag characters (which hide text). One
// exception keeps emoji sequences: a zero-width joiner between two
// symbols (the family and profession emoji). field names the input in
// the error.
func CleanText(field, s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", Errorf(CodeInvalidRequest, "%s must be valid UTF-8", field)
	}
	if utf8.RuneCountInString(s) > max {
		return "", Errorf(CodeInvalidRequest, "%s must be at most %d characters", field, max)
	}
	var prev rune
	for i, r := range s {
		switch {
		case unicode.IsControl(r):
			return "", Errorf(CodeInvalidRequest, "%s must not contain control characters", field)
		case r == zeroWidthJoiner && emojiPart(prev) && emojiPart(firstRune(s[i+len(string(r)):])):
			// Inside an emoji sequence: visible as one picture.
		case unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r):
			return "", Errorf(CodeInvalidRequest, "%s must not contain invisible or direction-changing characters (U+%04X)", field, r)
		}
		prev = r
	}
	return s, nil
}

const zeroWidthJoiner = '\u200D'

// emojiPart reports whether r can stand next to a zero-width joiner in an
// emoji sequence: a symbol, or the variation selector and skin-tone
// modifiers that follow one.
func emojiPart(r rune) bool {
	return unicode.Is(unicode.So, r) || unicode.Is(unicode.Sk, r) || r == '\uFE0F' || (r >= 0x1F3FB && r <= 0x1F3FF)
}

// firstRune is the first rune of s, 0 if s is empty.
func firstRune(s string) rune {
	r, size := utf8.DecodeRuneInString(s)
	if size == 0 {
		return 0
	}
	return r
}

// Principal is an authenticated caller: the user, the device (session) the
// access token was issued to, and the user's system role at issue time.
type Principal struct {
	UserID    string
	DeviceID  string
	SessionID string
	Role      SystemRole
	// ExpiresAt is when the access token presented expires (zero if the
	// principal did not come from a token).
	ExpiresAt time.Time
}
