package jstest

import "testing"

// TestSDKIntegration runs the SDK's integration tests
// (clients/sdk/test/integration) against the parleyd built in TestMain:
// three devices chatting, a SIGKILLed server with sends in flight, a
// client restored from a crashed one's storage, an offline device
// catching up 1,000 messages, tokens expiring mid-connection, a
// server frozen by SIGSTOP, and end-to-end encryption (e2ee.test.mjs: four
// devices of three users in a direct and a group conversation, a new
// device, a key request answered, encrypted attachments). TestSDKUnit
// (sdk_unit_test.go) runs the unit tests, the RFC 9180 and envelope
// vectors of testdata/e2ee among them.
func TestSDKIntegration(t *testing.T) {
	npmRun(t, "sdk", "test:integration")
}
