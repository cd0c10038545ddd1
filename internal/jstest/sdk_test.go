package jstest

import "testing"

// TestSDKIntegration runs the SDK's integration tests
// (clients/sdk/test/integration) against the parleyd built in TestMain:
// three devices chatting, a SIGKILLed server with sends in flight, a
// client restored from a crashed one's storage, an offline device
// catching up 1,000 messages, tokens expiring mid-connection and a
// server frozen by SIGSTOP. TestSDKUnit (sdk_unit_test.go) runs the unit
// tests.
func TestSDKIntegration(t *testing.T) {
	npmRun(t, "sdk", "test:integration")
}
