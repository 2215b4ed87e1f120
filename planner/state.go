package planner

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quiesce/quiesce/messages"
)

// record is a job's record in the jobs bucket: the public messages.Job plus
// the coordinator's bookkeeping. Every change is a compare-and-set on the
// bucket revision, and every change is idempotent, so a redelivered event or
// a second coordinator replica applying the same event changes nothing.
//
// apply, advance, cancel and expire are pure functions of the record, the
// plan and the time given: any replica computes the same next state.
type record struct {
	messages.Job

	Flushed     bitset `json:"flushed"`
	FlushFailed bitset `json:"flush_failed"`
	SnapDone    bitset `json:"snap_done"`
	SnapFailed  bitset `json:"snap_failed"`
	ClearQueued bitset `json:"clear_queued"`
	Cleared     bitset `json:"cleared"`
	ClearFailed bitset `json:"clear_failed"`
	// ReclearDone and CleanupDone hold, by sequence number, the repeated
	// clears and the clean-up tasks that ended.
	ReclearDone bitset `json:"reclear_done,omitempty"`
	CleanupDone bitset `json:"cleanup_done,omitempty"`

	AwaitQueued     bool `json:"await_queued,omitempty"`
	AwaitDone       bool `json:"await_done,omitempty"`
	CatalogWritten  bool `json:"catalog_written,omitempty"`
	RetentionQueued bool `json:"retention_queued,omitempty"`
	RetentionDone   bool `json:"retention_done,omitempty"`
	Cleanups        int  `json:"cleanups,omitempty"`
	// Reclears counts extra clears queued for flushes that ran again after
	// their node's tag was cleared; Reflushed holds, by flush attempt, the
	// nodes whose flush of that attempt queued one, so a result delivered
	// again queues no more.
	Reclears  int            `json:"reclears,omitempty"`
	Reflushed map[int]bitset `json:"reflushed,omitempty"`
	// Listing names the object holding the job's snapshots as the await
	// task last saw them: the catalog is written from it.
	Listing string `json:"listing,omitempty"`
	// Reason classifies Error once the job failed or was cancelled. Its key
	// is not "reason", which holds the request's reason (messages.Job).
	Reason Reason `json:"end_reason,omitempty"`
	// HooksQueued lists the hook points whose tasks were published;
	// HookDone and HookFailed are indexed by the plan's hook tasks.
	HooksQueued []messages.HookPoint `json:"hooks_queued,omitempty"`
	HookDone    bitset               `json:"hook_done,omitempty"`
	HookFailed  bitset               `json:"hook_failed,omitempty"`

	// Outbox lists effects decided but not yet known to be carried out.
	// Whoever changes the record performs them after the compare-and-set,
	// then removes them; the sweep re-drives any left behind by a crash.
	Outbox []effect `json:"outbox,omitempty"`
	// LastEventAt is when the last task result was applied.
	LastEventAt time.Time `json:"last_event_at,omitempty"`
}

// Reason says why a job failed or was cancelled.
type Reason string

// Reasons a job ends without a backup.
const (
	ReasonFlushFailed      Reason = "flush_failed"      // a node's flush failed
	ReasonNoNodeFlushed    Reason = "no_node_flushed"   // a partial backup with no node at all
	ReasonSnapshotFailed   Reason = "snapshot_failed"   // a volume snapshot could not be taken
	ReasonSnapshotsErrored Reason = "snapshots_errored" // the snapshots did not complete
	ReasonCatalog          Reason = "catalog"           // the snapshots found do not cover the backup
	ReasonPhaseDeadline    Reason = "phase_deadline"    // the current phase's deadline passed
	ReasonJobDeadline      Reason = "job_deadline"      // the job's deadline passed
	ReasonCancelled        Reason = "cancelled"         // an operator cancelled the job
	ReasonHookFailed       Reason = "hook_failed"       // a before or after hook with on_error fail failed
)

// Deadline reports whether the reason is a deadline that passed.
func (r Reason) Deadline() bool { return r == ReasonPhaseDeadline || r == ReasonJobDeadline }

