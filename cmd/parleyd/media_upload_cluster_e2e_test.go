package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/blob/s3blob"
	"github.com/parleychat/parley/internal/e2e"
	"github.com/parleychat/parley/seal"
	"github.com/parleychat/parley/store/postgres"
)

// startVersitygw starts a private S3 server (versitygw) for the test with
// one bucket, and returns its endpoint, credentials and the bucket; it
// skips when versitygw is not installed (fails with
// PARLEY_TEST_REQUIRE_SERVICES=1).
func startVersitygw(t *testing.T) (endpoint, access, secret, bucket string) {
	t.Helper()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		bin = filepath.Join(os.Getenv("HOME"), "go", "bin", "versitygw")
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("PARLEY_TEST_REQUIRE_SERVICES") == "1" {
				t.Fatal("versitygw is not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
			}
			t.Skip("skipping: versitygw is not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
		}
	}
	dir := t.TempDir()
	data, sidecar := filepath.Join(dir, "data"), filepath.Join(dir, "meta")
	os.Mkdir(data, 0o700)
	os.Mkdir(sidecar, 0o700)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	key := make([]byte, 16)
	rand.Read(key)
	access, secret = "parleytest", hex.EncodeToString(key)
	var log bytes.Buffer
	cmd := exec.Command(bin, "--access", access, "--secret", secret, "--port", addr, "--quiet", "posix", "--sidecar", sidecar, data)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	endpoint = "http://" + addr
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(access, secret, "")})
	bucket = "parley-media"
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw: %v: %s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return endpoint, access, secret, bucket
}

// TestMediaUploadAcrossNodes: two nodes on one PostgreSQL store and one
// S3 bucket; an upload created on node A and cut off mid-PATCH resumes
// and finishes on node B (tus data in the bucket, locks in PostgreSQL),
// and the object in the bucket opens to the uploaded bytes.
func TestMediaUploadAcrossNodes(t *testing.T) {
	env := e2e.ClusterEnv(t)
	endpoint, access, secret, bucket := startVersitygw(t)
	mediaURL := fmt.Sprintf("s3://%s/m?endpoint=%s&region=us-east-1&path_style=true", bucket, endpoint)
	env = append(env, "PARLEY_MEDIA_STORE="+mediaURL, "AWS_ACCESS_KEY_ID="+access, "AWS_SECRET_ACCESS_KEY="+secret)
	a := e2e.StartParleyd(t, t.TempDir(), env)
	b := e2e.StartParleyd(t, t.TempDir(), env)

	_, aliceTok := e2e.Signup(t, a.Base, "alice")
	conv := e2e.MustAPI(t, 201, "POST", a.Base+"/v1/conversations", aliceTok, map[string]any{"kind": "group", "title": "t"})["conversation"].(map[string]any)["id"].(string)
	onA, onB := tusClient{t, a.Base, aliceTok}, tusClient{t, b.Base, aliceTok}

	data := make([]byte, 12<<20)
	rand.Read(data)
	status, locA, body := onA.create(int64(len(data)), map[string]string{"conversation_id": conv, "filename": "v.bin"})
	if status != 201 {
		t.Fatalf("create on A: %d %v", status, body)
	}
	id := locA[strings.LastIndex(locA, "/")+1:]
	locB := b.Base + "/v1/uploads/" + id
	// 6 MiB (one S3 part and more) on A, then a PATCH cut off on A.
	onA.upload(locA, 0, data[:6<<20], 6<<20)
	onA.cutPatch(locA, 6<<20, data[6<<20:], 2<<20)

	var off int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		var res *http.Response
		off, res = onB.head(locB)
		if res.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD on B: %d", res.StatusCode)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("offset on B after the cut on A: %d", off)
	if off < 6<<20 || off > 8<<20 {
		t.Fatalf("offset on B = %d, want 6..8 MiB", off)
	}
	last := onB.upload(locB, off, data, 3<<20)
	if last.Header.Get("Parley-Media-State") != "ready" || last.Header.Get("Parley-Media-Id") != id {
		t.Fatalf("final PATCH on B: %v", last.Header)
	}

	// The object in the bucket, and the record.
	var keys [][]byte
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PARLEY_MASTER_KEY="); ok {
			k, _ := base64.StdEncoding.DecodeString(v)
			keys = append(keys, k)
		}
	}
	os.Setenv("AWS_ACCESS_KEY_ID", access)
	os.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	blobs, err := s3blob.Open(context.Background(), mediaURL, keys)
	if err != nil {
		t.Fatal(err)
	}
	r, err := blobs.Get(context.Background(), parley.MediaOriginalKey(id), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object: %d bytes, %v; want the %d uploaded", len(got), err, len(data))
	}
	sealer, err := seal.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	var dsn string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PARLEY_STORE="); ok {
			dsn = v
		}
	}
	st, err := postgres.Open(context.Background(), dsn, postgres.Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := st.Media(context.Background(), id)
	sum := sha256.Sum256(data)
	if err != nil || m.State != parley.MediaReady || m.Size != int64(len(data)) || m.SHA256 != hex.EncodeToString(sum[:]) || m.Filename != "v.bin" {
		t.Fatalf("record = %+v, %v", m, err)
	}
}
