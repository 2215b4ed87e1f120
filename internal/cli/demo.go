package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/simnode"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/observability"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker/fs"
)

type demoOptions struct {
	dir     string
	nodes   int
	volumes int
	backups int
	keep    int
	keepDir bool
	verbose bool
}

func demoCmd(g *globals) *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Back up a simulated Cassandra cluster on an embedded JetStream server",
		Long: "demo starts an embedded NATS JetStream server, every quiesce role, and a simulated\n" +
			"Cassandra cluster (nodes with data volumes, a writer that keeps writing), then runs\n" +
			"backups one after another with live progress, prints what each did, and shows\n" +
			"retention retiring the oldest. It needs nothing but this binary.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			return runDemo(ctx, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "working directory (default: a new temporary directory)")
	f.IntVar(&o.nodes, "nodes", 3, "simulated nodes")
	f.IntVar(&o.volumes, "volumes", 2, "data volumes per node")
	f.IntVar(&o.backups, "backups", 3, "backups to run")
	f.IntVar(&o.keep, "keep-last", 2, "retention: successful backups to keep")
	f.BoolVar(&o.keepDir, "keep", false, "keep the working directory afterwards")
	f.BoolVar(&o.verbose, "verbose", false, "show the roles' logs")
	return cmd
}

func runDemo(ctx context.Context, g *globals, o demoOptions) error {
	out := g.stdout
	if o.nodes < 1 || o.volumes < 1 || o.backups < 1 || o.keep < 0 {
		return withCode(ExitRejected, fmt.Errorf("--nodes, --volumes and --backups must be at least 1"))
	}
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "quiesce-demo-")
		if err != nil {
			return withCode(ExitError, err)
		}
		dir = d
		if !o.keepDir {
			defer os.RemoveAll(dir)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return withCode(ExitError, err)
	}

	// The embedded server: the real nats-server, in this process, on a
	// loopback port of its own.
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(dir, "jetstream"), NoLog: true, NoSigs: true})
	if err != nil {
		return withCode(ExitError, err)
	}
	go ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		return withCode(ExitError, fmt.Errorf("embedded NATS server did not start"))
	}
	fmt.Fprintf(out, "quiesce demo\n  embedded JetStream server %s\n  working directory %s\n", ns.ClientURL(), dir)

	cfg, nodes, err := demoCluster(dir, self, o)
	if err != nil {
		return withCode(ExitError, err)
	}
	fmt.Fprintf(out, "  cluster %q: %d nodes x %d data volumes, a writer writing to every node\n\n", "demo", o.nodes, o.volumes)

	log := zerolog.Nop()
	if o.verbose {
		log, _ = g.logger()
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.Name("quiesce demo"))
	if err != nil {
		return withCode(ExitError, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return withCode(ExitError, err)
	}
	reg := observability.NewRegistry()
	metrics, err := observability.NewMetrics(reg)
	if err != nil {
		return withCode(ExitError, err)
	}
	n, err := startRoles(ctx, cfg, js, []string{"planner", "coordinator", "worker"}, log, metrics,
		roleOptions{awaitPoll: 100 * time.Millisecond, sweep: 500 * time.Millisecond, softStop: 5 * time.Second, name: "demo"})
	if err != nil {
		return err
	}
	defer n.stop(context.WithoutCancel(ctx))

	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	writers := make([]*simnode.Writer, len(nodes))
	for i, sn := range nodes {
		writers[i] = &simnode.Writer{Node: sn, Interval: 2 * time.Millisecond, Record: true}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = writers[i].Run(wctx)
		}()
	}
	defer func() { stopWriters(); wg.Wait() }()

	var jobs []string
	for b := 1; b <= o.backups; b++ {
		req := messages.JobRequest{Schema: messages.JobRequestSchema, RequestID: fmt.Sprintf("demo-%d-%d", time.Now().UnixNano(), b),
			Cluster: "demo", RequestedBy: "demo", Reason: fmt.Sprintf("demo backup %d of %d", b, o.backups)}
		fmt.Fprintf(out, "backup %d/%d\n", b, o.backups)
		sub, err := submit(ctx, js, req)
		if err != nil {
			return err
		}
		jobs = append(jobs, sub.jobID)
		fctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		j, err := followSubmission(fctx, js, sub, newProgress(out), 10*time.Second)
		cancel()
		if err != nil {
			return err
		}
		if err := demoSummary(ctx, out, n, j, dir, o); err != nil {
			return err
		}
		if j.Phase != messages.PhaseSucceeded {
			return jobExit(j)
		}
	}

	backups, err := planner.Backups(ctx, n.h.Catalog, "demo")
	if err != nil {
		return withCode(ExitError, err)
	}
	newest, err := planner.LoadBackup(ctx, n.h, backups[0])
	if err != nil {
		return withCode(ExitError, err)
	}
	if err := demoRestore(out, dir, cfg, nodes, writers, newest); err != nil {
		return err
	}
	fmt.Fprintf(out, "catalog of cluster demo (keep last %d):\n", o.keep)
	printBackups(out, backups, nil, time.Now())
	kept := map[string]bool{}
	for _, b := range backups {
		kept[b.JobID] = true
	}
	var retired []string
	for _, j := range jobs {
		if !kept[j] {
			retired = append(retired, j)
		}
	}
	if len(retired) > 0 {
		fmt.Fprintf(out, "retention retired %s; their snapshots are deleted from the store\n", strings.Join(retired, ", "))
	}
	leftover := 0
	written := int64(0)
	for _, w := range writers {
		written += w.Count()
	}
	fmt.Fprintf(out, "the writer wrote %d rows while the backups ran\n", written)
	for _, sn := range nodes {
		tags, err := sn.Tags()
		if err != nil {
			return withCode(ExitError, err)
		}
		leftover += len(tags)
	}
	fmt.Fprintf(out, "Cassandra snapshot tags left on the nodes: %d\n", leftover)
	if leftover != 0 {
		return withCode(ExitFailed, fmt.Errorf("%d snapshot tags were not cleared", leftover))
	}
	fmt.Fprintln(out, "demo finished: every backup succeeded")
	return nil
}

