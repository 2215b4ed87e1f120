// Package drill runs restore drills: a cluster's backup restored into the
// scratch cluster its drill section names, started, verified and torn
// down, and the result recorded in the catalog. quiesce drill runs one in
// its own process; a Runner in the worker processes runs the DrillRequests
// that drill schedules fire.
package drill

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
	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker/fs"
	"github.com/quiesce/quiesce/worker/noderestore"
)

// Options say which drill Run carries out and with what.
type Options struct {
	// Config is the configuration holding Cluster, its drill section and
	// the drill's target.
	Config *config.Config
	// Cluster is the cluster whose backup is drilled.
	Cluster string
	// Drivers restore the snapshots and run the target's nodes.
	Drivers *drivers.Registry
	// Handles give the catalog the backup is read from.
	Handles *topology.Handles
	// Out receives a line per phase as it begins (nil: none).
	Out io.Writer
	// Log, when set, logs each phase as it begins.
	Log *zerolog.Logger
	// BackupJob is the backup to restore; empty for the newest complete one.
	BackupJob string
	// Keep leaves the scratch cluster running after the verification.
	Keep bool
	// DrillID names the drill; empty for drill-<start time>.
	DrillID string
	// RequestID and RequestedBy are the drill request's, noted in the
	// record.
	RequestID, RequestedBy string
}

// ErrNotConfigured is wrapped by Run's error when the configuration does
// not allow the drill (no such cluster, no drill section, no such target):
// no drill began, and the record Run returns is empty.
var ErrNotConfigured = errors.New("drill not configured")

// notConfigured is an ErrNotConfigured with its own message.
type notConfigured struct{ msg string }

func (e *notConfigured) Error() string        { return e.msg }
func (e *notConfigured) Is(target error) bool { return target == ErrNotConfigured }

func notConfiguredf(format string, a ...any) error {
	return &notConfigured{fmt.Sprintf(format, a...)}
}

// Run carries a drill out and returns its record, succeeded or failed,
// with a nil error. An error (wrapping ErrNotConfigured) with an empty
// record is a drill that never began. The scratch nodes are stopped first,
// whatever an interrupted drill left running there, and torn down at the
// end unless Keep.
func Run(ctx context.Context, o Options) (messages.Drill, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	src, ok := o.Config.Cluster(o.Cluster)
	switch {
	case !ok:
		return messages.Drill{}, notConfiguredf("cluster %q is not in the configuration", o.Cluster)
	case src.Drill == nil:
		return messages.Drill{}, notConfiguredf("cluster %q has no drill section: configure drill.target (a scratch cluster)", src.Name)
	}
	d := &drill{cfg: o.Config, src: *src, reg: o.Drivers, h: o.Handles, out: o.Out, log: o.Log, backupJob: o.BackupJob, keep: o.Keep}
	return d.run(ctx, o)
}

// Record writes a drill's record to the catalog, under
// messages.DrillKey. It is written with a context of its own, so that a
// drill that ran out of time is still recorded.
func Record(parent context.Context, catalog jetstream.KeyValue, rec messages.Drill) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
	defer cancel()
	_, err = catalog.Put(ctx, messages.DrillKey(rec.Source, rec.DrillID), data)
	return err
}

// drill is one run of a drill.
type drill struct {
	cfg       *config.Config
	src       config.Cluster
	reg       *drivers.Registry
	h         *topology.Handles
	out       io.Writer
	log       *zerolog.Logger
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
		if d.log != nil {
			d.log.Info().Str("drill_id", d.rec.DrillID).Str("cluster", d.src.Name).Str("phase", name).Msg("drill phase")
		}
	}
	d.phaseAt = now
}

// run carries the drill out and returns its record.
func (d *drill) run(ctx context.Context, o Options) (messages.Drill, error) {
	d.began = time.Now().UTC()
	tgt, ok := d.cfg.Cluster(d.src.Drill.Target)
	if !ok {
		return messages.Drill{}, notConfiguredf("drill target %q is not in the configuration", d.src.Drill.Target)
	}
	id := o.DrillID
	if id == "" {
		id = "drill-" + d.began.Format("20060102t150405")
	}
	d.rec = messages.Drill{Schema: messages.DrillSchema, DrillID: id, Source: d.src.Name, Target: tgt.Name, Began: d.began,
		RequestID: o.RequestID, RequestedBy: o.RequestedBy}
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
