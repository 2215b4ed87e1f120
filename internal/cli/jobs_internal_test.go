package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

// A partial backup is shown as such in the listing, with the nodes it lacks.
func TestBackupsListingShowsPartialBackups(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	printBackups(&out, []messages.Backup{
		{JobID: "c1-000000000002", FinishedAt: at, Policy: "nightly", Mode: messages.ModeApplication, NodeCount: 2,
			SnapshotCount: 2, Tag: "t2", Partial: true, MissingNodes: []string{"n3"}},
		{JobID: "c1-000000000001", FinishedAt: at.Add(-24 * time.Hour), Policy: "nightly", Mode: messages.ModeApplication,
			NodeCount: 3, SnapshotCount: 3, Tag: "t1", Regions: []string{"us-east-1", "us-west-2"}},
		{JobID: "c1-000000000000", Partial: true, MissingNodes: []string{"a", "b", "c", "d", "e"}},
	}, map[string]planner.Hold{
		"c1-000000000001": {JobID: "c1-000000000001", Until: at.Add(48 * time.Hour)},
		"c1-000000000000": {JobID: "c1-000000000000", Until: at.Add(-time.Hour)},
	}, at)
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	require.Len(t, lines, 4)
	require.Contains(t, string(lines[0]), "COVERS")
	require.Contains(t, string(lines[2]), "until 2026-11-26T02:00:00Z")
	require.True(t, strings.HasSuffix(string(lines[3]), "-"), "an expired hold holds nothing: %s", lines[3])
	require.Contains(t, string(lines[1]), "PARTIAL: without n3")
	require.Contains(t, string(lines[2]), "all nodes")
	require.Contains(t, string(lines[2]), "us-east-1,us-west-2", "the regions a backup's snapshots are in")
	require.Contains(t, string(lines[3]), "PARTIAL: without a, b, c and 2 more")
}

// Every view of a job counts the same way: status, the progress line of
// submit and watch, and the jobs listing. A job that never reached the
// barrier has no snapshot tasks in any of them.
func TestViewsCountTheSameWay(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	views := func(j messages.Job) []string {
		var status, listing bytes.Buffer
		printJob(&status, j, at)
		printJobs(&listing, []messages.Job{j})
		return []string{status.String(), (&progress{}).line(j), listing.String()}
	}
	never := messages.Job{ID: "c1-000000000001", Phase: messages.PhaseFailed, CreatedAt: at, UpdatedAt: at,
		Progress: messages.Progress{Nodes: 7, Volumes: 12, Flushed: 6, FlushFailed: 1, ClearTasks: 7, Cleared: 6, CleanupPending: 1}}
	for _, v := range views(never) {
		require.Contains(t, v, "none: barrier not reached", v)
		require.Contains(t, v, "6/7", v)
		require.Contains(t, v, "running: 1 task pending", v)
		require.NotContains(t, v, "0/12", v)
		require.NotContains(t, v, "0/0", v)
	}
	flushing := never
	flushing.Phase, flushing.Progress = messages.PhaseFlushing, messages.Progress{Nodes: 7, Volumes: 12, Flushed: 3}
	for _, v := range views(flushing) {
		require.Contains(t, v, "not released yet", v)
		require.NotContains(t, v, "clean-up", v)
	}
	after := never
	after.BarrierAt = at
	after.Progress = messages.Progress{Nodes: 3, Volumes: 6, Flushed: 3, SnapshotTasks: 6, Snapshotted: 4, SnapshotFail: 1,
		ClearTasks: 3, Cleared: 3, CleanupTasks: 1, CleanupsDone: 1}
	for _, v := range views(after) {
		require.Contains(t, v, "4/6 (1 failed)", v)
		require.Contains(t, v, "3/3", v)
		require.Contains(t, v, "ended", v)
	}
}

// A retry reads as what happened and what comes next.
func TestRetryText(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	job := "c1-000000000001"
	r := messages.Retry{TaskID: messages.TaskID(job, messages.KindClear, "node-7"), Kind: messages.KindClear, Target: "node-7",
		Attempt: 3, MaxAttempts: 5, Error: "ssh dial: i/o timeout", FailedAt: at, NextAttemptAt: at.Add(40 * time.Second)}
	require.Equal(t, "clear node-7: attempt 3 of 5 failed at 2026-11-24T02:00:00Z: ssh dial: i/o timeout; "+
		"next attempt 2026-11-24T02:00:40Z (in 30s)", retryText(job, r, at.Add(10*time.Second)))
	require.Contains(t, retryText(job, r, at.Add(time.Minute)), "next attempt due since 2026-11-24T02:00:40Z")
	r.TaskID += ".again1"
	require.Contains(t, retryText(job, r, at), "clear node-7 (repeated): attempt 3")
}
