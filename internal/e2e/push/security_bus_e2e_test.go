package push_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/clustertest"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/internal/testenv"
	"github.com/parleychat/parley/service"
)

// Issue 16, item 2: the bus. Whoever reaches NATS could read every message
// body, inject a message shown as sent by someone else, and close other
// users' sockets with a forged revoked event. These tests attack the real
// binary: through the embedded server's TCP port, and through a private
// nats-server that requires credentials and mutual TLS, with a tap that
// holds the bus credentials but not the master key.

// TestBusEmbeddedListenRefusesStrangers: with --nats-listen the embedded
// server's port admits no other client: not an anonymous one, not one with
// a guessed token or a user and password. (Before, any client connected
// and could subscribe to everything.)
func TestBusEmbeddedListenRefusesStrangers(t *testing.T) {
	p := e2e.StartParleyd(t, t.TempDir(), nil, "--nats-listen", "127.0.0.1:0")
	m := regexp.MustCompile(`"msg":"event bus: embedded NATS","tcp":"(nats://127\.0\.0\.1:\d+)"`).FindStringSubmatch(p.Logs())
	if m == nil {
		t.Fatalf("no TCP port with --nats-listen:\n%s", p.Logs())
	}
	url := m[1]
	for name, opts := range map[string][]nats.Option{
		"anonymous":     nil,
		"wrong token":   {nats.Token("guessed-secret")},
		"user/password": {nats.UserInfo("parleyd", "parleyd")},
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := nats.Connect(url, append(opts, nats.NoReconnect(), nats.Timeout(5*time.Second))...)
			if err == nil {
				nc.Close()
				t.Fatal("a stranger connected to the embedded NATS")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("err = %v, want an authorization violation", err)
			}
		})
	}
	// The node itself works: a message still reaches a live client.
	e2e.Signup(t, p.Base, "alice")
	e2e.Signup(t, p.Base, "bob")
	a, b := e2e.LoginDevice(t, p.Base, "alice", "phone"), e2e.LoginDevice(t, p.Base, "bob", "phone")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)
	bc := e2e.Connect(t, p.Base, b)
	e2e.SendText(t, p.Base, a.Token, conv, "x", "still delivered")
	if got := e2e.ExpectMessage(t, bc); got.Body != "still delivered" {
		t.Fatalf("bob got %+v", got)
	}
}

// secureNATS is a private nats-server that admits a user nkey and a user
// with a password, each only over mutual TLS, and the files a client
// needs.
type secureNATS struct {
	srv                   *clustertest.NATS
	seedFile              string // the nkey seed parleyd and the tap use
	seed                  []byte
	password              string
	ca, certFile, keyFile string // client TLS: the CA and a client certificate
}

