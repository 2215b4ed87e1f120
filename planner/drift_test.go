package planner_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

// withCluster returns inv with one more cluster, a copy of its first under
// another name, and a policy for it.
func withCluster(inv planner.Inventory, name string) planner.Inventory {
	cl := inv.Clusters[0]
	cl.Name = name
	pol := inv.Policies[0]
	pol.Cluster = name
	return planner.Inventory{
		Clusters: append(append([]planner.Cluster(nil), inv.Clusters...), cl),
		Policies: append(append([]planner.Policy(nil), inv.Policies...), pol),
	}
}

// announce keeps a replica's entry in the replicas bucket for the test, as
// a running process does.
func (b *testBundle) announce(t *testing.T, name string, roles []string, clusters ...string) {
	t.Helper()
	b.announceReplica(t, messages.Replica{Name: name, Roles: roles, Clusters: clusters, Config: fmt.Sprint(clusters)})
}

func (b *testBundle) announceReplica(t *testing.T, r messages.Replica) {
	t.Helper()
	p, err := topology.StartPresence(t.Context(), b.env.H.Replicas, r, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
}

func (b *testBundle) startPlannerWith(t *testing.T, inv planner.Inventory) *planner.Planner {
	t.Helper()
	_, js := b.env.Connect(t)
	h, err := testenv.Handles(context.Background(), js)
	require.NoError(t, err)
	p := planner.NewPlanner(js, h, planner.PlannerConfig{Options: b.opts(), Inventory: inv,
		HandbackBase: 50 * time.Millisecond, HandbackMax: 500 * time.Millisecond})
	require.NoError(t, p.Start(context.Background()))
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p
}

// returnCounter counts the tasks a worker handed back for want of their
// cluster, and the tasks it failed.
type returnCounter struct {
	worker.NopObserver
	returned, failed atomic.Int64
}

func (o *returnCounter) TaskFinished(_ messages.Kind, outcome string, _ time.Duration, code string) {
	switch {
	case outcome == "returned" && code == "unknown_cluster":
		o.returned.Add(1)
	case outcome == "failed":
		o.failed.Add(1)
	}
}

func (b *testBundle) startWorkerKnowing(t *testing.T, obs worker.Observer, clusters ...string) {
	t.Helper()
	_, js := b.env.Connect(t)
	h, err := testenv.Handles(context.Background(), js)
	require.NoError(t, err)
	w := worker.New(js, h.Jobs, fakes.Drivers{Tool: b.tool, Snap: b.snap, Clusters: clusters}, worker.Config{
		Logger: zerolog.Nop(), Heartbeat: 200 * time.Millisecond, BackoffBase: 20 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond, AwaitPoll: 20 * time.Millisecond, Observer: obs,
		MaxDeliver: b.env.Opts.MaxDeliverFor,
	})
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.StopAndCancel(ctx)
	})
}