func newRecord(p *Plan, now time.Time) *record {
	n, u := len(p.Nodes), len(p.Units)
	r := &record{
		Job: messages.Job{
			Schema: messages.JobSchema, ID: p.JobID, RequestID: p.Request.RequestID, Cluster: p.Cluster,
			Policy: p.Policy.Name, Mode: p.Mode, Tag: p.Tag, Reason: p.Request.Reason,
			RequestedBy: p.Request.RequestedBy, Phase: messages.PhasePlanned,
			CreatedAt: now, UpdatedAt: now,
			PhaseTimes: map[messages.Phase]time.Time{messages.PhasePlanned: now},
		},
		Flushed: newBitset(n), FlushFailed: newBitset(n), SnapDone: newBitset(u), SnapFailed: newBitset(u),
		ClearQueued: newBitset(n), Cleared: newBitset(n), ClearFailed: newBitset(n),
		HookDone: newBitset(len(p.hooks)), HookFailed: newBitset(len(p.hooks)),
	}
	r.Deadline = p.Request.Deadline
	jobTimeout := now.Add(p.jobTimeout())
	if r.Deadline.IsZero() || jobTimeout.Before(r.Deadline) {
		r.Deadline = jobTimeout
	}
	r.PhaseDeadline = p.deadline(messages.PhaseFlushing, now)
	switch {
	case p.hasHooks(messages.HookBefore):
		// The flush waits for the before hooks (stepPlanned).
		r.Outbox = []effect{{Kind: fxHooks, Point: messages.HookBefore}}
	case p.Mode == messages.ModeCrash:
		r.Outbox = []effect{{Kind: fxSnapshots}}
	default:
		r.releaseFlush(p, now)
	}
	r.refreshProgress(p)
	return r
}

// transition is one phase change, reported after it is stored.
type transition struct {
	from, to messages.Phase
	at       time.Time
	err      string
	reason   Reason
}

func (r *record) addOutbox(fx effect) {
	if !slices.Contains(r.Outbox, fx) {
		r.Outbox = append(r.Outbox, fx)
	}
}

func (r *record) setPhase(p *Plan, to messages.Phase, now time.Time, errMsg string) transition {
	t := transition{from: r.Phase, to: to, at: now, err: errMsg}
	r.Phase = to
	if r.PhaseTimes == nil {
		r.PhaseTimes = map[messages.Phase]time.Time{}
	}
	r.PhaseTimes[to] = now
	if errMsg != "" && r.Error == "" {
		r.Error = messages.Bound(errMsg, messages.MaxReasonBytes)
	}
	if to.Terminal() {
		r.PhaseDeadline = time.Time{}
		// Nothing waits on the retries of tasks that no longer matter:
		// only the clean-up's are still shown.
		r.dropRetries(func(x messages.Retry) bool { return !cleansUp(x.Kind) })
	} else {
		r.PhaseDeadline = p.deadline(to, now)
	}
	return t
}

const maxFailures = 100

// Bounds of what a task result may put in its job's record: a worker's
// error or a node's stderr is kept in part, never whole.
const (
	maxFailureError  = 1024
	maxFailureStderr = 4096
	// maxErrorPerTarget bounds one target's error within a job's error.
	maxErrorPerTarget = 256
)

func (r *record) addFailure(f messages.Failure) {
	for _, x := range r.Failures {
		if x.TaskID == f.TaskID {
			return
		}
	}
	f.Error = messages.Bound(f.Error, maxFailureError)
	f.Stderr = messages.Bound(f.Stderr, maxFailureStderr)
	if len(r.Failures) < maxFailures {
		r.Failures = append(r.Failures, f)
	}
}

func (r *record) failure(ev *messages.TaskResult) {
	r.addFailure(messages.Failure{TaskID: ev.TaskID, Kind: ev.Kind, Target: ev.Target,
		Error: ev.Error, Class: ev.ErrorClass, Stderr: ev.Stderr})
}

func (r *record) addWarning(w string) {
	w = messages.Bound(w, maxFailureError)
	if !slices.Contains(r.Warnings, w) && len(r.Warnings) < maxFailures {
		r.Warnings = append(r.Warnings, w)
	}
}

// queueClear queues node i's clear, or one more clear under a task ID of
// its own when the first was queued already (it may have run before a tag
// that a late flush re-created).
func (r *record) queueClear(p *Plan, i int) bool {
	if r.ClearQueued.set(i) {
		r.addOutbox(effect{Kind: fxClear, Node: i})
		return true
	}
	return r.reclear(p, i)
}

// markReflushed records that attempt of node i's flush ran again, and
// reports whether it was not recorded yet.
func (r *record) markReflushed(p *Plan, i, attempt int) bool {
	if r.Reflushed == nil {
		r.Reflushed = map[int]bitset{}
	}
	b, ok := r.Reflushed[attempt]
	if !ok {
		b = newBitset(len(p.Nodes))
		r.Reflushed[attempt] = b
	}
	return b.set(i)
}

