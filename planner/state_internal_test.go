package planner

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

func testPlan(t *testing.T, nodes int) *Plan {
	t.Helper()
	var ns []messages.Node
	for i := 0; i < nodes; i++ {
		ns = append(ns, messages.Node{Name: "n" + string(rune('1'+i)), Volumes: []messages.Volume{{ID: "v" + string(rune('1'+i))}}})
	}
	req := messages.JobRequest{Schema: messages.JobRequestSchema, RequestID: "r1", Cluster: "c1"}
	p, err := BuildPlan(req, Policy{Name: "p"}, ns, false, time.Unix(0, 0))
	require.NoError(t, err)
	return p
}

// A node whose flush was still running when its job was cancelled had its
// clear queued by the clean-up. If that clear ran first, the flush landing
// afterwards re-creates the tag: its success must queue one more clear.
func TestFlushLandingAfterCleanupIsClearedAgain(t *testing.T) {
	t.Parallel()
	p := testPlan(t, 3)
	now := time.Unix(100, 0)
	r := newRecord(p, now)
	r.Outbox = nil
	r.setPhase(p, messages.PhaseFlushing, now, "")
	for _, n := range []string{"n1", "n2"} {
		require.True(t, r.apply(p, &messages.TaskResult{Kind: messages.KindFlush, Target: n, Outcome: messages.OutcomeSucceeded, Attempt: 1, FinishedAt: now}, now))
	}
	_, ok := r.cancel(p, now, "alice", "")
	require.True(t, ok)
	require.True(t, r.ClearQueued.has(2), "the clean-up clears every node, n3 included")
	r.Outbox = nil // the clean-up's clears were carried out

	require.True(t, r.apply(p, &messages.TaskResult{Kind: messages.KindFlush, Target: "n3", Outcome: messages.OutcomeSucceeded, Attempt: 1, FinishedAt: now}, now))
	require.Len(t, r.Outbox, 1)
	require.Equal(t, effect{Kind: fxReclear, Node: 2, Seq: 1}, r.Outbox[0])
}
