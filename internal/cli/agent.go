package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/observability"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

// agentNode checks that an agent may serve node of cluster: the cluster is
// configured with executor agent and, when its inventory is static, lists
// the node.
func agentNode(cfg *config.Config, cluster, node string) error {
	if err := messages.ValidateCluster(cluster); err != nil {
		return fmt.Errorf("--cluster: %w", err)
	}
	if err := messages.ValidateTarget("--node", node); err != nil {
		return err
	}
	cl, ok := cfg.Cluster(cluster)
	if !ok {
		return fmt.Errorf("--cluster %q: not in the configuration", cluster)
	}
	if drivers.ExecutorKind(*cl) != drivers.ExecutorAgent {
		return fmt.Errorf("--cluster %q: its executor is %q, not %q: its node tasks go to workers, not agents",
			cluster, drivers.ExecutorKind(*cl), drivers.ExecutorAgent)
	}
	if cl.Discovery != nil {
		return nil
	}
	var names []string
	for _, n := range cl.Nodes {
		if n.Name == node {
			return nil
		}
		names = append(names, n.Name)
	}
	return fmt.Errorf("--node %q: cluster %q has no such node (its nodes: %s)", node, cluster, strings.Join(names, ", "))
}

func agentCmd(g *globals) *cobra.Command {
	var cluster, node string
	var softStop time.Duration
	var concurrency int
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run on a Cassandra node as the only taker of its flush, clear and hook tasks",
		Long: `quiesce agent runs on one Cassandra node of a cluster whose executor is "agent". It takes
that node's flush, clear and node-scoped hook tasks from the node's own consumer and runs them
on this host; no SSH key is needed anywhere. Its NATS user needs only the permissions that
"quiesce agent permissions" prints.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			if err := agentNode(cfg, cluster, node); err != nil {
				return withCode(ExitRejected, err)
			}
			log, err := g.logger()
			if err != nil {
				return withCode(ExitRejected, err)
			}
			log = log.With().Str("role", "agent").Str("cluster", cluster).Str("node", node).Logger()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			nc, js, err := g.connect(cfg, "agent "+cluster+"/"+node, nats.CustomInboxPrefix(topology.AgentInboxPrefix(cluster, node)))
			if err != nil {
				return err
			}
			defer nc.Close()
			if _, err := topology.EnsureAgent(ctx, js, cluster, node, topologyOptions(cfg)); err != nil {
				return withCode(ExitError, err)
			}
			jobs, err := js.KeyValue(ctx, messages.BucketJobs)
			if err != nil {
				return withCode(ExitError, fmt.Errorf("bucket %s: %w (has quiesce run against this server yet?)", messages.BucketJobs, err))
			}
			reg := observability.NewRegistry()
			metrics, err := observability.NewMetrics(reg)
			if err != nil {
				return withCode(ExitError, err)
			}
			drv := drivers.New(cfg, drivers.Env{Ctx: ctx, Log: log})
			defer func() { _ = drv.Close() }()
			w := worker.New(js, jobs, drv, worker.Config{
				Name: "agent-" + cluster + "-" + node, Logger: log, Observer: metrics, SoftStop: softStop,
				Agent: &worker.Agent{Cluster: cluster, Node: node, Concurrency: concurrency},
			})
			if err := w.Start(ctx); err != nil {
				return withCode(ExitError, fmt.Errorf("agent: %w", err))
			}
			ready := func() error {
				if nc.Status() != nats.CONNECTED {
					return fmt.Errorf("NATS connection is %s", nc.Status())
				}
				return w.Ready()
			}
			serveErr := make(chan error, 1)
			if g.metricsAddr != "" {
				go func() { serveErr <- observability.Serve(ctx, g.metricsAddr, reg, ready) }()
			}
			log.Info().Str("nats", g.url(cfg)).Str("consumer", topology.AgentConsumer(cluster, node)).Msg("agent started")
			select {
			case <-ctx.Done():
			case err := <-serveErr:
				if err != nil && !errors.Is(err, context.Canceled) {
					log.Error().Err(err).Msg("metrics server stopped")
				}
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), softStop+30*time.Second)
			defer cancel()
			_ = w.Stop(sctx)
			_ = nc.Drain()
			log.Info().Msg("agent stopped")
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster of this node")
	cmd.Flags().StringVar(&node, "node", "", "this node's name in the cluster")
	cmd.Flags().IntVar(&concurrency, "concurrency", 4, "the node's tasks run at once")
	cmd.Flags().DurationVar(&softStop, "soft-stop", 30*time.Second, "on SIGTERM, how long running tasks may finish before they are cancelled")
	cmd.Flags().StringVar(&g.metricsAddr, "metrics-addr", ":9464", "listen address for /metrics, /healthz and /readyz (empty: off)")
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("node")
	cmd.AddCommand(agentPermissionsCmd(g))
	return cmd
}

func agentPermissionsCmd(g *globals) *cobra.Command {
	var cluster, node, user string
	cmd := &cobra.Command{
		Use:   "permissions",
		Short: "Print the nats-server permissions of one node's agent user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := messages.ValidateCluster(cluster); err != nil {
				return withCode(ExitRejected, fmt.Errorf("--cluster: %w", err))
			}
			if err := messages.ValidateTarget("--node", node); err != nil {
				return withCode(ExitRejected, err)
			}
			if user == "" {
				user = "agent-" + cluster + "-" + node
			}
			pub, sub := topology.AgentPermissions(cluster, node)
			fmt.Fprintf(g.stdout, "# The agent of node %s of cluster %s: its own tasks, results and intents only.\n", node, cluster)
			fmt.Fprintf(g.stdout, "{user: %q, password: $AGENT_PASSWORD_HASH, permissions: {\n", user)
			fmt.Fprintf(g.stdout, "  publish: {allow: [%s]}\n", quoteAll(pub))
			fmt.Fprintf(g.stdout, "  subscribe: {allow: [%s]}\n", quoteAll(sub))
			fmt.Fprintln(g.stdout, "}}")
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster of the node")
	cmd.Flags().StringVar(&node, "node", "", "the node's name")
	cmd.Flags().StringVar(&user, "user", "", "the NATS user name (default agent-CLUSTER-NODE)")
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("node")
	return cmd
}

func quoteAll(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}
