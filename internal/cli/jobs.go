package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
)

func submitCmd(g *globals) *cobra.Command {
	var (
		req         messages.JobRequest
		file        string
		noWait      bool
		timeout     time.Duration
		cleanupWait time.Duration
		mode        string
	)
	cmd := &cobra.Command{
		Use:   "submit",
		Short: "Submit a backup job and follow it to its end (exit 0 only on success)",
		Long: "Submit publishes a JobRequest to quiesce.jobs.submit with its request ID as the message ID,\n" +
			"so submitting the same request twice makes one job. It then follows the job, and the clean-up\n" +
			"of a job that failed or was cancelled (clears, snapshot deletion) for up to --cleanup-wait,\n" +
			"and exits 0 on success, 1 if the job failed or was cancelled, 2 if the request was rejected.",
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
			sub, err := submit(ctx, js, req)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, sub.announce())
			if noWait {
				sub.stop()
				return nil
			}
			fctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			j, err := followSubmission(fctx, js, sub, newProgress(g.stdout), cleanupWait)
			if err != nil {
				return err
			}
			reportEnd(g.stdout, j)
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
	cleanupWaitFlag(f, &cleanupWait)
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

// defaultCleanupWait is how long submit and watch keep following the
// clean-up of a job that ended: long enough for a node that times out on
// every attempt of its clear.
const defaultCleanupWait = 10 * time.Minute

func cleanupWaitFlag(f *pflag.FlagSet, d *time.Duration) {
	f.DurationVar(d, "cleanup-wait", defaultCleanupWait,
		"after the job ended, how long to keep following its clean-up (clears, snapshot deletion); 0 returns at once")
}

// reportEnd says how the clean-up of a job that ended stands.
func reportEnd(w io.Writer, j messages.Job) {
	if s := cleanupEnd(j, time.Now()); s != "" {
		fmt.Fprintln(w, s)
	}
}

// follow watches a job's record until it is terminal and, for up to
// cleanupWait more, until its clean-up has ended, reporting each update;
// and it watches for the rejection of its request.
func follow(ctx context.Context, js jetstream.JetStream, jobID string, p *progress, cleanupWait time.Duration) (messages.Job, error) {
	rejections, stop := watchRejections(ctx, js, jobID, jetstream.DeliverAllPolicy)
	defer stop()
	return followWith(ctx, js, jobID, p, cleanupWait, rejections, func(r messages.Rejection) error {
		return withCode(ExitRejected, fmt.Errorf("request rejected: %s", r.Reason))
	}, nil)
}

// followWith watches a job's record until it is terminal and, for up to
// cleanupWait more, until its clean-up has ended, reporting each update.
// Once the job ended, the end of ctx or of cleanupWait returns the job as
// last seen: the caller says that its clean-up goes on. A rejection from
// rejections that answer turns into an error ends it, unless the job
// exists: then the rejection was a later duplicate's. check, when set, runs
// every few seconds until the job exists, and its error ends the watch.
func followWith(ctx context.Context, js jetstream.JetStream, jobID string, p *progress, cleanupWait time.Duration,
	rejections <-chan messages.Rejection, answer func(messages.Rejection) error,
	check func(context.Context) error) (messages.Job, error) {
	h, err := topology.Bind(ctx, js)
	if err != nil {
		return messages.Job{}, withCode(ExitError, err)
	}
	w, err := h.Jobs.Watch(ctx, jobID)
	if err != nil {
		return messages.Job{}, withCode(ExitError, err)
	}
	defer func() { _ = w.Stop() }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var (
		seen        bool
		last        messages.Job
		cleanupDone <-chan time.Time
	)
	for {
		select {
		case <-ctx.Done():
			if last.Phase.Terminal() {
				p.done()
				return last, nil
			}
			return messages.Job{}, withCode(ExitFailed, fmt.Errorf("stopped following job %s: %w", jobID, context.Cause(ctx)))
		case <-cleanupDone:
			p.done()
			return last, nil
		case <-tick.C:
			if check == nil || seen {
				continue
			}
			if err := check(ctx); err != nil {
				p.done()
				return messages.Job{}, err
			}
		case r := <-rejections:
			err := answer(r)
			if err == nil {
				continue
			}
			if _, gerr := h.Jobs.Get(ctx, jobID); gerr == nil {
				continue
			}
			p.done()
			return messages.Job{}, err
		case e := <-w.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var j messages.Job
			if err := json.Unmarshal(e.Value(), &j); err != nil {
				continue
			}
			if !seen && check != nil {
				// The job exists: say now if it is another request's.
				if err := check(ctx); err != nil {
					p.done()
					return messages.Job{}, err
				}
			}
			seen = true
			p.update(j)
			last = j
			if !j.Phase.Terminal() {
				continue
			}
			if j.Progress.CleanupPending == 0 || cleanupWait <= 0 {
				p.done()
				return j, nil
			}
			if cleanupDone == nil {
				cleanupDone = time.After(cleanupWait)
			}
		}
	}
}

func statusCmd(g *globals) *cobra.Command {
	var asJSON, flushes bool
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a job's phase, progress, failures, retries and clean-up (exit 0 whenever it can show the job)",
		Long: "Status shows a job's record: phase, counts, failed tasks with their errors, tasks that will be\n" +
			"retried and when, and whether the clean-up of a job that ended is still running. Like jobs and\n" +
			"backups, it exits 0 whenever it could answer, whatever the job's outcome (2 for no such job, 3\n" +
			"if NATS cannot be reached). To wait for a job's outcome in a script, use watch, which exits by\n" +
			"it; or read .phase from --json.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := messages.ValidateJobID(args[0]); err != nil {
				return withCode(ExitRejected, err)
			}
			nc, js, h, err := g.bind(cmd.Context(), "status")
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
			if flushes {
				results, err := flushResults(cmd.Context(), js, j.ID)
				if err != nil {
					return withCode(ExitError, err)
				}
				return printFlushes(g.stdout, j, results)
			}
			printJob(g.stdout, j, time.Now())
			runs, err := hookRuns(cmd.Context(), h.Jobs, j.ID)
			if err != nil {
				return withCode(ExitError, err)
			}
			printHooks(g.stdout, runs)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the job record as JSON")
	cmd.Flags().BoolVar(&flushes, "flushes", false, "list each node's flush: when its nodetool started after the fire time, how long it took, its error")
	return cmd
}

