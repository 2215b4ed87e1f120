package cli

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/quiesce/quiesce/internal/simnode"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
)

// The test binary doubles as the simulated node's nodetool: the demo and
// the local executor run os.Executable() with "nodetool" as first argument.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "nodetool" {
		simnode.FinishWorkOnSignals()
		os.Exit(simnode.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	// And as quiesce itself, for tests of the process: signals, exit codes.
	if len(os.Args) > 1 && os.Args[1] == "quiesce" {
		os.Exit(Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m, testenv.LeakOptions()...)
}
