package planner_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

func TestPoisonTaskFailsJobAfterMaxDeliver(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 2, volumes: 1, maxDeliver: 3})
	// A transient error that never goes away.
	b.snap.Fail = func(vol string) error {
		if vol == "vol-2-1" {
			return errors.New("connection reset by peer")
		}
		return nil
	}
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "poison"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseFailed, j.Phase)
	require.Contains(t, j.Error, "vol-2-1")
	require.Len(t, j.Failures, 1)
	require.Equal(t, messages.ClassExhausted, j.Failures[0].Class)
	require.Contains(t, j.Failures[0].Error, "connection reset by peer")
	// The snapshot that was taken is no backup: it is deleted, and every
	// node's tag is cleared.
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
		return b.snap.Count(map[string]string{messages.TagJob: job}) == 0 &&
			len(b.tool.TagsOn("node-1")) == 0 && len(b.tool.TagsOn("node-2")) == 0
	}))
	// The clears' acks may trail the tags' removal.
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
		n, err := b.env.StreamCount(context.Background(), messages.StreamTasks)
		return err == nil && n == 0
	}), "nothing left to redeliver")
}

func TestFlushDeadlineFailsAndCleansUp(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 1, flushTimeout: 500 * time.Millisecond})
	b.tool.Delay = func(node string) time.Duration {
		if node == "node-3" {
			return time.Hour // a node that hangs
		}
		return 0
	}
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "deadline"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseFailed, j.Phase)
	// Either the worker's task deadline or the coordinator's phase
	// deadline fires first; both name the node.
	require.Contains(t, j.Error, "deadline passed")
	require.Contains(t, j.Error, "node-3")
	require.Zero(t, b.snap.Creates.Load())
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
		return len(b.tool.TagsOn("node-1")) == 0 && len(b.tool.TagsOn("node-2")) == 0
	}))
}

func TestCancelStopsReleasingAndCleansUp(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 1})
	block := make(chan struct{})
	b.tool.Delay = func(node string) time.Duration {
		if node == "node-3" {
			<-block
		}
		return 0
	}
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "cancel-me"))
	b.env.WaitFor(t, job, jobTimeout, func(j messages.Job) bool { return j.Progress.Flushed == 2 })

	data, err := json.Marshal(messages.Control{Schema: messages.ControlSchema, JobID: job, Action: "cancel", By: "alice", Reason: "maintenance"})
	require.NoError(t, err)
	_, err = b.env.JS.Publish(context.Background(), messages.SubjectControl(job), data)
	require.NoError(t, err)
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseCancelled, j.Phase)
	require.Contains(t, j.Error, "cancelled by alice: maintenance")
	close(block) // node-3's flush lands after the cancel

	require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
		return len(b.tool.TagsOn("node-1")) == 0 && len(b.tool.TagsOn("node-2")) == 0 && len(b.tool.TagsOn("node-3")) == 0
	}), "a late flush is cleared too")
	require.Zero(t, b.snap.Creates.Load())
}

func TestCrashModeSkipsFlush(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 2, volumes: 2})
	b.startAll(t)
	req := testenv.Request("c1", "crash-mode")
	req.Mode = messages.ModeCrash
	job := b.env.Submit(t, req)
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	require.Zero(t, b.tool.Calls.Load())
	require.EqualValues(t, 4, b.snap.Creates.Load())
}

func TestAllowPartialBacksUpTheNodesThatFlushed(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 1, allowPartial: true})
	b.tool.Fail = func(node string) error {
		if node == "node-1" {
			return errclass.Permanent(errors.New("nodetool failed"))
		}
		return nil
	}
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "partial"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	require.EqualValues(t, 2, b.snap.Creates.Load())
	require.Zero(t, b.snap.Count(map[string]string{messages.TagNode: "node-1"}))
	require.NotEmpty(t, j.Warnings)
	require.Contains(t, j.Warnings[0], "partial backup")
}

// A flush delivered twice (its first result published, its ack lost) can
// run again after its node's tag was cleared, and leave a tag behind. The
// second success is reported under its own attempt, and the coordinator
// clears the node again.
func TestLateDuplicateFlushIsClearedAgain(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 2, volumes: 1})
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "late-flush"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	require.Empty(t, b.tool.TagsOn("node-1"))

	// The second delivery's flush lands now.
	node := messages.Node{Name: "node-1", Address: "127.0.0.1"}
	require.NoError(t, b.tool.Snapshot(context.Background(), node, j.Tag, nil))
	id := messages.TaskID(job, messages.KindFlush, "node-1")
	res := messages.TaskResult{Schema: messages.TaskResultSchema, TaskID: id, JobID: job, Kind: messages.KindFlush,
		Cluster: "c1", Target: "node-1", Attempt: 2, Outcome: messages.OutcomeSucceeded,
		StartedAt: time.Now(), FinishedAt: time.Now()}
	data, err := json.Marshal(res)
	require.NoError(t, err)
	_, err = b.env.JS.Publish(context.Background(), messages.SubjectTaskEvent(job, messages.KindFlush), data,
		jetstream.WithMsgID(id+".succeeded.2"))
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool { return len(b.tool.TagsOn("node-1")) == 0 }),
		"the late flush's tag is cleared")
}

// A failed job's clean-up goes on after its phase turned failed: a node
// whose clear keeps failing with a transient error is shown retrying, with
// when its next attempt comes, until its clear ends; only then has the
// clean-up ended.
func TestCleanupRetriesAreShownUntilItEnds(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 1, maxDeliver: 50})
	b.tool.Fail = func(node string) error {
		if node == "node-2" {
			return errclass.Permanent(errors.New("host key for node-2 changed"))
		}
		return nil
	}
	var hanging atomic.Bool
	hanging.Store(true)
	b.tool.ClearFail = func(node string) error {
		if node == "node-3" && hanging.Load() {
			return errors.New("ssh dial node-3: i/o timeout")
		}
		return nil
	}
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "cleanup-retries"))
	// Flushes that land after the failure are cleared again, so how much
	// clean-up is open depends on timing; node-3's is open until it ends.
	j := b.env.WaitFor(t, job, jobTimeout, func(j messages.Job) bool {
		return j.Phase == messages.PhaseFailed && j.Progress.Cleared == 2 && len(j.Retrying) > 0
	})
	require.GreaterOrEqual(t, j.Progress.CleanupPending, 1, "node-3's clear has not ended: %+v", j.Progress)
	require.Equal(t, len(j.Retrying), j.Progress.Retrying)
	for _, r := range j.Retrying {
		require.Equal(t, messages.KindClear, r.Kind)
		require.Equal(t, "node-3", r.Target, "only node-3's clears fail")
		require.Contains(t, r.Error, "i/o timeout")
		require.GreaterOrEqual(t, r.Attempt, 1)
		require.Equal(t, 50, r.MaxAttempts)
		require.True(t, r.NextAttemptAt.After(r.FailedAt), "the next attempt is after the failure: %v", r)
	}
	require.Zero(t, j.Progress.SnapshotTasks, "the barrier was never reached")

	hanging.Store(false)
	j = b.env.WaitFor(t, job, jobTimeout, func(j messages.Job) bool { return j.Progress.CleanupPending == 0 })
	require.Equal(t, messages.PhaseFailed, j.Phase)
	require.Equal(t, 3, j.Progress.Cleared)
	require.Zero(t, j.Progress.ClearFailed)
	require.Empty(t, j.Retrying, "nothing is retrying once the clean-up ended")
}