// A rolling update: replica B still runs the old configuration, without
// cluster c2; replica A has it. Requests and tasks of c2 that reach B are
// left for A, never rejected or failed, for longer than the consumers'
// delivery limits: every valid request succeeds (before replicas handed
// back what they did not know, B lost 10 of 10). So is a policy only A has.
func TestRollingUpdateLosesNoRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 2, volumes: 1, maxDeliver: 3})
	invA := withCluster(b.inv, "c2")
	hourly := invA.Policies[0]
	hourly.Name = "hourly"
	invA.Policies = append(invA.Policies, hourly)
	both := []string{messages.RolePlanner, messages.RoleCoordinator, messages.RoleWorker}
	// A's process is up (it announced itself) before its roles take work,
	// as at a rolling update's start.
	b.announceReplica(t, messages.Replica{Name: "replica-a", Roles: both, Clusters: []string{"c1", "c2"},
		Policies: []string{"c1/nightly", "c1/hourly", "c2/nightly"}, Config: "new"})
	b.announceReplica(t, messages.Replica{Name: "replica-b", Roles: both, Clusters: []string{"c1"},
		Policies: []string{"c1/nightly"}, Config: "old"})
	b.startCoordinator(t)
	b.startPlannerWith(t, b.inv)
	onB := &returnCounter{}
	b.startWorkerKnowing(t, onB, "c1")

	var jobs []string
	for i := range 10 {
		jobs = append(jobs, b.env.Submit(t, testenv.Request("c2", fmt.Sprintf("roll-c2-%d", i))))
		jobs = append(jobs, b.env.Submit(t, testenv.Request("c1", fmt.Sprintf("roll-c1-%d", i))))
	}
	// A policy only A's file has is left for A, as a cluster is.
	req := testenv.Request("c1", "roll-hourly")
	req.Policy = "hourly"
	hourlyJob := b.env.Submit(t, req)
	// B plans c1's requests and leaves c2's; it hands each c2 request back
	// more often than the planner consumer delivers one message (5).
	for i := 1; i < len(jobs); i += 2 {
		j := b.env.WaitTerminal(t, jobs[i], jobTimeout)
		require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	}
	require.NoError(t, testenv.Eventually(time.Minute, func() bool {
		b.obs.mu.Lock()
		defer b.obs.mu.Unlock()
		return b.obs.handedBack > 10*topology.PlannerMaxDeliver
	}), "planner B hands c2's requests back")

	// A's planner starts: c2's jobs are planned, and B's worker leaves
	// their tasks for A's, more often than a task is delivered (3).
	b.startPlannerWith(t, invA)
	require.NoError(t, testenv.Eventually(time.Minute, func() bool {
		return onB.returned.Load() > 10*3
	}), "worker B hands c2's tasks back")
	onA := &returnCounter{}
	b.startWorkerKnowing(t, onA, "c1", "c2")

	for _, job := range append(jobs, hourlyJob) {
		j := b.env.WaitTerminal(t, job, time.Minute)
		require.Equal(t, messages.PhaseSucceeded, j.Phase, "%s: %s", job, j.Error)
	}
	j, err := b.env.Job(t.Context(), hourlyJob)
	require.NoError(t, err)
	require.Equal(t, "hourly", j.Policy)
	b.obs.mu.Lock()
	require.Empty(t, b.obs.rejected, "no request rejected")
	b.obs.mu.Unlock()
	require.Zero(t, onB.failed.Load(), "worker B failed nothing")
	require.Zero(t, onA.failed.Load())
	require.Zero(t, onA.returned.Load(), "worker A knows every cluster")
}

// When no running worker has a job's cluster, its tasks are handed back
// until the phase deadline fails the job, and the job's error says why:
// never silently, never as a failure of a node.
func TestJobNoWorkerKnowsFailsAtItsDeadlineSayingWhy(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 2, volumes: 1, flushTimeout: 3 * time.Second})
	inv := withCluster(b.inv, "c2")
	inv.Policies[1].FlushTimeout = 3 * time.Second
	b.announce(t, "planner-a", []string{messages.RolePlanner, messages.RoleCoordinator}, "c1", "c2")
	b.announce(t, "worker-b", []string{messages.RoleWorker}, "c1")
	b.startCoordinator(t)
	b.startPlannerWith(t, inv)
	onB := &returnCounter{}
	b.startWorkerKnowing(t, onB, "c1")

	job := b.env.Submit(t, testenv.Request("c2", "nobody-knows"))
	j := b.env.WaitTerminal(t, job, time.Minute)
	require.Equal(t, messages.PhaseFailed, j.Phase)
	require.Contains(t, j.Error, "flush deadline passed: 0 of 2 nodes flushed")
	require.Contains(t, j.Error, `no running worker has cluster "c2" in its configuration`)
	require.Empty(t, j.Failures, "no node failed")
	require.Zero(t, onB.failed.Load())
	require.Positive(t, onB.returned.Load())
	require.Zero(t, b.tool.Calls.Load(), "nothing ran on any node")
}

// A request for a cluster that no running planner has is rejected with its
// reason, at once: a mistyped cluster is never redelivered for ever.
func TestRequestNoPlannerKnowsIsRejected(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.announce(t, "worker-x", []string{messages.RoleWorker}, "c1", "c9")
	b.startAll(t)
	req := testenv.Request("c9", "typo-1")
	b.env.Submit(t, req)
	rej := b.env.Rejection(t, req.JobID(), req.RequestID, 20*time.Second)
	require.Equal(t, "unknown_cluster", rej.Code)
	require.Contains(t, rej.Reason, `unknown cluster "c9": no running planner has it in its configuration`)
	b.obs.mu.Lock()
	defer b.obs.mu.Unlock()
	require.Zero(t, b.obs.handedBack, "a cluster only a worker has is no planner's")
}