// reclear queues one more clear of node i under a task ID of its own.
func (r *record) reclear(p *Plan, i int) bool {
	if r.Reclears >= maxFailures {
		// Nothing clears the tag this flush re-created: say so rather
		// than show a clean-up that ended with every tag cleared.
		before := len(r.Warnings)
		r.addWarning(fmt.Sprintf("snapshot tag %s may be left on node %s: more than %d repeated clears were needed; "+
			"clear it with nodetool clearsnapshot -t %s", r.Tag, p.Nodes[i].Name, maxFailures, r.Tag))
		return len(r.Warnings) != before
	}
	r.Reclears++
	r.addOutbox(effect{Kind: fxReclear, Node: i, Seq: r.Reclears})
	return true
}

// queueCleanupTask queues one more clean-up task deleting the job's
// snapshots.
func (r *record) queueCleanupTask() {
	r.Cleanups++
	r.addOutbox(effect{Kind: fxCleanup, Seq: r.Cleanups})
}

// unitRequired reports whether snapshot unit j is part of the backup: in
// application mode only units of nodes that flushed are.
func (r *record) unitRequired(p *Plan, j int) bool {
	return p.Mode == messages.ModeCrash || r.Flushed.has(p.Units[j].Node)
}

// partial reports whether the backup leaves out nodes of the plan.
func (r *record) partial(p *Plan) bool {
	return p.Mode == messages.ModeApplication && r.Flushed.count() < len(p.Nodes)
}

func (r *record) refreshProgress(p *Plan) {
	pr := messages.Progress{
		Nodes: len(p.Nodes), Volumes: p.VolumeCount(),
		Flushed: r.Flushed.count(), FlushFailed: r.FlushFailed.count(),
		Snapshotted: r.SnapDone.count(), SnapshotFail: r.SnapFailed.count(),
		ClearTasks: r.ClearQueued.count(), Cleared: r.Cleared.count(), ClearFailed: r.ClearFailed.count(),
		HookTasks: len(p.hooks), HooksDone: r.HookDone.count(), HooksFailed: r.HookFailed.count(),
		CleanupTasks: r.Cleanups, CleanupsDone: r.CleanupDone.count(),
		CleanupPending: r.cleanupPending(p), Retrying: len(r.Retrying),
	}
	// Snapshot tasks exist once the barrier released them: the units of
	// the nodes that flushed (fewer only in a partial backup). A job that
	// never reached the barrier has none, in every view.
	if !r.BarrierAt.IsZero() {
		for j := range p.Units {
			if r.unitRequired(p, j) {
				pr.SnapshotTasks++
			}
		}
	}
	r.Progress = pr
}

// cleanupPending counts the clean-up tasks queued that have not ended.
func (r *record) cleanupPending(p *Plan) int {
	n := 0
	for i := range p.Nodes {
		if r.ClearQueued.has(i) && !r.Cleared.has(i) && !r.ClearFailed.has(i) {
			n++
		}
	}
	for seq := 1; seq <= r.Reclears; seq++ {
		if !r.ReclearDone.has(seq) {
			n++
		}
	}
	for seq := 1; seq <= r.Cleanups; seq++ {
		if !r.CleanupDone.has(seq) {
			n++
		}
	}
	return n
}

// cleansUp reports whether tasks of kind clean up after a job: they still
// run, and are still shown, once it ended.
func cleansUp(kind messages.Kind) bool {
	return kind == messages.KindClear || kind == messages.KindCleanup
}

// apply records one task result. It returns false when the result changes
// nothing (a redelivery, or a result for a task the record already settled).
func (r *record) apply(p *Plan, ev *messages.TaskResult, now time.Time) bool {
	var changed bool
	switch ev.Kind {
	case messages.KindFlush:
		changed = r.applyFlush(p, ev)
	case messages.KindSnapshot:
		changed = r.applySnapshot(p, ev)
	case messages.KindClear:
		changed = r.applyClear(p, ev)
	case messages.KindAwait:
		changed = r.applyAwait(ev)
	case messages.KindRetention:
		if strings.HasPrefix(ev.Target, legacyCleanupPrefix) {
			seq, _ := legacyCleanupSeq(ev.Target)
			changed = r.applyCleanup(ev, seq)
		} else {
			changed = r.applyRetention(ev)
		}
	case messages.KindCleanup:
		seq, _ := strconv.Atoi(ev.Target)
		changed = r.applyCleanup(ev, seq)
	case messages.KindHook:
		changed = r.applyHook(p, ev)
	}
	// The result ends its task's retries, and may end another's: a
	// repeated clear that clears a node settles the node's first clear.
	if r.dropRetries(func(x messages.Retry) bool {
		return x.TaskID == ev.TaskID || r.settled(p, x.Kind, x.TaskID, x.Target)
	}) {
		changed = true
	}
	if changed {
		r.LastEventAt = now
		r.refreshProgress(p)
	}
	return changed
}

