package jstest

import "testing"

// TestSDKConformance runs the shared protocol scenarios of
// testdata/conformance against the TypeScript SDK (the Go SDK runs them in
// client.TestConformance), so that the two cannot drift apart.
func TestSDKConformance(t *testing.T) {
	npmRun(t, "sdk", "test:conformance")
}
