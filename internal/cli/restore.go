package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

func restoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a backup: into new volumes, in place, or as a new cluster",
		Long: "A restore is a durable job like a backup: planned from the catalog, carried out by the\n" +
			"workers, resumable after any process dies. Targets: volumes (one volume per snapshot,\n" +
			"optionally attached), in-place (the same nodes: drained, stopped, restored at the\n" +
			"backup's barrier, started, verified), new-cluster (the nodes of another configured\n" +
			"cluster take the source nodes' tokens and form a cluster of their own).",
	}
	cmd.AddCommand(restorePlanCmd(g), restoreRunCmd(g), restoreStatusCmd(g), restoreWatchCmd(g), restoreCancelCmd(g), restoreListCmd(g))
	return cmd
}

// restoreFlags builds a RestoreRequest from the command line or a file.
type restoreFlags struct {
	req    messages.RestoreRequest
	file   string
	target string
	nodes  []string
}

func (f *restoreFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.file, "file", "", "read the RestoreRequest JSON from a file (- for stdin)")
	fl.StringVar(&f.req.Cluster, "cluster", "", "the cluster the backup was taken of")
	fl.StringVar(&f.req.Backup, "backup", messages.Latest, "the backup's job ID, or latest")
	fl.StringVar(&f.target, "target", "", "volumes, in-place or new-cluster")
	fl.StringVar(&f.req.TargetCluster, "target-cluster", "", "new-cluster: the configured cluster whose nodes receive the restore")
	fl.StringSliceVar(&f.nodes, "node", nil, "SOURCE[=TARGET]: restore only these nodes, or map a source node to a target node")
	fl.StringSliceVar(&f.req.Keyspaces, "keyspace", nil, "put only these keyspaces in place")
	fl.StringVar(&f.req.Region, "region", "", "restore from the backup's copies in this region")
	fl.BoolVar(&f.req.StopRunning, "stop-running", false, "drain and stop nodes whose Cassandra runs")
	fl.BoolVar(&f.req.Force, "force", false, "in place: allow restoring only some of the backup's nodes")
	fl.StringVar(&f.req.ClusterName, "cluster-name", "", "new-cluster: its cluster_name (default the catalogued one)")
	fl.StringVar(&f.req.RequestID, "request-id", "", "caller-chosen request ID (default: generated)")
	fl.StringVar(&f.req.Reason, "reason", "", "why this restore is run")
}

func (f *restoreFlags) request() (messages.RestoreRequest, error) {
	if f.file != "" {
		data, err := readInput(f.file)
		if err != nil {
			return messages.RestoreRequest{}, err
		}
		return messages.DecodeRestoreRequest(data)
	}
	r := f.req
	r.Schema = messages.RestoreRequestSchema
	r.Target = messages.RestoreTarget(f.target)
	for _, n := range f.nodes {
		src, dst, _ := strings.Cut(n, "=")
		r.Nodes = append(r.Nodes, messages.NodeMapping{Source: src, Target: dst})
	}
	if r.RequestID == "" {
		r.RequestID = fmt.Sprintf("cli-restore-%s-%d", r.Cluster, time.Now().UnixNano())
	}
	if r.RequestedBy == "" {
		r.RequestedBy = currentUser()
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("invalid restore request: %w", err)
	}
	return r, nil
}

// planFromCatalog plans a request from the catalog and the configuration.
func (g *globals) planFromCatalog(ctx context.Context, req messages.RestoreRequest) (*planner.RestorePlan, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	nc, js, err := g.connect(cfg, "restore")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	h, err := topology.Bind(ctx, js)
	if err != nil {
		return nil, withCode(ExitError, err)
	}
	log, err := g.logger()
	if err != nil {
		return nil, withCode(ExitRejected, err)
	}
	reg := drivers.New(cfg, drivers.Env{Ctx: ctx, Log: log})
	defer func() { _ = reg.Close() }()
	p, err := planner.PlanRestore(ctx, h, drivers.Inventory(cfg), reg, req, time.Now())
	if errors.Is(err, planner.ErrRefused) {
		return nil, withCode(ExitRejected, err)
	}
	if err != nil {
		return nil, withCode(ExitError, err)
	}
	return p, nil
}

