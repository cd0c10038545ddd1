package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ClientConfig configures NewClient.
type ClientConfig struct {
	// Policy names the exceptions to the blocked ranges; nil: none.
	Policy *Policy
	// TLS is the client TLS configuration (roots); nil: the system's.
	TLS *tls.Config
	// MaxResponseBytes caps what is read of a response body; reads
	// beyond it end as at EOF. Default 64 KiB.
	MaxResponseBytes int64
	// Lookup resolves a host name to addresses; nil: the system
	// resolver. Tests use it to make a name resolve to a blocked
	// address; the dialer checks each address whatever gave it.
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Defaults.
const (
	defaultMaxResponse = 64 << 10
	dialTimeout        = 10 * time.Second
	maxHeaderBytes     = 16 << 10
)

// NewClient returns the HTTP client for user-steered requests:
//   - it connects only to addresses that Policy allows (Blocked ranges are
//     refused unless on the allow list), checked in the dialer's Control
//     on the address the socket is about to connect to, after DNS, so a
//     name that resolves (or rebinds) to a blocked address fails with a
//     *BlockedError;
//   - it uses no proxy (HTTP_PROXY and friends are ignored: a proxy would
//     make the address check moot);
//   - it follows no redirect: a 3xx is the answer;
//   - it reads at most MaxResponseBytes of a body and 16 KiB of headers.
//
// It sets no overall timeout: callers bound each request with a context.
// Safe for concurrent use.
func NewClient(cfg ClientConfig) *http.Client {
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = defaultMaxResponse
	}
	d := &dialer{policy: cfg.Policy, lookup: cfg.Lookup}
	if d.lookup == nil {
		d.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	t := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		TLSClientConfig:        cfg.TLS,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256, // hosts are users' choice: bound what is kept open
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	return &http.Client{
		Transport: cappedTransport{base: t, max: cfg.MaxResponseBytes},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// dialer connects to allowed addresses only.
type dialer struct {
	policy *Policy
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// DialContext dials addr ("host:port"). A host on the allow list is
// dialled as it resolves; any other host is resolved here and each of its
// addresses dialled through control, which refuses blocked ones.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if d.policy.hostAllowed(host, port) {
		var nd net.Dialer
		nd.Timeout = dialTimeout
		return nd.DialContext(ctx, network, addr)
	}
	nd := net.Dialer{Timeout: dialTimeout, Control: d.control}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		if addrs, err = d.lookup(ctx, host); err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	var first error
	for _, a := range addrs {
		c, err := nd.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// control runs after the socket is made and before it connects, with the
// address it connects to: the one check every connection passes.
func (d *dialer) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &BlockedError{Addr: address, What: "not an address"}
	}
	return d.policy.AddrAllowed(ap.Addr())
}

// cappedTransport caps response bodies.
type cappedTransport struct {
	base *http.Transport
	max  int64
}

func (c cappedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil && resp.Body != nil {
		resp.Body = cappedBody{Reader: io.LimitReader(resp.Body, c.max), Closer: resp.Body}
	}
	return resp, err
}

// CloseIdleConnections closes the transport's idle connections.
func (c cappedTransport) CloseIdleConnections() { c.base.CloseIdleConnections() }

type cappedBody struct {
	io.Reader
	io.Closer
}

// IsBlocked reports whether err (from a request through the client) is a
// refused destination, and returns it.
func IsBlocked(err error) (*BlockedError, bool) {
	var be *BlockedError
	ok := errors.As(err, &be)
	return be, ok
}