// maxRetrying bounds the retries a record lists, and maxRetryError the
// length of each one's error, so they cost a job record at most ~40 KB.
const (
	maxRetrying   = 100
	maxRetryError = 300
)

// applyRetry records that an attempt of an open task failed and the task
// will be tried again. No count and no phase changes for it: the barrier
// and every other step wait on results only. It returns false when the
// task has ended already (a report overtaken by the task's result), the job
// ended and the task is not part of its clean-up, or the report is not
// newer than the one recorded.
func (r *record) applyRetry(p *Plan, ev *messages.TaskRetry) bool {
	if r.settled(p, ev.Kind, ev.TaskID, ev.Target) || (r.Phase.Terminal() && !cleansUp(ev.Kind)) {
		return false
	}
	msg := ev.Error
	if len(msg) > maxRetryError {
		msg = msg[:maxRetryError] + "…"
	}
	entry := messages.Retry{TaskID: ev.TaskID, Kind: ev.Kind, Target: ev.Target, Attempt: ev.Attempt,
		MaxAttempts: ev.MaxAttempts, Error: msg, Code: ev.Code, FailedAt: ev.FailedAt, NextAttemptAt: ev.NextAttemptAt}
	k := slices.IndexFunc(r.Retrying, func(x messages.Retry) bool { return x.TaskID == ev.TaskID })
	switch {
	case k >= 0 && ev.Attempt <= r.Retrying[k].Attempt:
		return false
	case k >= 0:
		r.Retrying[k] = entry
	case len(r.Retrying) >= maxRetrying:
		return false
	default:
		r.Retrying = append(r.Retrying, entry)
	}
	r.refreshProgress(p)
	return true
}

// dropRetries forgets the retries drop selects, and reports whether there
// were any.
func (r *record) dropRetries(drop func(messages.Retry) bool) bool {
	before := len(r.Retrying)
	r.Retrying = slices.DeleteFunc(r.Retrying, drop)
	if len(r.Retrying) == 0 {
		// As the stored record reads back.
		r.Retrying = nil
	}
	return len(r.Retrying) != before
}

// settled reports whether the task has ended, as far as the record knows.
// A task the plan does not know counts as ended.
func (r *record) settled(p *Plan, kind messages.Kind, taskID, target string) bool {
	switch kind {
	case messages.KindFlush:
		i, ok := p.nodeIndex[target]
		return !ok || r.Flushed.has(i) || r.FlushFailed.has(i)
	case messages.KindSnapshot:
		j, ok := p.unitIndex[target]
		return !ok || r.SnapDone.has(j) || r.SnapFailed.has(j)
	case messages.KindClear:
		i, ok := p.nodeIndex[target]
		if !ok {
			return true
		}
		if seq, again := reclearSeq(p, taskID, target); again {
			return r.ReclearDone.has(seq)
		}
		return r.Cleared.has(i) || r.ClearFailed.has(i)
	case messages.KindAwait:
		return r.AwaitDone
	case messages.KindRetention:
		if seq, ok := legacyCleanupSeq(target); ok {
			return r.CleanupDone.has(seq)
		}
		return r.RetentionDone
	case messages.KindCleanup:
		seq, err := strconv.Atoi(target)
		return err != nil || r.CleanupDone.has(seq)
	}
	return true
}

// reclearSuffix ends the task ID of a repeated clear, before its sequence
// number: "<job>.clear.<node>.again<seq>".
const reclearSuffix = ".again"

// reclearSeq returns the sequence number of a repeated clear's task ID.
func reclearSeq(p *Plan, taskID, target string) (int, bool) {
	rest, ok := strings.CutPrefix(taskID, messages.TaskID(p.JobID, messages.KindClear, target)+reclearSuffix)
	if !ok {
		return 0, false
	}
	seq, err := strconv.Atoi(rest)
	return seq, err == nil && seq > 0
}

