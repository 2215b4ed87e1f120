package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

// taskOutput is what a handler produced besides success or failure.
type taskOutput struct {
	Snapshots []messages.SnapshotRef
	Deleted   []string
	Retired   []string
	Retained  []string
	Warnings  []string
	Listing   string
	Flush     *messages.FlushReport
	Clear     *messages.ClearReport
	Restore   *messages.RestoreReport
}

func (w *Worker) dispatch(ctx context.Context, log zerolog.Logger, t messages.Task, attempt int) (*taskOutput, error) {
	switch t.Kind {
	case messages.KindFlush:
		return w.flush(ctx, log, t, attempt)
	case messages.KindSnapshot:
		return w.snapshot(ctx, log, t)
	case messages.KindClear:
		return w.clear(ctx, log, t)
	case messages.KindAwait:
		return w.await(ctx, log, t)
	case messages.KindRetention, messages.KindCleanup:
		return w.retention(ctx, log, t)
	case messages.KindRestoreVolume, messages.KindRestoreStop, messages.KindRestorePrepare,
		messages.KindRestoreStart, messages.KindRestoreVerify:
		return w.restore(ctx, log, t)
	}
	return nil, errclass.Permanent(fmt.Errorf("unknown task kind %q", t.Kind))
}

// jobCheckTimeout bounds the read of a task's job record.
const jobCheckTimeout = 5 * time.Second

// jobEnded reports whether the task's job is already terminal, so work that
// would create something (a flush, a snapshot) is not started for it.
func (w *Worker) jobEnded(ctx context.Context, jobID string) bool {
	if w.jobs == nil {
		return false
	}
	// A read the server never answers (it stopped mid-request) would
	// otherwise wait out the task's own deadline while heartbeats keep the
	// task from redelivery; the check is only an optimisation.
	gctx, cancel := context.WithTimeout(ctx, jobCheckTimeout)
	defer cancel()
	e, err := w.jobs.Get(gctx, jobID)
	if err != nil {
		return false
	}
	// Only the phase is needed; decoding the whole record (failures,
	// progress, phase times) for every task showed in profiles.
	var j struct {
		Phase messages.Phase `json:"phase"`
	}
	if json.Unmarshal(e.Value(), &j) != nil {
		return false
	}
	return j.Phase.Terminal()
}

// flush runs nodetool snapshot on the task's node and reports success only
// once the snapshot is verified, the job's own, and durable:
//
//  1. the node's executor gets ready (connected, host key verified): a node
//     that cannot be reached fails here, before anything is recorded;
//  2. the job records its intent to run nodetool there (intent.go);
//  3. nodetool snapshot runs, and must report the tag made; a tag already
//     on the node counts only when an earlier attempt of this job recorded
//     its intent before, and is otherwise someone else's: the node fails;
//  4. the file systems holding the node's data directories are synced, so
//     the hard links have reached the volumes before any volume snapshot is
//     requested.
func (w *Worker) flush(ctx context.Context, log zerolog.Logger, t messages.Task, attempt int) (*taskOutput, error) {
	if t.Node == nil {
		return nil, errclass.Permanent(errors.New("flush task has no node"))
	}
	if w.jobEnded(ctx, t.JobID) {
		return nil, errSkip
	}
	nt, err := w.drivers.NodeTool(t.Cluster)
	if err != nil {
		return nil, errclass.Permanent(err)
	}
	if w.jobs == nil {
		return nil, errclass.Permanent(errors.New("flush needs the jobs bucket to record its intent"))
	}
	node := *t.Node
	if p, ok := nt.(Preparer); ok {
		if err := p.Prepare(ctx, node); err != nil {
			return nil, err
		}
	}
	key := messages.IntentKey(t.JobID, node.Name)
	earlier, rev, err := w.beginIntent(ctx, key, attempt)
	if err != nil {
		return nil, err
	}
	if earlier != nil && earlier.State == intentForeign {
		return nil, errclass.Permanent(&ForeignTagError{Node: node.Name, Tag: t.Tag, Job: t.JobID})
	}
	err = nt.Snapshot(ctx, node, t.Tag, t.Keyspaces)
	again := false
	switch {
	case err == nil:
	case errors.Is(err, ErrSnapshotExists) && earlier != nil:
		// An earlier attempt of this job ran nodetool snapshot here: the
		// tag is the job's own, and this is a redelivery.
		again = true
		log.Info().Int("earlier_attempt", earlier.Attempt).Msg("snapshot tag already made by an earlier attempt of this flush")
	case errors.Is(err, ErrSnapshotExists):
		if merr := w.markForeign(ctx, key, rev, attempt); merr != nil {
			log.Error().Err(merr).Msg("tag on the node is not the job's, and that could not be recorded")
		}
		return nil, errclass.Permanent(&ForeignTagError{Node: node.Name, Tag: t.Tag, Job: t.JobID, Err: err})
	case errclass.IsNotRun(err) && earlier == nil:
		w.withdrawIntent(ctx, key, rev)
		return nil, err
	default:
		return nil, err
	}
	report := &messages.FlushReport{Tag: t.Tag, Again: again}
	if s, ok := nt.(Syncer); ok {
		var dirs []string
		if node.Dirs != nil {
			dirs = node.Dirs.Data
		}
		if err := s.Sync(ctx, node, dirs); err != nil {
			return nil, fmt.Errorf("snapshot %s made, but syncing the file systems of its data directories failed: %w", t.Tag, err)
		}
		report.Synced, report.SyncedAll = dirs, len(dirs) == 0
	}
	return &taskOutput{Flush: report}, nil
}

