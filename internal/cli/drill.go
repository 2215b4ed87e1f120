package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker/fs"
	"github.com/quiesce/quiesce/worker/noderestore"
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
			"result in the catalog. Exit 0 when the drill succeeded, 1 when it failed.",
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
			d := &drill{cfg: cfg, src: *src, reg: reg, h: h, out: g.stdout, backupJob: backupJob, keep: keep}
			rec, err := d.run(ctx)
			if err != nil && rec.DrillID == "" {
				return err
			}
			if perr := putDrill(cmd.Context(), h.Catalog, rec); perr != nil {
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

// putDrill records a drill in the catalog; it is written with a context of
// its own, so that a drill that ran out of time is still recorded.
func putDrill(parent context.Context, catalog jetstream.KeyValue, rec messages.Drill) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
	defer cancel()
	_, err = catalog.Put(ctx, messages.DrillKey(rec.Source, rec.DrillID), data)
	return err
}

// drill is one run of quiesce drill.
type drill struct {
	cfg       *config.Config
	src       config.Cluster
	reg       *drivers.Registry
	h         *topology.Handles
	out       io.Writer
	backupJob string
	keep      bool

	rec     messages.Drill
	began   time.Time
	phaseAt time.Time
}

func (d *drill) phase(name string) {
	now := time.Now()
	if !d.phaseAt.IsZero() && len(d.rec.Phases) > 0 {
		d.rec.Phases[len(d.rec.Phases)-1].Seconds = now.Sub(d.phaseAt).Seconds()
	}
	if name != "" {
		d.rec.Phases = append(d.rec.Phases, messages.DrillPhase{Name: name})
		fmt.Fprintf(d.out, "%s  %s\n", now.UTC().Format("15:04:05"), name)
	}
	d.phaseAt = now
}

// run carries the drill out and returns its record; an error with an
// empty record is a drill that never began (bad configuration).
func (d *drill) run(ctx context.Context) (messages.Drill, error) {
	d.began = time.Now().UTC()
	tgt, ok := d.cfg.Cluster(d.src.Drill.Target)
	if !ok {
		return messages.Drill{}, withCode(ExitRejected, fmt.Errorf("drill target %q is not in the configuration", d.src.Drill.Target))
	}
	d.rec = messages.Drill{Schema: messages.DrillSchema, DrillID: "drill-" + d.began.Format("20060102t150405"),
		Source: d.src.Name, Target: tgt.Name, Began: d.began}
	err := d.restore(ctx, *tgt)
	d.phase("")
	d.rec.Ended = time.Now().UTC()
	d.rec.Outcome = messages.DrillSucceeded
	if err != nil {
		d.rec.Outcome, d.rec.Error = messages.DrillFailed, err.Error()
	}
	return d.rec, nil
}

func (d *drill) restore(ctx context.Context, tgt config.Cluster) (err error) {
	d.phase("choose the backup")
	bk, err := d.backup(ctx)
	if err != nil {
		return err
	}
	d.rec.BackupJob = bk.JobID
	topo := bk.Topology
	fmt.Fprintf(d.out, "          backup %s of %s (tag %s, %d nodes)\n", bk.JobID, bk.FinishedAt.Format(time.RFC3339), bk.Tag, len(topo.Nodes))
	targets := drivers.Nodes(tgt)
	if len(targets) != len(topo.Nodes) {
		return fmt.Errorf("target %s has %d nodes, the backup %d: a drill restores node for node", tgt.Name, len(targets), len(topo.Nodes))
	}
	srcAddrs := map[string]bool{}
	for _, f := range topo.Nodes {
		srcAddrs[f.Address] = true
	}
	for _, n := range drivers.Nodes(d.src) {
		srcAddrs[n.Address] = true
	}
	for _, n := range targets {
		if srcAddrs[n.Address] {
			return fmt.Errorf("target node %s has address %s, a node of the source cluster: a drill never restores into the source", n.Name, n.Address)
		}
		if n.Dirs == nil || len(n.Dirs.Data) == 0 {
			return fmt.Errorf("target node %s: its directories are not configured (directories.data, commitlog, hints, saved_caches)", n.Name)
		}
	}
	restorer, err := d.reg.NodeRestorer(tgt.Name)
	if err != nil {
		return err
	}

	d.phase("volumes")
	specs, err := d.volumes(ctx, bk, tgt, targets)
	if err != nil {
		return err
	}
	defer func() {
		if d.keep {
			return
		}
		d.phase("tear down")
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		terr := d.each(tctx, targets, func(i int, n messages.Node) (noderestore.Report, error) {
			return noderestore.Report{}, restorer.Teardown(tctx, n, specs[i])
		})
		for _, n := range targets {
			for _, live := range n.Dirs.Data {
				// Every drill's staged copies: an interrupted drill's too.
				_ = os.RemoveAll(filepath.Join(filepath.Dir(live), ".quiesce-restore"))
			}
		}
		if terr == nil {
			d.rec.TornDown = true
		} else if err == nil {
			err = fmt.Errorf("tear down: %w", terr)
		}
	}()
	steps := []struct {
		name string
		f    func(context.Context, messages.Node, noderestore.Spec) (noderestore.Report, error)
	}{{"stop", restorer.Stop}, {"prepare", restorer.Prepare}, {"start", restorer.Start}}
	for _, st := range steps {
		d.phase(st.name)
		if err := d.each(ctx, targets, func(i int, n messages.Node) (noderestore.Report, error) {
			return st.f(ctx, n, specs[i])
		}); err != nil {
			return err
		}
	}

	d.phase("verify")
	v := noderestore.Verify{RestoreID: d.rec.DrillID, SchemaVersion: topo.SchemaVersion}
	if !d.src.Drill.NewIdentity {
		v.ClusterName = topo.ClusterName
	}
	for _, c := range d.src.Drill.Checks {
		v.CQL = append(v.CQL, noderestore.CQLCheck{Query: c.Query, Expect: c.Expect})
	}
	for i, n := range targets {
		e := noderestore.ExpectNode{Address: n.Address, Tokens: topo.Nodes[i].Tokens}
		if !d.src.Drill.NewIdentity {
			e.HostID = topo.Nodes[i].HostID
		}
		v.Nodes = append(v.Nodes, e)
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	return d.each(vctx, targets, func(i int, n messages.Node) (noderestore.Report, error) {
		return restorer.VerifyNode(vctx, n, n.Address, v)
	})
}

// each runs f on every node at once and joins the errors.
func (d *drill) each(ctx context.Context, nodes []messages.Node, f func(int, messages.Node) (noderestore.Report, error)) error {
	errs := make([]error, len(nodes))
	reps := make([]noderestore.Report, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { reps[i], errs[i] = f(i, n) })
	}
	wg.Wait()
	for i, r := range reps {
		for _, note := range r.Notes {
			d.rec.Notes = append(d.rec.Notes, nodes[i].Name+": "+note)
		}
	}
	return errors.Join(errs...)
}

