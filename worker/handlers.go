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
	Trimmed   []messages.Trim
	Warnings  []string
	Listing   string
	Flush     *messages.FlushReport
	Clear     *messages.ClearReport
	Output    string
	ExitCode  int
	Restore   *messages.RestoreReport
}

// dispatch runs the task's handler. attempt is the delivery's number;
// fence, for kinds that take a lease, reports whether this execution still
// holds it.
func (w *Worker) dispatch(ctx context.Context, log zerolog.Logger, t messages.Task, attempt int, fence func(context.Context) error) (*taskOutput, error) {
	switch t.Kind {
	case messages.KindFlush:
		return w.flush(ctx, log, t, attempt)
	case messages.KindSnapshot:
		return w.snapshot(ctx, log, t, fence)
	case messages.KindClear:
		return w.clear(ctx, log, t)
	case messages.KindAwait:
		return w.await(ctx, log, t)
	case messages.KindRetention, messages.KindCleanup:
		return w.retention(ctx, log, t)
	case messages.KindHook:
		return w.hook(ctx, log, t)
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
	return w.jobPhase(ctx, jobID).Terminal()
}

// jobPhase reads the phase of the task's job; "" when it cannot be read (the
// job record is the coordinator's: a task goes on without it). The read
// begins after the call (phaseReads), shared with the job's other tasks
// asking at the same time.
func (w *Worker) jobPhase(ctx context.Context, jobID string) messages.Phase {
	if w.jobs == nil {
		return ""
	}
	// A read the server never answers (it stopped mid-request) would
	// otherwise wait out the task's own deadline while heartbeats keep the
	// task from redelivery; the check is only an optimisation.
	gctx, cancel := context.WithTimeout(ctx, jobCheckTimeout)
	defer cancel()
	return w.phases.phase(gctx, w.jobs, jobID)
}

// flushable reports whether a job in phase may still run a node's nodetool
// snapshot: once its barrier released the volume snapshots, a flush (a
// redelivery, or a worker that was frozen) is too late to be in them, and
// the tag it would make could outlive the node's clean-up.
func flushable(phase messages.Phase) bool {
	return phase == "" || phase == messages.PhasePlanned || phase == messages.PhaseFlushing
}

// flushTooLate answers a flush whose job is past its flush phase: nothing is
// run on the node. The intent this attempt recorded is withdrawn; an
// earlier attempt's stays, for the node's clean-up (or, once the job ended,
// flushAfterEnd) to clear what that attempt made.
func (w *Worker) flushTooLate(ctx context.Context, log zerolog.Logger, t messages.Task, phase messages.Phase, ownIntent func()) error {
	if ownIntent != nil {
		ownIntent()
	}
	if phase.Terminal() {
		return w.flushAfterEnd(ctx, log, t)
	}
	log.Info().Str("job_phase", string(phase)).Msg("flush delivered after its job's barrier; nothing run on the node")
	return errSkip
}

// flush runs nodetool snapshot on the task's node and reports success only
// once the snapshot is verified, the job's own, and durable:
//
//  1. the node's executor gets ready (connected, host key verified): a node
//     that cannot be reached fails here, before anything is recorded;
//  2. the job records its intent to run nodetool there (intent.go);
//  3. the flush waits for the job's fire time (Task.FireAt), so that every
//     node, armed by steps 1 and 2, starts at one instant; a job that ended
//     meanwhile (another node failed to arm) is not flushed here at all;
//  4. nodetool snapshot runs, and must report the tag made; a tag already
//     on the node counts only when an earlier attempt of this job recorded
//     its intent before, and is otherwise someone else's: the node fails;
//  5. the file systems holding the node's data directories are synced, so
//     the hard links have reached the volumes before any volume snapshot is
//     requested.
func (w *Worker) flush(ctx context.Context, log zerolog.Logger, t messages.Task, attempt int) (*taskOutput, error) {
	if t.Node == nil {
		return nil, errclass.Permanent(errors.New("flush task has no node"))
	}
	if phase := w.jobPhase(ctx, t.JobID); !flushable(phase) {
		return nil, w.flushTooLate(ctx, log, t, phase, nil)
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
	// With a fire time ahead, the command itself is made ready too (its
	// session and shell started), so firing costs one write.
	var armed ArmedSnapshot
	if a, ok := nt.(SnapshotArmer); ok && t.FireAt.After(w.cfg.Now()) {
		actx, withdraw := context.WithCancel(ctx)
		defer withdraw()
		armed, err = a.ArmSnapshot(actx, node, t.Tag, t.Keyspaces)
		if err != nil {
			return nil, err
		}
		defer func() {
			// Unless fired, the command is withdrawn, never run.
			if armed != nil {
				withdraw()
				_ = armed.Wait()
			}
		}()
	}
	key := messages.IntentKey(t.JobID, node.Name)
	earlier, rev, err := w.beginIntent(ctx, key, attempt)
	if err != nil {
		return nil, err
	}
	if earlier != nil && earlier.State == intentForeign {
		return nil, errclass.Permanent(&ForeignTagError{Node: node.Name, Tag: t.Tag, Job: t.JobID})
	}
	var ownIntent func()
	if earlier == nil {
		ownIntent = func() { w.withdrawIntent(ctx, key, rev) }
	}
	// The job is checked a little before the fire time, so the check's
	// round trip is not paid by every node at once after it: each node
	// starts its command on its own clock at the fire time. A job that
	// failed while the node was armed (another node could not be reached)
	// is flushed here no more.
	checked := false
	waited, err := w.awaitFire(ctx, t.FireAt.Add(-fireCheckLead))
	if err == nil && waited {
		if phase := w.jobPhase(ctx, t.JobID); !flushable(phase) {
			return nil, w.flushTooLate(ctx, log, t, phase, ownIntent)
		}
		checked = true
	}
	if err == nil {
		_, err = w.awaitFire(ctx, t.FireAt)
	}
	if err != nil {
		if ownIntent != nil {
			ownIntent()
		}
		return nil, err
	}
	// A flush that did not check ahead of the fire time (it arrived late),
	// or that fires late (its process was frozen, or starved), checks now:
	// its job may have passed the barrier, and cleared the node, meanwhile.
	if !checked || w.cfg.Now().Sub(t.FireAt) > fireLate {
		if phase := w.jobPhase(ctx, t.JobID); !flushable(phase) {
			return nil, w.flushTooLate(ctx, log, t, phase, ownIntent)
		}
	}
	started := w.cfg.Now()
	if armed != nil {
		armed.Fire()
		err = armed.Wait()
		armed = nil
	} else {
		err = nt.Snapshot(ctx, node, t.Tag, t.Keyspaces)
	}
	returned := w.cfg.Now()
	again := false
	switch {
	case err == nil:
	case errors.Is(err, ErrSnapshotExists) && earlier != nil:
		// An earlier attempt of this job ran nodetool snapshot here: the
		// tag is the job's own, and this is a redelivery.
		again = true
		log.Info().Int("earlier_attempt", earlier.Attempt).Msg("snapshot tag already made by an earlier attempt of this flush")
	case errors.Is(err, ErrSnapshotExists) && t.Tag == messages.DefaultTag(t.JobID):
		// The job's default tag names the job: only an earlier attempt of
		// it can have made the snapshot, one whose intent did not survive
		// (withdrawn after an error that hid a command that did run). This
		// attempt's intent stands, so the clean-up clears the tag.
		again = true
		log.Warn().Msg("snapshot tag, the job's own by its name, already made by an earlier attempt of this flush that left no intent")
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
	report := &messages.FlushReport{Tag: t.Tag, Again: again, Started: started, Returned: returned}
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

// fireCheckLead is how long before its fire time an armed flush checks that
// its job still runs. A job that ends within it (another node failed to arm
// at the last moment) may find its nodes flushed; their tags are cleared as
// those of any flush that reports after its job ended.
const fireCheckLead = 250 * time.Millisecond

// fireLate is how far past its fire time a flush that checked its job ahead
// of it checks again before it fires.
const fireLate = 100 * time.Millisecond

// awaitFire waits until fireAt, and reports whether it had to: a task that
// arrives at or after its fire time (a redelivery, a late worker) fires at
// once. The wait ends early only with ctx, whose cause it returns marked as
// nothing run.
func (w *Worker) awaitFire(ctx context.Context, fireAt time.Time) (bool, error) {
	if fireAt.IsZero() {
		return false, nil
	}
	d := fireAt.Sub(w.cfg.Now())
	if d <= 0 {
		return false, nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true, nil
	case <-ctx.Done():
		return true, errclass.NotRun(fmt.Errorf("waiting for the flush's fire time %s: %w", fireAt.Format(time.RFC3339Nano), context.Cause(ctx)))
	}
}

// flushAfterEnd answers a flush delivered after its job ended. When an
// earlier attempt ran nodetool snapshot on the node (its intent says so),
// the tag it made may postdate the job's clean-up of the node, and its
// result may never have been counted (a publish that failed, then this
// redelivery): the tag is the job's own, so it is cleared, once, before the
// task is let go. Without such an intent nothing of the job's is on the
// node.
func (w *Worker) flushAfterEnd(ctx context.Context, log zerolog.Logger, t messages.Task) error {
	if w.jobs == nil {
		return errSkip
	}
	in, err := w.readIntent(ctx, messages.IntentKey(t.JobID, t.Node.Name))
	if err != nil {
		return err
	}
	if in == nil || in.State != intentRan {
		return errSkip
	}
	nt, err := w.drivers.NodeTool(t.Cluster)
	if err != nil {
		return errclass.Permanent(err)
	}
	// One try: the node's own clear task, with its retries, is usually
	// still running when the node cannot be reached now.
	if err := nt.ClearSnapshot(ctx, *t.Node, t.Tag); err != nil {
		log.Warn().Err(err).Int("earlier_attempt", in.Attempt).Str("tag", t.Tag).
			Msg("flush delivered after its job ended; the tag its earlier attempt may have made could not be cleared: check the node")
		return errSkip
	}
	log.Warn().Int("earlier_attempt", in.Attempt).Msg("flush delivered after its job ended; the tag its earlier attempt made is cleared")
	return errSkip
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
	gather = gather && t.Facts && w.jobs != nil
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
//
// An earlier snapshot in error (a copy a crash interrupted, or one EC2
// failed) is no backup: it is deleted and the volume taken again, as often
// as deliveries and the phase deadline allow. That is consistent only
// while the node's hard links exist, which they do: the node's clear waits
// for this task's success.
func (w *Worker) snapshot(ctx context.Context, log zerolog.Logger, t messages.Task, fence func(context.Context) error) (*taskOutput, error) {
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
	// The one look-up of the task's earlier work (drivers do not look
	// again). A node's data centre narrows it to the data centre's region.
	filter := map[string]string{messages.TagTask: t.ID}
	if dc := t.SnapshotTags[messages.TagDC]; dc != "" {
		filter[messages.TagDC] = dc
	}
	existing, err := snap.Find(ctx, filter)
	if err != nil {
		return nil, err
	}
	have := map[string]Snapshot{}
	var errored []Snapshot
	for _, s := range existing {
		if s.State == StateError {
			errored = append(errored, s)
			continue
		}
		if _, dup := have[s.VolumeID]; !dup {
			have[s.VolumeID] = s
		}
	}
	if len(errored) > 0 {
		if err := w.retake(ctx, log, snap, t.Cluster, errored); err != nil {
			return nil, err
		}
	}
	settled := true
	for _, v := range t.Volumes {
		if s, ok := have[v.ID]; !ok || s.State != StateCompleted {
			settled = false
		}
	}
	if !settled {
		// Missing volumes are taken, each carrying the task tag; a
		// snapshot still pending is left to its driver to settle (the fs
		// driver waits for a copy another process is making). A partial set
		// from an earlier attempt cannot be completed consistently with a
		// per-instance call; the drivers take only what is missing, told
		// what was found.
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
		found := make([]Snapshot, 0, len(have))
		for _, s := range have {
			found = append(found, s)
		}
		created, err := snap.Create(ctx, CreateRequest{Node: *t.Node, Volumes: t.Volumes, Tags: tags, Fence: fence, Existing: found})
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
			// Failed as it was taken: the next delivery takes it again.
			return nil, fmt.Errorf("snapshot %s of volume %s is in error: %s", s.ID, v.ID, s.StateMessage)
		}
		out.Snapshots = append(out.Snapshots, messages.SnapshotRef{
			SnapshotID: s.ID, VolumeID: v.ID, Region: s.Region, Node: t.Node.Name, State: s.State, StartTime: s.StartTime,
		})
	}
	return out, nil
}

// retake deletes a task's snapshots in error, then, when the provider asks
// for a pause between snapshots of one volume, waits until the failed ones
// are that far behind: EC2 counts a failed snapshot against the volume's
// limits, and taking it again at once would only be refused.
func (w *Worker) retake(ctx context.Context, log zerolog.Logger, snap Snapshotter, cluster string, errored []Snapshot) error {
	var latest time.Time
	for _, s := range errored {
		if err := deleteSnapshot(ctx, snap, s); err != nil && !errors.Is(err, ErrSnapshotGone) {
			return fmt.Errorf("delete snapshot %s of volume %s, in error, before taking it again: %w", s.ID, s.VolumeID, err)
		}
		log.Warn().Str("snapshot_id", s.ID).Str("volume_id", s.VolumeID).Str("state_message", s.StateMessage).
			Msg("snapshot in error deleted; taking the volume again")
		w.cfg.Observer.SnapshotRetaken(cluster)
		if s.StartTime.After(latest) {
			latest = s.StartTime
		}
	}
	p, ok := snap.(RetakePacer)
	if !ok {
		return nil
	}
	wait := latest.Add(p.RetakeAfter()).Sub(w.cfg.Now())
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// errStillPending is the transient error of an await task whose snapshots
// are not all complete by the end of one delivery.
var errStillPending = errors.New("snapshots still pending")

// await polls the job's snapshots until every one is completed.
//
// A snapshot in error beside a good snapshot of the same volume is what a
// crash left behind and its task already replaced: it is deleted and left
// out. A volume whose only snapshot is in error fails the task for good,
// with the snapshot's own message: taking it again now would not be
// consistent, since the node's snapshot tag was cleared once the node's
// snapshots were initiated.
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
		good, stale, failed := sortByState(all)
		for _, s := range stale {
			if err := deleteSnapshot(ctx, snap, s); err != nil && !errors.Is(err, ErrSnapshotGone) {
				return nil, fmt.Errorf("delete snapshot %s of volume %s, in error and replaced: %w", s.ID, s.VolumeID, err)
			}
			log.Info().Str("snapshot_id", s.ID).Str("volume_id", s.VolumeID).Msg("snapshot in error, already replaced, deleted")
		}
		pending := 0
		for _, s := range good {
			if s.State != StateCompleted {
				pending++
			}
		}
		w.cfg.Observer.SnapshotStates(t.Cluster, pending, len(failed))
		if len(failed) > 0 {
			bad := make([]string, 0, len(failed))
			for _, s := range failed {
				bad = append(bad, fmt.Sprintf("%s (volume %s): %s", s.ID, s.VolumeID, s.StateMessage))
			}
			sort.Strings(bad)
			return nil, errclass.Permanent(fmt.Errorf("%d snapshot(s) in error: %s", len(failed), strings.Join(bad, "; ")))
		}
		volumes := map[string]bool{}
		for _, s := range good {
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
			listing := messages.Listing{Schema: messages.ListingSchema, Snapshots: make([]messages.SnapshotRef, 0, len(good))}
			for _, s := range good {
				listing.Snapshots = append(listing.Snapshots, messages.SnapshotRef{
					SnapshotID: s.ID, VolumeID: s.VolumeID, Region: s.Region, Node: s.Tags[messages.TagNode], State: s.State, StartTime: s.StartTime,
				})
			}
			if d, ok := snap.(VolumeDescriber); ok {
				// What the volumes are (size, type, encryption) is for the
				// catalog; a volume that cannot be described is noted there,
				// it does not fail a backup whose snapshots all completed.
				vols, err := d.DescribeVolumes(ctx, good)
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
		log.Debug().Int("pending", pending).Int("found", len(good)).Int("expect", t.Expect).Msg("waiting for snapshots")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %d of %d complete: %w", errStillPending, len(good)-pending, t.Expect, context.Cause(ctx))
		case <-time.After(w.cfg.AwaitPoll):
		}
	}
}

// sortByState splits a job's snapshots into the good ones (pending or
// completed), those in error beside a good snapshot of the same volume
// (stale: replaced by their task), and those in error alone (failed).
func sortByState(all []Snapshot) (good, stale, failed []Snapshot) {
	healthy := map[string]bool{}
	for _, s := range all {
		if s.State != StateError {
			healthy[s.VolumeID] = true
			good = append(good, s)
		}
	}
	for _, s := range all {
		switch {
		case s.State != StateError:
		case healthy[s.VolumeID]:
			stale = append(stale, s)
		default:
			failed = append(failed, s)
		}
	}
	return good, stale, failed
}

// listingTimeout bounds storing an await task's listing.
const listingTimeout = 30 * time.Second

// storeListing keeps the snapshots an await task found, every one
// completed, where the coordinator writes the catalog from. It is an object
// rather than part of the result: a job of tens of thousands of volumes
// would not fit in one message.
func (w *Worker) storeListing(ctx context.Context, jobID string, listing messages.Listing) (string, error) {
	data, err := json.Marshal(listing)
	if err != nil {
		return "", err
	}
	// Bounded on its own, not by the task's deadline: a put the server
	// never answers (it stopped mid-transfer) would otherwise hold the
	// task, heartbeating and never redelivered, until the phase failed.
	ctx, cancel := context.WithTimeout(ctx, listingTimeout)
	defer cancel()
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

// retention deletes the managed snapshots of the retired jobs, and the
// parts its task trims of the jobs some region still keeps. A snapshot in
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
		kept, err := w.deleteOwn(ctx, log, snap, t, job, out)
		if err != nil {
			return nil, err
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
	for _, trim := range t.Trim {
		if err := messages.ValidateJobID(trim.JobID); err != nil {
			return nil, errclass.Permanent(err)
		}
		done := messages.Trim{JobID: trim.JobID}
		if trim.Source {
			kept, err := w.deleteOwn(ctx, log, snap, t, trim.JobID, out)
			if err != nil {
				return nil, err
			}
			done.Source = !kept
		}
		for _, region := range trim.CopyRegions {
			ok, err := trimCopies(ctx, log, snap, trim.JobID, region, t.DryRun, out)
			if err != nil {
				return nil, err
			}
			if ok {
				done.CopyRegions = append(done.CopyRegions, region)
			}
		}
		if !t.DryRun && (done.Source || len(done.CopyRegions) > 0) {
			out.Trimmed = append(out.Trimmed, done)
		}
	}
	return out, nil
}

// deleteOwn deletes a job's own managed snapshots (not its copies), each
// in its region. It reports whether one was kept (in use, or not managed).
func (w *Worker) deleteOwn(ctx context.Context, log zerolog.Logger, snap Snapshotter, t messages.Task, job string, out *taskOutput) (kept bool, err error) {
	found, err := snap.Find(ctx, map[string]string{
		messages.TagJob: job, messages.TagManaged: "true", messages.TagCluster: t.Cluster,
	})
	if err != nil {
		return false, err
	}
	sort.Slice(found, func(i, j int) bool { return found[i].ID < found[j].ID })
	for _, s := range found {
		if t.DryRun {
			out.Deleted = append(out.Deleted, s.ID)
			continue
		}
		err := deleteSnapshot(ctx, snap, s)
		switch {
		case err == nil:
			out.Deleted = append(out.Deleted, s.ID)
			log.Info().Str("snapshot_id", s.ID).Str("region", s.Region).Str("retired_job", job).Msg("snapshot deleted")
		case errors.Is(err, ErrSnapshotGone):
			// Another task deleted it since it was listed: done, and
			// counted by that task.
		case errors.Is(err, ErrSnapshotInUse):
			out.Warnings = append(out.Warnings, fmt.Sprintf("snapshot %s of job %s is in use; kept", s.ID, job))
			kept = true
		case errors.Is(err, ErrNotManaged):
			out.Warnings = append(out.Warnings, fmt.Sprintf("snapshot %s is not managed; kept", s.ID))
			kept = true
		default:
			return kept, err
		}
	}
	return kept, nil
}

// trimCopies deletes a job's copies in one copy region, in that region. It
// reports whether none is left there.
func trimCopies(ctx context.Context, log zerolog.Logger, snap Snapshotter, job, region string, dryRun bool, out *taskOutput) (bool, error) {
	c, ok := snap.(CopyTrimmer)
	if !ok {
		out.Warnings = append(out.Warnings, fmt.Sprintf("copies of job %s in %s kept: the cluster's snapshotter cannot delete one region's copies", job, region))
		return false, nil
	}
	if dryRun {
		return false, nil
	}
	deleted, err := c.DeleteCopiesIn(ctx, job, region)
	out.Deleted = append(out.Deleted, deleted...)
	for _, id := range deleted {
		log.Info().Str("snapshot_id", id).Str("region", region).Str("retired_job", job).Msg("copy deleted")
	}
	switch {
	case errors.Is(err, ErrSnapshotInUse):
		out.Warnings = append(out.Warnings, fmt.Sprintf("a copy of job %s in %s is in use; kept: %v", job, region, err))
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// deleteSnapshot deletes a snapshot Find reported, in its own region when
// the driver keeps snapshots in several.
func deleteSnapshot(ctx context.Context, snap Snapshotter, s Snapshot) error {
	if r, ok := snap.(RegionalDeleter); ok && s.Region != "" {
		return r.DeleteIn(ctx, s.Region, s.ID)
	}
	return snap.Delete(ctx, s.ID)
}
