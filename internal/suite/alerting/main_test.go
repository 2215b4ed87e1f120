package alerting

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/quiesce/quiesce/internal/cli"
	"github.com/quiesce/quiesce/internal/simnode"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
)

// The test binary doubles as quiesce, whose roles the tests run as
// processes, and as the simulated nodes' nodetool, which those processes'
// local executor runs.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "quiesce" {
		os.Exit(cli.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "nodetool" {
		os.Exit(simnode.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m, testenv.LeakOptions()...)
}