// legacyCleanupSeq returns the sequence number of a clean-up task of the
// previous release ("cleanup-<n>").
func legacyCleanupSeq(target string) (int, bool) {
	rest, ok := strings.CutPrefix(target, legacyCleanupPrefix)
	if !ok {
		return 0, false
	}
	seq, err := strconv.Atoi(rest)
	return seq, err == nil && seq > 0
}

// legacyCleanupPrefix marks the clean-up tasks of the previous release,
// which were retention tasks with a target of "cleanup-<n>". Their results
// may still arrive for jobs that failed during an upgrade.
const legacyCleanupPrefix = "cleanup-"

func (r *record) applyFlush(p *Plan, ev *messages.TaskResult) bool {
	i, known := p.nodeIndex[ev.Target]
	if !known {
		return false
	}
	if ev.Outcome != messages.OutcomeSucceeded {
		if r.Flushed.has(i) || !r.FlushFailed.set(i) {
			return false
		}
		r.failure(ev)
		// A flush that fails after its job ended may have made part of
		// its tag (nodetool snapshot works keyspace by keyspace) after the
		// node's clean-up ran: clear once more. The clear finds from the
		// node's intent whether nodetool ran there at all.
		if r.Phase.Terminal() && r.ClearQueued.has(i) {
			r.reclear(p, i)
		}
		return true
	}
	if r.FlushFailed.has(i) {
		// The node already failed the barrier; a success delivered later
		// (an earlier attempt's) does not undo that. Its tag is cleared
		// with the job's clean-up.
		return false
	}
	if !r.Flushed.set(i) {
		// A later delivery of a flush that already counted ran again (its
		// first ack was lost), possibly after the node's clear: its tag is
		// cleared once more. The node's snapshots are done once its clear
		// is queued, so this is safe. Once per attempt: the same result
		// delivered again (its event's ack was lost) ran nothing more.
		if ev.Attempt > 1 && r.ClearQueued.has(i) && r.markReflushed(p, i, ev.Attempt) {
			return r.reclear(p, i)
		}
		return false
	}
	if r.FlushFirst.IsZero() || ev.FinishedAt.Before(r.FlushFirst) {
		r.FlushFirst = ev.FinishedAt
	}
	if ev.FinishedAt.After(r.FlushLast) {
		r.FlushLast = ev.FinishedAt
	}
	if f := ev.Flush; f != nil && !f.Started.IsZero() {
		if r.StartFirst.IsZero() || f.Started.Before(r.StartFirst) {
			r.StartFirst = f.Started
		}
		if f.Started.After(r.StartLast) {
			r.StartLast = f.Started
		}
	}
	// A flush that lands after its job ended leaves a tag no one else will
	// clear. If the job's clean-up already queued this node's clear, that
	// clear may have run before the flush finished: clear once more.
	if r.Phase.Terminal() {
		r.queueClear(p, i)
	}
	return true
}

func (r *record) applySnapshot(p *Plan, ev *messages.TaskResult) bool {
	j, known := p.unitIndex[ev.Target]
	if !known {
		return false
	}
	if ev.Outcome != messages.OutcomeSucceeded {
		if r.SnapDone.has(j) || !r.SnapFailed.set(j) {
			return false
		}
		r.failure(ev)
		return true
	}
	if r.SnapFailed.has(j) || !r.SnapDone.set(j) {
		return false
	}
	if r.Phase.Terminal() && r.Phase != messages.PhaseSucceeded {
		// A snapshot taken after its job failed is no backup: clean up
		// once more.
		r.queueCleanupTask()
	}
	return true
}

func (r *record) applyClear(p *Plan, ev *messages.TaskResult) bool {
	i, known := p.nodeIndex[ev.Target]
	if !known {
		return false
	}
	if seq, again := reclearSeq(p, ev.TaskID, ev.Target); again {
		return r.applyReclear(p, i, seq, ev)
	}
	if ev.Outcome == messages.OutcomeSucceeded {
		return r.Cleared.set(i)
	}
	if r.Cleared.has(i) || !r.ClearFailed.set(i) {
		return false
	}
	r.failure(ev)
	r.addWarning(fmt.Sprintf("snapshot tag %s not cleared on node %s: %s", r.Tag, ev.Target, messages.Bound(ev.Error, maxErrorPerTarget)))
	return true
}

// applyReclear records the end of a repeated clear of node i: the tag a
// late flush re-created is gone, or is not, and the record says so.
func (r *record) applyReclear(p *Plan, i, seq int, ev *messages.TaskResult) bool {
	if seq > r.Reclears || !r.ReclearDone.add(seq) {
		return false
	}
	if ev.Outcome == messages.OutcomeSucceeded {
		r.Cleared.set(i)
		return true
	}
	r.failure(ev)
	r.addWarning(fmt.Sprintf("snapshot tag %s not cleared on node %s: %s", r.Tag, p.Nodes[i].Name, ev.Error))
	return true
}

