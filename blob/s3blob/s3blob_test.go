package s3blob_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"go/build"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/blob/blobtest"
	"github.com/parleychat/parley/blob/s3blob"
)

const requireEnv = "PARLEY_TEST_REQUIRE_SERVICES"

// gateway is a private versitygw, started once for the package's tests
// and stopped by TestMain.
type gateway struct {
	endpoint       string
	access, secret string
	cmd            *exec.Cmd
	dir            string
	log            *bytes.Buffer
}

var (
	gwOnce  sync.Once
	gw      *gateway
	gwErr   error
	buckets atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if gw != nil {
		gw.stop()
	}
	os.Exit(code)
}

// findVersitygw looks on PATH, then in $(go env GOPATH)/bin.
func findVersitygw() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw is not on PATH nor in %s", filepath.Dir(p))
	}
	return p, nil
}

func startGateway() (*gateway, error) {
	bin, err := findVersitygw()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "parley-versitygw-")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	sidecar := filepath.Join(dir, "meta")
	for _, d := range []string{data, sidecar} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	secret := make([]byte, 16)
	rand.Read(secret)
	g := &gateway{endpoint: "http://" + addr, access: "parleytest", secret: hex.EncodeToString(secret), dir: dir, log: &bytes.Buffer{}}
	// The sidecar keeps metadata in files, so the test does not depend on
	// the temporary filesystem's extended attributes.
	g.cmd = exec.Command(bin, "--access", g.access, "--secret", g.secret, "--port", addr, "--quiet", "posix", "--sidecar", sidecar, data)
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	if err := g.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for range 100 {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return g, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	g.stop()
	return nil, fmt.Errorf("versitygw did not answer on %s within 10 s: %s", addr, g.log)
}

func (g *gateway) stop() {
	g.cmd.Process.Kill()
	g.cmd.Wait()
	os.RemoveAll(g.dir)
}

// gateway returns the package's versitygw, or skips (fails, with
// PARLEY_TEST_REQUIRE_SERVICES=1) when it is not installed.
func needGateway(tb testing.TB) *gateway {
	tb.Helper()
	gwOnce.Do(func() { gw, gwErr = startGateway() })
	if gwErr != nil {
		install := "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"
		if os.Getenv(requireEnv) == "1" {
			tb.Fatalf("versitygw: %v; install it with %s. %s=1 makes that a failure", gwErr, install, requireEnv)
		}
		tb.Skipf("skipping: versitygw: %v; install it with %s, or set %s=1 to fail instead", gwErr, install, requireEnv)
	}
	return gw
}

// raw returns an SDK client of g, to create buckets and alter objects
// behind the store's back.
func (g *gateway) raw() *s3.Client {
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(g.endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(g.access, g.secret, ""),
	})
}

func (g *gateway) newBucket(tb testing.TB) string {
	tb.Helper()
	bucket := fmt.Sprintf("parley-test-%d", buckets.Add(1))
	if _, err := g.raw().CreateBucket(tb.Context(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		tb.Fatalf("create bucket: %v", err)
	}
	return bucket
}

func (g *gateway) config(bucket, prefix string) s3blob.Config {
	return s3blob.Config{
		Bucket: bucket, Prefix: prefix, Endpoint: g.endpoint, Region: "us-east-1", PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(g.access, g.secret, ""),
		PartSize:    s3blob.MinPartSize, // so the suite's 20 MB object takes the multipart path
	}
}

func harness(prefix string) blobtest.Harness {
	return blobtest.Harness{
		NewPlace: func(tb testing.TB) string { return needGateway(tb).newBucket(tb) },
		Open: func(tb testing.TB, bucket string, keys [][]byte) parley.BlobStore {
			tb.Helper()
			s, err := s3blob.New(tb.Context(), gw.config(bucket, prefix), keys)
			if err != nil {
				tb.Fatal(err)
			}
			return s
		},
		Tamper: func(tb testing.TB, bucket, key string, edit func([]byte) []byte) {
			tb.Helper()
			ctx, c, name := tb.Context(), gw.raw(), prefix+key
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &name})
			if err != nil {
				tb.Fatal(err)
			}
			b, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil {
				tb.Fatal(err)
			}
			b = edit(b)
			_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &name, Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))), Metadata: out.Metadata})
			if err != nil {
				tb.Fatal(err)
			}
		},
	}
}

