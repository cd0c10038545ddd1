package outbound

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Policy is where user-steered requests may go: every public address,
// plus the exceptions an operator names (--outbound-allow). The zero
// value (or nil) allows no exception. A Policy is immutable once parsed:
// safe for concurrent use.
type Policy struct {
	nets  []netip.Prefix  // addresses allowed although in a blocked range
	hosts map[string]bool // "host" (any port) or "host:port", lower case
}

// ParseAllow reads a comma-separated list of exceptions: CIDR prefixes
// (10.1.0.0/16, fd00::/8), single addresses (127.0.0.1, ::1, both taken
// as one-address prefixes), and host names with an optional port
// (push.internal.example, localhost:8443, [::1]:9000). A host entry lets
// requests to that name (and port) through whatever it resolves to, and
// lets them use plain http; an address or prefix lets connections to the
// addresses in it through, and plain http to literal addresses in it.
func ParseAllow(list string) (*Policy, error) {
	p := &Policy{hosts: map[string]bool{}}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if pfx, err := netip.ParsePrefix(item); err == nil {
			p.nets = append(p.nets, pfx.Masked())
			continue
		}
		if a, err := netip.ParseAddr(item); err == nil {
			p.nets = append(p.nets, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		host, port := item, ""
		if h, pt, err := net.SplitHostPort(item); err == nil {
			host, port = h, pt
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("outbound allow list: %q: the port must be 1 to 65535", item)
			}
		}
		host = canonicalHost(host)
		if a, err := netip.ParseAddr(host); err == nil {
			host = a.String()
		} else if !validDNSName(host) {
			return nil, fmt.Errorf("outbound allow list: %q is not a CIDR prefix, an address or a host name with an optional port", item)
		}
		if port != "" {
			p.hosts[net.JoinHostPort(host, port)] = true
		} else {
			p.hosts[host] = true
		}
	}
	return p, nil
}

// String lists the policy's exceptions, for the startup log.
func (p *Policy) String() string {
	if p == nil {
		return ""
	}
	var out []string
	for _, n := range p.nets {
		out = append(out, n.String())
	}
	for h := range p.hosts {
		out = append(out, h)
	}
	return strings.Join(out, ",")
}

// canonicalHost lower-cases a host name and drops one trailing dot
// ("localhost." is localhost).
func canonicalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// hostAllowed reports whether host (a name or an address, as in a URL)
// and port are on the allow list as a host entry.
func (p *Policy) hostAllowed(host, port string) bool {
	if p == nil || len(p.hosts) == 0 {
		return false
	}
	host = canonicalHost(host)
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.String()
	}
	return p.hosts[host] || p.hosts[net.JoinHostPort(host, port)]
}

// netAllowed reports whether a is in one of the allowed prefixes. An
// IPv4-mapped address is looked up as its IPv4 address too.
func (p *Policy) netAllowed(a netip.Addr) bool {
	if p == nil {
		return false
	}
	for _, n := range p.nets {
		if n.Contains(a) || a.Is4In6() && n.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// AddrAllowed reports whether a connection to a may be made: a is public
// or on the allow list. The error says why not.
func (p *Policy) AddrAllowed(a netip.Addr) error {
	what, isBlocked := Blocked(a)
	if !isBlocked || p.netAllowed(a) {
		return nil
	}
	return &BlockedError{Addr: a.String(), What: what}
}

// BlockedError is a destination refused because its address is in a
// blocked range.
type BlockedError struct {
	Addr string // the address refused
	What string // the range's kind: "loopback", "private (RFC 1918)", ...
}

// BlockedAddr returns the address refused and its range, for callers that
// match the error by interface rather than import this package.
func (e *BlockedError) BlockedAddr() string { return e.Addr + " (" + e.What + ")" }

func (e *BlockedError) Error() string {
	return "outbound: " + e.Addr + " is " + e.What + "; not reachable by user-supplied URLs"
}

// reservedNames are top-level names (and whole names) that never name a
// public host: special-use (RFC 6761, RFC 6762, RFC 8375, RFC 9476) and
// the usual private ones.
var reservedNames = []string{"localhost", "local", "localdomain", "internal", "intranet", "private", "lan", "home", "corp",
	"arpa", "home.arpa", "invalid", "test", "example", "onion", "alt"}

// CheckURL checks a URL a user supplies as a destination, before it is
// stored: https (http only for a host on the allow list), no user info,
// and a host that is either a DNS name of a public form (two labels or
// more, not all numeric, not localhost, *.localhost, *.internal, *.local
// and the like) or a literal address outside the blocked ranges (or on
// the allow list). Numeric host forms other than dotted-quad IPv4 and
// bracketed IPv6 (0x7f000001, 2130706433, 127.1, 0177.0.0.1) are refused:
// resolvers disagree on what they mean. It does not resolve names: the
// dialer checks the addresses a name leads to, at each connection.
func (p *Policy) CheckURL(u *url.URL) error {
	if u == nil || u.Host == "" || u.Opaque != "" {
		return errors.New("must be an absolute https URL")
	}
	if u.User != nil {
		return errors.New("must not carry a user name or password")
	}
	host, port := u.Hostname(), u.Port()
	switch u.Scheme {
	case "https":
		if port == "" {
			port = "443"
		}
	case "http":
		if port == "" {
			port = "80"
		}
	default:
		return errors.New("must be an https URL")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("has an invalid port")
	}
	if p.hostAllowed(host, port) {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if strings.Contains(host, ":") != strings.HasPrefix(u.Host, "[") {
			return errors.New("has a malformed host")
		}
		if p.netAllowed(a) {
			return nil
		}
		if u.Scheme != "https" {
			return errors.New("must be https")
		}
		if err := p.AddrAllowed(a); err != nil {
			var be *BlockedError
			errors.As(err, &be)
			return fmt.Errorf("names an address that is %s", be.What)
		}
		return nil
	}
	if u.Scheme != "https" {
		return errors.New("must be https")
	}
	return checkPublicName(canonicalHost(host))
}

// checkPublicName checks that name looks like a public DNS name.
func checkPublicName(name string) error {
	if !validDNSName(name) {
		return errors.New("has a host that is neither a DNS name nor an IP address")
	}
	labels := strings.Split(name, ".")
	if numericLabel(labels[len(labels)-1]) {
		return errors.New("has a numeric host that is not a dotted-quad IPv4 address")
	}
	for _, r := range reservedNames {
		if name == r {
			return fmt.Errorf("has the host %s, which is not public", r)
		}
		if strings.HasSuffix(name, "."+r) {
			return fmt.Errorf("has a host under .%s, which is not public", r)
		}
	}
	if len(labels) < 2 {
		return errors.New("has a host that is not a fully qualified domain name")
	}
	return nil
}

// numericLabel reports a label that inet_aton and friends read as a
// number: decimal, octal (leading 0) or hexadecimal (0x...).
func numericLabel(l string) bool {
	if rest, ok := strings.CutPrefix(l, "0x"); ok {
		for _, c := range rest {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
		return true
	}
	for _, c := range l {
		if c < '0' || c > '9' {
			return false
		}
	}
	return l != ""
}

// validDNSName reports a lower-case host name of letters, digits and
// hyphens in labels of 1 to 63 bytes, at most 253 bytes in all.
func validDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