func nodeRoot(dir string, i int) string {
	return filepath.Join(dir, "nodes", fmt.Sprintf("node-%d", i+1))
}

func demoCluster(dir, self string, o demoOptions) (*config.Config, []*simnode.Node, error) {
	cl := config.Cluster{
		Name: "demo", Executor: "local", Snapshotter: "fs", FS: config.FS{Store: filepath.Join(dir, "snapshot-store")},
		DefaultPolicy: "demo",
	}
	var nodes []*simnode.Node
	for i := 0; i < o.nodes; i++ {
		name := fmt.Sprintf("node-%d", i+1)
		root := nodeRoot(dir, i)
		var dataDirs []string
		var vols []config.Volume
		for v := 0; v < o.volumes; v++ {
			p := filepath.Join(dir, "volumes", fmt.Sprintf("%s-data%d", name, v+1))
			dataDirs = append(dataDirs, p)
			vols = append(vols, config.Volume{ID: fmt.Sprintf("vol-%s-%d", name, v+1), Device: fmt.Sprintf("/dev/xvd%c", 'f'+v), Path: p})
		}
		sn, err := simnode.Create(root, simnode.Options{
			Name: name, DataDirs: dataDirs, DC: "dc1", Rack: fmt.Sprintf("rack%d", i%3+1),
			Keyspaces: map[string][]string{"shop": {"orders", "customers"}, "audit": {"events"}},
		})
		if err != nil {
			return nil, nil, err
		}
		nodes = append(nodes, sn)
		cl.Nodes = append(cl.Nodes, config.Node{Name: name, Address: "127.0.0.1", InstanceID: fmt.Sprintf("i-demo%011d", i+1),
			AZ: "local-1a", Volumes: vols, Nodetool: []string{self, "nodetool", "--root", root},
			Directories: &config.Directories{Data: dataDirs, CommitLog: filepath.Join(root, "commitlog")}})
	}
	cfg := &config.Config{
		Clusters: []config.Cluster{cl},
		Policies: []config.Policy{{Name: "demo", Cluster: "demo", KeepLast: o.keep,
			FlushTimeout: config.Duration(30 * time.Second), SnapshotTimeout: config.Duration(30 * time.Second),
			FinishTimeout: config.Duration(30 * time.Second), JobTimeout: config.Duration(2 * time.Minute)}},
	}
	return cfg, nodes, cfg.Validate()
}

