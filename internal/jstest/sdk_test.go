package jstest

import "testing"

// TestSDKUnit runs the TypeScript SDK's unit tests (clients/sdk/test/unit).
func TestSDKUnit(t *testing.T) {
	npmRun(t, "sdk", "test")
}

// TestSDKIntegration runs the SDK's integration tests
// (clients/sdk/test/integration) against the parleyd built in TestMain:
// several devices chatting, a SIGKILLed server, an offline device
// catching up, tokens expiring mid-connection and a frozen socket.
func TestSDKIntegration(t *testing.T) {
	npmRun(t, "sdk", "test:integration")
}
