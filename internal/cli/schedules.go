package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/planner"
)

func schedulesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "schedules",
		Short: "Make the JetStream schedules match the policies' and drills' (the planner also does this at start)",
		Long: "Each policy with a schedule (five-field cron, six-field cron, @daily, @every 6h; UTC) has\n" +
			"one JetStream message schedule whose firings submit the policy's JobRequest; each cluster\n" +
			"whose drill has a schedule has one whose firings submit a DrillRequest (POLICY shows\n" +
			"(drill)). This command sets, keeps or removes them to match the configuration and prints\n" +
			"the result.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withTopology(cmd.Context(), "schedules", func(ctx context.Context, cfg *config.Config, js jetstream.JetStream) error {
				changes, err := planner.SyncSchedules(ctx, js, drivers.Inventory(cfg).Policies)
				if err != nil {
					return withCode(ExitRejected, err)
				}
				drills, err := planner.SyncDrillSchedules(ctx, js, drivers.DrillSchedules(cfg), nil)
				if err != nil {
					return withCode(ExitRejected, err)
				}
				changes = append(changes, drills...)
				tw := tabwriter.NewWriter(g.stdout, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "CLUSTER\tPOLICY\tSCHEDULE\tACTION")
				for _, c := range changes {
					policy := c.Policy
					if c.Drill {
						policy = "(drill)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Cluster, policy, c.Schedule, c.Action)
				}
				return tw.Flush()
			})
		},
	}
}
