package fleet

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
)

func TestMain(m *testing.M) {
	// The SDK's default chain is not used (credentials are static), but
	// nothing should look for instance metadata or a developer's files.
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	goleak.VerifyTestMain(m, append(testenv.LeakOptions(),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)...)
}
