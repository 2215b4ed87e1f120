package worker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

// armWindow is long enough for a loaded machine to arm a handful of
// in-process nodes; nothing below depends on how fast they are armed.
const armWindow = 2 * time.Second

// Flushes sharing a fire time are armed as they arrive, and not one of them
// asks for its snapshot before that time: their commands start together,
// not one after another.
func TestArmedFlushesFireTogether(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	const n = 8
	fireAt := time.Now().Add(armWindow)
	for i := 1; i <= n; i++ {
		task := flushTask(fmt.Sprintf("n%d", i), nil)
		task.FireAt = fireAt
		b.publish(t, task)
	}
	var first, last time.Time
	for i := 1; i <= n; i++ {
		node := fmt.Sprintf("n%d", i)
		r := b.result(t, messages.KindFlush, node)
		require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
		require.False(t, r.Flush.Started.Before(fireAt), "%s started %s before the fire time %s", node, r.Flush.Started, fireAt)
		if first.IsZero() || r.Flush.Started.Before(first) {
			first = r.Flush.Started
		}
		if r.Flush.Started.After(last) {
			last = r.Flush.Started
		}
	}
	b.tool.mu.Lock()
	defer b.tool.mu.Unlock()
	require.Len(t, b.tool.firedAt, n)
	for node, at := range b.tool.firedAt {
		require.False(t, at.Before(fireAt), "%s's snapshot asked for before the fire time", node)
		require.True(t, b.tool.armedAt[node].Before(at), "%s armed before it fired", node)
	}
	// The commands start at the fire time, not in the order the nodes were
	// armed: a bound far above a timer's wake-up, far below a serial start.
	require.Less(t, last.Sub(first), time.Second, "spread of the starts")
}

// armingTool is a recording tool whose snapshot commands are made ready
// ahead of their fire (worker.SnapshotArmer), as over SSH.
type armingTool struct {
	*recordingTool
	armed, withdrawn atomic.Int64
}

type armedCall struct {
	fire chan struct{}
	done chan error
}

func (a *armedCall) Fire()       { close(a.fire) }
func (a *armedCall) Wait() error { return <-a.done }

func (a *armingTool) ArmSnapshot(ctx context.Context, node messages.Node, tag string, ks []string) (worker.ArmedSnapshot, error) {
	a.armed.Add(1)
	c := &armedCall{fire: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		select {
		case <-c.fire:
			c.done <- a.Snapshot(ctx, node, tag, ks)
		case <-ctx.Done():
			a.withdrawn.Add(1)
			c.done <- errclass.NotRun(context.Cause(ctx))
		}
	}()
	return c, nil
}

// With commands made ready ahead of the fire time, each is fired once, at
// the fire time.
func TestArmedCommandsFireAtTheFireTime(t *testing.T) {
	t.Parallel()
	var tool *armingTool
	b := newFlushBundleOf(t, func(r *recordingTool) worker.NodeTool { tool = &armingTool{recordingTool: r}; return tool })
	fireAt := time.Now().Add(armWindow)
	for _, node := range []string{"n1", "n2", "n3"} {
		task := flushTask(node, nil)
		task.FireAt = fireAt
		b.publish(t, task)
	}
	for _, node := range []string{"n1", "n2", "n3"} {
		r := b.result(t, messages.KindFlush, node)
		require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
		require.False(t, r.Flush.Started.Before(fireAt))
	}
	require.EqualValues(t, 3, tool.armed.Load())
	require.Zero(t, tool.withdrawn.Load())
	b.tool.mu.Lock()
	defer b.tool.mu.Unlock()
	for node, at := range b.tool.firedAt {
		require.False(t, at.Before(fireAt), node)
	}
}

// A job that fails while its nodes are armed (another node could not be
// reached) is flushed on none of them: no snapshot is made, and the intents
// recorded while arming are withdrawn, so the clean-up has nothing to clear.
// Commands made ready ahead are withdrawn, never run.
func TestJobFailedBeforeTheFireTimeFlushesNoArmedNode(t *testing.T) {
	t.Parallel()
	for _, ahead := range []bool{false, true} {
		t.Run(fmt.Sprintf("commands_ready=%v", ahead), func(t *testing.T) {
			t.Parallel()
			jobFailsWhileArmed(t, ahead)
		})
	}
}

