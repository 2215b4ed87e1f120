package planner

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

func hook(name string, point messages.HookPoint, scope messages.HookScope, onErr messages.OnError) messages.Hook {
	return messages.Hook{Name: name, Point: point, Scope: scope, Command: []string{"/usr/local/bin/" + name},
		TimeoutMS: 30_000, OnError: onErr}
}

var (
	pause    = hook("pause", messages.HookBefore, messages.ScopeNode, messages.OnErrorFail)
	resume   = hook("resume", messages.HookAfter, messages.ScopeNode, messages.OnErrorFail)
	notify   = hook("notify", messages.HookComplete, messages.ScopeJob, messages.OnErrorContinue)
	precheck = hook("precheck", messages.HookBefore, messages.ScopeJob, messages.OnErrorContinue)
)

// hookOK reports every task of a hook point done.
func (m *machine) hooksOK(point messages.HookPoint) *machine {
	for _, j := range m.p.hookTasksAt(point) {
		m.ok(messages.KindHook, m.p.hooks[j].target)
	}
	return m
}

func TestHookScripts(t *testing.T) {
	t.Parallel()
	hooks := []messages.Hook{pause, resume, notify}
	cases := []struct {
		desc   string
		hooks  []messages.Hook
		opts   machineOpts
		script func(m *machine)
		phase  messages.Phase
		reason Reason
		check  func(t *testing.T, m *machine)
	}{
		{
			desc:  "before on every node, then the flush; after once every snapshot is initiated; complete at the end",
			hooks: hooks,
			script: func(m *machine) {
				require.Equal(m.t, []string{"hooks(before)"}, m.outbox(), "the flush waits for the before hooks")
				m.drain()
				require.Equal(m.t, planned, m.r.Phase)
				m.ok(messages.KindHook, "before-h0-n1")
				require.Empty(m.t, m.outbox(), "n2's before hook has not finished")
				m.ok(messages.KindHook, "before-h0-n2")
				require.Equal(m.t, []string{"flush"}, m.outbox())
				m.drain().flushAll().drain().snapAll()
				require.Contains(m.t, m.outbox(), "hooks(after)")
				m.drain().clearAll().await()
				require.Empty(m.t, m.outbox(), "the catalog waits for the after hooks")
				m.hooksOK(messages.HookAfter)
				require.Equal(m.t, []string{"catalog"}, m.outbox())
				m.drain()
				require.Equal(m.t, succeeded, m.r.Phase)
				m.ok(messages.KindHook, "complete-h2")
			},
			phase: succeeded,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, messages.Progress{Nodes: 2, Volumes: 2, Flushed: 2, SnapshotTasks: 2, Snapshotted: 2,
					ClearTasks: 2, Cleared: 2, HookTasks: 5, HooksDone: 5}, m.r.Progress)
				require.Equal(t, []messages.HookPoint{messages.HookBefore, messages.HookAfter, messages.HookComplete}, m.r.HooksQueued)
			},
		},
		{
			desc:  "a before hook failing with on_error fail fails the job before any flush; every node gets its after hook",
			hooks: hooks,
			script: func(m *machine) {
				m.drain().ok(messages.KindHook, "before-h0-n1")
				m.failed(messages.KindHook, "before-h0-n2", "exit 3: compaction still running")
				require.ElementsMatch(m.t, []string{"hooks(after)", "hooks(complete)"}, m.outbox(), "no flush; after and complete")
				m.drain()
				require.Len(m.t, m.ts, 1)
			},
			phase:  failed,
			reason: ReasonHookFailed,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, "before hook pause failed on n2", m.r.Error)
				require.Zero(t, m.r.Progress.Flushed)
				require.False(t, m.r.ClearQueued.has(0), "nothing flushed, nothing to clear")
			},
		},
		{
			desc:  "a before hook failing with on_error continue leaves a warning and the job goes on",
			hooks: []messages.Hook{precheck},
			script: func(m *machine) {
				m.drain().failed(messages.KindHook, "before-h0", "exit 1")
				require.Equal(m.t, []string{"flush"}, m.outbox())
			},
			phase: planned,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, []string{"before hook precheck failed (on_error: continue): exit 1"}, m.r.Warnings)
				require.Empty(t, m.r.Failures)
			},
		},
		{
			desc:  "a job cancelled during the flush runs the after hooks of every node whose before hook ran",
			hooks: hooks,
			script: func(m *machine) {
				m.drain().hooksOK(messages.HookBefore).drain().ok(messages.KindFlush, "n1").cancel()
				require.Contains(m.t, m.outbox(), "hooks(after)")
				require.Contains(m.t, m.outbox(), "hooks(complete)")
				for _, fx := range m.r.Outbox {
					if fx.Kind == fxHooks {
						require.True(m.t, fx.cleansUp(), "after and complete hooks run for an ended job")
					}
				}
			},
			phase:  cancelled,
			reason: ReasonCancelled,
		},
		{
			desc:  "the flush deadline passing while before hooks run says so",
			hooks: hooks,
			script: func(m *machine) {
				m.drain().ok(messages.KindHook, "before-h0-n1").tick(time.Minute).expire()
			},
			phase:  failed,
			reason: ReasonPhaseDeadline,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, "flush deadline passed while the before hooks ran; waiting on pause on n2", m.r.Error)
				require.Contains(t, m.outbox(), "hooks(after)", "n1's before hook ran, and n2's may have")
			},
		},
		{
			desc:  "an after hook failing with on_error fail fails the job and its snapshots are cleaned up",
			hooks: hooks,
			script: func(m *machine) {
				m.drain().hooksOK(messages.HookBefore).drain().flushAll().drain().snapAll().drain().clearAll().await()
				m.ok(messages.KindHook, "after-h1-n1").failed(messages.KindHook, "after-h1-n2", "exit 2")
			},
			phase:  failed,
			reason: ReasonHookFailed,
			check: func(t *testing.T, m *machine) {
				require.Contains(t, m.outbox(), "cleanup(#1)")
				require.Contains(t, m.outbox(), "hooks(complete)")
				require.False(t, m.r.CatalogWritten)
			},
		},
		{
			desc:  "a complete hook that fails changes nothing but a warning",
			hooks: []messages.Hook{notify},
			script: func(m *machine) {
				m.drain().flushAll().drain().snapAll().drain().clearAll().await().drain()
				require.True(m.t, m.r.hooksQueued(messages.HookComplete), "published once the job succeeded")
				m.failed(messages.KindHook, "complete-h0", "exit 1")
			},
			phase: succeeded,
			check: func(t *testing.T, m *machine) {
				require.Equal(t, []string{"complete hook notify failed (on_error: continue): exit 1"}, m.r.Warnings)
			},
		},
		{
			desc:  "crash mode: before hooks, then the snapshots",
			hooks: []messages.Hook{pause},
			opts:  machineOpts{nodes: 1, mode: messages.ModeCrash},
			script: func(m *machine) {
				m.drain().hooksOK(messages.HookBefore)
				require.Equal(m.t, []string{"snapshots"}, m.outbox())
			},
			phase: planned,
		},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			o := tc.opts
			if o.nodes == 0 {
				o.nodes = 2
			}
			o.hooks = tc.hooks
			m := newMachine(t, o)
			tc.script(m)
			require.Equal(t, tc.phase, m.r.Phase, m.r.Error)
			if tc.reason != "" {
				require.Equal(t, tc.reason, m.r.Reason)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}