// ForeignTagError is a flush that found its tag on the node already, put
// there by someone other than its job.
type ForeignTagError struct {
	Node, Tag, Job string
	// Err is nodetool's refusal.
	Err error
}

func (e *ForeignTagError) Error() string {
	return fmt.Sprintf("snapshot tag %s already exists on node %s and is not job %s's own (an operator's snapshot, or another job's "+
		"with the same tag): it is left in place and not backed up. Clear it if it is not needed (nodetool clearsnapshot -t %s), "+
		"or back up under another tag", e.Tag, e.Node, e.Job, e.Tag)
}

// Unwrap returns nodetool's refusal and ErrSnapshotExists.
func (e *ForeignTagError) Unwrap() []error { return []error{e.Err, ErrSnapshotExists} }

// Stderr is what nodetool printed.
func (e *ForeignTagError) Stderr() string { return errclass.Stderr(e.Err) }

// Code is the metric label.
func (e *ForeignTagError) Code() string { return "foreign_tag" }

// clear clears the job's tag on the task's node, when the job made one
// there: a node whose flush never ran nodetool snapshot (unreachable, say)
// has nothing to clear, and a tag that was there before the job is never
// touched. Asked for (Task.Facts), it first gathers the node's facts for
// the catalog (facts.go).
func (w *Worker) clear(ctx context.Context, log zerolog.Logger, t messages.Task) (*taskOutput, error) {
	if t.Node == nil {
		return nil, errclass.Permanent(errors.New("clear task has no node"))
	}
	node := *t.Node
	if w.jobs != nil {
		in, err := w.readIntent(ctx, messages.IntentKey(t.JobID, node.Name))
		if err != nil {
			return nil, err
		}
		switch {
		case in != nil && in.State == intentForeign:
			return &taskOutput{Clear: &messages.ClearReport{Note: "the tag on this node was there before the job; left in place"}}, nil
		case in == nil && !t.Flushed:
			return &taskOutput{Clear: &messages.ClearReport{Note: "nothing to clear: the job never ran nodetool snapshot on this node"}}, nil
		}
	}
	nt, err := w.drivers.NodeTool(t.Cluster)
	if err != nil {
		return nil, errclass.Permanent(err)
	}
	report := &messages.ClearReport{Cleared: true}
	fg, gather := nt.(FactGatherer)
	gather = gather && t.Facts
	var facts messages.NodeFacts
	if gather {
		facts = w.snapshotFacts(ctx, fg, t)
	}
	if err := nt.ClearSnapshot(ctx, node, t.Tag); err != nil {
		return nil, err
	}
	if gather {
		report.Facts = w.nodeFacts(ctx, log, fg, t, facts)
	}
	return &taskOutput{Clear: report}, nil
}

