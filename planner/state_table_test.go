package planner

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// The state machine is a pure function of a plan, a record and the events
// applied to it: these tests drive it as the coordinator does (apply, then
// advance; carry out the outbox, then complete and advance) without any
// server, and look at the phase, the outbox and the progress after each
// script.

// machine drives one record the way the engine does.
type machine struct {
	t   *testing.T
	p   *Plan
	r   *record
	now time.Time
	// ts collects every transition, in order.
	ts []transition
	// catalog is what the catalog effect reports when carried out.
	catalog effectResult
	// retire is what the retention effect selects.
	retire []string
}

type machineOpts struct {
	nodes, volumes int
	perInstance    bool
	allowPartial   bool
	mode           messages.Mode
	hooks          []messages.Hook
	armWindow      time.Duration
}

func newMachine(t *testing.T, o machineOpts) *machine {
	t.Helper()
	if o.volumes == 0 {
		o.volumes = 1
	}
	var nodes []messages.Node
	for i := 1; i <= o.nodes; i++ {
		n := messages.Node{Name: fmt.Sprintf("n%d", i)}
		for v := 1; v <= o.volumes; v++ {
			n.Volumes = append(n.Volumes, messages.Volume{ID: fmt.Sprintf("v%d-%d", i, v)})
		}
		nodes = append(nodes, n)
	}
	req := messages.JobRequest{Schema: messages.JobRequestSchema, RequestID: "r1", Cluster: "c1", Mode: o.mode,
		Reason: "before the upgrade"}
	start := time.Unix(1_000, 0)
	pol := testPolicy(o.allowPartial)
	pol.Hooks = o.hooks
	pol.ArmWindow = o.armWindow
	p, err := BuildPlan(req, pol, nodes, o.perInstance, start)
	require.NoError(t, err)
	m := &machine{t: t, p: p, r: newRecord(p, start), now: start}
	return m
}

func testPolicy(allowPartial bool) Policy {
	return Policy{Name: "p", Cluster: "c1", AllowPartial: allowPartial, FlushTimeout: time.Minute, SnapshotTimeout: time.Hour}
}

// tick moves the clock.
func (m *machine) tick(d time.Duration) *machine { m.now = m.now.Add(d); return m }

// drain carries out every effect in the outbox, successfully, in rounds as
// the engine does: an effect's completion can queue the next.
func (m *machine) drain() *machine {
	for round := 0; len(m.r.Outbox) > 0 && round < 10; round++ {
		m.drainOnce()
	}
	return m
}

func (m *machine) drainOnce() {
	done := map[effect]effectResult{}
	for _, fx := range m.r.Outbox {
		switch fx.Kind {
		case fxCatalog:
			done[fx] = m.catalog
		case fxRetention:
			done[fx] = effectResult{retired: m.retire}
		default:
			done[fx] = effectResult{}
		}
	}
	m.r.Outbox = nil
	m.ts = append(m.ts, m.r.complete(m.p, done, m.now)...)
	m.ts = append(m.ts, m.r.advance(m.p, m.now)...)
}

// event applies a result and reports whether it changed the record.
func (m *machine) event(ev messages.TaskResult) bool {
	ev.JobID = m.p.JobID
	if ev.TaskID == "" {
		ev.TaskID = messages.TaskID(m.p.JobID, ev.Kind, ev.Target)
	}
	if ev.Attempt == 0 {
		ev.Attempt = 1
	}
	if ev.FinishedAt.IsZero() {
		ev.FinishedAt = m.now
	}
	changed := m.r.apply(m.p, &ev, m.now)
	if changed {
		m.ts = append(m.ts, m.r.advance(m.p, m.now)...)
	}
	return changed
}

// retry reports that attempt of a task failed and will be retried, as the
// coordinator applies it (no advance: a retry changes no count), and
// reports whether it changed the record.
func (m *machine) retry(kind messages.Kind, target string, attempt int) bool {
	return m.retryID(messages.TaskID(m.p.JobID, kind, target), kind, target, attempt)
}

func (m *machine) retryID(taskID string, kind messages.Kind, target string, attempt int) bool {
	ev := messages.TaskRetry{Schema: messages.TaskRetrySchema, TaskID: taskID, JobID: m.p.JobID, Kind: kind,
		Target: target, Attempt: attempt, MaxAttempts: 5, Error: "ssh dial " + target + ": connection refused",
		Code: "connect", FailedAt: m.now, NextAttemptAt: m.now.Add(time.Duration(attempt) * time.Second)}
	changed := m.r.applyRetry(m.p, &ev)
	if changed {
		m.ts = append(m.ts, m.r.advance(m.p, m.now)...)
	}
	return changed
}