func jobFailsWhileArmed(t *testing.T, ahead bool) {
	var tool *armingTool
	b := newFlushBundleOf(t, func(r *recordingTool) worker.NodeTool {
		if !ahead {
			return r
		}
		tool = &armingTool{recordingTool: r}
		return tool
	})
	ctx := context.Background()
	_, err := b.env.H.Jobs.Put(ctx, flushJob, []byte(`{"id":"`+flushJob+`","phase":"flushing"}`))
	require.NoError(t, err)
	// The job fails well before the last check ahead of the fire time.
	fireAt := time.Now().Add(3 * armWindow)
	for _, node := range []string{"n1", "n2", "n3"} {
		task := flushTask(node, nil)
		task.FireAt = fireAt
		b.publish(t, task)
	}
	require.NoError(t, testenv.Eventually(2*armWindow, func() bool {
		return b.intent(t, "n1") != nil && b.intent(t, "n2") != nil && b.intent(t, "n3") != nil
	}), "every node armed before the fire time")
	_, err = b.env.H.Jobs.Put(ctx, flushJob, []byte(`{"id":"`+flushJob+`","phase":"failed"}`))
	require.NoError(t, err)

	b.waitSettled(t, "the flushes are settled")
	require.Zero(t, b.tool.Calls.Load(), "no snapshot asked for")
	for _, node := range []string{"n1", "n2", "n3"} {
		require.Empty(t, b.tool.TagsOn(node))
		require.NoError(t, testenv.Eventually(5*time.Second, func() bool { return b.intent(t, node) == nil }), "%s's intent withdrawn", node)
	}
	if ahead {
		require.EqualValues(t, 3, tool.armed.Load())
		require.NoError(t, testenv.Eventually(5*time.Second, func() bool { return tool.withdrawn.Load() == 3 }), "every ready command withdrawn")
	}
}

// A flush that arrives after its fire time (redelivered, or a worker that
// was late) fires on arrival.
func TestFlushArrivingAfterItsFireTimeFiresAtOnce(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	task := flushTask("n1", nil)
	task.FireAt = time.Now().Add(-time.Minute)
	task.Deadline = time.Now().Add(time.Hour)
	b.publish(t, task)
	r := b.result(t, messages.KindFlush, "n1")
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
	require.Equal(t, []string{"quiesce-t1"}, b.tool.TagsOn("n1"))
}

// A flush whose job passed its barrier before the flush fires (a
// redelivery, or a worker frozen past its fire time) runs nothing on the
// node: its snapshot would be in no volume snapshot, and the tag it made
// could outlive the node's clean-up.
func TestFlushAfterTheBarrierRunsNothing(t *testing.T) {
	t.Parallel()
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprintf("fires_late=%v", late), func(t *testing.T) {
			t.Parallel()
			b := newFlushBundle(t)
			ctx := context.Background()
			phase := func(p messages.Phase) {
				_, err := b.env.H.Jobs.Put(ctx, flushJob, []byte(`{"id":"`+flushJob+`","phase":"`+string(p)+`"}`))
				require.NoError(t, err)
			}
			task := flushTask("n1", nil)
			if late {
				// Armed in time, then held up past the fire time while the
				// barrier is released.
				phase(messages.PhaseFlushing)
				task.FireAt = time.Now().Add(300 * time.Millisecond)
				b.tool.onPrepare = func(string) {
					phase(messages.PhaseSnapshotting)
					time.Sleep(time.Until(task.FireAt.Add(300 * time.Millisecond)))
				}
			} else {
				phase(messages.PhaseSnapshotting)
				task.FireAt = time.Now().Add(-time.Second)
			}
			b.publish(t, task)
			b.waitSettled(t, "the flush is settled")
			require.Zero(t, b.tool.Calls.Load(), "no snapshot asked for")
			require.Empty(t, b.tool.TagsOn("n1"))
			require.Nil(t, b.intent(t, "n1"), "no intent left")
		})
	}
}
