package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/ssh"
)

func preflightCmd(g *globals) *cobra.Command {
	var (
		cluster string
		timeout time.Duration
		skew    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "preflight",
		Short: "Check every node of a cluster is ready for backups (exit 1 if any is not)",
		Long: "preflight checks, per node: SSH reachable, host key trusted, auth accepted, nodetool\n" +
			"found and its version, Cassandra up and normal (UN), free disk on the data directory\n" +
			"against the live data size, and clock skew. It changes nothing on the nodes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			cl, ok := cfg.Cluster(cluster)
			if !ok {
				return withCode(ExitRejected, fmt.Errorf("unknown cluster %q: not in %s", cluster, g.configPath))
			}
			log, err := g.logger()
			if err != nil {
				return withCode(ExitRejected, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			reg := drivers.New(cfg, drivers.Env{Ctx: ctx, Log: log})
			defer reg.Close()
			nodes, err := reg.Discover(ctx, drivers.Cluster(*cl))
			if err != nil {
				return withCode(ExitError, fmt.Errorf("discover cluster %q: %w", cluster, err))
			}
			opts := ssh.PreflightOptions{SSH: drivers.SSH(*cl), Nodetool: drivers.Nodetool(*cl), MaxClockSkew: skew}
			if drivers.ExecutorKind(*cl) == drivers.ExecutorLocal {
				opts.Runner = &local.Runner{}
			}
			if cl.SSH.TrustOnFirstUse {
				nc, js, err := g.connect(cfg, "preflight")
				if err != nil {
					return err
				}
				defer nc.Close()
				ks, err := ssh.OpenKVKeyStore(ctx, js, cfg.Replicas())
				if err != nil {
					return withCode(ExitError, err)
				}
				opts.Executor.KeyStore = ks
			}
			rows, err := ssh.Preflight(ctx, nodes, opts)
			if err != nil {
				return withCode(ExitRejected, err)
			}
			if err := ssh.WritePreflight(g.stdout, rows); err != nil {
				return withCode(ExitError, err)
			}
			if !ssh.PreflightOK(rows) {
				return withCode(ExitFailed, fmt.Errorf("cluster %q: not every node is ready", cluster))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster to check")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "overall time limit")
	cmd.Flags().DurationVar(&skew, "max-clock-skew", 2*time.Second, "largest clock difference accepted")
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}