// snapshot takes the task's volume snapshots unless a snapshot carrying the
// task's tag exists already: EC2 takes no idempotency token, so the tag is
// what makes a redelivered task find its earlier work instead of repeating it.
func (w *Worker) snapshot(ctx context.Context, log zerolog.Logger, t messages.Task) (*taskOutput, error) {
	if t.Node == nil || len(t.Volumes) == 0 {
		return nil, errclass.Permanent(errors.New("snapshot task has no node or volumes"))
	}
	snap, err := w.drivers.Snapshotter(t.Cluster)
	if err != nil {
		return nil, errclass.Permanent(err)
	}
	// Whether the job ended is asked before looking for earlier work, not
	// between looking and creating: a slow answer there would widen the
	// window in which a redelivery to another worker also finds nothing.
	if w.jobEnded(ctx, t.JobID) {
		return nil, errSkip
	}
	existing, err := snap.Find(ctx, map[string]string{messages.TagTask: t.ID})
	if err != nil {
		return nil, err
	}
	have := map[string]Snapshot{}
	for _, s := range existing {
		have[s.VolumeID] = s
	}
	var missing []messages.Volume
	for _, v := range t.Volumes {
		if _, ok := have[v.ID]; !ok {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		// A partial set from an earlier attempt cannot be completed
		// consistently with a per-instance call; only the missing volumes
		// are taken, each still carrying the task tag.
		// A task stopped (shutdown, or its connection lost and the task
		// likely redelivered elsewhere) creates nothing more.
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		tags := maps.Clone(t.SnapshotTags)
		if tags == nil {
			tags = map[string]string{}
		}
		tags[messages.TagTask] = t.ID
		created, err := snap.Create(ctx, CreateRequest{Node: *t.Node, Volumes: missing, Tags: tags})
		if err != nil {
			return nil, err
		}
		for _, s := range created {
			have[s.VolumeID] = s
		}
	} else {
		log.Info().Msg("snapshots found by task tag; not taken again")
	}
	out := &taskOutput{}
	for _, v := range t.Volumes {
		s, ok := have[v.ID]
		if !ok {
			return nil, fmt.Errorf("driver returned no snapshot for volume %s", v.ID)
		}
		if s.State == StateError {
			return nil, errclass.Permanent(fmt.Errorf("snapshot %s of volume %s is in error: %s", s.ID, v.ID, s.StateMessage))
		}
		out.Snapshots = append(out.Snapshots, messages.SnapshotRef{
			SnapshotID: s.ID, VolumeID: v.ID, Node: t.Node.Name, State: s.State, StartTime: s.StartTime,
		})
	}
	return out, nil
}

// errStillPending is the transient error of an await task whose snapshots
// are not all complete by the end of one delivery.
var errStillPending = errors.New("snapshots still pending")

// await polls the job's snapshots until every one is completed. An error
// state fails the task permanently with the snapshot's own message.
func (w *Worker) await(ctx context.Context, log zerolog.Logger, t messages.Task) (*taskOutput, error) {
	snap, err := w.drivers.Snapshotter(t.Cluster)
	if err != nil {
		return nil, errclass.Permanent(err)
	}
	filter := map[string]string{messages.TagJob: t.JobID, messages.TagManaged: "true"}
	for {
		all, err := snap.Find(ctx, filter)
		if err != nil {
			return nil, err
		}
		pending, errored := 0, 0
		var bad []string
		for _, s := range all {
			switch s.State {
			case StateCompleted:
			case StateError:
				errored++
				bad = append(bad, fmt.Sprintf("%s (volume %s): %s", s.ID, s.VolumeID, s.StateMessage))
			default:
				pending++
			}
		}
		w.cfg.Observer.SnapshotStates(t.Cluster, pending, errored)
		if errored > 0 {
			sort.Strings(bad)
			return nil, errclass.Permanent(fmt.Errorf("%d snapshot(s) in error: %s", errored, strings.Join(bad, "; ")))
		}
		volumes := map[string]bool{}
		for _, s := range all {
			volumes[s.VolumeID] = true
		}
		if pending == 0 && len(volumes) >= t.Expect {
			if c, ok := snap.(Copier); ok {
				copies, err := c.CopyJob(ctx, t.JobID)
				if err != nil {
					return nil, fmt.Errorf("copy snapshots to other regions: %w", err)
				}
				if len(copies) > 0 {
					log.Info().Int("copies", len(copies)).Msg("snapshots copied to other regions")
				}
			}
			listing := messages.Listing{Schema: messages.ListingSchema, Snapshots: make([]messages.SnapshotRef, 0, len(all))}
			for _, s := range all {
				listing.Snapshots = append(listing.Snapshots, messages.SnapshotRef{
					SnapshotID: s.ID, VolumeID: s.VolumeID, Node: s.Tags[messages.TagNode], State: s.State, StartTime: s.StartTime,
				})
			}
			if d, ok := snap.(VolumeDescriber); ok {
				// What the volumes are (size, type, encryption) is for the
				// catalog; a volume that cannot be described is noted there,
				// it does not fail a backup whose snapshots all completed.
				vols, err := d.DescribeVolumes(ctx, all)
				if err != nil {
					log.Warn().Err(err).Msg("volumes not described")
					listing.Warnings = append(listing.Warnings, "volumes not described: "+err.Error())
				}
				listing.Volumes = vols
			}
			name, err := w.storeListing(ctx, t.JobID, listing)
			if err != nil {
				return nil, err
			}
			return &taskOutput{Listing: name}, nil
		}
		log.Debug().Int("pending", pending).Int("found", len(all)).Int("expect", t.Expect).Msg("waiting for snapshots")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %d of %d complete: %w", errStillPending, len(all)-pending, t.Expect, context.Cause(ctx))
		case <-time.After(w.cfg.AwaitPoll):
		}
	}
}

