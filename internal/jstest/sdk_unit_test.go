package jstest

import "testing"

// TestSDKUnit runs the TypeScript SDK's build and unit tests (clients/sdk:
// `npm test`: tsc, esbuild, the size budget, node:test with fake sockets).
func TestSDKUnit(t *testing.T) { npmRun(t, "sdk", "test") }
