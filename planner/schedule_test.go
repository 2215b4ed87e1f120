package planner_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

// jobIDs collects job IDs from repeated key listings: one listing taken
// while records are being updated may come back short.
func jobIDs(b *testBundle, seen map[string]bool) {
	lister, err := b.env.H.Jobs.ListKeysFiltered(context.Background(), "*")
	if err != nil {
		return
	}
	for k := range lister.Keys() {
		seen[k] = true
	}
}

// A policy's schedule is a JetStream message schedule: the server fires the
// JobRequest, and each firing is a job of its own.
func TestPolicyScheduleFiresJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 1, volumes: 1})
	b.inv.Policies[0].Schedule = "@every 1s"
	b.startAll(t)
	ctx := context.Background()

	changes, err := planner.SyncSchedules(ctx, b.env.JS, b.inv.Policies)
	require.NoError(t, err)
	require.Equal(t, []planner.ScheduleChange{{Cluster: "c1", Policy: "nightly", Action: "set", Schedule: "@every 1s"}}, changes)
	changes, err = planner.SyncSchedules(ctx, b.env.JS, b.inv.Policies)
	require.NoError(t, err)
	require.Equal(t, "unchanged", changes[0].Action, "a second sync leaves the schedule's timer alone")

	seen := map[string]bool{}
	require.NoError(t, testenv.Eventually(20*time.Second, func() bool { jobIDs(b, seen); return len(seen) >= 2 }))
	var requests []string
	for id := range seen {
		j := b.env.WaitTerminal(t, id, jobTimeout)
		require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
		require.True(t, strings.HasPrefix(j.RequestID, "schedule-c1-nightly@"), j.RequestID)
		require.Equal(t, "schedule", j.RequestedBy)
		requests = append(requests, j.RequestID)
	}
	require.NotEqual(t, requests[0], requests[1], "each firing has its own request ID")

	// Without a schedule in the policy, the schedule goes and firing stops.
	// The running planner keeps its inventory: the change is made on a
	// copy (the planner reads its own while it plans the last firings).
	unscheduled := slices.Clone(b.inv.Policies)
	unscheduled[0].Schedule = ""
	changes, err = planner.SyncSchedules(ctx, b.env.JS, unscheduled)
	require.NoError(t, err)
	require.Equal(t, []planner.ScheduleChange{{Cluster: "c1", Policy: "nightly", Action: "removed"}}, changes)
	time.Sleep(1500 * time.Millisecond) // let a firing already under way land
	before := b.obs.startedJobs()
	time.Sleep(2500 * time.Millisecond)
	require.Equal(t, before, b.obs.startedJobs(), "no job after the schedule was removed")
}

func TestBadScheduleIsAnError(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 1, volumes: 1})
	b.inv.Policies[0].Schedule = "every tuesday"
	_, err := planner.SyncSchedules(context.Background(), b.env.JS, b.inv.Policies)
	require.ErrorContains(t, err, `schedule "every tuesday"`)
}

// A planner started from an older configuration during a rolling update
// leaves the schedules of clusters it does not know alone; `quiesce
// schedules` (SyncSchedules) still removes every stale one.
func TestPlannerSyncsOnlyItsClustersSchedules(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 1, volumes: 1})
	newer := withCluster(b.inv, "c2")
	newer.Policies[1].Schedule = "0 3 * * *"
	ctx := context.Background()
	changes, err := planner.SyncSchedules(ctx, b.env.JS, newer.Policies)
	require.NoError(t, err)
	require.Equal(t, []planner.ScheduleChange{{Cluster: "c2", Policy: "nightly", Action: "set", Schedule: "0 0 3 * * *"}}, changes)

	changes, err = planner.SyncClusterSchedules(ctx, b.env.JS, b.inv.Policies, []string{"c1"})
	require.NoError(t, err)
	require.Empty(t, changes, "c2's schedule is not c1's planner's to remove")
	stream, err := b.env.JS.Stream(ctx, messages.StreamJobs)
	require.NoError(t, err)
	_, err = stream.GetLastMsgForSubject(ctx, messages.SubjectSchedule("c2", "nightly"))
	require.NoError(t, err, "the schedule is still there")

	changes, err = planner.SyncSchedules(ctx, b.env.JS, b.inv.Policies)
	require.NoError(t, err)
	require.Equal(t, []planner.ScheduleChange{{Cluster: "c2", Policy: "nightly", Action: "removed"}}, changes)
}

