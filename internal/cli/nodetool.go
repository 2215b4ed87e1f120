package cli

import (
	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/simnode"
)

// nodetoolCmd runs the simulated Cassandra node's nodetool. The demo and
// the SSH integration tier use it as the remote nodetool.
func nodetoolCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:                "nodetool --root DIR SUBCOMMAND [ARGS]",
		Short:              "nodetool for a simulated Cassandra node (demo and tests)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			// This process is the node's nodetool: what it starts on the
			// node it finishes, as Cassandra does when its client is killed.
			simnode.FinishWorkOnSignals()
			if code := simnode.Main(args, g.stdout, g.stderr); code != 0 {
				return &exitError{code: code, err: errSilent}
			}
			return nil
		},
	}
}
