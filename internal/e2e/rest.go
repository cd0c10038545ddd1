package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RunParleyd runs the binary with args and returns its stdout and stderr.
func RunParleyd(tb testing.TB, env []string, args ...string) (stdout, stderr string, err error) {
	tb.Helper()
	cmd := exec.Command(Bin(), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// MustFail runs the binary, wants it to fail, and its stderr to hold each
// of want.
func MustFail(tb testing.TB, env []string, want []string, args ...string) {
	tb.Helper()
	stdout, stderr, err := RunParleyd(tb, env, args...)
	if err == nil {
		tb.Fatalf("parleyd %s succeeded:\n%s", strings.Join(args, " "), stdout)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			tb.Errorf("parleyd %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, stderr)
		}
	}
}

// API does a JSON request against a running parleyd.
func API(t testing.TB, client *http.Client, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

// MustAPI does a JSON request with http.DefaultClient and fails the test
// unless the status is want.
func MustAPI(t testing.TB, want int, method, url, token string, body any) map[string]any {
	t.Helper()
	code, out := API(t, http.DefaultClient, method, url, token, body)
	if code != want {
		t.Fatalf("%s %s: %d %v, want %d", method, url, code, out, want)
	}
	return out
}

// Signup creates an account with the tests' password and logs it in on a
// "cli" device.
func Signup(t testing.TB, base, handle string) (userID, token string) {
	t.Helper()
	u := MustAPI(t, 201, "POST", base+"/v1/accounts", "", map[string]any{"handle": handle, "password": "correct horse battery"})
	s := MustAPI(t, 200, "POST", base+"/v1/sessions", "", map[string]any{"handle": handle, "password": "correct horse battery", "device": map[string]any{"platform": "cli", "name": "e2e"}})
	return u["user"].(map[string]any)["id"].(string), s["access_token"].(string)
}

// WriteSelfSigned writes a certificate for 127.0.0.1, valid for an hour,
// and its key into dir.
func WriteSelfSigned(t testing.TB, dir string) (certPath, keyPath string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(priv)
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certPath, keyPath
}