func TestContract(t *testing.T) {
	blobtest.Run(t, harness(""))
}

// TestContractPrefix runs the suite on a store under a prefix of the
// bucket, as a shared bucket would hold it.
func TestContractPrefix(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	blobtest.Run(t, harness("parley/media/"))
}

// TestPrefixIsolation: a store under a prefix neither sees nor touches the
// bucket's other objects.
func TestPrefixIsolation(t *testing.T) {
	g := needGateway(t)
	bucket := g.newBucket(t)
	keys := [][]byte{bytes.Repeat([]byte{1}, 32)}
	a, err := s3blob.New(t.Context(), g.config(bucket, "a/"), keys)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s3blob.New(t.Context(), g.config(bucket, "b/"), keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(t.Context(), "x", strings.NewReader("from a")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(t.Context(), "x"); !isNotFound(err) {
		t.Fatalf("b sees a's object: %v", err)
	}
	n := 0
	b.List(t.Context(), "", func(parley.BlobInfo) error { n++; return nil })
	if n != 0 {
		t.Fatalf("b lists %d objects of a", n)
	}
	// The object is in the bucket under the prefix, encrypted.
	out, err := g.raw().GetObject(t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("a/x")})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if bytes.Contains(raw, []byte("from a")) || out.Metadata["parley-seal"] == "" {
		t.Fatalf("stored object: %q, metadata %v", raw, out.Metadata)
	}
}

func isNotFound(err error) bool { return parley.ErrorCode(err) == parley.CodeNotFound }

// TestOpenFromEnvironment: the setting URL and the standard AWS variables
// are enough.
func TestOpenFromEnvironment(t *testing.T) {
	g := needGateway(t)
	bucket := g.newBucket(t)
	t.Setenv("AWS_ACCESS_KEY_ID", g.access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", g.secret)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	s, err := s3blob.Open(t.Context(), "s3://"+bucket+"/m?endpoint="+g.endpoint+"&region=us-east-1&path_style=true", [][]byte{bytes.Repeat([]byte{3}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), "hello", strings.NewReader("hello, world")); err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(t.Context(), "hello", 7, 5)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != "world" {
		t.Fatalf("Get = %q, %v", got, err)
	}

	// Wrong credentials: a clear error, not a silent success.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	s, err = s3blob.Open(t.Context(), "s3://"+bucket+"?endpoint="+g.endpoint+"&path_style=true", [][]byte{bytes.Repeat([]byte{3}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.Put(ctx, "denied", strings.NewReader("x")); err == nil {
		t.Fatal("Put with a wrong secret succeeded")
	}
}

// failAfter yields n pseudo-random bytes, then fails.
type failAfter struct{ n int }

func (r *failAfter) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errBoom
	}
	p = p[:min(len(p), r.n)]
	rand.Read(p)
	r.n -= len(p)
	return len(p), nil
}

var errBoom = fmt.Errorf("client went away")

// TestFailedMultipartAborted: a Put that fails after its first part
// aborts its multipart upload, leaving no parts in the bucket.
func TestFailedMultipartAborted(t *testing.T) {
	g := needGateway(t)
	bucket := g.newBucket(t)
	s, err := s3blob.New(t.Context(), g.config(bucket, ""), [][]byte{bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(t.Context(), "big", &failAfter{n: 3*s3blob.MinPartSize + 100})
	if err != errBoom {
		t.Fatalf("Put from a failing reader: %v, want the reader's error", err)
	}
	ups, err := g.raw().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left behind", len(ups.Uploads))
	}
	if _, err := s.Stat(t.Context(), "big"); !isNotFound(err) {
		t.Fatalf("Stat after the failed Put: %v", err)
	}
}
