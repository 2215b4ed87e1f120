package planner_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

// A copy region with rules of its own keeps its copies of backups the
// source retired: the catalog keeps those backups' records, saying which
// regions' snapshots were deleted, until no region keeps them; a copy
// region without rules of its own follows the source.
func TestCopyRegionKeepsItsOwnCopies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{nodes: 2, volumes: 1, keepLast: 1, copyRegions: []string{"us-west-2", "eu-west-1"},
		copyRetention: map[string]planner.Retention{"us-west-2": {KeepLast: 3}}})
	snap := fakes.NewCopier("us-west-2", "eu-west-1")
	b.snap = snap.Snapshotter
	b.startPlanner(t)
	b.startCoordinator(t)
	_, js := b.env.Connect(t)
	b.startWorker(t, js, fakes.Drivers{Tool: b.tool, Snap: snap, Hook: b.hooks})

	var jobs []string
	for i := range 4 {
		job := b.env.Submit(t, testenv.Request("c1", fmt.Sprintf("copies-%d", i)))
		j := b.env.WaitTerminal(t, job, jobTimeout)
		require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
		require.Empty(t, j.Warnings)
		jobs = append(jobs, job)
	}
	byJob := func(j string) map[string]string { return map[string]string{messages.TagJob: j} }
	for i, job := range jobs {
		source, west, eu := 0, 0, 0
		if i == 3 {
			source, eu = 2, 2 // keep_last 1
		}
		if i >= 1 {
			west = 2 // us-west-2: keep_last 3
		}
		require.Equal(t, source, snap.Count(byJob(job)), "job %d: its own snapshots", i)
		require.Equal(t, west, snap.CopiesIn("us-west-2", byJob(job)), "job %d: copies in us-west-2", i)
		require.Equal(t, eu, snap.CopiesIn("eu-west-1", byJob(job)), "job %d: copies in eu-west-1, which follows the source", i)
	}

	backups, err := planner.Backups(ctx, b.env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 3, "the first backup is kept nowhere: retired from the catalog")
	require.Equal(t, jobs[3], backups[0].JobID)
	require.Equal(t, []string{"us-west-2", "eu-west-1"}, backups[0].CopyRegions, "the record says where the copies are")
	require.False(t, backups[0].SourceDeleted)
	require.Empty(t, backups[0].DeletedCopies)
	for k, want := range []string{jobs[2], jobs[1]} {
		got := backups[k+1]
		require.Equal(t, want, got.JobID)
		require.True(t, got.SourceDeleted, "%s: its own snapshots are deleted", want)
		require.Equal(t, []string{"eu-west-1"}, got.DeletedCopies, "%s: its copies in eu-west-1 are deleted", want)
	}
	// Each deletion counted once: 2 snapshots and 4 copies of the first
	// job, 2 snapshots and 2 copies of each of the two next.
	b.obs.mu.Lock()
	require.Equal(t, 6+2*4, b.obs.retired)
	b.obs.mu.Unlock()

	// Selecting again over the catalog as it is now deletes nothing more.
	holds, err := planner.Holds(ctx, b.env.H.Holds, "c1")
	require.NoError(t, err)
	retired, trims := planner.RetiredAndTrimmed(planner.SelectRegionRetention(backups, b.inv.Policies[0].RetentionSets(), holds, time.Now()))
	require.Empty(t, retired)
	require.Empty(t, trims)
}
