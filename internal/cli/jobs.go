package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
)

func submitCmd(g *globals) *cobra.Command {
	var (
		req     messages.JobRequest
		file    string
		noWait  bool
		timeout time.Duration
		mode    string
	)
	cmd := &cobra.Command{
		Use:   "submit",
		Short: "Submit a backup job and follow it to its end (exit 0 only on success)",
		Long: "Submit publishes a JobRequest to quiesce.jobs.submit with its request ID as the message ID,\n" +
			"so submitting the same request twice makes one job. It then follows the job and exits\n" +
			"0 on success, 1 if the job failed or was cancelled, 2 if the request was rejected.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file != "" {
				data, err := readInput(file)
				if err != nil {
					return withCode(ExitRejected, err)
				}
				r, err := messages.DecodeJobRequest(data)
				if err != nil {
					return withCode(ExitRejected, err)
				}
				req = r
			} else {
				req.Schema = messages.JobRequestSchema
				req.Mode = messages.Mode(mode)
				if req.RequestID == "" {
					req.RequestID = fmt.Sprintf("cli-%s-%d", req.Cluster, time.Now().UnixNano())
				}
				if req.RequestedBy == "" {
					req.RequestedBy = currentUser()
				}
				if err := req.Validate(); err != nil {
					return withCode(ExitRejected, fmt.Errorf("invalid job request: %w", err))
				}
			}
			nc, js, err := g.dial("submit")
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			job, err := submit(ctx, js, req)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "job %s submitted (request %s)\n", job, req.RequestID)
			if noWait {
				return nil
			}
			fctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			j, err := follow(fctx, js, job, newProgress(g.stdout))
			if err != nil {
				return err
			}
			return jobExit(j)
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "read the JobRequest JSON from a file (- for stdin)")
	f.StringVar(&req.Cluster, "cluster", "", "cluster to back up")
	f.StringVar(&req.Policy, "policy", "", "policy (default: the cluster's default)")
	f.StringVar(&req.RequestID, "request-id", "", "caller-chosen request ID (default: generated)")
	f.StringVar(&mode, "mode", "", "application (default) or crash")
	f.StringVar(&req.Tag, "tag", "", "Cassandra snapshot tag (default quiesce-<job>)")
	f.StringSliceVar(&req.Keyspaces, "keyspace", nil, "limit the Cassandra snapshot to these keyspaces")
	f.StringVar(&req.Reason, "reason", "", "why this backup is taken")
	f.StringVar(&req.RequestedBy, "requested-by", "", "who asks (default: the current user)")
	f.BoolVar(&noWait, "no-wait", false, "return once the request is accepted by the server")
	f.DurationVar(&timeout, "timeout", 6*time.Hour, "how long to follow the job")
	return cmd
}

func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, messages.MaxJobRequestBytes+1))
	}
	return os.ReadFile(path)
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "cli"
}

// submit publishes a request and returns its job ID.
func submit(ctx context.Context, js jetstream.JetStream, req messages.JobRequest) (string, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.Publish(pctx, messages.SubjectSubmit, data, jetstream.WithMsgID(req.RequestID)); err != nil {
		return "", withCode(ExitError, fmt.Errorf("publish request: %w", err))
	}
	return req.JobID(), nil
}

func jobExit(j messages.Job) error {
	switch j.Phase {
	case messages.PhaseSucceeded:
		return nil
	case messages.PhaseCancelled:
		return withCode(ExitFailed, fmt.Errorf("job %s cancelled: %s", j.ID, j.Error))
	default:
		return withCode(ExitFailed, fmt.Errorf("job %s failed: %s", j.ID, j.Error))
	}
}

