package planner

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// record is a job's record in the jobs bucket: the public messages.Job plus
// the coordinator's bookkeeping. Every change is a compare-and-set on the
// bucket revision, and every change is idempotent, so a redelivered event or
// a second coordinator replica applying the same event changes nothing.
type record struct {
	messages.Job

	Flushed     bitset `json:"flushed"`
	FlushFailed bitset `json:"flush_failed"`
	SnapDone    bitset `json:"snap_done"`
	SnapFailed  bitset `json:"snap_failed"`
	ClearQueued bitset `json:"clear_queued"`
	Cleared     bitset `json:"cleared"`
	ClearFailed bitset `json:"clear_failed"`

	AwaitQueued     bool `json:"await_queued,omitempty"`
	AwaitDone       bool `json:"await_done,omitempty"`
	CatalogWritten  bool `json:"catalog_written,omitempty"`
	RetentionQueued bool `json:"retention_queued,omitempty"`
	RetentionDone   bool `json:"retention_done,omitempty"`
	Cleanups        int  `json:"cleanups,omitempty"`
	// Reclears counts extra clears queued for flushes that ran again after
	// their node's tag was cleared.
	Reclears int `json:"reclears,omitempty"`

	// Outbox lists effects decided but not yet known to be carried out.
	// Whoever changes the record performs them after the compare-and-set,
	// then removes them; the sweep re-drives any left behind by a crash.
	Outbox []string `json:"outbox,omitempty"`
	// LastEventAt is when the last task result was applied.
	LastEventAt time.Time `json:"last_event_at,omitempty"`
}

// Outbox effects.
const (
	fxFlush     = "flush"
	fxSnapshots = "snapshots"
	fxClear     = "clear:" // + node index
	fxAwait     = "await"
	fxCatalog   = "catalog"
	fxRetention = "retention"
	fxCleanup   = "cleanup:" // + sequence
	fxReclear   = "reclear:" // + node index "." + sequence
)

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
	}
	r.Deadline = p.Request.Deadline
	jobTimeout := now.Add(cmp.Or(p.Policy.JobTimeout, DefaultJobTimeout))
	if r.Deadline.IsZero() || jobTimeout.Before(r.Deadline) {
		r.Deadline = jobTimeout
	}
	r.PhaseDeadline = p.deadline(messages.PhaseFlushing, now)
	if p.Mode == messages.ModeCrash {
		r.Outbox = []string{fxSnapshots}
	} else {
		r.Outbox = []string{fxFlush}
	}
	r.refreshProgress(p)
	return r
}

// transition is one phase change, reported after it is stored.
type transition struct {
	from, to messages.Phase
	at       time.Time
	err      string
}

func (r *record) addOutbox(fx string) {
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
		r.Error = errMsg
	}
	if to.Terminal() {
		r.PhaseDeadline = time.Time{}
	} else {
		r.PhaseDeadline = p.deadline(to, now)
	}
	return t
}

const maxFailures = 100

func (r *record) addFailure(f messages.Failure) {
	for _, x := range r.Failures {
		if x.TaskID == f.TaskID {
			return
		}
	}
	if len(r.Failures) < maxFailures {
		r.Failures = append(r.Failures, f)
	}
}

func (r *record) addWarning(w string) {
	if !slices.Contains(r.Warnings, w) && len(r.Warnings) < maxFailures {
		r.Warnings = append(r.Warnings, w)
	}
}

// reclear queues one more clear of node i under a task ID of its own.
func (r *record) reclear(i int) bool {
	if r.Reclears >= maxFailures {
		return false
	}
	r.Reclears++
	r.addOutbox(fxReclear + strconv.Itoa(i) + "." + strconv.Itoa(r.Reclears))
	return true
}

// unitRequired reports whether snapshot unit j is part of the backup: in
// application mode only units of nodes that flushed are.
func (r *record) unitRequired(p *Plan, j int) bool {
	return p.Mode == messages.ModeCrash || r.Flushed.has(p.Units[j].Node)
}

func (r *record) refreshProgress(p *Plan) {
	pr := messages.Progress{
		Nodes: len(p.Nodes), Volumes: p.VolumeCount(),
		Flushed: r.Flushed.count(), FlushFailed: r.FlushFailed.count(),
		Snapshotted: r.SnapDone.count(), SnapshotFail: r.SnapFailed.count(),
		ClearTasks: r.ClearQueued.count(), Cleared: r.Cleared.count(), ClearFailed: r.ClearFailed.count(),
	}
	for j := range p.Units {
		// Until the barrier the plan's total is shown; after it, the units
		// of the nodes that flushed (fewer only in a partial backup).
		if r.Phase == messages.PhasePlanned || r.Phase == messages.PhaseFlushing || r.unitRequired(p, j) {
			pr.SnapshotTasks++
		}
	}
	r.Progress = pr
}