func (r *record) applyAwait(ev *messages.TaskResult) bool {
	if r.AwaitDone {
		return false
	}
	r.AwaitDone = true
	if ev.Outcome != messages.OutcomeSucceeded {
		r.failure(ev)
		if !r.Phase.Terminal() {
			r.Error = messages.Bound("snapshots did not complete: "+ev.Error, messages.MaxReasonBytes)
		}
		return true
	}
	r.Listing = ev.Listing
	return true
}

func (r *record) applyRetention(ev *messages.TaskResult) bool {
	if r.RetentionDone {
		return false
	}
	r.RetentionDone = true
	if ev.Outcome != messages.OutcomeSucceeded {
		r.addWarning("retention failed: " + ev.Error)
	}
	for _, w := range ev.Warnings {
		r.addWarning(w)
	}
	return true
}

// applyCleanup records the end of clean-up task seq, and notes one that
// could not delete everything.
func (r *record) applyCleanup(ev *messages.TaskResult, seq int) bool {
	ended := seq >= 1 && seq <= r.Cleanups && r.CleanupDone.add(seq)
	before := len(r.Warnings)
	if ev.Outcome != messages.OutcomeSucceeded {
		r.addWarning("snapshots of this job not deleted: " + ev.Error)
	}
	for _, w := range ev.Warnings {
		r.addWarning(w)
	}
	return ended || len(r.Warnings) != before
}