// storeListing keeps the snapshots an await task found, every one
// completed, where the coordinator writes the catalog from. It is an object
// rather than part of the result: a job of tens of thousands of volumes
// would not fit in one message.
func (w *Worker) storeListing(ctx context.Context, jobID string, listing messages.Listing) (string, error) {
	data, err := json.Marshal(listing)
	if err != nil {
		return "", err
	}
	store, err := w.js.ObjectStore(ctx, messages.BucketPlans)
	if err != nil {
		return "", fmt.Errorf("snapshot listing: %w", err)
	}
	name := messages.SnapshotListing(jobID)
	if _, err := store.PutBytes(ctx, name, data); err != nil {
		return "", fmt.Errorf("snapshot listing: %w", err)
	}
	return name, nil
}

// retention deletes the managed snapshots of the retired jobs. A snapshot in
// use (an AMI or a volume made from it) is reported and skipped.
func (w *Worker) retention(ctx context.Context, log zerolog.Logger, t messages.Task) (*taskOutput, error) {
	snap, err := w.drivers.Snapshotter(t.Cluster)
	if err != nil {
		return nil, errclass.Permanent(err)
	}
	out := &taskOutput{}
	for _, job := range t.Retire {
		if err := messages.ValidateJobID(job); err != nil {
			return nil, errclass.Permanent(err)
		}
		found, err := snap.Find(ctx, map[string]string{
			messages.TagJob: job, messages.TagManaged: "true", messages.TagCluster: t.Cluster,
		})
		if err != nil {
			return nil, err
		}
		sort.Slice(found, func(i, j int) bool { return found[i].ID < found[j].ID })
		kept := false
		for _, s := range found {
			if t.DryRun {
				out.Deleted = append(out.Deleted, s.ID)
				continue
			}
			err := snap.Delete(ctx, s.ID)
			switch {
			case err == nil:
				out.Deleted = append(out.Deleted, s.ID)
				log.Info().Str("snapshot_id", s.ID).Str("retired_job", job).Msg("snapshot deleted")
			case errors.Is(err, ErrSnapshotInUse):
				out.Warnings = append(out.Warnings, fmt.Sprintf("snapshot %s of job %s is in use; kept", s.ID, job))
				kept = true
			case errors.Is(err, ErrNotManaged):
				out.Warnings = append(out.Warnings, fmt.Sprintf("snapshot %s is not managed; kept", s.ID))
				kept = true
			default:
				return nil, err
			}
		}
		if c, ok := snap.(Copier); ok && !t.DryRun {
			deleted, err := c.DeleteCopies(ctx, job)
			out.Deleted = append(out.Deleted, deleted...)
			switch {
			case errors.Is(err, ErrSnapshotInUse):
				out.Warnings = append(out.Warnings, fmt.Sprintf("a copy of job %s is in use; kept: %v", job, err))
				kept = true
			case err != nil:
				return nil, err
			}
		}
		if kept {
			out.Retained = append(out.Retained, job)
		} else if !t.DryRun {
			out.Retired = append(out.Retired, job)
		}
	}
	return out, nil
}