func startSecureNATS(t *testing.T) *secureNATS {
	t.Helper()
	dir := t.TempDir()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	pub, _ := user.PublicKey()
	s := &secureNATS{seedFile: filepath.Join(dir, "parley.nkey"), seed: seed, password: "pw-" + parley.NewID()}
	if err := os.WriteFile(s.seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	var serverCert, serverKey string
	s.ca, serverCert, serverKey, s.certFile, s.keyFile = writeTestPKI(t, dir)
	s.srv = clustertest.StartNATSConfig(t, fmt.Sprintf(`
authorization {
  users = [
    { nkey: %q }
    { user: "parley", password: %q }
  ]
}
tls {
  cert_file: %q
  key_file: %q
  ca_file: %q
  verify: true
}
`, pub, s.password, serverCert, serverKey, s.ca))
	return s
}

// env is the environment of a parleyd node with the bus credentials.
func (s *secureNATS) env() []string {
	return []string{
		"PARLEY_NATS_URL=" + s.srv.URL(),
		"PARLEY_NATS_NKEY=" + s.seedFile,
		"PARLEY_NATS_TLS_CA=" + s.ca,
		"PARLEY_NATS_TLS_CERT=" + s.certFile,
		"PARLEY_NATS_TLS_KEY=" + s.keyFile,
	}
}

// tap connects with parleyd's own bus credentials (but not its master
// key): the strongest attacker on the bus short of a node.
func (s *secureNATS) tap(t *testing.T) *nats.Conn {
	t.Helper()
	kp, err := nkeys.FromSeed(s.seed)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	nc, err := nats.Connect(s.srv.URL(), nats.Nkey(pub, kp.Sign), nats.RootCAs(s.ca), nats.ClientCert(s.certFile, s.keyFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestBusExternalNATSCredentials: against a NATS that requires an nkey and
// mutual TLS, parleyd without credentials, with a key the server does not
// know, or without TLS refuses to start with an error that says why; with
// its credentials (nkey, or user and password) it serves and delivers.
func TestBusExternalNATSCredentials(t *testing.T) {
	s := startSecureNATS(t)
	tlsArgs := []string{"--nats-tls-ca", s.ca, "--nats-tls-cert", s.certFile, "--nats-tls-key", s.keyFile}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(t.TempDir(), "other.nkey")
	os.WriteFile(otherFile, otherSeed, 0o600)
	for name, tc := range map[string]struct {
		args []string
		env  []string
		want string
	}{
		"no credentials":   {args: tlsArgs, want: "the server refused our credentials"},
		"unknown nkey":     {args: append([]string{"--nats-nkey", otherFile}, tlsArgs...), want: "the server refused our credentials"},
		"wrong password":   {args: append([]string{"--nats-user", "parley"}, tlsArgs...), env: []string{"PARLEY_NATS_PASSWORD=guess"}, want: "the server refused our credentials"},
		"no client cert":   {args: []string{"--nats-nkey", s.seedFile, "--nats-tls-ca", s.ca}, want: "natsbus: connect"},
		"no TLS settings":  {args: []string{"--nats-nkey", s.seedFile}, want: "natsbus: connect"},
		"token and nkey":   {args: []string{"--nats-nkey", s.seedFile}, env: []string{"PARLEY_NATS_TOKEN=t"}, want: "one kind of NATS credentials"},
		"password no user": {env: []string{"PARLEY_NATS_PASSWORD=x"}, want: "PARLEY_NATS_PASSWORD needs nats-user"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(e2e.Bin(), append([]string{"--listen", "127.0.0.1:0", "--data", t.TempDir(), "--nats-url", s.srv.URL()}, tc.args...)...)
			cmd.Env = append(os.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("err = %v, want a failed start mentioning %q:\n%s", err, tc.want, out)
			}
			if strings.Contains(string(out), string(s.seed)) || strings.Contains(string(out), "guess") {
				t.Fatalf("a secret in the output:\n%s", out)
			}
		})
	}

	p := e2e.StartParleyd(t, t.TempDir(), append(s.env(), "PARLEY_LIMITS=off"))
	if !strings.Contains(p.Logs(), `"tls":true,"credentials":"nkey"`) {
		t.Errorf("the bus log line does not say TLS and nkey:\n%s", e2e.GrepLines(p.Logs(), "event bus"))
	}
	if strings.Contains(p.Logs(), "WITHOUT credentials") {
		t.Errorf("a warning about missing credentials although there are some")
	}
	e2e.Signup(t, p.Base, "alice")
	e2e.Signup(t, p.Base, "bob")
	a, b := e2e.LoginDevice(t, p.Base, "alice", "phone"), e2e.LoginDevice(t, p.Base, "bob", "phone")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)
	bc := e2e.Connect(t, p.Base, b)
	e2e.SendText(t, p.Base, a.Token, conv, "x", "over authenticated NATS")
	if got := e2e.ExpectMessage(t, bc); got.Body != "over authenticated NATS" {
		t.Fatalf("bob got %+v", got)
	}

	// User and password (environment only) work too.
	q := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_NATS_PASSWORD=" + s.password, "PARLEY_NATS_URL=" + s.srv.URL(), "PARLEY_PUSH_NAMESPACE=userpw"},
		append([]string{"--nats-user", "parley"}, tlsArgs...)...)
	e2e.MustAPI(t, 200, "GET", q.Base+"/readyz", "", nil)
	if strings.Contains(q.Logs(), s.password) {
		t.Error("the NATS password is in the log")
	}
}

// TestBusExternalNATSWithoutCredentialsWarns: the machine's development
// NATS has no auth; parleyd still starts on it (the cluster tests use it)
// but says loudly that the bus is open.
func TestBusExternalNATSWithoutCredentialsWarns(t *testing.T) {
	url := testenv.Service(t, "PARLEY_TEST_NATS_URL", "nats://127.0.0.1:4222")
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_NATS_URL=" + url, "PARLEY_PUSH_NAMESPACE=" + e2e.PushNamespace(t, url)})
	if line := e2e.GrepLines(p.Logs(), "WITHOUT credentials"); !strings.Contains(line, `"level":"WARN"`) {
		t.Fatalf("no warning about an anonymous NATS connection:\n%s", p.Logs())
	}
}

// tapRecorder keeps every message a tap subscription to ">" receives.
type tapRecorder struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (r *tapRecorder) add(m *nats.Msg) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *tapRecorder) all() []*nats.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*nats.Msg(nil), r.msgs...)
}