// advance moves the job through its phases as far as the recorded results
// allow, queueing the effects each step needs.
func (r *record) advance(p *Plan, now time.Time) []transition {
	var ts []transition
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

func (r *record) step(p *Plan, now time.Time) (transition, bool) {
	switch r.Phase {
	case messages.PhasePlanned:
		return r.stepPlanned(p, now)
	case messages.PhaseFlushing:
		return r.stepFlushing(p, now)
	case messages.PhaseSnapshotting:
		return r.stepSnapshotting(p, now)
	case messages.PhaseFinishing:
		return r.stepFinishing(p, now)
	}
	return transition{}, false
}

// stepPlanned waits for the before hooks: a failed one (on_error fail) fails
// the job before any node flushed; once all are settled the flush (or, in
// crash mode, the snapshots) is released.
func (r *record) stepPlanned(p *Plan, now time.Time) (transition, bool) {
	if !p.hasHooks(messages.HookBefore) || !r.hooksQueued(messages.HookBefore) {
		return transition{}, false
	}
	settled, fatal := r.hooksSettled(p, messages.HookBefore)
	if fatal != "" {
		return r.fail(p, now, ReasonHookFailed, fatal), true
	}
	if settled {
		if p.Mode == messages.ModeCrash {
			r.addOutbox(effect{Kind: fxSnapshots})
		} else {
			r.releaseFlush(p, now)
		}
	}
	return transition{}, false
}

// releaseFlush queues the flush tasks and fixes, once, the instant every
// node's flush starts: tasks published again after a crash carry the same
// one, so a re-publish never moves the cut.
func (r *record) releaseFlush(p *Plan, now time.Time) {
	if r.FireAt.IsZero() && p.Policy.ArmWindow > 0 {
		r.FireAt = now.Add(p.Policy.ArmWindow)
	}
	r.addOutbox(effect{Kind: fxFlush})
}

// stepFlushing holds the barrier: the snapshots are released only once
// every node has flushed (or, with allow_partial, every node has settled
// and at least one flushed).
func (r *record) stepFlushing(p *Plan, now time.Time) (transition, bool) {
	flushed, failed := r.Flushed.count(), r.FlushFailed.count()
	if failed > 0 && !p.Policy.AllowPartial {
		return r.fail(p, now, ReasonFlushFailed, fmt.Sprintf("flush failed on %s", r.failedTargets(messages.KindFlush))), true
	}
	if flushed+failed < len(p.Nodes) {
		return transition{}, false
	}
	if flushed == 0 {
		return r.fail(p, now, ReasonNoNodeFlushed, "no node flushed"), true
	}
	if failed > 0 {
		r.addWarning(fmt.Sprintf("partial backup: flush failed on %s", r.failedTargets(messages.KindFlush)))
	}
	r.BarrierAt = now
	r.addOutbox(effect{Kind: fxSnapshots})
	return r.setPhase(p, messages.PhaseSnapshotting, now, ""), true
}

func (r *record) stepSnapshotting(p *Plan, now time.Time) (transition, bool) {
	if r.SnapFailed.count() > 0 {
		return r.fail(p, now, ReasonSnapshotFailed, fmt.Sprintf("snapshot failed for %s", r.failedTargets(messages.KindSnapshot))), true
	}
	// A node's hard links are cleared as soon as its own snapshots are
	// initiated: the volume snapshot is a point in time, so the links have
	// served their purpose and every minute they stay costs disk.
	if p.Mode == messages.ModeApplication {
		for i := range p.Nodes {
			if r.Flushed.has(i) && !r.ClearQueued.has(i) && r.nodeSnapshotted(p, i) {
				r.queueClear(p, i)
			}
		}
	}
	for j := range p.Units {
		if r.unitRequired(p, j) && !r.SnapDone.has(j) {
			return transition{}, false
		}
	}
	r.AwaitQueued = true
	r.addOutbox(effect{Kind: fxAwait})
	// Every volume snapshot is initiated: a freeze may end.
	r.queueHooks(p, messages.HookAfter)
	return r.setPhase(p, messages.PhaseFinishing, now, ""), true
}

func (r *record) nodeSnapshotted(p *Plan, i int) bool {
	for _, j := range p.nodeUnits[i] {
		if !r.SnapDone.has(j) {
			return false
		}
	}
	return true
}

func (r *record) stepFinishing(p *Plan, now time.Time) (transition, bool) {
	if !r.AwaitDone {
		return transition{}, false
	}
	if r.Error != "" {
		return r.fail(p, now, ReasonSnapshotsErrored, r.Error), true
	}
	if p.Mode == messages.ModeApplication {
		for i := range p.Nodes {
			if r.ClearQueued.has(i) && !r.Cleared.has(i) && !r.ClearFailed.has(i) {
				return transition{}, false
			}
		}
	}
	settled, fatal := r.hooksSettled(p, messages.HookAfter)
	if fatal != "" {
		return r.fail(p, now, ReasonHookFailed, fatal), true
	}
	if !settled {
		return transition{}, false
	}
	if !r.CatalogWritten {
		r.addOutbox(effect{Kind: fxCatalog})
		return transition{}, false
	}
	if !r.RetentionDone {
		if !r.RetentionQueued {
			r.addOutbox(effect{Kind: fxRetention})
		}
		return transition{}, false
	}
	t := r.setPhase(p, messages.PhaseSucceeded, now, "")
	r.queueHooks(p, messages.HookComplete)
	return t, true
}

// fail ends the job and queues its clean-up: every node's tag is cleared (a
// node still flushing is cleared again when its late result arrives), and
// any volume snapshot the job took is deleted, since it is no backup.
func (r *record) fail(p *Plan, now time.Time, reason Reason, msg string) transition {
	r.queueCleanup(p)
	r.Reason = reason
	t := r.setPhase(p, messages.PhaseFailed, now, msg)
	t.reason = reason
	r.endHooks(p)
	return t
}

func (r *record) queueCleanup(p *Plan) {
	if p.Mode == messages.ModeApplication && r.Phase != messages.PhasePlanned {
		for i := range p.Nodes {
			if r.ClearQueued.set(i) {
				r.addOutbox(effect{Kind: fxClear, Node: i})
			}
		}
	}
	if r.Phase == messages.PhaseSnapshotting || r.Phase == messages.PhaseFinishing ||
		(p.Mode == messages.ModeCrash && r.Phase == messages.PhasePlanned) {
		r.queueCleanupTask()
	}
}

// cancel ends a running job at an operator's request.
func (r *record) cancel(p *Plan, now time.Time, by, reason string) (transition, bool) {
	if r.Phase.Terminal() {
		return transition{}, false
	}
	msg := "cancelled"
	if by != "" {
		msg += " by " + by
	}
	if reason != "" {
		msg += ": " + reason
	}
	r.queueCleanup(p)
	r.Reason = ReasonCancelled
	t := r.setPhase(p, messages.PhaseCancelled, now, msg)
	t.reason = ReasonCancelled
	r.endHooks(p)
	return t, true
}

// expired reports whether the job's phase or job deadline has passed.
func (r *record) expired(now time.Time) bool {
	return !r.Phase.Terminal() &&
		((!r.PhaseDeadline.IsZero() && !now.Before(r.PhaseDeadline)) || (!r.Deadline.IsZero() && !now.Before(r.Deadline)))
}

// expire fails a job whose phase or job deadline has passed. note, when
// not empty, is what the caller knows of why (no running worker has the
// job's cluster, say), added to the job's error.
func (r *record) expire(p *Plan, now time.Time, note string) (transition, bool) {
	if r.Phase.Terminal() {
		return transition{}, false
	}
	var (
		msg    string
		reason Reason
	)
	switch {
	case !r.PhaseDeadline.IsZero() && !now.Before(r.PhaseDeadline):
		reason, msg = ReasonPhaseDeadline, fmt.Sprintf("%s deadline passed", r.Phase)
		if settled, _ := r.hooksSettled(p, messages.HookBefore); r.Phase == messages.PhasePlanned && !settled {
			msg = "flush deadline passed while the before hooks ran; waiting on " + r.hooksWaitingOn(p, messages.HookBefore)
		} else if r.Phase == messages.PhaseFlushing || r.Phase == messages.PhasePlanned {
			msg = fmt.Sprintf("flush deadline passed: %d of %d nodes flushed; waiting on %s",
				r.Flushed.count(), len(p.Nodes), r.waitingOn(p))
		}
	case !r.Deadline.IsZero() && !now.Before(r.Deadline):
		reason, msg = ReasonJobDeadline, "job deadline passed in phase "+string(r.Phase)
	default:
		return transition{}, false
	}
	if note != "" {
		msg += "; " + note
	}
	return r.fail(p, now, reason, msg), true
}

// complete records what carried-out effects learned.
func (r *record) complete(p *Plan, done map[effect]effectResult, now time.Time) []transition {
	var ts []transition
	if _, ok := done[effect{Kind: fxFlush}]; ok && r.Phase == messages.PhasePlanned {
		ts = append(ts, r.setPhase(p, messages.PhaseFlushing, now, ""))
	}
	if _, ok := done[effect{Kind: fxSnapshots}]; ok && r.Phase == messages.PhasePlanned {
		r.BarrierAt = now
		ts = append(ts, r.setPhase(p, messages.PhaseSnapshotting, now, ""))
	}
	if res, ok := done[effect{Kind: fxCatalog}]; ok && !r.Phase.Terminal() {
		for _, w := range res.warnings {
			r.addWarning(w)
		}
		if res.failed != "" {
			ts = append(ts, r.fail(p, now, ReasonCatalog, res.failed))
		} else {
			r.CatalogWritten = true
		}
	}
	for _, point := range []messages.HookPoint{messages.HookBefore, messages.HookAfter, messages.HookComplete} {
		if _, ok := done[effect{Kind: fxHooks, Point: point}]; ok && !r.hooksQueued(point) {
			r.HooksQueued = append(r.HooksQueued, point)
		}
	}
	if res, ok := done[effect{Kind: fxRetention}]; ok && !r.RetentionQueued {
		r.RetentionQueued = true
		r.Retired = res.retired
		if len(res.retired) == 0 && !res.trimmed {
			r.RetentionDone = true
		}
	}
	r.refreshProgress(p)
	return ts
}

func (r *record) waitingOn(p *Plan) string {
	var names []string
	for i, n := range p.Nodes {
		if !r.Flushed.has(i) && !r.FlushFailed.has(i) {
			names = append(names, n.Name)
		}
	}
	return summarize(names)
}

func (r *record) failedTargets(kind messages.Kind) string {
	var names []string
	for _, f := range r.Failures {
		if f.Kind == kind {
			s := f.Target
			if f.Error != "" {
				// The first failure is said whole (as stored, at most
				// maxFailureError): it is often the only one, and its end
				// may be what the operator needs (a known_hosts line).
				n := maxErrorPerTarget
				if len(names) == 0 {
					n = maxFailureError
				}
				s += " (" + clip(f.Error, n) + ")"
			}
			names = append(names, s)
		}
	}
	return summarize(names)
}

// missingNodes names the nodes of the plan a partial backup left out.
func (r *record) missingNodes(p *Plan) []string {
	var names []string
	for i, n := range p.Nodes {
		if !r.Flushed.has(i) {
			names = append(names, n.Name)
		}
	}
	return names
}

// clip cuts s, already bounded where it was stored, to n bytes on a
// character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func summarize(names []string) string {
	sort.Strings(names)
	if len(names) > 10 {
		return strings.Join(names[:10], ", ") + fmt.Sprintf(" and %d more", len(names)-10)
	}
	return strings.Join(names, ", ")
}