// Drill schedules live beside the policies' and apart from them: each sync
// sets, keeps and removes only its own, and a planner's only its clusters'.
func TestDrillSchedulesApartFromPolicySchedules(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 1, volumes: 1})
	b.inv.Policies[0].Schedule = "0 3 * * *"
	ctx := context.Background()
	stream, err := b.env.JS.Stream(ctx, messages.StreamJobs)
	require.NoError(t, err)
	_, err = planner.SyncSchedules(ctx, b.env.JS, b.inv.Policies)
	require.NoError(t, err)

	drills := []planner.DrillSchedule{{Cluster: "c1", Schedule: "0 4 * * 0"}, {Cluster: "c2", Schedule: "@daily"}}
	changes, err := planner.SyncDrillSchedules(ctx, b.env.JS, drills, nil)
	require.NoError(t, err)
	require.Equal(t, []planner.ScheduleChange{
		{Cluster: "c1", Drill: true, Action: "set", Schedule: "0 0 4 * * 0"},
		{Cluster: "c2", Drill: true, Action: "set", Schedule: "@daily"},
	}, changes)
	last, err := stream.GetLastMsgForSubject(ctx, messages.SubjectDrillSchedule("c1"))
	require.NoError(t, err)
	require.Equal(t, messages.SubjectDrillSubmit, last.Header.Get("Nats-Schedule-Target"))
	req, err := messages.DecodeDrillRequest(last.Data)
	require.NoError(t, err)
	require.Equal(t, "schedule", req.RequestedBy)

	changes, err = planner.SyncDrillSchedules(ctx, b.env.JS, drills, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"unchanged", "unchanged"}, []string{changes[0].Action, changes[1].Action})

	// The policies' sync knows nothing of drill schedules, and without
	// any policy schedule removes only its own.
	changes, err = planner.SyncSchedules(ctx, b.env.JS, b.inv.Policies)
	require.NoError(t, err)
	require.Equal(t, []planner.ScheduleChange{{Cluster: "c1", Policy: "nightly", Action: "unchanged", Schedule: "0 0 3 * * *"}}, changes)
	changes, err = planner.SyncSchedules(ctx, b.env.JS, nil)
	require.NoError(t, err)
	require.Equal(t, []planner.ScheduleChange{{Cluster: "c1", Policy: "nightly", Action: "removed"}}, changes)
	_, err = stream.GetLastMsgForSubject(ctx, messages.SubjectDrillSchedule("c1"))
	require.NoError(t, err, "the drill schedule is not the policies' sync's to remove")
	_, err = planner.SyncSchedules(ctx, b.env.JS, b.inv.Policies)
	require.NoError(t, err)

	// A planner of c1 alone leaves c2's drill schedule; the full sync
	// removes both, and the policy's schedule stays.
	changes, err = planner.SyncDrillSchedules(ctx, b.env.JS, nil, []string{"c1"})
	require.NoError(t, err)
	require.Equal(t, []planner.ScheduleChange{{Cluster: "c1", Drill: true, Action: "removed"}}, changes)
	changes, err = planner.SyncDrillSchedules(ctx, b.env.JS, nil, nil)
	require.NoError(t, err)
	require.Equal(t, []planner.ScheduleChange{{Cluster: "c2", Drill: true, Action: "removed"}}, changes)
	_, err = stream.GetLastMsgForSubject(ctx, messages.SubjectSchedule("c1", "nightly"))
	require.NoError(t, err, "the policy's schedule is not the drills' sync's to remove")

	_, err = planner.SyncDrillSchedules(ctx, b.env.JS, []planner.DrillSchedule{{Cluster: "c1", Schedule: "weekly"}}, nil)
	require.ErrorContains(t, err, `drill of c1: schedule "weekly"`)
}
