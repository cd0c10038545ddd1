package pushtest_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/push/pushtest"
)

// TestCertificateIsShared checks what WriteCA's contract rests on: every
// httptest TLS server in the process presents the standard library's one
// test certificate, so one CA file trusts all three fakes.
func TestCertificateIsShared(t *testing.T) {
	apns, fcm, webPush := pushtest.NewAPNs(t), pushtest.NewFCM(t), pushtest.NewWebPush(t)
	plain := httptest.NewTLSServer(nil)
	defer plain.Close()
	want := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: plain.Certificate().Raw})
	for name, got := range map[string][]byte{"apns": apns.CertPEM(), "fcm": fcm.CertPEM(), "webpush": webPush.CertPEM()} {
		if !bytes.Equal(got, want) {
			t.Errorf("%s presents another certificate than httptest's", name)
		}
	}

	path := apns.WriteCA(t.TempDir())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no certificate", path)
	}
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("the CA file does not verify the servers' certificate for 127.0.0.1: %v", err)
	}

	// A client from one fake reaches the others.
	resp, err := webPush.Client().Get(fcm.URL() + "/nowhere")
	if err != nil {
		t.Fatalf("webpush's client to the fcm fake: %v", err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" {
		t.Errorf("Client spoke %s, want HTTP/2.0", resp.Proto)
	}
}

// TestCAFileForChildProcess runs this test binary again as a child that
// trusts the fake only through SSL_CERT_FILE, as parleyd would.
func TestCAFileForChildProcess(t *testing.T) {
	if url := os.Getenv("PUSHTEST_CHILD_GET"); url != "" {
		resp, err := http.Get(url) // the default client: system roots
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		resp.Body.Close()
		return
	}
	fake := pushtest.NewWebPush(t)
	child := func(extraEnv ...string) ([]byte, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCAFileForChildProcess$", "-test.count=1")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "SSL_CERT_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "PUSHTEST_CHILD_GET="+fake.URL()+"/push/x")
		cmd.Env = append(cmd.Env, extraEnv...)
		return cmd.CombinedOutput()
	}
	if out, err := child(); err == nil {
		t.Fatalf("a child without the CA file trusted the fake:\n%s", out)
	}
	if out, err := child("SSL_CERT_FILE=" + fake.WriteCA(t.TempDir())); err != nil {
		t.Fatalf("child trusting the CA file: %v\n%s", err, out)
	}
	if got := fake.Wait(t, 1, 5*time.Second); len(got) != 1 || got[0].Method != http.MethodGet {
		t.Errorf("records %+v, want the child's one GET", got)
	}
}
