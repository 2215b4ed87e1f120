package noderestore

import (
	"context"
	"errors"
	"fmt"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// Service stops, starts and finds running the Cassandra of a node. The
// command implementation (CommandService) runs a systemd unit or argv the
// cluster's configuration gives, through the node's executor; tests plug in
// the real-Cassandra harness's own start and stop.
type Service interface {
	// Running reports whether Cassandra runs on the node.
	Running(ctx context.Context, node messages.Node) (bool, error)
	// Stop stops Cassandra; a stopped Cassandra is success.
	Stop(ctx context.Context, node messages.Node) error
	// Start starts Cassandra with env in its environment (the facts of a
	// new cluster: QUIESCE_CLUSTER_NAME, QUIESCE_INITIAL_TOKEN,
	// QUIESCE_SEEDS). It may return before Cassandra serves CQL. The
	// command implementation also sets QUIESCE_NODE, the node's name, for
	// every command.
	Start(ctx context.Context, node messages.Node, env map[string]string) error
}

// ServiceSettings say how Cassandra is run on a cluster's nodes: a systemd
// unit (Unit), or commands (Start, Stop, IsRunning).
type ServiceSettings struct {
	// Unit is a systemd unit: systemctl stop, start and is-active UNIT.
	Unit string
	// Start, Stop and IsRunning are argv run through the executor
	// instead; IsRunning exits 0 when Cassandra runs, 1 or 3 when not.
	Start, Stop, IsRunning []string
	// Sudo runs them through "sudo -n".
	Sudo bool
}

// Validate names what is wrong with s.
func (s ServiceSettings) Validate() error {
	var errs []error
	switch {
	case s.Unit != "" && (len(s.Start) > 0 || len(s.Stop) > 0 || len(s.IsRunning) > 0):
		errs = append(errs, errors.New("cassandra service: give a unit or start/stop/is_running commands, not both"))
	case s.Unit != "":
		if !unitPattern.MatchString(s.Unit) {
			errs = append(errs, fmt.Errorf("cassandra service: unit %q: want letters, digits and @._:- only", s.Unit))
		}
	default:
		for name, argv := range map[string][]string{"start": s.Start, "stop": s.Stop, "is_running": s.IsRunning} {
			if len(argv) == 0 || argv[0] == "" {
				errs = append(errs, fmt.Errorf("cassandra service: %s command missing (or give a unit)", name))
			}
		}
	}
	return errors.Join(errs...)
}

// CommandService is a Service run through a node executor.
type CommandService struct {
	Runner   nodetool.Runner
	Settings ServiceSettings
}

var _ Service = (*CommandService)(nil)

func (c *CommandService) argv(op string) []string {
	s := c.Settings
	if s.Unit != "" {
		switch op {
		case "start":
			return []string{"systemctl", "start", s.Unit}
		case "stop":
			return []string{"systemctl", "stop", s.Unit}
		default:
			return []string{"systemctl", "is-active", "--quiet", s.Unit}
		}
	}
	switch op {
	case "start":
		return s.Start
	case "stop":
		return s.Stop
	default:
		return s.IsRunning
	}
}

// Running runs the is-running command: exit 0 is running, exit 1 to 4
// (systemctl is-active says 3 for inactive, pgrep 1 for none) is not.
func (c *CommandService) Running(ctx context.Context, node messages.Node) (bool, error) {
	argv := c.argv("running")
	_, err := c.Runner.Run(ctx, node, nodetool.Command{Argv: argv, Env: nodeEnv(node, nil), Sudo: c.Settings.Sudo, Label: nodetool.Label(argv)})
	var ee *nodetool.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode >= 1 && ee.ExitCode <= 4:
		return false, nil
	default:
		return false, fmt.Errorf("is Cassandra running on %s: %w", node.Name, err)
	}
}

// Stop runs the stop command.
func (c *CommandService) Stop(ctx context.Context, node messages.Node) error {
	argv := c.argv("stop")
	if _, err := c.Runner.Run(ctx, node, nodetool.Command{Argv: argv, Env: nodeEnv(node, nil), Sudo: c.Settings.Sudo, Label: nodetool.Label(argv)}); err != nil {
		return fmt.Errorf("stop Cassandra on %s: %w", node.Name, err)
	}
	return nil
}

// Start runs the start command with env in its environment.
func (c *CommandService) Start(ctx context.Context, node messages.Node, env map[string]string) error {
	argv := c.argv("start")
	if _, err := c.Runner.Run(ctx, node, nodetool.Command{Argv: argv, Env: nodeEnv(node, env), Sudo: c.Settings.Sudo, Label: nodetool.Label(argv)}); err != nil {
		var ee *nodetool.ExitError
		if errors.As(err, &ee) {
			return errclass.Permanent(fmt.Errorf("start Cassandra on %s: %w", node.Name, err))
		}
		return fmt.Errorf("start Cassandra on %s: %w", node.Name, err)
	}
	return nil
}

// nodeEnv is the environment of a service command: env, and the node's
// name in QUIESCE_NODE (one wrapper script can serve several nodes of a
// host).
func nodeEnv(node messages.Node, env map[string]string) map[string]string {
	out := make(map[string]string, len(env)+1)
	for k, v := range env {
		out[k] = v
	}
	out["QUIESCE_NODE"] = node.Name
	return out
}
