package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/drill"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

func drillCmd(g *globals) *cobra.Command {
	var (
		backupJob string
		timeout   time.Duration
		keep      bool
	)
	cmd := &cobra.Command{
		Use:   "drill CLUSTER",
		Short: "Restore a backup into the cluster's scratch target, verify it, tear it down, record the result",
		Long: "drill restores the newest complete backup of CLUSTER (or --backup JOB) into the scratch\n" +
			"cluster its drill section names, starts it, verifies it (every node UN, host IDs and\n" +
			"tokens as catalogued, one schema version equal to the backup's, peers only the scratch\n" +
			"nodes, each configured CQL check at consistency ALL), tears it down and records the\n" +
			"result in the catalog. Exit 0 when the drill succeeded, 1 when it failed. A drill with\n" +
			"a drill.schedule also runs by itself, in a worker process.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := messages.ValidateCluster(args[0]); err != nil {
				return withCode(ExitRejected, err)
			}
			if backupJob != "" {
				if err := messages.ValidateJobID(backupJob); err != nil {
					return withCode(ExitRejected, err)
				}
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			src, ok := cfg.Cluster(args[0])
			if !ok {
				return withCode(ExitRejected, fmt.Errorf("cluster %q is not in the configuration", args[0]))
			}
			if src.Drill == nil {
				return withCode(ExitRejected, fmt.Errorf("cluster %q has no drill section: configure drill.target (a scratch cluster)", src.Name))
			}
			log, err := g.logger()
			if err != nil {
				return withCode(ExitRejected, err)
			}
			nc, js, err := g.connect(cfg, "drill")
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			ctx, cancelT := context.WithTimeout(ctx, timeout)
			defer cancelT()
			h, err := topology.Bind(ctx, js)
			if err != nil {
				return withCode(ExitError, err)
			}
			reg := drivers.New(cfg, drivers.Env{Ctx: ctx, Log: log})
			defer func() { _ = reg.Close() }()
			rec, err := drill.Run(ctx, drill.Options{Config: cfg, Cluster: src.Name, Drivers: reg, Handles: h, Out: g.stdout,
				BackupJob: backupJob, Keep: keep})
			if err != nil {
				return withCode(ExitRejected, err)
			}
			if perr := drill.Record(cmd.Context(), h.Catalog, rec); perr != nil {
				return withCode(ExitError, fmt.Errorf("record the drill: %w", perr))
			}
			fmt.Fprintf(g.stdout, "drill %s of %s into %s: %s", rec.DrillID, rec.Source, rec.Target, rec.Outcome)
			if rec.Error != "" {
				fmt.Fprintf(g.stdout, ": %s", rec.Error)
			}
			fmt.Fprintln(g.stdout)
			if rec.Outcome != messages.DrillSucceeded {
				return withCode(ExitFailed, errSilent)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&backupJob, "backup", "", "the backup (job ID) to restore; default the newest complete one")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "give up, tear down and record a failure after this long")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the scratch cluster running after the verification (it is torn down by the next drill)")
	return cmd
}