// follow watches a job's record until it is terminal, reporting each
// update, and watches for the rejection of its request.
func follow(ctx context.Context, js jetstream.JetStream, jobID string, p *progress) (messages.Job, error) {
	h, err := topology.Bind(ctx, js)
	if err != nil {
		return messages.Job{}, withCode(ExitError, err)
	}
	rejected := make(chan messages.Rejection, 1)
	cons, err := js.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectRejected(jobID)},
	})
	if err == nil {
		cc, err := cons.Consume(func(m jetstream.Msg) {
			var r messages.Rejection
			if json.Unmarshal(m.Data(), &r) == nil {
				select {
				case rejected <- r:
				default:
				}
			}
		})
		if err == nil {
			defer cc.Stop()
		}
	}
	w, err := h.Jobs.Watch(ctx, jobID)
	if err != nil {
		return messages.Job{}, withCode(ExitError, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return messages.Job{}, withCode(ExitFailed, fmt.Errorf("stopped following job %s: %w", jobID, context.Cause(ctx)))
		case r := <-rejected:
			// A rejection of this request ID after the job exists is a
			// duplicate's, not this job's.
			if _, err := h.Jobs.Get(ctx, jobID); err == nil {
				continue
			}
			p.done()
			return messages.Job{}, withCode(ExitRejected, fmt.Errorf("request rejected: %s", r.Reason))
		case e := <-w.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var j messages.Job
			if err := json.Unmarshal(e.Value(), &j); err != nil {
				continue
			}
			p.update(j)
			if j.Phase.Terminal() {
				p.done()
				return j, nil
			}
		}
	}
}

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a job's phase, progress and failures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := messages.ValidateJobID(args[0]); err != nil {
				return withCode(ExitRejected, err)
			}
			nc, _, h, err := g.bind(cmd.Context(), "status")
			if err != nil {
				return err
			}
			defer nc.Close()
			entry, err := h.Jobs.Get(cmd.Context(), args[0])
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return withCode(ExitRejected, fmt.Errorf("no job %s", args[0]))
			}
			if err != nil {
				return withCode(ExitError, err)
			}
			var j messages.Job
			if err := json.Unmarshal(entry.Value(), &j); err != nil {
				return withCode(ExitError, err)
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(j)
			}
			printJob(g.stdout, j)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the job record as JSON")
	return cmd
}

func printJob(w io.Writer, j messages.Job) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "job\t%s\n", j.ID)
	fmt.Fprintf(tw, "cluster\t%s (policy %s, mode %s)\n", j.Cluster, j.Policy, j.Mode)
	fmt.Fprintf(tw, "phase\t%s\n", j.Phase)
	if j.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", j.Error)
	}
	fmt.Fprintf(tw, "tag\t%s\n", j.Tag)
	fmt.Fprintf(tw, "requested by\t%s  %s\n", j.RequestedBy, j.Reason)
	p := j.Progress
	fmt.Fprintf(tw, "nodes flushed\t%d/%d (%d failed)\n", p.Flushed, p.Nodes, p.FlushFailed)
	fmt.Fprintf(tw, "snapshot tasks\t%d/%d (%d failed, %d volumes)\n", p.Snapshotted, p.SnapshotTasks, p.SnapshotFail, p.Volumes)
	fmt.Fprintf(tw, "tags cleared\t%d/%d (%d failed)\n", p.Cleared, p.ClearTasks, p.ClearFailed)
	if !j.FlushFirst.IsZero() {
		fmt.Fprintf(tw, "flush spread\t%s\n", j.FlushLast.Sub(j.FlushFirst).Round(time.Millisecond))
	}
	for _, ph := range []messages.Phase{messages.PhasePlanned, messages.PhaseFlushing, messages.PhaseSnapshotting, messages.PhaseFinishing} {
		if t, ok := j.PhaseTimes[ph]; ok {
			fmt.Fprintf(tw, "  %s\t%s (%s)\n", ph, t.Format(time.RFC3339), phaseDuration(j, ph).Round(time.Millisecond))
		}
	}
	if len(j.Retired) > 0 {
		fmt.Fprintf(tw, "retired\t%s\n", strings.Join(j.Retired, ", "))
	}
	_ = tw.Flush()
	for _, f := range j.Failures {
		fmt.Fprintf(w, "  FAILED %s %s: %s\n", f.Kind, f.Target, f.Error)
		if s := strings.TrimSpace(f.Stderr); s != "" {
			fmt.Fprintf(w, "         stderr: %s\n", firstLines(s, 3))
		}
	}
	for _, warn := range j.Warnings {
		fmt.Fprintf(w, "  WARNING %s\n", warn)
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}