func restorePlanCmd(g *globals) *cobra.Command {
	var f restoreFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what a restore would create where, or why it is refused; changes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request()
			if err != nil {
				return withCode(ExitRejected, err)
			}
			p, err := g.planFromCatalog(cmd.Context(), req)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(p)
			}
			printRestorePlan(g.stdout, p)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

func printRestorePlan(w io.Writer, p *planner.RestorePlan) {
	fmt.Fprintf(w, "restore %s: backup %s of %s (tag %s), target %s", p.RestoreID, p.Backup, p.Cluster, p.Tag, p.Target)
	if p.Target == messages.TargetNewCluster {
		fmt.Fprintf(w, " onto cluster %s", p.TargetCluster)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "SNAPSHOT\tSOURCE\tTARGET\tWHERE\tSIZE\tTYPE")
	for _, v := range p.Volumes {
		vr := v.Volume
		where := vr.Path
		if where == "" {
			where = vr.AZ
			if vr.InstanceID != "" {
				where += " attached to " + vr.InstanceID + " at " + vr.Device
			}
		}
		size := "-"
		if vr.SizeGiB > 0 {
			size = fmt.Sprintf("%d GiB", vr.SizeGiB)
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%s\n", vr.SnapshotID, vr.SourceNode, vr.SourceVolume, orDash(v.TargetNode), where, size, orDash(vr.Type))
	}
	_ = tw.Flush()
	if len(p.Nodes) > 0 {
		tw = tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tADDRESS\tFROM\tTOKENS\tDATA")
		for _, n := range p.Nodes {
			tokens := "as before"
			if nc := n.Spec.NewCluster; nc != nil {
				tokens = fmt.Sprintf("%d of %s's (initial_token)", nc.NumTokens, n.Spec.SourceNode)
			}
			var data []string
			mounted := false
			for _, s := range n.Spec.Sources {
				data = append(data, s.DataDir+" ← "+s.From)
				mounted = mounted || s.Mount != ""
			}
			if mounted {
				data = append(data, "(copied from the volumes mounted there)")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Node.Name, orDash(n.Node.Address), n.Spec.SourceNode, tokens, strings.Join(data, ", "))
		}
		_ = tw.Flush()
		if p.Snapshotter == planner.SnapshotterEBS {
			fmt.Fprintln(w, "volumes: each made in its node's zone and attached to its instance; mounted by the node's prepare, its files copied in, then unmounted, detached and deleted (the snapshot stays)")
		}
		fmt.Fprintln(w, "steps: every node stopped (drain first) → every node's data put in place (commit log, hints, saved caches emptied; displaced files kept aside) → every node started → verified")
	}
	for _, warn := range p.Warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func restoreRunCmd(g *globals) *cobra.Command {
	var f restoreFlags
	var yes, noWait, dryRun bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Start a restore and follow it to its end (exit 0 only on success)",
		Long: "Run plans the restore from the catalog first and refuses it, starting nothing, if any part\n" +
			"cannot be done. An in-place restore replaces the data of running nodes: it needs --yes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request()
			if err != nil {
				return withCode(ExitRejected, err)
			}
			req.DryRun = req.DryRun || dryRun
			if req.Target == messages.TargetInPlace && !yes && !req.DryRun {
				return withCode(ExitRejected, errors.New("an in-place restore replaces the data of cluster "+req.Cluster+
					"'s nodes with backup "+req.Backup+"'s: run it again with --yes (quiesce restore plan shows what it does)"))
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			if _, err := g.planFromCatalog(ctx, req); err != nil {
				return err
			}
			nc, js, err := g.dial("restore")
			if err != nil {
				return err
			}
			defer nc.Close()
			data, err := json.Marshal(req)
			if err != nil {
				return err
			}
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = js.Publish(pctx, messages.SubjectRestoreSubmit, data, jetstream.WithMsgID(req.RequestID))
			cancel()
			if err != nil {
				return withCode(ExitError, fmt.Errorf("publish restore request: %w", err))
			}
			id := req.RestoreID()
			fmt.Fprintf(g.stdout, "restore %s submitted (request %s)\n", id, req.RequestID)
			if noWait {
				return nil
			}
			fctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			r, err := followRestore(fctx, js, id, g.stdout)
			if err != nil {
				return err
			}
			return restoreExit(r)
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm an in-place restore")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "record the plan as a restore that does nothing")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the request is accepted by the server")
	cmd.Flags().DurationVar(&timeout, "timeout", 12*time.Hour, "how long to follow the restore")
	return cmd
}

func restoreExit(r messages.Restore) error {
	switch r.Phase {
	case messages.RestoreSucceeded:
		return nil
	case messages.RestoreCancelled:
		return withCode(ExitFailed, fmt.Errorf("restore %s cancelled: %s", r.ID, r.Error))
	default:
		return withCode(ExitFailed, fmt.Errorf("restore %s failed (%s): %s", r.ID, r.EndReason, r.Error))
	}
}

// followRestore watches a restore's record until it is terminal, printing
// each change of phase or progress, and watches for its rejection.
func followRestore(ctx context.Context, js jetstream.JetStream, id string, w io.Writer) (messages.Restore, error) {
	h, err := topology.Bind(ctx, js)
	if err != nil {
		return messages.Restore{}, withCode(ExitError, err)
	}
	rejected := make(chan messages.Rejection, 1)
	if cons, err := js.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectRejected(id)}}); err == nil {
		if cc, err := cons.Consume(func(m jetstream.Msg) {
			var r messages.Rejection
			if json.Unmarshal(m.Data(), &r) == nil {
				select {
				case rejected <- r:
				default:
				}
			}
		}); err == nil {
			defer cc.Stop()
		}
	}
	kw, err := h.Restores.Watch(ctx, id)
	if err != nil {
		return messages.Restore{}, withCode(ExitError, err)
	}
	defer func() { _ = kw.Stop() }()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return messages.Restore{}, withCode(ExitFailed, fmt.Errorf("stopped following restore %s: %w", id, context.Cause(ctx)))
		case r := <-rejected:
			if _, err := h.Restores.Get(ctx, id); err == nil {
				continue
			}
			return messages.Restore{}, withCode(ExitRejected, fmt.Errorf("restore request rejected: %s", r.Reason))
		case e := <-kw.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var r messages.Restore
			if json.Unmarshal(e.Value(), &r) != nil {
				continue
			}
			if line := restoreLine(r); line != last {
				fmt.Fprintln(w, line)
				last = line
			}
			if r.Phase.Terminal() {
				return r, nil
			}
		}
	}
}