// TestBusTapSeesNoPlaintext: a tap holding the bus credentials (not the
// master key) subscribes to everything while Alice, whose display name is
// a marker, makes a group whose title is a marker with Bob, whose offline
// tablet has APNs and Web Push registrations, and sends a message whose
// body is a marker; Bob reads it live, types and reads, and his tablet is
// pushed. No marker, display name, title, push token or endpoint appears
// in any payload or header on any subject, nor in any JetStream stream or
// key-value bucket afterwards. (Before, the message event carried the body
// and the conversation event the title, in JSON.)
func TestBusTapSeesNoPlaintext(t *testing.T) {
	s := startSecureNATS(t)
	tap := s.tap(t)
	var rec tapRecorder
	if _, err := tap.Subscribe(">", rec.add); err != nil {
		t.Fatal(err)
	}
	if err := tap.Flush(); err != nil {
		t.Fatal(err)
	}
	prov := e2e.StartProviders(t)
	p := e2e.StartParleyd(t, t.TempDir(), append(append(s.env(), prov.Env...), "PARLEY_PUSH_PREVIEW=on"))
	prov.TrustVAPID(t, p.Base)

	tag := parley.NewID()[16:]
	body, name, title, devName := "BodyMarker"+tag, "NameMarker"+tag, "TitleMarker"+tag, "DeviceMarker"+tag
	e2e.MustAPI(t, 201, "POST", p.Base+"/v1/accounts", "", map[string]any{"handle": "alice", "password": "correct horse battery", "display_name": name})
	e2e.Signup(t, p.Base, "bob")
	a, b := e2e.LoginDevice(t, p.Base, "alice", devName), e2e.LoginDevice(t, p.Base, "bob", "phone")
	tablet := e2e.LoginDevice(t, p.Base, "bob", "tablet")
	apnsToken := prov.RegisterAPNs(t, p.Base, tablet)
	bc := e2e.Connect(t, p.Base, b)
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "group", "title": title, "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)
	browser := e2e.LoginDevice(t, p.Base, "bob", "browser")
	wpSub := prov.RegisterWebPush(t, p.Base, browser)
	seq := e2e.SendText(t, p.Base, a.Token, conv, "m1", body)
	if got := e2e.ExpectMessage(t, bc); got.Body != body {
		t.Fatalf("bob got %+v", got)
	}
	// The tablet and the browser are offline: the push role notifies
	// them (with the preview on, the provider gets the body, as it should;
	// NATS must not).
	e2e.Eventually(t, 30*time.Second, "the pushes", func() bool {
		return len(prov.APNsFor(apnsToken)) > 0 && len(prov.WebPushFor(wpSub)) > 0
	})
	// Bob types and reads on the phone: the tablet's notification is
	// cleared by a silent push.
	bc.MustWrite(map[string]any{"type": "typing", "conversation_id": conv, "state": "start"})
	bc.MustWrite(map[string]any{"type": "read", "conversation_id": conv, "seq": seq})
	e2e.Eventually(t, 30*time.Second, "the silent clear", func() bool { return len(prov.APNsFor(apnsToken)) > 1 })
	// Everything published so far has reached the tap.
	if err := tap.Flush(); err != nil {
		t.Fatal(err)
	}
	markers := []string{body, name, title, devName, apnsToken, wpSub.Endpoint, wpSub.Keys.P256dh, wpSub.Keys.Auth}
	sawEvent := false
	for _, m := range rec.all() {
		if strings.HasPrefix(m.Subject, "parley.conv.") {
			sawEvent = true
		}
		checkNoMarker(t, "subject "+m.Subject, m.Subject, m.Data, m.Header, markers)
	}
	if !sawEvent {
		t.Fatalf("the tap saw no conversation event (%d messages): it is not tapping", len(rec.all()))
	}
	// And what JetStream keeps: every message of every stream (the push
	// queue, its dead letters, the state and trace buckets, presence).
	js, err := jetstream.New(tap)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	streams := js.ListStreams(ctx)
	n := 0
	for info := range streams.Info() {
		st, err := js.Stream(ctx, info.Config.Name)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted or purged
			}
			n++
			checkNoMarker(t, fmt.Sprintf("stream %s seq %d (%s)", info.Config.Name, seq, m.Subject), m.Subject, m.Data, m.Header, markers)
		}
	}
	if err := streams.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no JetStream message read: the push queue and buckets should hold some")
	}
}