// apply records one task result. It returns false when the result changes
// nothing (a redelivery, or a result for a task the record already settled).
func (r *record) apply(p *Plan, ev *messages.TaskResult, now time.Time) bool {
	ok := ev.Outcome == messages.OutcomeSucceeded
	changed := false
	fail := func() {
		r.addFailure(messages.Failure{TaskID: ev.TaskID, Kind: ev.Kind, Target: ev.Target,
			Error: ev.Error, Class: ev.ErrorClass, Stderr: ev.Stderr})
	}
	switch ev.Kind {
	case messages.KindFlush:
		i, known := p.nodeIndex[ev.Target]
		if !known {
			return false
		}
		if ok {
			if r.FlushFailed.has(i) {
				return false
			}
			changed = r.Flushed.set(i)
			if changed {
				if r.FlushFirst.IsZero() || ev.FinishedAt.Before(r.FlushFirst) {
					r.FlushFirst = ev.FinishedAt
				}
				if ev.FinishedAt.After(r.FlushLast) {
					r.FlushLast = ev.FinishedAt
				}
				// A flush that lands after its job ended leaves a tag no
				// one else will clear. If the job's clean-up already
				// queued this node's clear, that clear may have run before
				// the flush finished: clear once more.
				if r.Phase.Terminal() {
					if r.ClearQueued.set(i) {
						r.addOutbox(fxClear + strconv.Itoa(i))
					} else {
						r.reclear(i)
					}
				}
			} else if ev.Attempt > 1 && r.ClearQueued.has(i) {
				// A later delivery of a flush that already counted ran
				// again (its first ack was lost), possibly after the node's
				// clear: its tag is cleared once more. The node's snapshots
				// are done once its clear is queued, so this is safe.
				changed = r.reclear(i)
			}
		} else if !r.Flushed.has(i) {
			changed = r.FlushFailed.set(i)
			if changed {
				fail()
			}
		}
	case messages.KindSnapshot:
		j, known := p.unitIndex[ev.Target]
		if !known {
			return false
		}
		if ok {
			if r.SnapFailed.has(j) {
				return false
			}
			changed = r.SnapDone.set(j)
			if changed && r.Phase.Terminal() && r.Phase != messages.PhaseSucceeded {
				// A snapshot taken after its job failed is cleaned up too.
				r.Cleanups++
				r.addOutbox(fxCleanup + strconv.Itoa(r.Cleanups))
			}
		} else if !r.SnapDone.has(j) {
			changed = r.SnapFailed.set(j)
			if changed {
				fail()
			}
		}
	case messages.KindClear:
		i, known := p.nodeIndex[ev.Target]
		if !known {
			return false
		}
		if ok {
			changed = r.Cleared.set(i)
		} else if !r.Cleared.has(i) {
			changed = r.ClearFailed.set(i)
			if changed {
				fail()
				r.addWarning(fmt.Sprintf("snapshot tag %s not cleared on node %s: %s", r.Tag, ev.Target, ev.Error))
			}
		}
	case messages.KindAwait:
		if r.AwaitDone {
			return false
		}
		r.AwaitDone, changed = true, true
		if !ok {
			fail()
			if !r.Phase.Terminal() {
				r.Error = "snapshots did not complete: " + ev.Error
			}
		}
	case messages.KindRetention:
		if strings.HasPrefix(ev.Target, "cleanup-") {
			return false
		}
		if r.RetentionDone {
			return false
		}
		r.RetentionDone, changed = true, true
		if !ok {
			r.addWarning("retention failed: " + ev.Error)
		}
		for _, w := range ev.Warnings {
			r.addWarning(w)
		}
	default:
		return false
	}
	if changed {
		r.LastEventAt = now
		r.refreshProgress(p)
	}
	return changed
}