func (m *machine) ok(kind messages.Kind, target string) *machine {
	m.event(messages.TaskResult{Kind: kind, Target: target, Outcome: messages.OutcomeSucceeded})
	return m
}

func (m *machine) failed(kind messages.Kind, target, msg string) *machine {
	m.event(messages.TaskResult{Kind: kind, Target: target, Outcome: messages.OutcomeFailed, Error: msg,
		ErrorClass: messages.ClassPermanent})
	return m
}

func (m *machine) cancel() *machine {
	if t, ok := m.r.cancel(m.p, m.now, "alice", "window closed"); ok {
		m.ts = append(m.ts, t)
	}
	return m
}

func (m *machine) expire() *machine {
	return m.expireNoting("")
}

func (m *machine) expireNoting(note string) *machine {
	if t, ok := m.r.expire(m.p, m.now, note); ok {
		m.ts = append(m.ts, t)
	}
	return m
}

// flushAll, snapAll and clearAll report every node's or unit's task done.
func (m *machine) flushAll() *machine {
	for _, n := range m.p.Nodes {
		m.ok(messages.KindFlush, n.Name)
	}
	return m
}

func (m *machine) snapAll() *machine {
	for j, u := range m.p.Units {
		if m.r.unitRequired(m.p, j) {
			m.ok(messages.KindSnapshot, u.Target)
		}
	}
	return m
}

func (m *machine) clearAll() *machine {
	for i, n := range m.p.Nodes {
		if m.r.ClearQueued.has(i) {
			m.ok(messages.KindClear, n.Name)
		}
	}
	return m
}

func (m *machine) await() *machine {
	m.event(messages.TaskResult{Kind: messages.KindAwait, Target: m.p.JobID, Outcome: messages.OutcomeSucceeded,
		Listing: messages.SnapshotListing(m.p.JobID)})
	return m
}

// outbox lists the outbox for comparison.
func (m *machine) outbox() []string {
	var out []string
	for _, fx := range m.r.Outbox {
		out = append(out, fx.String())
	}
	return out
}

func (m *machine) phases() []messages.Phase {
	var out []messages.Phase
	for _, t := range m.ts {
		out = append(out, t.to)
	}
	return out
}

var (
	planned      = messages.PhasePlanned
	flushing     = messages.PhaseFlushing
	snapshotting = messages.PhaseSnapshotting
	finishing    = messages.PhaseFinishing
	succeeded    = messages.PhaseSucceeded
	failed       = messages.PhaseFailed
	cancelled    = messages.PhaseCancelled
)

