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
		{JobID: "c1-000000000000", Partial: true, MissingNodes: []string{"a", "b", "c", "d", "e"},
			CopyRegions: []string{"us-west-2", "eu-west-1"}, SourceDeleted: true, DeletedCopies: []string{"eu-west-1"}},
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
	require.Contains(t, string(lines[3]), "source deleted, copies in us-west-2, copies deleted in eu-west-1", "what retention deleted of a backup a copy region keeps")
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

// The dry run of a policy with copy regions says, for every backup, what
// each region's rules decide and why.
func TestRetentionDryRunPerRegion(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	snaps := func(job string) []messages.SnapshotRef {
		return []messages.SnapshotRef{{SnapshotID: "snap-" + job, Node: "n1", VolumeID: "vol-1"}}
	}
	var backups []messages.Backup
	for i, day := range []int{0, -1, -30, -31} {
		job := "c1-00000000000" + string(rune('4'-i))
		backups = append(backups, messages.Backup{JobID: job, FinishedAt: at.AddDate(0, 0, day), SnapshotCount: 1, Snapshots: snaps(job)})
	}
	backups[2].DeletedCopies = []string{"eu-west-1"}
	backups[3].CopyRegions = []string{"us-west-2"} // taken while eu-west-1 was no copy region
	pol := planner.Policy{Name: "nightly", Retention: planner.Retention{KeepDaily: 1}, CopyRegions: []string{"us-west-2", "eu-west-1"},
		CopyRetention: map[string]planner.Retention{"us-west-2": {KeepMonthly: 2}}}
	ds := planner.SelectRegionRetention(backups, pol.RetentionSets(), nil, at)
	var out bytes.Buffer
	require.NoError(t, writeRetention(&out, "c1", pol, ds, func(b messages.Backup) (messages.Backup, error) { return b, nil }))
	got := out.String()
	for _, want := range []string{
		"cluster c1, policy nightly: source keep daily 1; us-west-2 keep monthly 2 (its own); eu-west-1 keep daily 1 (the policy's); " +
			"4 backups, 2 would be retired, 1 kept by some regions only",
		"  keep   c1-000000000004  2026-11-30T02:00:00Z  1 snapshots\n" +
			"           source       keep       newest, daily 2026-11-30\n" +
			"           us-west-2    keep       newest, monthly 2026-11\n" +
			"           eu-west-1    keep       newest, daily 2026-11-30\n",
		"  RETIRE c1-000000000003  2026-11-29T02:00:00Z  1 snapshots  no region keeps it\n" +
			"           source       RETIRE     no rule keeps it\n" +
			"           would delete snap-c1-000000000003 (n1, vol-1)\n",
		"  keep   c1-000000000002  2026-10-31T02:00:00Z  1 snapshots\n" +
			"           source       RETIRE     no rule keeps it\n" +
			"           would delete snap-c1-000000000002 (n1, vol-1)\n" +
			"           us-west-2    keep       monthly 2026-10\n" +
			"           eu-west-1    deleted    by an earlier retention\n",
		"  RETIRE c1-000000000001  2026-10-30T02:00:00Z  1 snapshots  no region keeps it\n" +
			"           source       RETIRE     no rule keeps it\n" +
			"           would delete snap-c1-000000000001 (n1, vol-1)\n" +
			"           us-west-2    RETIRE     no rule keeps it; would delete its copies of the 1 snapshots there\n" +
			"           eu-west-1    none       never copied there\n",
	} {
		require.Contains(t, got, want)
	}

	// A policy without copy regions prints as it always did.
	one := planner.Policy{Name: "nightly", Retention: planner.Retention{KeepLast: 1}}
	out.Reset()
	require.NoError(t, writeRetention(&out, "c1", one, planner.SelectRegionRetention(backups[:2], one.RetentionSets(), nil, at),
		func(b messages.Backup) (messages.Backup, error) { return b, nil }))
	require.Equal(t, "cluster c1, policy nightly: keep last 1; 2 backups, 1 would be retired\n"+
		"  keep   c1-000000000004  2026-11-30T02:00:00Z  1 snapshots  newest, last 1\n"+
		"  RETIRE c1-000000000003  2026-11-29T02:00:00Z  1 snapshots  no rule keeps it\n"+
		"           would delete snap-c1-000000000003 (n1, vol-1)\n", out.String())
}