// advance moves the job through its phases as far as the recorded results
// allow, queueing the effects each step needs. It is a pure function of the
// record and the plan, so any replica computes the same next state.
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
	n := len(p.Nodes)
	switch r.Phase {
	case messages.PhaseFlushing:
		flushed, failed := r.Flushed.count(), r.FlushFailed.count()
		if failed > 0 && !p.Policy.AllowPartial {
			return r.fail(p, now, fmt.Sprintf("flush failed on %s", r.failedTargets(messages.KindFlush))), true
		}
		if flushed+failed < n {
			return transition{}, false
		}
		if flushed == 0 {
			return r.fail(p, now, "no node flushed"), true
		}
		if failed > 0 {
			r.addWarning(fmt.Sprintf("partial backup: flush failed on %s", r.failedTargets(messages.KindFlush)))
		}
		r.BarrierAt = now
		r.addOutbox(fxSnapshots)
		return r.setPhase(p, messages.PhaseSnapshotting, now, ""), true
	case messages.PhaseSnapshotting:
		if r.SnapFailed.count() > 0 {
			return r.fail(p, now, fmt.Sprintf("snapshot failed for %s", r.failedTargets(messages.KindSnapshot))), true
		}
		// A node's hard links are cleared as soon as its own snapshots are
		// initiated: the EBS snapshot is a point in time, so the links have
		// served their purpose and every minute they stay costs disk.
		if p.Mode == messages.ModeApplication {
			for i := range p.Nodes {
				if !r.Flushed.has(i) || r.ClearQueued.has(i) {
					continue
				}
				done := true
				for _, j := range p.nodeUnits[i] {
					if !r.SnapDone.has(j) {
						done = false
						break
					}
				}
				if done {
					r.ClearQueued.set(i)
					r.addOutbox(fxClear + strconv.Itoa(i))
				}
			}
		}
		for j := range p.Units {
			if r.unitRequired(p, j) && !r.SnapDone.has(j) {
				return transition{}, false
			}
		}
		r.AwaitQueued = true
		r.addOutbox(fxAwait)
		return r.setPhase(p, messages.PhaseFinishing, now, ""), true
	case messages.PhaseFinishing:
		if r.AwaitDone && r.Error != "" {
			return r.fail(p, now, r.Error), true
		}
		if !r.AwaitDone {
			return transition{}, false
		}
		if p.Mode == messages.ModeApplication {
			for i := range p.Nodes {
				if r.ClearQueued.has(i) && !r.Cleared.has(i) && !r.ClearFailed.has(i) {
					return transition{}, false
				}
			}
		}
		if !r.CatalogWritten {
			r.addOutbox(fxCatalog)
			return transition{}, false
		}
		if !r.RetentionDone {
			if !r.RetentionQueued {
				r.addOutbox(fxRetention)
			}
			return transition{}, false
		}
		return r.setPhase(p, messages.PhaseSucceeded, now, ""), true
	}
	return transition{}, false
}

// fail ends the job and queues its cleanup: every node's tag is cleared (a
// node still flushing is cleared again when its late result arrives), and
// any volume snapshot the job took is deleted, since it is no backup.
func (r *record) fail(p *Plan, now time.Time, msg string) transition {
	r.queueCleanup(p)
	return r.setPhase(p, messages.PhaseFailed, now, msg)
}

func (r *record) queueCleanup(p *Plan) {
	if p.Mode == messages.ModeApplication && r.Phase != messages.PhasePlanned {
		for i := range p.Nodes {
			if r.ClearQueued.set(i) {
				r.addOutbox(fxClear + strconv.Itoa(i))
			}
		}
	}
	if r.Phase == messages.PhaseSnapshotting || r.Phase == messages.PhaseFinishing ||
		(p.Mode == messages.ModeCrash && r.Phase == messages.PhasePlanned) {
		r.Cleanups++
		r.addOutbox(fxCleanup + strconv.Itoa(r.Cleanups))
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
	return r.setPhase(p, messages.PhaseCancelled, now, msg), true
}

// expire fails a job whose phase or job deadline has passed.
func (r *record) expire(p *Plan, now time.Time) (transition, bool) {
	if r.Phase.Terminal() {
		return transition{}, false
	}
	switch {
	case !r.PhaseDeadline.IsZero() && !now.Before(r.PhaseDeadline):
		msg := fmt.Sprintf("%s deadline passed", r.Phase)
		if r.Phase == messages.PhaseFlushing || r.Phase == messages.PhasePlanned {
			msg = fmt.Sprintf("flush deadline passed: %d of %d nodes flushed; waiting on %s",
				r.Flushed.count(), len(p.Nodes), r.waitingOn(p))
		}
		return r.fail(p, now, msg), true
	case !r.Deadline.IsZero() && !now.Before(r.Deadline):
		return r.fail(p, now, "job deadline passed in phase "+string(r.Phase)), true
	}
	return transition{}, false
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
				s += " (" + f.Error + ")"
			}
			names = append(names, s)
		}
	}
	return summarize(names)
}

func summarize(names []string) string {
	sort.Strings(names)
	if len(names) > 10 {
		return strings.Join(names[:10], ", ") + fmt.Sprintf(" and %d more", len(names)-10)
	}
	return strings.Join(names, ", ")
}
