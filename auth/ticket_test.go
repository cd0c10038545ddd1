package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestTicket(t *testing.T) {
	tk, key := NewTicket()
	if !strings.HasPrefix(tk, "wst_") || len(tk) != ticketLen {
		t.Fatalf("ticket %q", tk)
	}
	if got, ok := TicketKey(tk); !ok || got != key || len(key) != 64 {
		t.Fatalf("TicketKey(new) = %q, %v; want %q", got, ok, key)
	}
	if tk2, _ := NewTicket(); tk2 == tk {
		t.Fatal("two tickets alike")
	}
	for _, bad := range []string{
		"", "wst_", tk[4:], "WST_" + tk[4:], tk + "A", tk[:len(tk)-1],
		tk[:len(tk)-1] + "=", tk[:20] + "\n" + tk[21:], tk[:10] + "+" + tk[11:], tk[:10] + "/" + tk[11:],
		"wst_" + strings.Repeat("!", 43),
		// 43 base64url characters whose last one has stray low bits.
		"wst_" + strings.Repeat("A", 42) + "B",
	} {
		if key, ok := TicketKey(bad); ok {
			t.Errorf("TicketKey(%q) accepted: %q", bad, key)
		}
	}
}

// FuzzTicketKey: the ticket decoder takes any client string without
// panicking, accepts only the exact form NewTicket makes, and gives every
// accepted ticket a distinct, fixed-size key.
func FuzzTicketKey(f *testing.F) {
	tk, _ := NewTicket()
	for _, s := range []string{tk, "", "wst_", "wst_" + strings.Repeat("A", 43), tk + tk, "wst_\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, ok := TicketKey(s)
		if !ok {
			if key != "" {
				t.Fatalf("refused %q with key %q", s, key)
			}
			return
		}
		if len(key) != 64 || len(s) != ticketLen || !strings.HasPrefix(s, "wst_") {
			t.Fatalf("accepted %q (key %q)", s, key)
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(s[4:])
		if err != nil || len(raw) != 32 || ticketPrefix+base64.RawURLEncoding.EncodeToString(raw) != s {
			t.Fatalf("accepted %q, which NewTicket cannot make", s)
		}
	})
}
