package clustertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// TestDeployNATSConfigValid: deploy/nats/nats-server.conf, with its
// placeholders filled in (test certificates, a real user nkey, a store
// directory), is a configuration nats-server accepts (nats-server -t reads
// it as it would start, without binding), and it admits only the nodes'
// nkey, over TLS with verified client certificates, also between the
// servers. The placeholder nkey itself is refused, so the check has teeth.
func TestDeployNATSConfigValid(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/nats/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for _, want := range []string{"verify:    true", "nkey: ", "cluster {", "authorization {"} {
		if strings.Count(conf, want) == 0 {
			t.Errorf("deploy/nats/nats-server.conf lacks %q", want)
		}
	}
	if strings.Count(conf, "verify:    true") != 2 {
		t.Errorf("deploy/nats/nats-server.conf: want client certificates verified for clients and routes alike")
	}
	if strings.Contains(conf, "password") || strings.Contains(conf, "token") {
		t.Errorf("deploy/nats/nats-server.conf admits passwords or tokens besides the nkey")
	}
	bin, err := findProgram("/usr/sbin/nats-server", "nats-server")
	if err != nil {
		missing(t, "nats-server", err, "install Debian's nats-server package")
	}

	dir := t.TempDir()
	ca, cert, key := writeNATSPKI(t, dir)
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	check := func(conf string) ([]byte, error) {
		path := filepath.Join(dir, "nats-server.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		return exec.Command(bin, "-t", "-c", path).CombinedOutput()
	}
	filled := conf
	for placeholder, value := range map[string]string{
		"/etc/nats-server/nats1.pem":                             cert,
		"/etc/nats-server/nats1.key":                             key,
		"/etc/nats-server/ca.pem":                                ca,
		"/var/lib/nats-server/jetstream":                         filepath.Join(dir, "jetstream"),
		"UREPLACE_WITH_THE_PUBLIC_KEY_FROM_nk_-gen_user_-pubout": pub,
	} {
		if !strings.Contains(filled, placeholder) {
			t.Fatalf("deploy/nats/nats-server.conf no longer has %q: update this test", placeholder)
		}
		filled = strings.ReplaceAll(filled, placeholder, value)
	}
	if out, err := check(filled); err != nil || !strings.Contains(string(out), "valid") {
		t.Fatalf("nats-server -t on deploy/nats/nats-server.conf (filled in): %v\n%s", err, out)
	}
	// The placeholder nkey is not a key: the same file with it is refused.
	unfilled := strings.ReplaceAll(filled, pub, "UREPLACE_WITH_THE_PUBLIC_KEY_FROM_nk_-gen_user_-pubout")
	if out, err := check(unfilled); err == nil {
		t.Fatalf("nats-server -t accepted the placeholder nkey:\n%s", out)
	}
}

// writeNATSPKI writes a CA and a certificate (for 127.0.0.1, usable by a
// server and a client) signed by it, PEM, into dir.
func writeNATSPKI(t *testing.T, dir string) (ca, cert, key string) {
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
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k := newKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("nats1.pem", "CERTIFICATE", der), write("nats1.key", "PRIVATE KEY", keyDER)
}
