package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

// VolumeRestorer is implemented by snapshotters that can make a volume
// from a snapshot: EBS CreateVolume (attached where told), or, for the fs
// driver, the snapshot's copy restored into a directory. It is idempotent on
// taskID: a rerun finds what an earlier attempt made.
type VolumeRestorer interface {
	RestoreVolume(ctx context.Context, taskID string, v messages.VolumeRestore) (messages.RestoreReport, error)
}

// AttachedVolumes is implemented by volume restorers whose volumes are
// attached to a node and mounted there for its restore (EBS). The volume a
// restore-volume task made is found again by the task's ID, in region (""
// for the driver's own).
type AttachedVolumes interface {
	// AttachedVolume returns the volume's ID and the paths its device may
	// have on its instance, most likely first.
	AttachedVolume(ctx context.Context, taskID, region string) (volumeID string, devices []string, err error)
	// ReleaseVolume detaches the volume and deletes it, once its files are
	// on the node; a volume gone already is success.
	ReleaseVolume(ctx context.Context, taskID, region string) error
}

// ErrVolumeGone is wrapped by AttachedVolumes.AttachedVolume's error when
// the task's volume no longer exists: released by an earlier attempt of
// the node's prepare, which then had put the node's files in place.
var ErrVolumeGone = errors.New("the restored volume is gone")

// NodeRestorer carries out the node-level steps of a restore on one node
// through the cluster's executor. Every method is idempotent: it records
// its progress on the node, and a rerun after a crash continues where the
// last attempt stopped.
type NodeRestorer interface {
	// Stop drains and stops Cassandra; a node already stopped is success.
	// Without spec.StopRunning a running Cassandra is an error wrapping
	// ErrCassandraRunning, and nothing is changed on the node.
	Stop(ctx context.Context, node messages.Node, spec messages.NodeRestore) (messages.RestoreReport, error)
	// Prepare puts the files of snapshots/<spec.Tag> in place of the live
	// SSTables, empties the commit log, hints, saved caches and cdc_raw
	// directories keeping what it displaces aside, and writes the
	// configuration of a new cluster. Cassandra must be stopped.
	Prepare(ctx context.Context, node messages.Node, spec messages.NodeRestore) (messages.RestoreReport, error)
	// Start starts Cassandra and returns once it serves CQL.
	Start(ctx context.Context, node messages.Node, spec messages.NodeRestore) (messages.RestoreReport, error)
	// Verify checks the restored cluster as node sees it.
	Verify(ctx context.Context, node messages.Node, spec messages.RestoreVerify) (messages.RestoreReport, error)
}

// ErrCassandraRunning is wrapped by NodeRestorer.Stop's error when
// Cassandra runs on a node the restore may not stop.
var ErrCassandraRunning = errors.New("cassandra is running on the node")

// RestoreDrivers is implemented by Drivers that can restore nodes.
type RestoreDrivers interface {
	RestoreNodes(cluster string) (NodeRestorer, error)
}

// restoreEnded reports whether the task's restore is already terminal, so
// a task published before it ended changes nothing more.
func (w *Worker) restoreEnded(ctx context.Context, id string) bool {
	gctx, cancel := context.WithTimeout(ctx, jobCheckTimeout)
	defer cancel()
	w.mu.Lock()
	kv := w.restores
	w.mu.Unlock()
	if kv == nil {
		var err error
		if kv, err = w.js.KeyValue(gctx, messages.BucketRestores); err != nil {
			return false
		}
		w.mu.Lock()
		w.restores = kv
		w.mu.Unlock()
	}
	e, err := kv.Get(gctx, id)
	if err != nil {
		return false
	}
	var r struct {
		Phase messages.RestorePhase `json:"phase"`
	}
	if json.Unmarshal(e.Value(), &r) != nil {
		return false
	}
	return r.Phase.Terminal()
}

