package planner

import (
	"fmt"
	"slices"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// restoreRecord is a restore's record in the restores bucket: the public
// messages.Restore plus the coordinator's bookkeeping. Like a job's record
// it changes only by compare-and-set, every change is idempotent, and
// apply, advance, cancel and expire are pure functions of the record, the
// plan and the time given.
type restoreRecord struct {
	messages.Restore

	VolDone     bitset `json:"vol_done"`
	VolFailed   bitset `json:"vol_failed"`
	Stopped     bitset `json:"stopped"`
	StopFailed  bitset `json:"stop_failed"`
	Prepared    bitset `json:"prepared"`
	PrepFailed  bitset `json:"prepare_failed"`
	Started     bitset `json:"started"`
	StartFailed bitset `json:"start_failed"`
	// Running marks the nodes whose stop found Cassandra running and was
	// not allowed to stop it.
	Running bitset `json:"running"`

	VerifyDone bool `json:"verify_done,omitempty"`
	// Held is set once the backup's hold is in place; Released once it is
	// gone again.
	Held     bool `json:"held,omitempty"`
	Released bool `json:"released,omitempty"`

	Outbox      []restoreEffect `json:"outbox,omitempty"`
	LastEventAt time.Time       `json:"last_event_at,omitempty"`
}

// RestoreReason says why a restore failed or was cancelled.
type RestoreReason string

// Reasons a restore ends without a restored cluster.
const (
	RestoreReasonVolume        RestoreReason = "volume_failed"  // a volume could not be made
	RestoreReasonNodeRunning   RestoreReason = "node_running"   // a node's Cassandra runs and stop_running was not given
	RestoreReasonStop          RestoreReason = "stop_failed"    // a node could not be stopped
	RestoreReasonPrepare       RestoreReason = "prepare_failed" // a node's files could not be put in place
	RestoreReasonStart         RestoreReason = "start_failed"   // a node did not start
	RestoreReasonVerify        RestoreReason = "verify_failed"  // the restored cluster is not as the backup says
	RestoreReasonPhaseDeadline RestoreReason = "phase_deadline" // the current phase's deadline passed
	RestoreReasonDeadline      RestoreReason = "deadline"       // the restore's deadline passed
	RestoreReasonCancelled     RestoreReason = "cancelled"      // an operator cancelled it
)

// restoreEffectKind names something a restore record change decided to do
// outside the record.
type restoreEffectKind string

// Outbox effects of a restore.
const (
	// rfxHold holds the backup so retention keeps it while the restore runs.
	rfxHold restoreEffectKind = "hold"
	// rfxVolumes publishes the restore-volume task of every volume not yet
	// settled.
	rfxVolumes restoreEffectKind = "volumes"
	// rfxStop, rfxPrepare, rfxStart publish the node tasks of their phase
	// for every node not yet settled.
	rfxStop    restoreEffectKind = "stop"
	rfxPrepare restoreEffectKind = "prepare"
	rfxStart   restoreEffectKind = "start"
	// rfxVerify publishes the verification task.
	rfxVerify restoreEffectKind = "verify"
	// rfxRelease releases the backup's hold once the restore ended.
	rfxRelease restoreEffectKind = "release"
)

// restoreEffect is one entry of a restore's outbox.
type restoreEffect struct {
	Kind restoreEffectKind `json:"kind"`
}

func (fx restoreEffect) String() string { return string(fx.Kind) }

// restoreNodeKinds are the per-node task kinds, by the effect that
// publishes them.
var restoreNodeKinds = map[restoreEffectKind]messages.Kind{
	rfxStop: messages.KindRestoreStop, rfxPrepare: messages.KindRestorePrepare, rfxStart: messages.KindRestoreStart,
}

func newRestoreRecord(p *RestorePlan, now time.Time) *restoreRecord {
	v, n := len(p.Volumes), len(p.Nodes)
	r := &restoreRecord{
		Restore: messages.Restore{
			Schema: messages.RestoreSchema, ID: p.RestoreID, RequestID: p.Request.RequestID, Cluster: p.Cluster,
			Backup: p.Backup, Tag: p.Tag, Target: p.Target, TargetCluster: p.TargetCluster, DryRun: p.Request.DryRun,
			Reason: p.Request.Reason, RequestedBy: p.Request.RequestedBy, Phase: messages.RestorePlanned,
			CreatedAt: now, UpdatedAt: now, PhaseTimes: map[messages.RestorePhase]time.Time{messages.RestorePlanned: now},
			Warnings: slices.Clone(p.Warnings),
		},
		VolDone: newBitset(v), VolFailed: newBitset(v),
		Stopped: newBitset(n), StopFailed: newBitset(n), Prepared: newBitset(n), PrepFailed: newBitset(n),
		Started: newBitset(n), StartFailed: newBitset(n), Running: newBitset(n),
	}
	r.Deadline = now.Add(DefaultRestoreTimeout)
	if d := p.Request.Deadline; !d.IsZero() && d.Before(r.Deadline) {
		r.Deadline = d
	}
	if p.Request.DryRun {
		// A dry run is its plan: stored, shown, and nothing done.
		r.setPhase(p, messages.RestoreSucceeded, now, "")
		r.refreshProgress(p)
		return r
	}
	r.PhaseDeadline = now.Add(p.phaseTimeout(messages.RestoreVolumes))
	r.Outbox = []restoreEffect{{Kind: rfxHold}, {Kind: rfxVolumes}}
	r.refreshProgress(p)
	return r
}

// restoreTransition is one phase change, reported after it is stored.
type restoreTransition struct {
	from, to messages.RestorePhase
	at       time.Time
	err      string
	reason   RestoreReason
}

func (r *restoreRecord) addOutbox(fx restoreEffect) {
	if !slices.Contains(r.Outbox, fx) {
		r.Outbox = append(r.Outbox, fx)
	}
}

func (r *restoreRecord) setPhase(p *RestorePlan, to messages.RestorePhase, now time.Time, errMsg string) restoreTransition {
	t := restoreTransition{from: r.Phase, to: to, at: now, err: errMsg}
	r.Phase = to
	if r.PhaseTimes == nil {
		r.PhaseTimes = map[messages.RestorePhase]time.Time{}
	}
	r.PhaseTimes[to] = now
	if errMsg != "" && r.Error == "" {
		r.Error = errMsg
	}
	if to.Terminal() {
		r.PhaseDeadline = time.Time{}
		if r.Held && !r.Released {
			r.addOutbox(restoreEffect{Kind: rfxRelease})
		}
	} else {
		r.PhaseDeadline = now.Add(p.phaseTimeout(to))
	}
	return t
}

func (r *restoreRecord) refreshProgress(p *RestorePlan) {
	r.Progress = messages.RestoreProgress{
		Volumes: len(p.Volumes), VolumesDone: r.VolDone.count(), VolumesFailed: r.VolFailed.count(),
		Nodes: len(p.Nodes), Stopped: r.Stopped.count(), Prepared: r.Prepared.count(), Started: r.Started.count(),
		NodesFailed: r.StopFailed.count() + r.PrepFailed.count() + r.StartFailed.count(),
		Verified:    r.VerifyDone && r.EndReason == "",
	}
}

func (r *restoreRecord) addWarning(w string) {
	if !slices.Contains(r.Warnings, w) && len(r.Warnings) < maxFailures {
		r.Warnings = append(r.Warnings, w)
	}
}

func (r *restoreRecord) failure(ev *messages.TaskResult) {
	for _, x := range r.Failures {
		if x.TaskID == ev.TaskID {
			return
		}
	}
	if len(r.Failures) < maxFailures {
		r.Failures = append(r.Failures, messages.Failure{TaskID: ev.TaskID, Kind: ev.Kind, Target: ev.Target,
			Error: ev.Error, Class: ev.ErrorClass, Stderr: ev.Stderr})
	}
}

// apply records one task result; false when it changes nothing.
func (r *restoreRecord) apply(p *RestorePlan, ev *messages.TaskResult, now time.Time) bool {
	var changed bool
	switch ev.Kind {
	case messages.KindRestoreVolume:
		changed = r.applyVolume(p, ev)
	case messages.KindRestoreStop:
		changed = r.applyNode(p, ev, r.Stopped, r.StopFailed)
	case messages.KindRestorePrepare:
		changed = r.applyNode(p, ev, r.Prepared, r.PrepFailed)
	case messages.KindRestoreStart:
		changed = r.applyNode(p, ev, r.Started, r.StartFailed)
	case messages.KindRestoreVerify:
		if !r.VerifyDone {
			r.VerifyDone = true
			if ev.Outcome != messages.OutcomeSucceeded {
				r.failure(ev)
				if r.Error == "" && !r.Phase.Terminal() {
					r.Error = "verification failed: " + ev.Error
				}
			}
			changed = true
		}
	}
	if changed {
		r.LastEventAt = now
		r.refreshProgress(p)
	}
	return changed
}

func (r *restoreRecord) applyVolume(p *RestorePlan, ev *messages.TaskResult) bool {
	j := slices.IndexFunc(p.Volumes, func(v RestoreVolumePlan) bool { return v.Volume.SnapshotID == ev.Target })
	if j < 0 {
		return false
	}
	if ev.Outcome != messages.OutcomeSucceeded {
		if r.VolDone.has(j) || !r.VolFailed.set(j) {
			return false
		}
		r.failure(ev)
		return true
	}
	// What each volume task made stays in its result event, where
	// RestoredVolumes reads it: the record, rewritten at every event,
	// keeps only counts.
	return !r.VolFailed.has(j) && r.VolDone.set(j)
}

func (r *restoreRecord) applyNode(p *RestorePlan, ev *messages.TaskResult, done, failed bitset) bool {
	i := slices.IndexFunc(p.Nodes, func(n RestoreNodePlan) bool { return n.Node.Name == ev.Target })
	if i < 0 {
		return false
	}
	if ev.Outcome != messages.OutcomeSucceeded {
		if done.has(i) || !failed.set(i) {
			return false
		}
		if ev.Kind == messages.KindRestoreStop && ev.Restore != nil && ev.Restore.Step == messages.StepRunning {
			r.Running.set(i)
		}
		r.failure(ev)
		return true
	}
	if failed.has(i) {
		return false
	}
	if !done.set(i) {
		return false
	}
	if rep := ev.Restore; rep != nil {
		for _, n := range rep.Notes {
			r.addWarning(ev.Target + ": " + n)
		}
	}
	return true
}

// advance moves the restore through its phases as far as the recorded
// results allow, queueing the effects each step needs.
func (r *restoreRecord) advance(p *RestorePlan, now time.Time) []restoreTransition {
	var ts []restoreTransition
	for {
		t, ok := r.step(p, now)
		if !ok {
			break
		}
		ts = append(ts, t)
	}
	if len(ts) > 0 {
		r.refreshProgress(p)
	}
	return ts
}

func (r *restoreRecord) step(p *RestorePlan, now time.Time) (restoreTransition, bool) {
	switch r.Phase {
	case messages.RestoreVolumes:
		if r.VolFailed.count() > 0 {
			return r.fail(p, now, RestoreReasonVolume, "volume restore failed for "+r.failedTargets(messages.KindRestoreVolume)), true
		}
		if r.VolDone.count() < len(p.Volumes) {
			return restoreTransition{}, false
		}
		if p.Target == messages.TargetVolumes {
			return r.setPhase(p, messages.RestoreSucceeded, now, ""), true
		}
		r.addOutbox(restoreEffect{Kind: rfxStop})
		return r.setPhase(p, messages.RestoreStopping, now, ""), true
	case messages.RestoreStopping:
		// The barrier of a restore: no node is touched before every node
		// is known stopped, so a refusal (a node still running) changes
		// nothing anywhere.
		if r.StopFailed.count() > 0 {
			if r.Running.count() > 0 {
				return r.fail(p, now, RestoreReasonNodeRunning, "Cassandra runs on "+r.failedTargets(messages.KindRestoreStop)+
					"; no node was changed: stop it, or restore with stop_running"), true
			}
			return r.fail(p, now, RestoreReasonStop, "stop failed on "+r.failedTargets(messages.KindRestoreStop)), true
		}
		if r.Stopped.count() < len(p.Nodes) {
			return restoreTransition{}, false
		}
		r.addOutbox(restoreEffect{Kind: rfxPrepare})
		return r.setPhase(p, messages.RestorePreparing, now, ""), true
	case messages.RestorePreparing:
		// Every node prepared before any starts: a started node would
		// gossip with, and stream to, a node still holding post-barrier
		// data.
		if r.PrepFailed.count() > 0 {
			return r.fail(p, now, RestoreReasonPrepare, "prepare failed on "+r.failedTargets(messages.KindRestorePrepare)+
				"; every node is stopped, no node was started"), true
		}
		if r.Prepared.count() < len(p.Nodes) {
			return restoreTransition{}, false
		}
		r.addOutbox(restoreEffect{Kind: rfxStart})
		return r.setPhase(p, messages.RestoreStarting, now, ""), true
	case messages.RestoreStarting:
		if r.StartFailed.count() > 0 {
			return r.fail(p, now, RestoreReasonStart, "start failed on "+r.failedTargets(messages.KindRestoreStart)), true
		}
		if r.Started.count() < len(p.Nodes) {
			return restoreTransition{}, false
		}
		r.addOutbox(restoreEffect{Kind: rfxVerify})
		return r.setPhase(p, messages.RestoreVerifying, now, ""), true
	case messages.RestoreVerifying:
		if !r.VerifyDone {
			return restoreTransition{}, false
		}
		if r.Error != "" {
			return r.fail(p, now, RestoreReasonVerify, r.Error), true
		}
		return r.setPhase(p, messages.RestoreSucceeded, now, ""), true
	}
	return restoreTransition{}, false
}

func (r *restoreRecord) fail(p *RestorePlan, now time.Time, reason RestoreReason, msg string) restoreTransition {
	r.EndReason = string(reason)
	t := r.setPhase(p, messages.RestoreFailed, now, msg)
	t.reason = reason
	return t
}

// cancel ends a running restore at an operator's request. Tasks already
// running finish; none is started after.
func (r *restoreRecord) cancel(p *RestorePlan, now time.Time, by, reason string) (restoreTransition, bool) {
	if r.Phase.Terminal() {
		return restoreTransition{}, false
	}
	msg := "cancelled"
	if by != "" {
		msg += " by " + by
	}
	if reason != "" {
		msg += ": " + reason
	}
	if r.Phase == messages.RestorePreparing || r.Phase == messages.RestoreStarting {
		msg += fmt.Sprintf(" in phase %s: nodes may be stopped or half-restored; rerun the restore to finish it", r.Phase)
	}
	r.EndReason = string(RestoreReasonCancelled)
	t := r.setPhase(p, messages.RestoreCancelled, now, msg)
	t.reason = RestoreReasonCancelled
	return t, true
}

// expire fails a restore whose phase or overall deadline passed.
func (r *restoreRecord) expire(p *RestorePlan, now time.Time) (restoreTransition, bool) {
	if r.Phase.Terminal() {
		return restoreTransition{}, false
	}
	switch {
	case !r.PhaseDeadline.IsZero() && !now.Before(r.PhaseDeadline):
		return r.fail(p, now, RestoreReasonPhaseDeadline, fmt.Sprintf("%s deadline passed; waiting on %s", r.Phase, r.waitingOn(p))), true
	case !r.Deadline.IsZero() && !now.Before(r.Deadline):
		return r.fail(p, now, RestoreReasonDeadline, "restore deadline passed in phase "+string(r.Phase)), true
	}
	return restoreTransition{}, false
}

// complete records what carried-out effects did.
func (r *restoreRecord) complete(p *RestorePlan, done map[restoreEffect]bool, now time.Time) []restoreTransition {
	var ts []restoreTransition
	if done[restoreEffect{Kind: rfxHold}] {
		r.Held = true
		if r.Phase.Terminal() && !r.Released {
			r.addOutbox(restoreEffect{Kind: rfxRelease})
		}
	}
	if done[restoreEffect{Kind: rfxRelease}] {
		r.Released = true
	}
	if done[restoreEffect{Kind: rfxVolumes}] && r.Phase == messages.RestorePlanned {
		ts = append(ts, r.setPhase(p, messages.RestoreVolumes, now, ""))
	}
	return ts
}

func (r *restoreRecord) waitingOn(p *RestorePlan) string {
	var names []string
	switch r.Phase {
	case messages.RestorePlanned, messages.RestoreVolumes:
		for j, v := range p.Volumes {
			if !r.VolDone.has(j) && !r.VolFailed.has(j) {
				names = append(names, v.Volume.SnapshotID)
			}
		}
	case messages.RestoreVerifying:
		names = append(names, "the verification")
	default:
		done, failed := r.phaseSets()
		for i, n := range p.Nodes {
			if !done.has(i) && !failed.has(i) {
				names = append(names, n.Node.Name)
			}
		}
	}
	return summarize(names)
}

// phaseSets returns the bitsets of the current node phase.
func (r *restoreRecord) phaseSets() (bitset, bitset) {
	switch r.Phase {
	case messages.RestoreStopping:
		return r.Stopped, r.StopFailed
	case messages.RestorePreparing:
		return r.Prepared, r.PrepFailed
	}
	return r.Started, r.StartFailed
}

func (r *restoreRecord) failedTargets(kind messages.Kind) string {
	var names []string
	for _, f := range r.Failures {
		if f.Kind == kind {
			s := f.Target
			if f.Error != "" {
				s += " (" + f.Error + ")"
			}
			names = append(names, s)
		}
	}
	return summarize(names)
}
