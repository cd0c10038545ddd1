// Package outbound is the one HTTP client for requests whose destination a
// user can steer (Web Push endpoints today): it connects only to public
// addresses, checked on the address actually dialled (so DNS rebinding
// does not pass), uses no proxy, follows no redirects and caps response
// bodies. A Policy names the exceptions an operator allows
// (--outbound-allow). The package uses only the standard library.
package outbound

import (
	"net/netip"
)

// blockedRange is a special-purpose range no user-steered request may
// reach, and why.
type blockedRange struct {
	prefix netip.Prefix
	what   string
}

// blocked are the ranges refused by default: Synapse's
// ip_range_blacklist default (matrix-org/synapse, synapse/config/server.py)
// plus 0.0.0.0/8, the reserved 240.0.0.0/4 (with the broadcast address),
// the unspecified ::, the IPv6 discard prefix, the IETF protocol
// assignments (Teredo, ORCHID, benchmarking), the local-use NAT64 prefix
// and the newer documentation prefix. IPv4-mapped, IPv4-compatible,
// NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses are judged by the
// IPv4 address they carry (embeddedIPv4).
var blocked = mustRanges(
	"0.0.0.0/8", "this network (0.0.0.0/8)",
	"10.0.0.0/8", "private (RFC 1918)",
	"100.64.0.0/10", "carrier-grade NAT (100.64.0.0/10)",
	"127.0.0.0/8", "loopback",
	"169.254.0.0/16", "link-local (cloud metadata lives here)",
	"172.16.0.0/12", "private (RFC 1918)",
	"192.0.0.0/24", "IETF protocol assignments",
	"192.0.2.0/24", "documentation",
	"192.88.99.0/24", "6to4 relay anycast",
	"192.168.0.0/16", "private (RFC 1918)",
	"198.18.0.0/15", "benchmarking",
	"198.51.100.0/24", "documentation",
	"203.0.113.0/24", "documentation",
	"224.0.0.0/4", "multicast",
	"240.0.0.0/4", "reserved (and broadcast)",
	"::/128", "unspecified",
	"::1/128", "loopback",
	"100::/64", "discard-only",
	"2001::/23", "IETF protocol assignments (Teredo, ORCHID, benchmarking)",
	"2001:db8::/32", "documentation",
	"3fff::/20", "documentation",
	"64:ff9b:1::/48", "local-use NAT64",
	"fc00::/7", "unique local (private)",
	"fe80::/10", "link-local",
	"fec0::/10", "site-local",
	"ff00::/8", "multicast",
)

func mustRanges(pairs ...string) []blockedRange {
	out := make([]blockedRange, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, blockedRange{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	compat    = netip.MustParsePrefix("::/96")           // IPv4-compatible (deprecated)
	siit      = netip.MustParsePrefix("::ffff:0:0:0/96") // IPv4-translated (RFC 2765)
)

// embeddedIPv4 returns the IPv4 address an IPv6 address carries in one of
// the forms that route to it (mapped, compatible, translated, NAT64,
// 6to4), and whether it carries one.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if a.Is4In6() {
		return a.Unmap(), true
	}
	b := a.As16()
	switch {
	case nat64.Contains(a), compat.Contains(a), siit.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// Blocked reports whether a is in a range no user-steered request may
// reach, and names the range. An IPv6 address that carries an IPv4
// address is judged by both. An invalid address, or one with a zone, is
// blocked.
func Blocked(a netip.Addr) (what string, isBlocked bool) {
	if !a.IsValid() {
		return "not an address", true
	}
	if a.Zone() != "" {
		return "scoped (zone)", true
	}
	if what, ok := blockedPlain(a); ok {
		return what, true
	}
	if v4, ok := embeddedIPv4(a); ok {
		if what, ok := blockedPlain(v4); ok {
			return what + ", embedded in IPv6", true
		}
	}
	return "", false
}

func blockedPlain(a netip.Addr) (string, bool) {
	for _, r := range blocked {
		if r.prefix.Contains(a) {
			return r.what, true
		}
	}
	return "", false
}
