package drivers

import (
	"context"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/nodetool"
)

var _ worker.HookDrivers = (*Registry)(nil)

// Hooks returns how a cluster's hooks run: node-scoped ones through the
// cluster's executor (the same SSH connections as nodetool, or local exec),
// job-scoped ones on this worker.
func (r *Registry) Hooks(name string) (worker.HookRunner, error) {
	c, err := r.Client(name)
	if err != nil {
		return nil, err
	}
	return hookRunner{node: c.Runner, local: &local.Runner{}}, nil
}

type hookRunner struct {
	node  nodetool.Runner
	local *local.Runner
}

func (h hookRunner) RunHook(ctx context.Context, node *messages.Node, cmd worker.HookCommand) (worker.HookOutput, error) {
	var out nodetool.Output
	var err error
	c := nodetool.Command{Argv: cmd.Argv, Env: cmd.Env, Stdin: cmd.Stdin}
	if node == nil {
		out, err = h.local.Run(ctx, messages.Node{}, c)
	} else {
		out, err = h.node.Run(ctx, *node, c)
	}
	return worker.HookOutput{Stdout: out.Stdout, Stderr: out.Stderr, ExitCode: out.ExitCode}, err
}