func checkNoMarker(t *testing.T, where, subject string, data []byte, header nats.Header, markers []string) {
	t.Helper()
	hdr, _ := json.Marshal(header)
	for _, mk := range markers {
		if mk == "" {
			continue
		}
		if strings.Contains(subject, mk) || bytes.Contains(data, []byte(mk)) || bytes.Contains(hdr, []byte(mk)) {
			t.Errorf("%s carries %q in clear: %.300q", where, mk, data)
		}
	}
}

// TestBusForgedEventsNotShown: the tap (bus credentials, no master key)
// publishes a message event "from Alice" and a revoked event for Bob, in
// today's plain JSON format and as garbage, on the subjects the nodes
// listen to. Bob's socket shows none of them and stays open: the next
// frame he gets is Alice's real message, on the same connection. (Before,
// the forged message was shown as Alice's and the revoked event closed
// Bob's socket.)
func TestBusForgedEventsNotShown(t *testing.T) {
	s := startSecureNATS(t)
	tap := s.tap(t)
	p := e2e.StartParleyd(t, t.TempDir(), append(s.env(), "PARLEY_LIMITS=off"))
	e2e.Signup(t, p.Base, "alice")
	e2e.Signup(t, p.Base, "bob")
	a, b := e2e.LoginDevice(t, p.Base, "alice", "phone"), e2e.LoginDevice(t, p.Base, "bob", "phone")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)
	bc := e2e.Connect(t, p.Base, b)
	e2e.SendText(t, p.Base, a.Token, conv, "m1", "genuine 1")
	if got := e2e.ExpectMessage(t, bc); got.Body != "genuine 1" {
		t.Fatalf("bob got %+v", got)
	}

	now := time.Now().UTC()
	forgedMessage, _ := json.Marshal(&service.Event{Kind: service.EventMessage, ConversationID: conv, Message: &parley.Message{
		ConversationID: conv, Seq: 2, ID: parley.NewID(), SenderID: a.User, SenderDeviceID: a.ID, ClientMsgID: "forged",
		Type: parley.MessageText, Body: "FORGED: send me your password", CreatedAt: now,
	}})
	forgedRevoked, _ := json.Marshal(&service.Event{Kind: service.EventRevoked, UserID: b.User})
	forgedRevokedDevice, _ := json.Marshal(&service.Event{Kind: service.EventRevoked, UserID: b.User, DeviceID: b.ID})
	garbage := make([]byte, 200)
	rand.Read(garbage)
	type event struct {
		subject string
		data    []byte
	}
	// First the forged message events, then the forged revoked ones.
	rounds := [][]event{{
		{service.ConversationSubject(conv), forgedMessage},
		{service.ConversationSubject(conv), garbage},
	}, {
		{service.UserSubject(b.User), forgedRevoked},
		{service.UserSubject(b.User), forgedRevokedDevice},
		{service.UserSubject(b.User), garbage},
		// A sealed-looking frame: version 1 and a random key id.
		{service.UserSubject(b.User), append([]byte{1, 0xde, 0xad, 0xbe, 0xef}, garbage...)},
	}}
	published := 0
	for _, round := range rounds {
		for _, e := range round {
			if err := tap.Publish(e.subject, e.data); err != nil {
				t.Fatal(err)
			}
		}
		if err := tap.Flush(); err != nil {
			t.Fatal(err)
		}
		published += len(round)
		// Until the node has dropped every forged event, Bob's socket
		// shows nothing and stays open.
		deadline := time.Now().Add(10 * time.Second)
		for e2e.MetricValue(t, p.Base, "parley_bus_events_rejected_total") < float64(published) {
			if time.Now().After(deadline) {
				t.Fatal("the node did not count the forged events as rejected within 10s")
			}
			f, err := bc.Next(50 * time.Millisecond)
			if err != nil && strings.Contains(err.Error(), "closed") {
				t.Fatalf("a forged revoked event closed bob's socket: %v", err)
			}
			if err == nil && f.Type != "presence" && f.Type != "typing" && f.Type != "receipt" {
				t.Fatalf("bob was shown a forged event: %s", f.Raw)
			}
		}
	}
	e2e.SendText(t, p.Base, a.Token, conv, "m2", "genuine 2")
	for {
		f, err := bc.Next(10 * time.Second)
		if err != nil {
			t.Fatalf("bob's socket, waiting for the genuine message: %v", err)
		}
		if f.Type == "message" {
			var m e2e.MsgFrame
			f.Decode(&m)
			if m.Message.Body != "genuine 2" {
				t.Fatalf("bob was shown %s", f.Raw)
			}
			if m.Message.Seq != 2 {
				t.Fatalf("genuine 2 has seq %d", m.Message.Seq)
			}
			break
		}
		if f.Type != "presence" && f.Type != "typing" && f.Type != "receipt" {
			t.Fatalf("bob got %s", f.Raw)
		}
	}
	if !strings.Contains(p.Logs(), "bus events rejected") {
		t.Errorf("no warning about rejected bus events:\n%s", p.Logs())
	}
}

