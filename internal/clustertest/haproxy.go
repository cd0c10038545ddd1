package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// haproxyTemplate is the proxy's configuration: the settings of
// deploy/haproxy.cfg (a test checks that the two agree), bound to
// 127.0.0.1 and logging to stderr, which goes to the log file.
var haproxyTemplate = template.Must(template.New("haproxy.cfg").Parse(`# Written by internal/clustertest; deploy/haproxy.cfg explains each setting.
global
	# One thread: the test machine's two cores are shared with the test.
	nbthread 1
	maxconn 1024
	log stderr format raw local0 info

defaults
	mode http
	log global
	option dontlognull
	option log-health-checks
	# No query string in the log (tickets and tokens travel in URLs).
	log-format "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %HM %HPO %HV"
	# No "option http-server-close": keep-alive, the default, is what
	# lets a request upgrade to a WebSocket that then runs as a tunnel.
	timeout connect 2s
	timeout client 30s
	timeout server 30s
	timeout http-request 10s
	# An upgraded WebSocket may idle this long; parleyd pings every 25 s.
	timeout tunnel 1h
	timeout client-fin 5s
	timeout server-fin 5s
	# Longer than /readyz's own 2 s bound, so a slow store shows as a 503.
	timeout check 3s
	# A connection refused by a node that just died (not yet marked down)
	# is retried on another node instead of failing the client.
	retries 3
	option redispatch 1

frontend parley
	bind 127.0.0.1:{{.Port}}
	http-request deny deny_status 404 if { path,url_dec -m beg /metrics }
	default_backend parleyd

backend parleyd
	balance leastconn
	option httpchk GET /readyz
	http-check expect status 200
	# A node failing two checks 500 ms apart is out within about a second,
	# and its sessions are cut so that their clients reconnect elsewhere.
	default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
{{- range .Servers}}
	server {{.Name}} {{.Addr}} check
{{- end}}
`))

// HAProxyConfig says what StartHAProxy proxies to.
type HAProxyConfig struct {
	// Backends are the parleyd nodes' HTTP listeners, host:port; at least
	// one. Each is health-checked with GET /readyz.
	Backends []string
}

// HAProxy is a private HAProxy in front of parleyd nodes, on a free port.
// Its methods fail the test on error and are for the test's goroutine.
type HAProxy struct {
	tb   testing.TB
	port int
	proc process
}

// StartHAProxy writes a configuration for cfg (leastconn over the backends,
// /readyz health checks, WebSocket-aware timeouts), starts HAProxy with it
// and returns once it listens. HAProxy stops when the test ends.
func StartHAProxy(tb testing.TB, cfg HAProxyConfig) *HAProxy {
	tb.Helper()
	bin, err := findProgram("/usr/sbin/haproxy", "haproxy")
	if err != nil {
		missing(tb, "HAProxy", err, "install Debian's haproxy package (apt-get install haproxy)")
		return nil
	}
	h := &HAProxy{tb: tb}
	if err := h.start(bin, cfg); err != nil {
		tb.Fatalf("clustertest: starting HAProxy: %v", err)
	}
	return h
}

func (h *HAProxy) start(bin string, cfg HAProxyConfig) error {
	h.tb.Helper()
	if len(cfg.Backends) == 0 {
		return errors.New("HAProxyConfig.Backends is empty")
	}
	for _, addr := range cfg.Backends {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("backend %q is not host:port: %w", addr, err)
		}
	}
	dir, err := workDir(h.tb, "haproxy")
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "haproxy.log")
	configPath := filepath.Join(dir, "haproxy.cfg")
	h.tb.Cleanup(func() {
		if err := h.proc.stop(syscall.SIGTERM, 10*time.Second); err != nil {
			h.tb.Errorf("clustertest: %v", err)
		}
		logTailsIfFailed(h.tb, logPath, configPath)
	})
	if h.port, err = freePort(); err != nil {
		return err
	}
	type server struct{ Name, Addr string }
	servers := make([]server, len(cfg.Backends))
	for i, addr := range cfg.Backends {
		servers[i] = server{fmt.Sprintf("node%d", i+1), addr}
	}
	var config strings.Builder
	if err := haproxyTemplate.Execute(&config, struct {
		Port    int
		Servers []server
	}{h.port, servers}); err != nil {
		return fmt.Errorf("writing the configuration: %w", err)
	}
	if err := os.WriteFile(configPath, []byte(config.String()), 0o644); err != nil {
		return fmt.Errorf("writing the configuration: %w", err)
	}
	// -db: stay in the foreground, a child the test can stop.
	h.proc = process{name: "haproxy", path: bin, args: []string{"-db", "-f", configPath}, logPath: logPath}
	return h.startAndWait()
}

func (h *HAProxy) startAndWait() error {
	if err := h.proc.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", h.port)
	return h.proc.waitReady(ctx, func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// Log returns what HAProxy has logged so far (its access log included).
func (h *HAProxy) Log() string {
	h.tb.Helper()
	b, err := os.ReadFile(h.proc.logPath)
	if err != nil {
		h.tb.Fatalf("clustertest: reading HAProxy's log: %v", err)
	}
	return string(b)
}

// URL is where clients reach the backends, http://127.0.0.1:PORT.
func (h *HAProxy) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", h.port) }

// Stop ends HAProxy at once (SIGTERM, a hard stop: open connections are
// cut, as when the proxy dies) and waits for it to exit.
func (h *HAProxy) Stop() {
	h.tb.Helper()
	if err := h.proc.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		h.tb.Fatalf("clustertest: stopping HAProxy: %v", err)
	}
}

// Start starts a stopped HAProxy again on the same port and configuration,
// and waits until it listens.
func (h *HAProxy) Start() {
	h.tb.Helper()
	if err := h.startAndWait(); err != nil {
		h.tb.Fatalf("clustertest: starting HAProxy again: %v", err)
	}
}