func restoreLine(r messages.Restore) string {
	p := r.Progress
	s := fmt.Sprintf("%-10s volumes %d/%d", r.Phase, p.VolumesDone, p.Volumes)
	if p.Nodes > 0 {
		s += fmt.Sprintf("  stopped %d/%d  prepared %d/%d  started %d/%d", p.Stopped, p.Nodes, p.Prepared, p.Nodes, p.Started, p.Nodes)
	}
	if p.VolumesFailed+p.NodesFailed > 0 {
		s += fmt.Sprintf("  failed %d", p.VolumesFailed+p.NodesFailed)
	}
	if r.Phase.Terminal() && r.Error != "" {
		s += ": " + r.Error
	}
	return s
}

func restoreIDArg(args []string) error {
	if err := messages.ValidateRestoreID(args[0]); err != nil {
		return withCode(ExitRejected, err)
	}
	return nil
}

func restoreStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status RESTORE",
		Short: "Show a restore's phase, progress, phase durations and failures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := restoreIDArg(args); err != nil {
				return err
			}
			nc, js, h, err := g.bind(cmd.Context(), "restore-status")
			if err != nil {
				return err
			}
			defer nc.Close()
			r, err := planner.LoadRestore(cmd.Context(), h, args[0])
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return withCode(ExitRejected, fmt.Errorf("no restore %s", args[0]))
			}
			if err != nil {
				return withCode(ExitError, err)
			}
			if r.Volumes, err = planner.RestoredVolumes(cmd.Context(), js, h, args[0]); err != nil {
				fmt.Fprintf(g.stderr, "quiesce: the restore's volumes could not be read: %v\n", err)
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printRestore(g.stdout, r)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the restore record as JSON")
	return cmd
}