func TestStateMachineScripts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		desc   string
		opts   machineOpts
		script func(m *machine)
		// What the record must show at the end.
		phase    messages.Phase
		phases   []messages.Phase
		outbox   []string
		reason   Reason
		progress func(t *testing.T, p messages.Progress)
		check    func(t *testing.T, m *machine)
	}{
		{
			desc: "every node flushes, snapshots, clears and the backup is catalogued",
			opts: machineOpts{nodes: 2, volumes: 2},
			script: func(m *machine) {
				m.drain().flushAll()
				require.Equal(m.t, []string{"snapshots"}, m.outbox(), "the barrier releases the snapshots once")
				m.drain().snapAll()
				require.Equal(m.t, []string{"clear(node 0)", "clear(node 1)", "await"}, m.outbox())
				m.drain().clearAll().await()
				require.Equal(m.t, []string{"catalog"}, m.outbox())
				m.drain()
				require.Empty(m.t, m.outbox(), "nothing retired: no retention task")
				require.True(m.t, m.r.CatalogWritten)
			},
			phase:  succeeded,
			phases: []messages.Phase{flushing, snapshotting, finishing, succeeded},
			progress: func(t *testing.T, p messages.Progress) {
				require.Equal(t, messages.Progress{Nodes: 2, Volumes: 4, Flushed: 2, SnapshotTasks: 4, Snapshotted: 4,
					ClearTasks: 2, Cleared: 2}, p)
			},
		},
		{
			desc: "a node's clear is queued as soon as its own snapshots are initiated",
			opts: machineOpts{nodes: 2, volumes: 2},
			script: func(m *machine) {
				m.drain().flushAll().drain()
				m.ok(messages.KindSnapshot, "v2-1").ok(messages.KindSnapshot, "v1-1")
				require.Empty(m.t, m.outbox())
				m.ok(messages.KindSnapshot, "v2-2")
				require.Equal(m.t, []string{"clear(node 1)"}, m.outbox(), "n2 is done, n1 is not")
			},
			phase: snapshotting,
		},
		{
			desc: "results arriving out of order: clears before the await, the await before the last clear",
			opts: machineOpts{nodes: 2},
			script: func(m *machine) {
				m.drain().ok(messages.KindFlush, "n2").ok(messages.KindFlush, "n1").drain()
				m.ok(messages.KindSnapshot, "v2-1").drain().ok(messages.KindClear, "n2")
				m.ok(messages.KindSnapshot, "v1-1").drain().await()
				require.Empty(m.t, m.outbox(), "the catalog waits for n1's clear")
				m.ok(messages.KindClear, "n1")
				require.Equal(m.t, []string{"catalog"}, m.outbox())
				m.drain()
			},
			phase: succeeded,
		},
		{
			desc: "a redelivered result changes nothing",
			opts: machineOpts{nodes: 2},
			script: func(m *machine) {
				m.drain()
				require.True(m.t, m.event(messages.TaskResult{Kind: messages.KindFlush, Target: "n1", Outcome: messages.OutcomeSucceeded}))
				require.False(m.t, m.event(messages.TaskResult{Kind: messages.KindFlush, Target: "n1", Outcome: messages.OutcomeSucceeded}))
				require.False(m.t, m.event(messages.TaskResult{Kind: messages.KindFlush, Target: "n1", Outcome: messages.OutcomeFailed, Error: "late"}),
					"a failure delivered after the node's success does not undo it")
				require.False(m.t, m.event(messages.TaskResult{Kind: messages.KindFlush, Target: "n9", Outcome: messages.OutcomeSucceeded}),
					"a node not in the plan is ignored")
			},
			phase: flushing,
			progress: func(t *testing.T, p messages.Progress) {
				require.Equal(t, 1, p.Flushed)
				require.Zero(t, p.FlushFailed)
			},
		},
		{
			desc: "a failed flush fails the job: no snapshot is released and every node is cleared",
			opts: machineOpts{nodes: 3},
			script: func(m *machine) {
				m.drain().ok(messages.KindFlush, "n1").failed(messages.KindFlush, "n2", "nodetool: connection refused")
				require.Equal(m.t, []string{"clear(node 0)", "clear(node 1)", "clear(node 2)"}, m.outbox())
				require.Contains(m.t, m.r.Error, "flush failed on n2 (nodetool: connection refused)")
				m.drain()
				m.ok(messages.KindFlush, "n3")
				require.Equal(m.t, []string{"reclear(node 2, #1)"}, m.outbox(),
					"n3's flush landed after its clear was queued: cleared again")
			},
			phase:  failed,
			phases: []messages.Phase{flushing, failed},
			reason: ReasonFlushFailed,
		},
		{
			desc: "a flush failing after its node's clean-up ran is cleared again: nodetool may have made part of the tag",
			opts: machineOpts{nodes: 3},
			script: func(m *machine) {
				m.drain().failed(messages.KindFlush, "n2", "nodetool: not found").drain()
				m.failed(messages.KindFlush, "n3", "Snapshot directory removed under nodetool")
				require.Equal(m.t, []string{"reclear(node 2, #1)"}, m.outbox())
				m.drain()
				require.True(m.t, m.r.FlushFailed.has(2))
				require.False(m.t, m.r.Flushed.has(2), "its clear is told the node did not flush: no intent, nothing to clear")
			},
			phase:  failed,
			reason: ReasonFlushFailed,
		},
		{
			desc: "a failure of one node and a late success of the same node: the node stays failed",
			opts: machineOpts{nodes: 2},
			script: func(m *machine) {
				m.drain().failed(messages.KindFlush, "n1", "boom").drain()
				require.False(m.t, m.event(messages.TaskResult{Kind: messages.KindFlush, Target: "n1", Outcome: messages.OutcomeSucceeded}))
			},
			phase:  failed,
			reason: ReasonFlushFailed,
		},
		{
			desc: "cancel during the flush; a flush landing afterwards is cleared",
			opts: machineOpts{nodes: 3},
			script: func(m *machine) {
				m.drain().ok(messages.KindFlush, "n1").cancel()
				require.Equal(m.t, []string{"clear(node 0)", "clear(node 1)", "clear(node 2)"}, m.outbox())
				m.drain().ok(messages.KindFlush, "n2")
				require.Equal(m.t, []string{"reclear(node 1, #1)"}, m.outbox())
			},
			phase:  cancelled,
			reason: ReasonCancelled,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, "cancelled by alice: window closed", m.r.Error)
			},
		},
		{
			desc: "cancel after the barrier deletes the snapshots taken and any taken later",
			opts: machineOpts{nodes: 2},
			script: func(m *machine) {
				m.drain().flushAll().drain().ok(messages.KindSnapshot, "v1-1").cancel()
				require.Contains(m.t, m.outbox(), "cleanup(#1)")
				m.drain().ok(messages.KindSnapshot, "v2-1")
				require.Equal(m.t, []string{"cleanup(#2)"}, m.outbox(), "a snapshot landing after the cancel is cleaned up too")
			},
			phase:  cancelled,
			reason: ReasonCancelled,
		},
		{
			desc: "a cancelled job carries out only its clean-up",
			opts: machineOpts{nodes: 1},
			script: func(m *machine) {
				m.drain().flushAll()
				require.Equal(m.t, []string{"snapshots"}, m.outbox())
				m.cancel()
				for _, fx := range m.r.Outbox {
					if fx.Kind == fxSnapshots {
						require.False(m.t, fx.cleansUp(), "the release is dropped, not carried out")
					}
				}
			},
			phase: cancelled,
		},
		{
			desc: "allow_partial: the nodes that flushed are backed up and the backup says it is partial",
			opts: machineOpts{nodes: 3, volumes: 2, allowPartial: true},
			script: func(m *machine) {
				m.drain().ok(messages.KindFlush, "n1").failed(messages.KindFlush, "n2", "down").ok(messages.KindFlush, "n3")
				require.Equal(m.t, []string{"snapshots"}, m.outbox())
				m.drain().snapAll().drain().clearAll().await().drain()
			},
			phase: succeeded,
			progress: func(t *testing.T, p messages.Progress) {
				require.Equal(t, 4, p.SnapshotTasks, "only the units of the nodes that flushed")
				require.Equal(t, 4, p.Snapshotted)
			},
			check: func(t *testing.T, m *machine) {
				require.True(t, m.r.partial(m.p))
				require.Equal(t, []string{"n2"}, m.r.missingNodes(m.p))
				require.Contains(t, m.r.Warnings, "partial backup: flush failed on n2 (down)")
			},
		},
		{
			desc: "allow_partial with no node flushed fails",
			opts: machineOpts{nodes: 2, allowPartial: true},
			script: func(m *machine) {
				m.drain().failed(messages.KindFlush, "n1", "x").failed(messages.KindFlush, "n2", "y")
			},
			phase:  failed,
			reason: ReasonNoNodeFlushed,
		},
		{
			desc: "the flush deadline fails the job and names the nodes it waited on",
			opts: machineOpts{nodes: 3},
			script: func(m *machine) {
				m.drain().ok(messages.KindFlush, "n1").tick(59 * time.Second).expire()
				require.Equal(m.t, flushing, m.r.Phase, "not yet")
				m.tick(time.Second).expire()
			},
			phase:  failed,
			reason: ReasonPhaseDeadline,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, "flush deadline passed: 1 of 3 nodes flushed; waiting on n2, n3", m.r.Error)
			},
		},
		{
			desc: "a deadline that passed because no worker has the cluster says so",
			opts: machineOpts{nodes: 2},
			script: func(m *machine) {
				m.drain().tick(time.Minute).expireNoting("no running worker has cluster c1 in its configuration")
			},
			phase:  failed,
			reason: ReasonPhaseDeadline,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, "flush deadline passed: 0 of 2 nodes flushed; waiting on n1, n2; "+
					"no running worker has cluster c1 in its configuration", m.r.Error)
			},
		},
		{
			desc: "a node's long error is kept in part, and the job's error is bounded",
			opts: machineOpts{nodes: 12},
			script: func(m *machine) {
				m.drain()
				for i := 1; i <= 12; i++ {
					m.failed(messages.KindFlush, fmt.Sprintf("n%d", i), strings.Repeat("e", 10<<10))
				}
			},
			phase:  failed,
			reason: ReasonFlushFailed,
			check: func(t *testing.T, m *machine) {
				require.LessOrEqual(t, len(m.r.Error), messages.MaxReasonBytes+32)
				require.NotEmpty(t, m.r.Failures)
				for _, f := range m.r.Failures {
					require.LessOrEqual(t, len(f.Error), 1024+32)
					require.Contains(t, f.Error, "(10240 bytes)", "the record says how long the error was")
				}
			},
		},
		{
			desc: "the first failed node's error is said whole in the job's error, with its end",
			opts: machineOpts{nodes: 3},
			script: func(m *machine) {
				m.drain()
				m.failed(messages.KindFlush, "n1", "host key changed: "+strings.Repeat("x", 600)+" trusted in /etc/quiesce/known_hosts:2")
				m.failed(messages.KindFlush, "n2", "also "+strings.Repeat("y", 600)+" known_hosts:9")
			},
			phase:  failed,
			reason: ReasonFlushFailed,
			check: func(t *testing.T, m *machine) {
				require.Contains(t, m.r.Error, "/etc/quiesce/known_hosts:2)")
				require.NotContains(t, m.r.Error, "known_hosts:9", "a later node's error is clipped")
			},
		},
		{
			desc: "the job deadline ends a job whose phase deadline is later",
			opts: machineOpts{nodes: 1},
			script: func(m *machine) {
				m.drain().flushAll().drain()
				m.r.Deadline = m.now.Add(time.Minute)
				m.tick(time.Minute).expire()
			},
			phase:  failed,
			reason: ReasonJobDeadline,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, "job deadline passed in phase snapshotting", m.r.Error)
			},
		},
		{
			desc: "a failed snapshot fails the job and cleans up what was taken",
			opts: machineOpts{nodes: 2},
			script: func(m *machine) {
				m.drain().flushAll().drain().ok(messages.KindSnapshot, "v1-1").drain()
				m.failed(messages.KindSnapshot, "v2-1", "InvalidVolume.NotFound")
				require.ElementsMatch(m.t, []string{"clear(node 1)", "cleanup(#1)"}, m.outbox(),
					"n1's clear was queued already; n2 is cleared now")
			},
			phase:  failed,
			reason: ReasonSnapshotFailed,
		},
		{
			desc: "snapshots in error fail the job after the await",
			opts: machineOpts{nodes: 1},
			script: func(m *machine) {
				m.drain().flushAll().drain().snapAll().drain().clearAll()
				m.failed(messages.KindAwait, m.p.JobID, "1 snapshot(s) in error")
			},
			phase:  failed,
			reason: ReasonSnapshotsErrored,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, "snapshots did not complete: 1 snapshot(s) in error", m.r.Error)
				require.Equal(t, []string{"cleanup(#1)"}, m.outbox())
			},
		},
		{
			desc: "a catalog that finds a volume without a snapshot fails the job",
			opts: machineOpts{nodes: 1},
			script: func(m *machine) {
				m.catalog = effectResult{failed: "no completed snapshot found for volume v1-1"}
				m.drain().flushAll().drain().snapAll().drain().clearAll().await().drain()
			},
			phase:  failed,
			reason: ReasonCatalog,
			check: func(t *testing.T, m *machine) {
				require.False(t, m.r.CatalogWritten)
			},
		},
		{
			desc: "retention: the selected backups are retired by a task, and the job waits for it",
			opts: machineOpts{nodes: 1},
			script: func(m *machine) {
				m.retire = []string{"c1-000000000001"}
				m.drain().flushAll().drain().snapAll().drain().clearAll().await().drain()
				require.Empty(m.t, m.outbox())
				require.True(m.t, m.r.RetentionQueued)
				require.Equal(m.t, finishing, m.r.Phase, "waiting for the retention task")
				m.ok(messages.KindRetention, "c1")
			},
			phase: succeeded,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, []string{"c1-000000000001"}, m.r.Retired)
			},
		},
		{
			desc: "crash mode snapshots at once and never clears",
			opts: machineOpts{nodes: 2, mode: messages.ModeCrash},
			script: func(m *machine) {
				require.Equal(m.t, []string{"snapshots"}, m.outbox())
				m.drain().snapAll()
				require.Equal(m.t, []string{"await"}, m.outbox())
				m.drain().await().drain()
			},
			phase:  succeeded,
			phases: []messages.Phase{snapshotting, finishing, succeeded},
			progress: func(t *testing.T, p messages.Progress) {
				require.Equal(t, 2, p.SnapshotTasks, "released at once, without a flush")
				require.Equal(t, 2, p.Snapshotted)
			},
		},
		{
			desc: "a flush run again after its node was cleared (its ack lost) clears once more",
			opts: machineOpts{nodes: 1},
			script: func(m *machine) {
				m.drain().flushAll().drain().snapAll().drain().clearAll()
				require.True(m.t, m.event(messages.TaskResult{Kind: messages.KindFlush, Target: "n1",
					Outcome: messages.OutcomeSucceeded, Attempt: 2}))
				require.Equal(m.t, []string{"reclear(node 0, #1)"}, m.outbox())
			},
			phase: finishing,
		},
		{
			desc: "per-instance units: one snapshot task per node",
			opts: machineOpts{nodes: 2, volumes: 3, perInstance: true},
			script: func(m *machine) {
				m.drain().flushAll().drain().ok(messages.KindSnapshot, "n1")
				require.Equal(m.t, []string{"clear(node 0)"}, m.outbox())
			},
			phase: snapshotting,
			progress: func(t *testing.T, p messages.Progress) {
				require.Equal(t, 2, p.SnapshotTasks)
				require.Equal(t, 6, p.Volumes)
			},
		},
		{
			desc: "a job that never reached the barrier has no snapshot tasks, whatever flushes land after it failed",
			opts: machineOpts{nodes: 3, volumes: 2},
			script: func(m *machine) {
				m.drain().ok(messages.KindFlush, "n1")
				require.Zero(m.t, m.r.Progress.SnapshotTasks, "none before the barrier")
				m.failed(messages.KindFlush, "n2", "host key changed").drain().ok(messages.KindFlush, "n3")
			},
			phase:  failed,
			reason: ReasonFlushFailed,
			progress: func(t *testing.T, p messages.Progress) {
				require.Equal(t, 2, p.Flushed)
				require.Zero(t, p.SnapshotTasks)
				require.Equal(t, 6, p.Volumes)
			},
		},
		{
			desc: "a flush retry is shown and moves nothing: the barrier waits for results, and the result replaces the retry",
			opts: machineOpts{nodes: 2},
			script: func(m *machine) {
				m.drain().ok(messages.KindFlush, "n1")
				require.True(m.t, m.retry(messages.KindFlush, "n2", 1))
				require.True(m.t, m.retry(messages.KindFlush, "n2", 2), "a later attempt replaces the earlier")
				require.False(m.t, m.retry(messages.KindFlush, "n2", 1), "an older report changes nothing")
				require.Equal(m.t, flushing, m.r.Phase)
				require.Empty(m.t, m.outbox(), "no release, no clean-up")
				require.Equal(m.t, 1, m.r.Progress.Flushed)
				require.Equal(m.t, 1, m.r.Progress.Retrying)
				require.Len(m.t, m.r.Retrying, 1)
				require.Equal(m.t, 2, m.r.Retrying[0].Attempt)
				require.Equal(m.t, m.now.Add(2*time.Second), m.r.Retrying[0].NextAttemptAt)
				m.ok(messages.KindFlush, "n2")
				require.Empty(m.t, m.r.Retrying)
				require.Equal(m.t, []string{"snapshots"}, m.outbox())
				require.False(m.t, m.retry(messages.KindFlush, "n2", 3), "a report overtaken by the task's result is ignored")
			},
			phase:  snapshotting,
			phases: []messages.Phase{flushing, snapshotting},
			progress: func(t *testing.T, p messages.Progress) {
				require.Zero(t, p.Retrying)
			},
		},
		{
			desc: "a failed job's clean-up is pending until every clear ends; its retries are shown, those of tasks that no longer matter are dropped",
			opts: machineOpts{nodes: 3},
			script: func(m *machine) {
				m.drain().ok(messages.KindFlush, "n1")
				require.True(m.t, m.retry(messages.KindFlush, "n3", 1))
				m.failed(messages.KindFlush, "n2", "host key changed")
				require.Empty(m.t, m.r.Retrying, "n3's flush no longer matters")
				require.False(m.t, m.retry(messages.KindFlush, "n3", 2), "nor do its later retries")
				require.Equal(m.t, 3, m.r.Progress.CleanupPending, "every node's clear is queued")
				m.drain().ok(messages.KindClear, "n1").ok(messages.KindClear, "n2")
				require.True(m.t, m.retry(messages.KindClear, "n3", 1))
				require.True(m.t, m.retry(messages.KindClear, "n3", 2))
				require.Equal(m.t, 1, m.r.Progress.CleanupPending)
				require.Equal(m.t, 1, m.r.Progress.Retrying)
				require.Equal(m.t, messages.KindClear, m.r.Retrying[0].Kind)
				require.Equal(m.t, "connect", m.r.Retrying[0].Code)
				m.ok(messages.KindClear, "n3")
			},
			phase:  failed,
			reason: ReasonFlushFailed,
			progress: func(t *testing.T, p messages.Progress) {
				require.Equal(t, messages.Progress{Nodes: 3, Volumes: 3, Flushed: 1, FlushFailed: 1,
					ClearTasks: 3, Cleared: 3}, p, "clean-up ended: nothing pending, nothing retrying")
			},
			check: func(t *testing.T, m *machine) {
				require.Empty(t, m.r.Retrying)
			},
		},
		{
			desc: "a repeated clear that clears the node ends the retries of the node's first clear",
			opts: machineOpts{nodes: 3},
			script: func(m *machine) {
				m.drain().ok(messages.KindFlush, "n1")
				m.failed(messages.KindFlush, "n2", "host key changed").drain()
				m.ok(messages.KindClear, "n1").ok(messages.KindClear, "n2")
				require.True(m.t, m.retry(messages.KindClear, "n3", 1))
				// n3's flush lands after its clear was queued: cleared once more.
				m.ok(messages.KindFlush, "n3").drain()
				again := messages.TaskID(m.p.JobID, messages.KindClear, "n3") + reclearSuffix + "1"
				m.event(messages.TaskResult{TaskID: again, Kind: messages.KindClear, Target: "n3",
					Outcome: messages.OutcomeSucceeded})
			},
			phase:  failed,
			reason: ReasonFlushFailed,
			progress: func(t *testing.T, p messages.Progress) {
				require.Zero(t, p.CleanupPending)
				require.Zero(t, p.Retrying, "n3 is cleared: its first clear's retries no longer matter")
			},
			check: func(t *testing.T, m *machine) {
				require.Empty(t, m.r.Retrying)
			},
		},
		{
			desc: "repeated clears and snapshot clean-ups are pending until they end",
			opts: machineOpts{nodes: 2},
			script: func(m *machine) {
				m.drain().ok(messages.KindFlush, "n1").ok(messages.KindFlush, "n2").drain()
				m.ok(messages.KindSnapshot, "v1-1").cancel().drain()
				require.Equal(m.t, 3, m.r.Progress.CleanupPending, "two clears and cleanup #1")
				m.ok(messages.KindClear, "n1").ok(messages.KindClear, "n2")
				m.ok(messages.KindCleanup, "1")
				require.Zero(m.t, m.r.Progress.CleanupPending)

				// A snapshot landing late is cleaned up by a task of its own.
				m.ok(messages.KindSnapshot, "v2-1").drain()
				require.Equal(m.t, 1, m.r.Progress.CleanupPending)
				require.True(m.t, m.retry(messages.KindCleanup, "2", 1))
				m.ok(messages.KindCleanup, "2")
				require.False(m.t, m.event(messages.TaskResult{Kind: messages.KindCleanup, Target: "2", Outcome: messages.OutcomeSucceeded}),
					"a redelivered result changes nothing")

				// A flush run again after its node was cleared is cleared
				// once more, under a task ID of its own, and a failure of
				// that clear is shown.
				require.True(m.t, m.event(messages.TaskResult{Kind: messages.KindFlush, Target: "n2", Outcome: messages.OutcomeSucceeded, Attempt: 2}))
				require.Equal(m.t, []string{"reclear(node 1, #1)"}, m.outbox())
				m.drain()
				require.Equal(m.t, 1, m.r.Progress.CleanupPending)
				again := messages.TaskID(m.p.JobID, messages.KindClear, "n2") + reclearSuffix + "1"
				require.True(m.t, m.retryID(again, messages.KindClear, "n2", 1), "n2's first clear ended, its repeat did not")
				m.event(messages.TaskResult{TaskID: again, Kind: messages.KindClear, Target: "n2",
					Outcome: messages.OutcomeFailed, Error: "nodetool: connection refused"})
			},
			phase:  cancelled,
			reason: ReasonCancelled,
			progress: func(t *testing.T, p messages.Progress) {
				require.Zero(t, p.CleanupPending)
				require.Zero(t, p.Retrying)
				require.Equal(t, 2, p.CleanupTasks)
				require.Equal(t, 2, p.CleanupsDone)
				require.Equal(t, 2, p.SnapshotTasks, "the barrier was reached")
			},
			check: func(t *testing.T, m *machine) {
				require.Contains(t, m.r.Warnings, "snapshot tag "+m.r.Tag+" not cleared on node n2: nodetool: connection refused")
			},
		},
		{
			desc: "a flush result delivered again (its event's ack lost) queues no further clear; another attempt does",
			opts: machineOpts{nodes: 2},
			script: func(m *machine) {
				m.drain().flushAll().drain().snapAll().drain().clearAll()
				again := messages.TaskResult{Kind: messages.KindFlush, Target: "n2", Outcome: messages.OutcomeSucceeded, Attempt: 2}
				require.True(m.t, m.event(again))
				require.Equal(m.t, []string{"reclear(node 1, #1)"}, m.outbox())
				m.drain()
				for range 5 {
					require.False(m.t, m.event(again), "the same result, redelivered to the coordinator")
				}
				require.Empty(m.t, m.outbox())
				again.Attempt = 3
				require.True(m.t, m.event(again))
				require.Equal(m.t, []string{"reclear(node 1, #2)"}, m.outbox())
			},
			phase: finishing,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, 2, m.r.Reclears)
			},
		},
		{
			desc: "a flush re-created after too many repeated clears is a warning, not a clean-up shown as complete",
			opts: machineOpts{nodes: 1},
			script: func(m *machine) {
				m.drain().flushAll().drain().snapAll().drain().clearAll()
				for attempt := 2; attempt <= maxFailures+2; attempt++ {
					m.event(messages.TaskResult{Kind: messages.KindFlush, Target: "n1", Outcome: messages.OutcomeSucceeded, Attempt: attempt})
				}
				require.Equal(m.t, maxFailures, m.r.Reclears)
			},
			phase: finishing,
			check: func(t *testing.T, m *machine) {
				require.Contains(t, m.r.Warnings, "snapshot tag "+m.r.Tag+" may be left on node n1: more than 100 repeated clears "+
					"were needed; clear it with nodetool clearsnapshot -t "+m.r.Tag)
			},
		},
		{
			desc: "a clean-up task that could not delete a snapshot leaves a warning",
			opts: machineOpts{nodes: 1},
			script: func(m *machine) {
				m.drain().flushAll().drain().snapAll().cancel().drain()
				m.event(messages.TaskResult{Kind: messages.KindCleanup, Target: "1", Outcome: messages.OutcomeSucceeded,
					Warnings: []string{"snapshot snap-1 of job x is in use; kept"}})
			},
			phase: cancelled,
			check: func(t *testing.T, m *machine) {
				require.Contains(t, m.r.Warnings, "snapshot snap-1 of job x is in use; kept")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t, tc.opts)
			require.Equal(t, planned, m.r.Phase)
			tc.script(m)
			require.Equal(t, tc.phase, m.r.Phase, m.r.Error)
			if tc.phases != nil {
				require.Equal(t, tc.phases, m.phases())
			}
			if tc.reason != "" {
				require.Equal(t, tc.reason, m.r.Reason)
				require.Equal(t, tc.reason, m.ts[len(m.ts)-1].reason)
			}
			if tc.progress != nil {
				tc.progress(t, m.r.Progress)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
			// Whatever the script, the record survives a round trip
			// through its stored form.
			data, err := json.Marshal(m.r)
			require.NoError(t, err)
			var again record
			require.NoError(t, json.Unmarshal(data, &again))
			require.Equal(t, m.r.Outbox, again.Outbox)
			require.Equal(t, m.r.Phase, again.Phase)
			require.Equal(t, m.r.Reason, again.Reason)
			require.Equal(t, m.r.Retrying, again.Retrying)
			// Readers of the stored record see the request's reason, not
			// why the job ended.
			var j messages.Job
			require.NoError(t, json.Unmarshal(data, &j))
			require.Equal(t, "before the upgrade", j.Reason)
		})
	}
}

