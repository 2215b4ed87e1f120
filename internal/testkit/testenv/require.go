package testenv

import (
	"os"
	"testing"
)

// RequireIntegrationEnv makes a missing external dependency a failure rather
// than a skip. .ci/run sets it after installing sshd, moto and promtool, so
// a broken install step cannot turn the integration tier into silent skips.
const RequireIntegrationEnv = "QUIESCE_REQUIRE_INTEGRATION"

// Missing skips t with msg (which says what to install), or fails it when
// RequireIntegrationEnv is set.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(RequireIntegrationEnv) != "" {
		t.Fatalf("%s (required: %s is set)", msg, RequireIntegrationEnv)
	}
	t.Skip(msg)
}