func demoSummary(ctx context.Context, out io.Writer, n *node, j messages.Job, dir string, o demoOptions) error {
	fmt.Fprintf(out, "  job %s %s in %s\n", j.ID, strings.ToUpper(string(j.Phase)), j.UpdatedAt.Sub(j.CreatedAt).Round(time.Millisecond))
	if j.Error != "" {
		fmt.Fprintf(out, "  error: %s\n", j.Error)
	}
	for _, ph := range []messages.Phase{messages.PhasePlanned, messages.PhaseFlushing, messages.PhaseSnapshotting, messages.PhaseFinishing} {
		if _, ok := j.PhaseTimes[ph]; ok {
			fmt.Fprintf(out, "    %-13s %8s\n", ph, phaseDuration(j, ph).Round(100*time.Microsecond))
		}
	}
	// The flush spread by the nodes' own clocks: when each finished its
	// nodetool snapshot.
	type flush struct {
		node string
		at   time.Time
	}
	var flushes []flush
	for i := 0; i < o.nodes; i++ {
		evs, err := simnode.Events(nodeRoot(dir, i))
		if err != nil {
			return withCode(ExitError, err)
		}
		for _, e := range evs {
			if e.Kind == "snapshot" && e.Tag == j.Tag {
				flushes = append(flushes, flush{fmt.Sprintf("node-%d", i+1), e.Time})
			}
		}
	}
	sort.Slice(flushes, func(a, b int) bool { return flushes[a].at.Before(flushes[b].at) })
	if len(flushes) > 0 {
		first := flushes[0].at
		fmt.Fprintf(out, "    flush spread  %8s across %d nodes (", flushes[len(flushes)-1].at.Sub(first).Round(100*time.Microsecond), len(flushes))
		for k, f := range flushes {
			if k > 0 {
				fmt.Fprint(out, ", ")
			}
			fmt.Fprintf(out, "%s +%s", f.node, f.at.Sub(first).Round(100*time.Microsecond))
		}
		fmt.Fprintln(out, ")")
		if !j.BarrierAt.IsZero() {
			fmt.Fprintf(out, "    barrier       released %s after the last flush\n", j.BarrierAt.Sub(flushes[len(flushes)-1].at).Round(100*time.Microsecond))
		}
	}
	if j.Phase == messages.PhaseSucceeded {
		backups, err := planner.Backups(ctx, n.h.Catalog, j.Cluster)
		if err != nil {
			return withCode(ExitError, err)
		}
		for _, b := range backups {
			if b.JobID != j.ID {
				continue
			}
			if b, err = planner.LoadBackup(ctx, n.h, b); err != nil {
				return withCode(ExitError, err)
			}
			fmt.Fprintf(out, "    %d snapshots (tag %s):\n", len(b.Snapshots), b.Tag)
			for _, s := range b.Snapshots {
				fmt.Fprintf(out, "      %s  %-8s %-16s %s\n", s.SnapshotID, s.Node, s.VolumeID, s.State)
			}
			printTopology(out, b)
		}
		if len(j.Retired) > 0 {
			fmt.Fprintf(out, "    retention retired %s\n", strings.Join(j.Retired, ", "))
		}
	}
	fmt.Fprintln(out)
	return nil
}

// demoRestore restores every volume of the newest backup into a scratch
// directory, as one would create volumes from EBS snapshots, and checks
// that each node's Cassandra snapshot holds every row the writer had been
// told was written before that node flushed.
func demoRestore(out io.Writer, dir string, cfg *config.Config, nodes []*simnode.Node, writers []*simnode.Writer, b messages.Backup) error {
	store, err := fs.New(cfg.Clusters[0].FS.Store)
	if err != nil {
		return withCode(ExitError, err)
	}
	fmt.Fprintf(out, "restore check of backup %s:\n", b.JobID)
	bad := 0
	for i, sn := range nodes {
		var flushedAt time.Time
		evs, err := simnode.Events(sn.Root())
		if err != nil {
			return withCode(ExitError, err)
		}
		for _, e := range evs {
			if e.Kind == "snapshot" && e.Tag == b.Tag {
				flushedAt = e.Time
			}
		}
		have := map[string]bool{}
		vols := 0
		for _, s := range b.Snapshots {
			if s.Node != sn.Name() {
				continue
			}
			dst := filepath.Join(dir, "restore", b.JobID, s.VolumeID)
			if err := store.Restore(s.SnapshotID, dst); err != nil {
				return withCode(ExitError, fmt.Errorf("restore %s: %w", s.SnapshotID, err))
			}
			rows, err := simnode.SnapshotRows(dst, b.Tag)
			if err != nil {
				return withCode(ExitError, err)
			}
			for _, r := range rows {
				have[r] = true
			}
			vols++
		}
		want := writers[i].AckedBefore(flushedAt)
		missing := 0
		for _, r := range want {
			if !have[r] {
				missing++
			}
		}
		bad += missing
		fmt.Fprintf(out, "  %s: restored %d volumes; %d of %d rows acknowledged before its flush are in snapshots/%s\n",
			sn.Name(), vols, len(want)-missing, len(want), b.Tag)
	}
	if bad > 0 {
		return withCode(ExitFailed, fmt.Errorf("%d acknowledged rows missing from the restored backup", bad))
	}
	return nil
}

// printTopology sums up what a backup's catalog record holds for a restore.
func printTopology(out io.Writer, b messages.Backup) {
	t := b.Topology
	if t == nil {
		fmt.Fprintln(out, "    catalog: no topology")
		return
	}
	tables, files, bytes := 0, 0, int64(0)
	for _, n := range t.Nodes {
		tables += len(n.Tables)
		for _, tb := range n.Tables {
			files += tb.Files
			bytes += tb.Bytes
		}
	}
	fmt.Fprintf(out, "    catalog: cluster %q, Cassandra %s, %d nodes (host IDs, %d tokens each, DC/rack, directories), %d volumes,\n",
		t.ClusterName, t.CassandraVersion, len(t.Nodes), t.NumTokens, len(t.Volumes))
	fmt.Fprintf(out, "             %d table snapshots (%d files, %s), schema: %d lines of CQL\n",
		tables, files, simnode.FormatSize(bytes), strings.Count(t.Schema, "\n"))
	for _, w := range b.Warnings {
		fmt.Fprintf(out, "    catalog warning: %s\n", w)
	}
}