// Records stored by the previous release keep their outbox as strings; they
// decode into the same effects, so jobs in flight during an upgrade finish.
func TestLegacyOutboxDecodes(t *testing.T) {
	t.Parallel()
	var r record
	require.NoError(t, json.Unmarshal([]byte(`{"id":"c1-000000000001","phase":"failed",
		"outbox":["flush","snapshots","clear:3","reclear:3.2","await","catalog","retention","cleanup:4"]}`), &r))
	require.Equal(t, []effect{
		{Kind: fxFlush}, {Kind: fxSnapshots}, {Kind: fxClear, Node: 3}, {Kind: fxReclear, Node: 3, Seq: 2},
		{Kind: fxAwait}, {Kind: fxCatalog}, {Kind: fxRetention}, {Kind: fxCleanup, Seq: 4},
	}, r.Outbox)

	for _, bad := range []string{`"clear:x"`, `"reclear:3"`, `"nope"`, `"clear:-1"`, `"flush:1"`} {
		var fx effect
		require.Error(t, json.Unmarshal([]byte(bad), &fx), bad)
	}
}

// A clean-up task of the previous release was a retention task with a
// "cleanup-" target; its result must not count as the job's retention.
func TestLegacyCleanupResultIsNotRetention(t *testing.T) {
	t.Parallel()
	m := newMachine(t, machineOpts{nodes: 1})
	m.drain().flushAll().drain().snapAll().drain().clearAll().await()
	m.retire = []string{"c1-000000000001"}
	m.drain().drain()
	require.False(t, m.event(messages.TaskResult{Kind: messages.KindRetention, Target: "cleanup-1", Outcome: messages.OutcomeSucceeded}))
	require.Equal(t, finishing, m.r.Phase)
	m.ok(messages.KindRetention, "c1")
	require.Equal(t, succeeded, m.r.Phase)
}
