package planner_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
)

// A job with an arm window fixes its fire time when it releases the flush,
// every node's snapshot is made at or after it, and the record says how far
// apart the nodes' commands started.
func TestFlushFiresAtTheJobsFireTime(t *testing.T) {
	t.Parallel()
	const arm = time.Second
	b := setup(t, setupOpts{nodes: 4, volumes: 1, armWindow: arm})
	b.startAll(t)

	submitted := time.Now()
	job := b.env.Submit(t, testenv.Request("c1", "fire-1"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)

	require.False(t, j.FireAt.IsZero())
	require.False(t, j.FireAt.Before(submitted.Add(arm)), "fire time %s is the release plus the arm window", j.FireAt)
	require.Len(t, b.tool.FlushedAt, 4)
	for node, at := range b.tool.FlushedAt {
		require.False(t, at.Before(j.FireAt), "%s flushed at %s, before the fire time %s", node, at, j.FireAt)
	}
	require.False(t, j.StartFirst.Before(j.FireAt))
	require.False(t, j.StartLast.Before(j.StartFirst))
}
