package planner_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

func flowHook(name string, point messages.HookPoint, scope messages.HookScope) messages.Hook {
	onErr := messages.OnErrorFail
	if point == messages.HookComplete {
		onErr = messages.OnErrorContinue
	}
	return messages.Hook{Name: name, Point: point, Scope: scope, Command: []string{"/usr/local/bin/" + name},
		TimeoutMS: 5_000, OnError: onErr}
}

var flowHooks = []messages.Hook{
	flowHook("pause", messages.HookBefore, messages.ScopeNode),
	flowHook("resume", messages.HookAfter, messages.ScopeNode),
	flowHook("report", messages.HookComplete, messages.ScopeJob),
}

// runsOf returns when each run of a hook happened, by node.
func runsOf(b *testBundle, hook string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, r := range b.hooks.Runs() {
		if r.Hook == hook {
			out[r.Node] = r.At
		}
	}
	return out
}

// Before hooks run on every node before any flush; after hooks once every
// snapshot was taken; the complete hook once the job succeeded, with its
// outcome; every run's facts arrive in its environment.
func TestHooksRunAtTheirPoints(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 1, hooks: flowHooks})
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "hooks-ok"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)

	pause, resume := runsOf(b, "pause"), runsOf(b, "resume")
	require.Len(t, pause, 3)
	require.Len(t, resume, 3)
	for node, at := range pause {
		require.True(t, at.Before(b.tool.FlushedAt[node]) || !b.tool.FlushedAt[node].After(at), "pause on %s before its flush", node)
	}
	var lastPause time.Time
	for _, at := range pause {
		if at.After(lastPause) {
			lastPause = at
		}
	}
	var firstFlush time.Time
	for _, at := range b.tool.FlushedAt {
		if firstFlush.IsZero() || at.Before(firstFlush) {
			firstFlush = at
		}
	}
	require.True(t, lastPause.Before(firstFlush), "every before hook ran before the first flush")
	for _, at := range resume {
		require.True(t, at.After(b.snap.FirstCreate()), "after hooks run once the snapshots are initiated")
	}
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool { return len(runsOf(b, "report")) == 1 }))
	for _, r := range b.hooks.Runs() {
		require.Equal(t, job, r.Env["QUIESCE_JOB_ID"])
		require.Equal(t, "c1", r.Env["QUIESCE_CLUSTER"])
		require.Equal(t, "nightly", r.Env["QUIESCE_POLICY"])
		require.Equal(t, "quiesce-"+job, r.Env["QUIESCE_TAG"])
		if r.Hook == "report" {
			require.Equal(t, "succeeded", r.Env["QUIESCE_OUTCOME"])
			require.Empty(t, r.Node)
		} else {
			require.Equal(t, r.Node, r.Env["QUIESCE_NODE"])
		}
	}
	require.Equal(t, 7, j.Progress.HookTasks)
}

// A before hook that fails on one node fails the job before any node
// flushed, and every node still gets its after hook: what the before hooks
// paused is resumed. The complete hook hears the job failed.
func TestFailedBeforeHookFailsTheJobAndResumesEveryNode(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 1, hooks: flowHooks})
	b.hooks.Fail = func(hook, node string) error {
		if hook == "pause" && node == "node-2" {
			return errclass.Permanent(errors.New("exit 3: compaction did not pause"))
		}
		return nil
	}
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "hooks-fail"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseFailed, j.Phase)
	require.Equal(t, "before hook pause failed on node-2", j.Error)
	require.Zero(t, b.tool.Calls.Load(), "no node flushed")
	require.Zero(t, b.snap.Creates.Load())
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
		return len(runsOf(b, "resume")) == 3 && len(runsOf(b, "report")) == 1
	}), "every node resumed; the job reported")
	for _, r := range b.hooks.Runs() {
		if r.Hook == "report" {
			require.Equal(t, "failed", r.Env["QUIESCE_OUTCOME"])
		}
	}
	runs, err := b.env.H.Jobs.Get(context.Background(), messages.HookRunKey(job, "before-h0-node-2"))
	require.NoError(t, err)
	require.Contains(t, string(runs.Value()), "compaction did not pause", "the failed run's output is kept for status")
}
