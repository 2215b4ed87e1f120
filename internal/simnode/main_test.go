package simnode

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// nodetoolEnv makes the test binary act as nodetool, so tests can run the CLI
// in separate processes.
const nodetoolEnv = "SIMNODE_TEST_AS_NODETOOL"

func TestMain(m *testing.M) {
	if os.Getenv(nodetoolEnv) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	if root := os.Getenv(busyNodeEnv); root != "" {
		os.Exit(busyNode(root))
	}
	goleak.VerifyTestMain(m)
}