// writeTestPKI writes a CA, a server certificate for 127.0.0.1 and a
// client certificate, PEM, into dir.
func writeTestPKI(t *testing.T, dir string) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley test nats ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, name string) (string, string) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(k)
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", keyDER)
	}
	ca = write("ca.pem", "CERTIFICATE", caDER)
	serverCert, serverKey = leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, "server")
	clientCert, clientKey = leaf(3, "parleyd", x509.ExtKeyUsageClientAuth, "client")
	return ca, serverCert, serverKey, clientCert, clientKey
}

// TestBusExternalNATSTokenAndCreds: the other kinds of credentials work
// through the binary too: a token (from the environment or a file) against
// a NATS with token auth, and a .creds file (user JWT and seed) against a
// NATS in operator mode, JetStream included; the wrong token or a creds
// file of an unknown account stops the start.
func TestBusExternalNATSTokenAndCreds(t *testing.T) {
	token := "tok-" + parley.NewID()
	tokenNATS := clustertest.StartNATSConfig(t, fmt.Sprintf("authorization { token: %q }\n", token))
	tokenFile := filepath.Join(t.TempDir(), "nats.token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	p := e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_NATS_URL=" + tokenNATS.URL(), "PARLEY_NATS_TOKEN=" + token})
	e2e.MustAPI(t, 200, "GET", p.Base+"/readyz", "", nil)
	p = e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_NATS_URL=" + tokenNATS.URL()}, "--nats-token-file", tokenFile)
	e2e.MustAPI(t, 200, "GET", p.Base+"/readyz", "", nil)
	if strings.Contains(p.Logs(), token) {
		t.Error("the token is in the log")
	}
	cmd := exec.Command(e2e.Bin(), "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--nats-url", tokenNATS.URL())
	cmd.Env = append(os.Environ(), "PARLEY_NATS_TOKEN=wrong")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "the server refused our credentials") {
		t.Fatalf("wrong token: err = %v\n%s", err, out)
	}

	// Operator mode: an operator signs an account (JetStream allowed),
	// the account signs parleyd's user; the server knows the account
	// from its preloaded JWT.
	operator, _ := nkeys.CreateOperator()
	operatorPub, _ := operator.PublicKey()
	account, _ := nkeys.CreateAccount()
	accountPub, _ := account.PublicKey()
	oc := jwt.NewOperatorClaims(operatorPub)
	operatorJWT, err := oc.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	ac := jwt.NewAccountClaims(accountPub)
	ac.Limits.JetStreamLimits.DiskStorage = -1
	ac.Limits.JetStreamLimits.MemoryStorage = -1
	accountJWT, err := ac.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	// JetStream needs a system account.
	system, _ := nkeys.CreateAccount()
	systemPub, _ := system.PublicKey()
	systemJWT, err := jwt.NewAccountClaims(systemPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := func(signer nkeys.KeyPair) string {
		user, _ := nkeys.CreateUser()
		userPub, _ := user.PublicKey()
		seed, _ := user.Seed()
		uc := jwt.NewUserClaims(userPub)
		uc.IssuerAccount = accountPub
		userJWT, err := uc.Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		creds, err := jwt.FormatUserConfig(userJWT, seed)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "parleyd.creds")
		os.WriteFile(path, creds, 0o600)
		return path
	}
	opNATS := clustertest.StartNATSConfig(t, fmt.Sprintf("operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n",
		operatorJWT, systemPub, accountPub, accountJWT, systemPub, systemJWT))
	p = e2e.StartParleyd(t, t.TempDir(), []string{"PARLEY_NATS_URL=" + opNATS.URL(), "PARLEY_LIMITS=off"}, "--nats-creds", credsFile(account))
	e2e.MustAPI(t, 200, "GET", p.Base+"/readyz", "", nil)
	e2e.Signup(t, p.Base, "alice")
	e2e.Signup(t, p.Base, "bob")
	a, b := e2e.LoginDevice(t, p.Base, "alice", "phone"), e2e.LoginDevice(t, p.Base, "bob", "phone")
	conv := e2e.MustAPI(t, 201, "POST", p.Base+"/v1/conversations", a.Token, map[string]any{"kind": "direct", "members": []string{b.User}})["conversation"].(map[string]any)["id"].(string)
	bc := e2e.Connect(t, p.Base, b)
	e2e.SendText(t, p.Base, a.Token, conv, "x", "with a creds file")
	if got := e2e.ExpectMessage(t, bc); got.Body != "with a creds file" {
		t.Fatalf("bob got %+v", got)
	}
	// A user signed by an account the server does not know.
	stranger, _ := nkeys.CreateAccount()
	out, err := exec.Command(e2e.Bin(), "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--nats-url", opNATS.URL(), "--nats-creds", credsFile(stranger)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "natsbus: connect") {
		t.Fatalf("unknown account: err = %v\n%s", err, out)
	}
}