func printJob(w io.Writer, j messages.Job, now time.Time) {
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
	fmt.Fprintf(tw, "snapshot tasks\t%s (%d volumes)\n", snapshotsText(j), p.Volumes)
	fmt.Fprintf(tw, "tags cleared\t%s\n", clearedText(j))
	if p.CleanupTasks > 0 {
		fmt.Fprintf(tw, "snapshot clean-up\t%d/%d tasks\n", p.CleanupsDone, p.CleanupTasks)
	}
	if c := cleanupText(j); c != "" {
		fmt.Fprintf(tw, "clean-up\t%s\n", c)
	}
	if !j.FireAt.IsZero() {
		fmt.Fprintf(tw, "fire time\t%s\n", j.FireAt.Format(time.RFC3339Nano))
	}
	if !j.FlushFirst.IsZero() {
		fmt.Fprintf(tw, "flush spread\t%s\n", j.FlushLast.Sub(j.FlushFirst).Round(time.Millisecond))
	}
	if !j.StartFirst.IsZero() {
		fmt.Fprintf(tw, "start spread\t%s\n", j.StartLast.Sub(j.StartFirst).Round(time.Millisecond))
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
	for _, r := range j.Retrying {
		fmt.Fprintf(w, "  RETRYING %s\n", retryText(j.ID, r, now))
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
	var cleanupWait time.Duration
	cmd := &cobra.Command{
		Use:   "watch JOB",
		Short: "Follow a job's progress until it ends, and its clean-up (exit 0 only on success)",
		Long: "Watch follows a job until it ends and, for a job that failed or was cancelled, its clean-up\n" +
			"(clears, snapshot deletion) for up to --cleanup-wait, saying plainly when the clean-up goes on.\n" +
			"It exits by the job's outcome, as submit does: 0 succeeded, 1 failed or cancelled; a job that\n" +
			"ended already is shown at once.",
		Args: cobra.ExactArgs(1),
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
			j, err := follow(ctx, js, args[0], newProgress(g.stdout), cleanupWait)
			if err != nil {
				return err
			}
			reportEnd(g.stdout, j)
			return jobExit(j)
		},
	}
	cleanupWaitFlag(cmd.Flags(), &cleanupWait)
	return cmd
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
			printJobs(g.stdout, jobs)
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster's jobs")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many jobs")
	return cmd
}

func printJobs(w io.Writer, jobs []messages.Job) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tCLUSTER\tPHASE\tNODES\tSNAPSHOTS\tCLEARED\tCLEAN-UP\tCREATED\tDURATION\tERROR")
	for _, j := range jobs {
		cleanup := cleanupText(j)
		if cleanup == "" {
			cleanup = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Cluster, j.Phase,
			j.Progress.Flushed, j.Progress.Nodes, snapshotsText(j), clearedText(j), cleanup,
			j.CreatedAt.Format(time.RFC3339), j.UpdatedAt.Sub(j.CreatedAt).Round(time.Millisecond), truncateStr(j.Error, 60))
	}
	_ = tw.Flush()
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
		Short: "List a cluster's backups from the catalog, newest first; hold and release them",
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
			holds, err := planner.Holds(cmd.Context(), h.Holds, args[0])
			if err != nil {
				return withCode(ExitError, err)
			}
			printBackups(g.stdout, backups, holds, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the catalog records as JSON")
	cmd.AddCommand(holdCmd(g), releaseCmd(g), backupsVerifyCmd(g))
	return cmd
}

// clusterOf is the cluster a job ID belongs to: job IDs are the cluster's
// name, a dash and 12 hex digits.
func clusterOf(jobID string) (string, error) {
	if err := messages.ValidateJobID(jobID); err != nil {
		return "", err
	}
	return jobID[:len(jobID)-13], nil
}

func holdCmd(g *globals) *cobra.Command {
	var until, reason string
	cmd := &cobra.Command{
		Use:   "hold JOB",
		Short: "Keep a backup from retention until released (or until --until)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cluster, err := clusterOf(args[0])
			if err != nil {
				return withCode(ExitRejected, err)
			}
			h := planner.Hold{JobID: args[0], By: currentUser(), Reason: reason, At: time.Now().UTC()}
			if until != "" {
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					d, derr := time.ParseDuration(until)
					if derr != nil || d <= 0 {
						return withCode(ExitRejected, fmt.Errorf("--until %q: neither an RFC 3339 time nor a positive duration", until))
					}
					t = time.Now().Add(d)
				}
				if !t.After(time.Now()) {
					return withCode(ExitRejected, fmt.Errorf("--until %s is already past", t.Format(time.RFC3339)))
				}
				h.Until = t.UTC()
			}
			if len(reason) > 256 {
				return withCode(ExitRejected, errors.New("--reason is longer than 256 bytes"))
			}
			nc, _, hd, err := g.bind(cmd.Context(), "backups hold")
			if err != nil {
				return err
			}
			defer nc.Close()
			if _, err := hd.Catalog.Get(cmd.Context(), messages.CatalogKey(cluster, args[0])); errors.Is(err, jetstream.ErrKeyNotFound) {
				return withCode(ExitRejected, fmt.Errorf("backup %s is not in the catalog of cluster %s", args[0], cluster))
			} else if err != nil {
				return withCode(ExitError, err)
			}
			if err := planner.PutHold(cmd.Context(), hd.Holds, cluster, h); err != nil {
				return withCode(ExitError, err)
			}
			if h.Until.IsZero() {
				fmt.Fprintf(g.stdout, "backup %s held until released\n", args[0])
			} else {
				fmt.Fprintf(g.stdout, "backup %s held until %s\n", args[0], h.Until.Format(time.RFC3339))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&until, "until", "", "release the hold by itself at this time (RFC 3339) or after this long (720h)")
	cmd.Flags().StringVar(&reason, "reason", "", "why the backup is held, shown by retention's dry run")
	return cmd
}

func releaseCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "release JOB",
		Short: "Release a backup's hold: retention may retire it again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cluster, err := clusterOf(args[0])
			if err != nil {
				return withCode(ExitRejected, err)
			}
			nc, _, hd, err := g.bind(cmd.Context(), "backups release")
			if err != nil {
				return err
			}
			defer nc.Close()
			released, err := planner.ReleaseHold(cmd.Context(), hd.Holds, cluster, args[0])
			if err != nil {
				return withCode(ExitError, err)
			}
			if !released {
				return withCode(ExitFailed, fmt.Errorf("backup %s is not held", args[0]))
			}
			fmt.Fprintf(g.stdout, "backup %s released\n", args[0])
			return nil
		},
	}
}

