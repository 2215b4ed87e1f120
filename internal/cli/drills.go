package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/messages"
)

func drillsCmd(g *globals) *cobra.Command {
	var (
		asJSON bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "drills [CLUSTER]",
		Short: "List the restore drills recorded in the catalog, newest first",
		Long: "drills lists the records quiesce drill leaves in the catalog: when each drill ran, the\n" +
			"backup it restored, into which scratch cluster, how long each phase took, and why a\n" +
			"failed drill failed. With CLUSTER, only that cluster's drills.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			filter := messages.DrillKeys
			if len(args) == 1 {
				if err := messages.ValidateCluster(args[0]); err != nil {
					return withCode(ExitRejected, err)
				}
				filter = messages.DrillKey(args[0], "*")
			}
			if limit < 0 {
				return withCode(ExitRejected, fmt.Errorf("--limit %d: want 0 (every drill) or more", limit))
			}
			nc, _, h, err := g.bind(cmd.Context(), "drills")
			if err != nil {
				return err
			}
			defer nc.Close()
			drills, err := listDrills(cmd.Context(), h.Catalog, filter)
			if err != nil {
				return withCode(ExitError, err)
			}
			if limit > 0 && len(drills) > limit {
				drills = drills[:limit]
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(drills)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "DRILL\tCLUSTER\tINTO\tBACKUP\tBY\tBEGAN\tTOOK\tOUTCOME\tPHASES")
			for _, d := range drills {
				var phases []string
				for _, p := range d.Phases {
					phases = append(phases, fmt.Sprintf("%s %.1fs", p.Name, p.Seconds))
				}
				outcome := d.Outcome
				if d.Error != "" {
					outcome += ": " + messages.Bound(d.Error, 200)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.DrillID, d.Source, d.Target, orDash(d.BackupJob), orDash(d.RequestedBy),
					d.Began.UTC().Format(time.RFC3339), d.Ended.Sub(d.Began).Round(100*time.Millisecond), outcome, strings.Join(phases, ", "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the records as JSON")
	cmd.Flags().IntVar(&limit, "limit", 20, "show at most this many drills (0: every one)")
	return cmd
}

// listDrills reads the drill records under filter, newest first.
func listDrills(ctx context.Context, catalog jetstream.KeyValue, filter string) ([]messages.Drill, error) {
	lister, err := catalog.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []messages.Drill
	for k := range lister.Keys() {
		e, err := catalog.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		d, err := messages.DecodeDrill(e.Value())
		if err != nil {
			return nil, fmt.Errorf("drill record %s: %w", k, err)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Began.After(out[j].Began) })
	return out, nil
}
