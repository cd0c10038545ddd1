package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// releaseBudget is issue 15's bound on the release binary, in bytes.
const releaseBudget = 45e6

// TestReleaseBinarySize: parleyd built for release stays within its
// budget, the README states its size, and none of the modules that came
// with the Firebase Admin SDK and nearly doubled it is linked again
// (docs/adr/0004-fcm-http-v1-without-sdk.md).
func TestReleaseBinarySize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds parleyd for release; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "parleyd")
	// The README's command adds -trimpath, which recompiles every package
	// and changes the size by under 0.1%; the link flags are what count.
	if out, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	size := float64(fi.Size()) / 1e6
	t.Logf("release build: %.1f MB", size)
	if size > releaseBudget/1e6 {
		t.Errorf("the release build is %.1f MB, over the budget of %.0f MB: see what grew with go tool nm -size -sort size", size, releaseBudget/1e6)
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`the release binary, is (\d+) MB`).FindSubmatch(readme)
	if m == nil {
		t.Fatal(`README does not say "the release binary, is N MB"`)
	}
	stated, _ := strconv.Atoi(string(m[1]))
	if math.Abs(size-float64(stated)) > 1 {
		t.Errorf("README says the release binary is %d MB; it is %.1f MB: update the figure", stated, size)
	}

	mods, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, unwanted := range []string{"firebase.google.com/", "google.golang.org/api", "google.golang.org/grpc", "go.opentelemetry.io/",
		"cloud.google.com/go/firestore", "cloud.google.com/go/storage", "github.com/envoyproxy/"} {
		for _, line := range strings.Split(string(mods), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "dep" && strings.HasPrefix(f[1], unwanted) {
				t.Errorf("parleyd links %s (ADR 0004: FCM needs no SDK, and this one doubled the binary)", f[1])
			}
		}
	}
}