// backup is the backup to restore: the one asked for, or the newest
// complete one with a topology.
func (d *drill) backup(ctx context.Context) (messages.Backup, error) {
	backups, err := planner.Backups(ctx, d.h.Catalog, d.src.Name)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return messages.Backup{}, err
	}
	for _, b := range backups {
		if d.backupJob != "" && b.JobID != d.backupJob {
			continue
		}
		if d.backupJob == "" && b.Partial {
			continue
		}
		full, err := planner.LoadBackup(ctx, d.h, b)
		if err != nil {
			return messages.Backup{}, err
		}
		if full.Topology == nil || len(full.Topology.Nodes) == 0 {
			if d.backupJob != "" {
				return messages.Backup{}, fmt.Errorf("backup %s has no topology in its catalog record (taken by an older release): it cannot be drilled", b.JobID)
			}
			continue
		}
		return full, nil
	}
	if d.backupJob != "" {
		return messages.Backup{}, fmt.Errorf("backup %s of cluster %s is not in the catalog", d.backupJob, d.src.Name)
	}
	return messages.Backup{}, fmt.Errorf("cluster %s has no complete backup with a topology to drill", d.src.Name)
}

// volumes restores each source node's volume snapshots for target node i
// and returns the node's restore spec. The fs driver restores a snapshot
// into a directory of this host: the target's executor must be local. (The
// EBS volumes of a restore are the restore job's: quiesce restore run.)
func (d *drill) volumes(ctx context.Context, bk messages.Backup, tgt config.Cluster, targets []messages.Node) ([]noderestore.Spec, error) {
	snapper, err := d.reg.Snapshotter(d.src.Name)
	if err != nil {
		return nil, err
	}
	store, ok := snapper.(*fs.Driver)
	if !ok || drivers.ExecutorKind(tgt) != drivers.ExecutorLocal {
		return nil, fmt.Errorf("a drill restores volumes with the fs snapshotter into a target run by the local executor; cluster %s snapshots with %s, target %s runs %s (EBS drills run as restore jobs)",
			d.src.Name, drivers.SnapshotterKind(d.src), tgt.Name, drivers.ExecutorKind(tgt))
	}
	mounts := map[string]string{}
	for _, v := range bk.Topology.Volumes {
		mounts[v.VolumeID] = v.MountPoint
	}
	specs := make([]noderestore.Spec, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, n := range targets {
		f := bk.Topology.Nodes[i]
		spec := noderestore.Spec{RestoreID: d.rec.DrillID, Target: noderestore.NewCluster, Tag: bk.Tag, StopRunning: true, Address: n.Address,
			Dirs: *n.Dirs, NewCluster: &noderestore.NewClusterSpec{ClusterName: bk.Topology.ClusterName, KeepIdentity: !d.src.Drill.NewIdentity,
				Seeds: []string{targets[0].Address}}}
		if d.src.Drill.NewIdentity {
			spec.NewCluster.InitialTokens = f.Tokens
		}
		if len(f.Dirs.Data) != len(n.Dirs.Data) {
			return nil, fmt.Errorf("source node %s has %d data directories, target %s %d", f.Node, len(f.Dirs.Data), n.Name, len(n.Dirs.Data))
		}
		for k, data := range f.Dirs.Data {
			var snap, mount string
			for _, s := range bk.Snapshots {
				m := mounts[s.VolumeID]
				if s.Node == f.Node && m != "" && (data == m || strings.HasPrefix(data, m+"/")) && len(m) > len(mount) {
					snap, mount = s.SnapshotID, m
				}
			}
			if snap == "" {
				return nil, fmt.Errorf("source node %s: no volume snapshot of the backup holds its data directory %s", f.Node, data)
			}
			live := n.Dirs.Data[k]
			staged := filepath.Join(filepath.Dir(live), ".quiesce-restore", d.rec.DrillID, "vol-"+snap)
			rel, _ := filepath.Rel(mount, data)
			spec.Sources = append(spec.Sources, noderestore.Source{DataDir: live, From: filepath.Join(staged, rel)})
			wg.Go(func() {
				if err := store.RestoreContext(ctx, snap, staged); err != nil {
					errs[i] = errors.Join(errs[i], fmt.Errorf("restore volume snapshot %s for %s: %w", snap, n.Name, err))
				}
			})
		}
		specs[i] = spec
	}
	wg.Wait()
	return specs, errors.Join(errs...)
}