func printBackups(w io.Writer, backups []messages.Backup, holds map[string]planner.Hold, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tFINISHED\tPOLICY\tMODE\tNODES\tSNAPSHOTS\tREGIONS\tTAG\tCOVERS\tHELD")
	for _, b := range backups {
		held := "-"
		if h, ok := holds[b.JobID]; ok && h.Active(now) {
			held = "until released"
			if !h.Until.IsZero() {
				held = "until " + h.Until.Format(time.RFC3339)
			}
		}
		regions := "-"
		if len(b.Regions) > 0 {
			regions = strings.Join(b.Regions, ",")
		}
		// Where its copies are, and what retention deleted of a backup a
		// copy region still keeps.
		if b.SourceDeleted {
			regions = "source deleted"
		}
		var copies []string
		for _, r := range b.CopyRegions {
			if !slices.Contains(b.DeletedCopies, r) {
				copies = append(copies, r)
			}
		}
		if len(copies) > 0 {
			regions += ", copies in " + strings.Join(copies, ",")
		}
		if len(b.DeletedCopies) > 0 {
			regions += ", copies deleted in " + strings.Join(b.DeletedCopies, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", b.JobID, b.FinishedAt.Format(time.RFC3339), b.Policy, b.Mode,
			b.NodeCount, b.SnapshotCount, regions, b.Tag, covers(b), held)
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
			j, err := follow(fctx, js, args[0], newProgress(g.stdout), 2*time.Minute)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "job %s is %s\n", j.ID, j.Phase)
			reportEnd(g.stdout, j)
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
			holds, err := planner.Holds(cmd.Context(), h.Holds, cluster)
			if err != nil {
				return withCode(ExitError, err)
			}
			decisions := planner.SelectRegionRetention(mine, pol.RetentionSets(), holds, time.Now())
			load := func(b messages.Backup) (messages.Backup, error) { return planner.LoadBackup(cmd.Context(), h, b) }
			if err := writeRetention(g.stdout, cluster, pol, decisions, load); err != nil {
				return withCode(ExitError, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster")
	cmd.Flags().StringVar(&policy, "policy", "", "policy (default: the cluster's default)")
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}

// writeRetention prints a retention dry run: for every backup, keep or
// RETIRE and why, and, for a policy with copy regions, the same for each
// region's part of it (its own snapshots, "source", and its copies in each
// copy region).
func writeRetention(w io.Writer, cluster string, pol planner.Policy, ds []planner.BackupDecision,
	load func(messages.Backup) (messages.Backup, error)) error {
	sets := pol.RetentionSets()
	retired, trims := planner.RetiredAndTrimmed(ds)
	if len(sets) == 1 {
		fmt.Fprintf(w, "cluster %s, policy %s: %s; %d backups, %d would be retired\n",
			cluster, pol.Name, pol.Retention, len(ds), len(retired))
	} else {
		var rules []string
		for _, s := range sets {
			whose := ""
			switch {
			case s.Own:
				whose = " (its own)"
			case s.CopyRegion != "":
				whose = " (the policy's)"
			}
			rules = append(rules, fmt.Sprintf("%s %s%s", s.Name(), s.Rules, whose))
		}
		fmt.Fprintf(w, "cluster %s, policy %s: %s; %d backups, %d would be retired, %d kept by some regions only\n",
			cluster, pol.Name, strings.Join(rules, "; "), len(ds), len(retired), len(trims))
	}
	for _, d := range ds {
		b := d.Backup
		verdict := "keep"
		if !d.Keep {
			verdict = "RETIRE"
		}
		why := ""
		if len(sets) == 1 {
			why = "no rule keeps it"
			if p := d.Parts[0]; p.Keep {
				why = strings.Join(p.Reasons, ", ")
			}
		} else if !d.Keep {
			why = "no region keeps it"
		}
		line := fmt.Sprintf("  %-6s %s  %s  %d snapshots  %s", verdict, b.JobID, b.FinishedAt.Format(time.RFC3339),
			b.SnapshotCount, why)
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		var full *messages.Backup
		deletes := func() error {
			if full == nil {
				f, err := load(b)
				if err != nil {
					return err
				}
				full = &f
			}
			for _, s := range full.Snapshots {
				fmt.Fprintf(w, "           would delete %s (%s, %s)\n", s.SnapshotID, s.Node, s.VolumeID)
			}
			return nil
		}
		if len(sets) == 1 {
			if !d.Keep {
				if err := deletes(); err != nil {
					return err
				}
			}
			continue
		}
		for _, p := range d.Parts {
			name := "source"
			if p.CopyRegion != "" {
				name = p.CopyRegion
			}
			switch {
			case p.Deleted:
				fmt.Fprintf(w, "           %-12s deleted    by an earlier retention\n", name)
			case p.Missing:
				fmt.Fprintf(w, "           %-12s none       never copied there\n", name)
			case p.Keep:
				fmt.Fprintf(w, "           %-12s keep       %s\n", name, strings.Join(p.Reasons, ", "))
			case p.CopyRegion == "":
				fmt.Fprintf(w, "           %-12s RETIRE     no rule keeps it\n", name)
				if err := deletes(); err != nil {
					return err
				}
			default:
				fmt.Fprintf(w, "           %-12s RETIRE     no rule keeps it; would delete its copies of the %d snapshots there\n",
					name, b.SnapshotCount)
			}
		}
	}
	return nil
}
