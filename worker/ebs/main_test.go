package ebs

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
)

func TestMain(m *testing.M) {
	// The SDK's default chain reads these: static test credentials, no
	// instance metadata lookups, no developer's ~/.aws files.
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "testing",
		"AWS_SECRET_ACCESS_KEY":       "testing",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	} {
		if v == "" {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, v)
		}
	}
	goleak.VerifyTestMain(m, append(testenv.LeakOptions(),
		// The SDK's HTTP client keeps idle keep-alive connections; they end
		// with the process.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)...)
}