// phaseDuration is how long the job spent in a phase (so far).
func phaseDuration(j messages.Job, ph messages.Phase) time.Duration {
	start, ok := j.PhaseTimes[ph]
	if !ok {
		return 0
	}
	end := j.UpdatedAt
	for _, t := range j.PhaseTimes {
		if t.After(start) && t.Before(end) {
			end = t
		}
	}
	return end.Sub(start)
}

func watchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "watch JOB",
		Short: "Follow a job's progress until it ends (exit 0 only on success)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := messages.ValidateJobID(args[0]); err != nil {
				return withCode(ExitRejected, err)
			}
			nc, js, err := g.dial("watch")
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			j, err := follow(ctx, js, args[0], newProgress(g.stdout))
			if err != nil {
				return err
			}
			return jobExit(j)
		},
	}
}

func jobsCmd(g *globals) *cobra.Command {
	var cluster string
	var limit int
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, _, h, err := g.bind(cmd.Context(), "jobs")
			if err != nil {
				return err
			}
			defer nc.Close()
			lister, err := h.Jobs.ListKeysFiltered(cmd.Context(), "*")
			if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
				return withCode(ExitError, err)
			}
			var jobs []messages.Job
			if lister != nil {
				for k := range lister.Keys() {
					if cluster != "" && !strings.HasPrefix(k, cluster+"-") {
						continue
					}
					e, err := h.Jobs.Get(cmd.Context(), k)
					if err != nil {
						continue
					}
					var j messages.Job
					if json.Unmarshal(e.Value(), &j) == nil {
						jobs = append(jobs, j)
					}
				}
			}
			sort.Slice(jobs, func(a, b int) bool { return jobs[a].CreatedAt.After(jobs[b].CreatedAt) })
			if limit > 0 && len(jobs) > limit {
				jobs = jobs[:limit]
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tCLUSTER\tPHASE\tNODES\tVOLUMES\tCREATED\tDURATION\tERROR")
			for _, j := range jobs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d/%d\t%s\t%s\t%s\n", j.ID, j.Cluster, j.Phase,
					j.Progress.Flushed, j.Progress.Nodes, j.Progress.Snapshotted, j.Progress.SnapshotTasks,
					j.CreatedAt.Format(time.RFC3339), j.UpdatedAt.Sub(j.CreatedAt).Round(time.Millisecond), truncateStr(j.Error, 60))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster's jobs")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many jobs")
	return cmd
}

func truncateStr(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func backupsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backups CLUSTER",
		Short: "List a cluster's backups from the catalog, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := messages.ValidateCluster(args[0]); err != nil {
				return withCode(ExitRejected, err)
			}
			nc, _, h, err := g.bind(cmd.Context(), "backups")
			if err != nil {
				return err
			}
			defer nc.Close()
			backups, err := planner.Backups(cmd.Context(), h.Catalog, args[0])
			if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
				return withCode(ExitError, err)
			}
			if asJSON {
				for i := range backups {
					if backups[i], err = planner.LoadBackup(cmd.Context(), h, backups[i]); err != nil {
						return withCode(ExitError, err)
					}
				}
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(backups)
			}
			printBackups(g.stdout, backups)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the catalog records as JSON")
	cmd.AddCommand(backupsVerifyCmd(g))
	return cmd
}