func printRestore(w io.Writer, r messages.Restore) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "restore\t%s\n", r.ID)
	fmt.Fprintf(tw, "backup\t%s of %s (tag %s)\n", r.Backup, r.Cluster, r.Tag)
	target := string(r.Target)
	if r.Target == messages.TargetNewCluster {
		target += " onto " + r.TargetCluster
	}
	fmt.Fprintf(tw, "target\t%s\n", target)
	fmt.Fprintf(tw, "phase\t%s\n", r.Phase)
	if r.Error != "" {
		fmt.Fprintf(tw, "error\t%s (%s)\n", r.Error, r.EndReason)
	}
	fmt.Fprintf(tw, "progress\t%s\n", strings.TrimSpace(strings.TrimPrefix(restoreLine(r), string(r.Phase))))
	for _, ph := range messages.RestorePhases {
		at, ok := r.PhaseTimes[ph]
		if !ok || ph.Terminal() {
			continue
		}
		if d := restorePhaseDuration(r, ph); d > 0 {
			fmt.Fprintf(tw, "  %s\t%s (from %s)\n", ph, d.Round(time.Millisecond), at.Format(time.RFC3339))
		}
	}
	_ = tw.Flush()
	for _, v := range r.Volumes {
		made := v.VolumeID
		if v.Path != "" {
			made = v.Path
		}
		fmt.Fprintf(w, "  volume %s (%s of %s) → %s %s\n", v.SnapshotID, v.SourceVolume, v.SourceNode, orDash(made), v.Device)
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  FAILED %s %s: %s\n", f.Kind, f.Target, f.Error)
		if f.Stderr != "" {
			fmt.Fprintf(w, "    stderr: %s\n", firstLines(f.Stderr, 5))
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintln(w, "  warning:", warn)
	}
}

// restorePhaseDuration is how long the restore spent in ph.
func restorePhaseDuration(r messages.Restore, ph messages.RestorePhase) time.Duration {
	start, ok := r.PhaseTimes[ph]
	if !ok {
		return 0
	}
	var end time.Time
	for _, next := range messages.RestorePhases {
		if t, ok := r.PhaseTimes[next]; ok && t.After(start) && (end.IsZero() || t.Before(end)) {
			end = t
		}
	}
	if end.IsZero() {
		if r.Phase.Terminal() {
			return 0
		}
		end = time.Now()
	}
	return end.Sub(start)
}

func restoreWatchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "watch RESTORE",
		Short: "Follow a restore until it ends (exit 0 only on success)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := restoreIDArg(args); err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			nc, js, h, err := g.bind(ctx, "restore-watch")
			if err != nil {
				return err
			}
			defer nc.Close()
			if _, err := planner.LoadRestore(ctx, h, args[0]); errors.Is(err, jetstream.ErrKeyNotFound) {
				return withCode(ExitRejected, fmt.Errorf("no restore %s", args[0]))
			}
			r, err := followRestore(ctx, js, args[0], g.stdout)
			if err != nil {
				return err
			}
			return restoreExit(r)
		},
	}
}

func restoreCancelCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel RESTORE",
		Short: "Cancel a restore: no further task is started (a node task already running finishes)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := restoreIDArg(args); err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			nc, js, h, err := g.bind(ctx, "restore-cancel")
			if err != nil {
				return err
			}
			defer nc.Close()
			if _, err := planner.LoadRestore(ctx, h, args[0]); errors.Is(err, jetstream.ErrKeyNotFound) {
				return withCode(ExitRejected, fmt.Errorf("no restore %s", args[0]))
			}
			data, _ := json.Marshal(messages.Control{Schema: messages.ControlSchema, JobID: args[0], Action: "cancel",
				By: currentUser(), Reason: reason})
			if _, err := js.Publish(ctx, messages.SubjectControl(args[0]), data); err != nil {
				return withCode(ExitError, err)
			}
			fmt.Fprintf(g.stdout, "cancel requested for restore %s\n", args[0])
			fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			r, err := followRestore(fctx, js, args[0], g.stdout)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "restore %s is %s\n", r.ID, r.Phase)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the restore is cancelled")
	return cmd
}

func backupsVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify JOB",
		Short: "Check that every snapshot of a backup still exists, is completed, carries its tags, and has its copies",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := messages.ValidateJobID(args[0]); err != nil {
				return withCode(ExitRejected, err)
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			nc, js, err := g.connect(cfg, "backups-verify")
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx := cmd.Context()
			h, err := topology.Bind(ctx, js)
			if err != nil {
				return withCode(ExitError, err)
			}
			cluster := args[0][:strings.LastIndex(args[0], "-")]
			b, err := planner.ResolveBackup(ctx, h, cluster, args[0])
			if errors.Is(err, planner.ErrRefused) {
				return withCode(ExitRejected, err)
			}
			if err != nil {
				return withCode(ExitError, err)
			}
			log, err := g.logger()
			if err != nil {
				return withCode(ExitRejected, err)
			}
			reg := drivers.New(cfg, drivers.Env{Ctx: ctx, Log: log})
			defer func() { _ = reg.Close() }()
			snap, err := reg.Snapshotter(cluster)
			if err != nil {
				return withCode(ExitError, err)
			}
			checks, err := worker.VerifyBackup(ctx, snap, b)
			if err != nil {
				return withCode(ExitError, err)
			}
			bad := 0
			for _, c := range checks {
				if len(c.Problems) == 0 {
					fmt.Fprintf(g.stdout, "ok      %s  %s/%s\n", c.SnapshotID, c.Node, c.VolumeID)
					continue
				}
				bad++
				fmt.Fprintf(g.stdout, "PROBLEM %s  %s/%s: %s\n", c.SnapshotID, c.Node, c.VolumeID, strings.Join(c.Problems, "; "))
			}
			if bad > 0 {
				return withCode(ExitFailed, fmt.Errorf("backup %s: %d of %d snapshots have problems", b.JobID, bad, len(checks)))
			}
			fmt.Fprintf(g.stdout, "backup %s: all %d snapshots present, completed and tagged\n", b.JobID, len(checks))
			return nil
		},
	}
}

func restoreListCmd(g *globals) *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List restores, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cluster != "" {
				if err := messages.ValidateCluster(cluster); err != nil {
					return withCode(ExitRejected, err)
				}
			}
			nc, _, h, err := g.bind(cmd.Context(), "restore-list")
			if err != nil {
				return err
			}
			defer nc.Close()
			rs, err := planner.Restores(cmd.Context(), h, cluster)
			if err != nil {
				return withCode(ExitError, err)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "RESTORE\tCREATED\tTARGET\tBACKUP\tPHASE\tPROGRESS")
			for _, r := range rs {
				target := string(r.Target)
				if r.TargetCluster != "" && r.TargetCluster != r.Cluster {
					target += " → " + r.TargetCluster
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.CreatedAt.Format(time.RFC3339), target, r.Backup, r.Phase,
					strings.TrimSpace(strings.TrimPrefix(restoreLine(r), string(r.Phase))))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only the restores of this cluster's backups")
	return cmd
}