// restore runs one task of a restore.
func (w *Worker) restore(ctx context.Context, log zerolog.Logger, t messages.Task) (*taskOutput, error) {
	rt := t.Restore
	if rt == nil {
		return nil, errclass.Permanent(fmt.Errorf("%s task %s has no restore", t.Kind, t.ID))
	}
	if w.js != nil && w.restoreEnded(ctx, t.JobID) {
		return nil, errSkip
	}
	start := time.Now()
	var rep messages.RestoreReport
	var err error
	switch t.Kind {
	case messages.KindRestoreVolume:
		if rt.Volume == nil {
			return nil, errclass.Permanent(errors.New("restore-volume task has no volume"))
		}
		snap, serr := w.drivers.Snapshotter(t.Cluster)
		if serr != nil {
			return nil, errclass.Permanent(serr)
		}
		vr, ok := snap.(VolumeRestorer)
		if !ok {
			return nil, errclass.Permanent(fmt.Errorf("cluster %s's snapshotter cannot restore volumes", t.Cluster))
		}
		rep, err = vr.RestoreVolume(ctx, t.ID, *rt.Volume)
	default:
		if t.Node == nil {
			return nil, errclass.Permanent(fmt.Errorf("%s task has no node", t.Kind))
		}
		rd, ok := w.drivers.(RestoreDrivers)
		if !ok {
			return nil, errclass.Permanent(errors.New("this worker has no node restore driver"))
		}
		nr, nerr := rd.RestoreNodes(t.Cluster)
		if nerr != nil {
			return nil, errclass.Permanent(nerr)
		}
		switch t.Kind {
		case messages.KindRestoreVerify:
			if rt.Verify == nil {
				return nil, errclass.Permanent(errors.New("restore-verify task has no verification"))
			}
			rep, err = nr.Verify(ctx, *t.Node, *rt.Verify)
		default:
			if rt.Node == nil {
				return nil, errclass.Permanent(fmt.Errorf("%s task has no node restore", t.Kind))
			}
			switch t.Kind {
			case messages.KindRestoreStop:
				rep, err = nr.Stop(ctx, *t.Node, *rt.Node)
				if errors.Is(err, ErrCassandraRunning) {
					rep.Step = messages.StepRunning
					err = errclass.Permanent(err)
				}
			case messages.KindRestorePrepare:
				rep, err = w.prepare(ctx, t, nr)
			case messages.KindRestoreStart:
				rep, err = nr.Start(ctx, *t.Node, *rt.Node)
			default:
				return nil, errclass.Permanent(fmt.Errorf("unknown restore task kind %q", t.Kind))
			}
		}
	}
	ev := log.Info()
	if err != nil {
		ev = log.Warn().Err(err)
	}
	ev.Str("restore_id", t.JobID).Str("target", t.Target).Str("step", rep.Step).Bool("again", rep.Again).
		Int64("duration_ms", time.Since(start).Milliseconds()).Msg("restore task ran")
	return &taskOutput{Restore: &rep}, err
}

// prepare runs a node's restore-prepare. Sources on volumes attached for
// the restore are given the devices the node finds them at first, and the
// volumes are detached and deleted once the node's files are in place
// (copied from them): their snapshot stays, held by the restore.
func (w *Worker) prepare(ctx context.Context, t messages.Task, nr NodeRestorer) (messages.RestoreReport, error) {
	spec := *t.Restore.Node
	spec.Sources = slices.Clone(spec.Sources)
	type attached struct{ task, region string }
	var volumes []attached
	var av AttachedVolumes
	for k, src := range spec.Sources {
		if src.Snapshot == "" {
			continue
		}
		if av == nil {
			snap, err := w.drivers.Snapshotter(t.Cluster)
			if err != nil {
				return messages.RestoreReport{}, errclass.Permanent(err)
			}
			ok := false
			if av, ok = snap.(AttachedVolumes); !ok {
				return messages.RestoreReport{}, errclass.Permanent(fmt.Errorf("cluster %s's snapshotter attaches no volumes to nodes", t.Cluster))
			}
		}
		task := messages.TaskID(t.JobID, messages.KindRestoreVolume, src.Snapshot)
		_, devices, err := av.AttachedVolume(ctx, task, src.Region)
		if err != nil && !errors.Is(err, ErrVolumeGone) {
			return messages.RestoreReport{}, fmt.Errorf("the volume restored from %s: %w", src.Snapshot, err)
		}
		// A volume gone was released after the node's prepare: the node's
		// progress record says so, and without devices a node not yet
		// prepared refuses to go on.
		spec.Sources[k].Devices = devices
		volumes = append(volumes, attached{task, src.Region})
	}
	rep, err := nr.Prepare(ctx, *t.Node, spec)
	if err != nil || av == nil {
		return rep, err
	}
	for _, v := range volumes {
		if err := av.ReleaseVolume(ctx, v.task, v.region); err != nil {
			return rep, fmt.Errorf("node %s is prepared; releasing its restored volume: %w", t.Node.Name, err)
		}
	}
	return rep, nil
}