func printBackups(w io.Writer, backups []messages.Backup) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tFINISHED\tPOLICY\tMODE\tNODES\tSNAPSHOTS\tTAG\tCOVERS")
	for _, b := range backups {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", b.JobID, b.FinishedAt.Format(time.RFC3339), b.Policy, b.Mode,
			b.NodeCount, b.SnapshotCount, b.Tag, covers(b))
	}
	_ = tw.Flush()
}

// covers says whether a backup holds every node of its cluster.
func covers(b messages.Backup) string {
	if !b.Partial {
		return "all nodes"
	}
	missing := b.MissingNodes
	more := ""
	if len(missing) > 3 {
		more = fmt.Sprintf(" and %d more", len(missing)-3)
		missing = missing[:3]
	}
	if len(missing) == 0 {
		return "PARTIAL"
	}
	return "PARTIAL: without " + strings.Join(missing, ", ") + more
}

func cancelCmd(g *globals) *cobra.Command {
	var reason string
	var wait bool
	cmd := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel a running job: release no further tasks and clean up what it did",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := messages.ValidateJobID(args[0]); err != nil {
				return withCode(ExitRejected, err)
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			nc, js, h, err := g.bind(ctx, "cancel")
			if err != nil {
				return err
			}
			defer nc.Close()
			if _, err := h.Jobs.Get(ctx, args[0]); errors.Is(err, jetstream.ErrKeyNotFound) {
				return withCode(ExitRejected, fmt.Errorf("no job %s", args[0]))
			}
			data, _ := json.Marshal(messages.Control{Schema: messages.ControlSchema, JobID: args[0], Action: "cancel",
				By: currentUser(), Reason: reason})
			if _, err := js.Publish(ctx, messages.SubjectControl(args[0]), data); err != nil {
				return withCode(ExitError, err)
			}
			fmt.Fprintf(g.stdout, "cancel requested for job %s\n", args[0])
			if !wait {
				return nil
			}
			fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			j, err := follow(fctx, js, args[0], newProgress(g.stdout))
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "job %s is %s\n", j.ID, j.Phase)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the job is cancelled")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the job has ended")
	return cmd
}

func retentionCmd(g *globals) *cobra.Command {
	var cluster, policy string
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "Show which backups the retention policy would retire (a dry run: nothing is deleted)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			pol, err := drivers.Inventory(cfg).Policy(cluster, policy)
			if err != nil {
				return withCode(ExitRejected, err)
			}
			nc, _, h, err := g.bind(cmd.Context(), "retention")
			if err != nil {
				return err
			}
			defer nc.Close()
			backups, err := planner.Backups(cmd.Context(), h.Catalog, cluster)
			if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
				return withCode(ExitError, err)
			}
			var mine []messages.Backup
			for _, b := range backups {
				if b.Policy == pol.Name {
					mine = append(mine, b)
				}
			}
			retired := planner.SelectRetired(mine, pol.KeepLast)
			fmt.Fprintf(g.stdout, "cluster %s, policy %s: keep last %d; %d backups, %d would be retired\n",
				cluster, pol.Name, pol.KeepLast, len(mine), len(retired))
			set := map[string]bool{}
			for _, r := range retired {
				set[r] = true
			}
			for _, b := range mine {
				verdict := "keep"
				if set[b.JobID] {
					verdict = "RETIRE"
				}
				fmt.Fprintf(g.stdout, "  %-6s %s  %s  %d snapshots\n", verdict, b.JobID, b.FinishedAt.Format(time.RFC3339), b.SnapshotCount)
				if set[b.JobID] {
					full, err := planner.LoadBackup(cmd.Context(), h, b)
					if err != nil {
						return withCode(ExitError, err)
					}
					for _, s := range full.Snapshots {
						fmt.Fprintf(g.stdout, "           would delete %s (%s, %s)\n", s.SnapshotID, s.Node, s.VolumeID)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster")
	cmd.Flags().StringVar(&policy, "policy", "", "policy (default: the cluster's default)")
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}
