package stack_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

const nodes = 3

func clusterConfig(t *testing.T) planner.Inventory {
	t.Helper()
	cl := planner.Cluster{Name: "c1"}
	for i := range nodes {
		cl.Nodes = append(cl.Nodes, messages.Node{Name: fmt.Sprintf("node-%d", i+1), Address: "127.0.0.1",
			Volumes: []messages.Volume{{ID: fmt.Sprintf("vol-%d", i+1), Path: "/unused"}}})
	}
	return planner.Inventory{Clusters: []planner.Cluster{cl}}
}

// fast makes retries and polls short enough for a test.
func fast(inv planner.Inventory, d worker.Drivers) stack.Config {
	return stack.Config{
		Planner:     planner.PlannerConfig{Inventory: inv},
		Coordinator: planner.CoordinatorConfig{SweepInterval: 100 * time.Millisecond},
		Worker: worker.Config{Heartbeat: 200 * time.Millisecond, AwaitPoll: 20 * time.Millisecond,
			BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		Drivers: d,
	}
}

// Start runs a job end to end with two workers, and every role reports
// ready.
func TestStartRunsAJob(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{AckWait: 2 * time.Second})
	tool, snap := fakes.NewNodeTool(), fakes.NewSnapshotter()
	cfg := fast(clusterConfig(t), fakes.Drivers{Tool: tool, Snap: snap})
	cfg.Workers = 2
	s := stack.Start(t, env, cfg)
	require.NoError(t, s.Ready())

	job := env.Submit(t, testenv.Request("c1", "stack-1"))
	j := env.WaitTerminal(t, job, 30*time.Second)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	require.Len(t, tool.FlushedAt, nodes)
	require.EqualValues(t, nodes, snap.Creates.Load())
}

// Every role of a stack has stopped, and its connection is closed, once the
// test's cleanups have run.
func TestCleanupStopsEveryRole(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	var s *stack.Stack
	t.Run("run", func(t *testing.T) {
		cfg := fast(clusterConfig(t), fakes.Drivers{Tool: fakes.NewNodeTool(), Snap: fakes.NewSnapshotter()})
		cfg.Workers = 2
		s = stack.Start(t, env, cfg)
		require.NoError(t, s.Ready())
		require.Equal(t, 1+4, env.Server.NumClients(), "the environment's connection and one per role")
	})
	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(s.Ready(), &joined), "roles still ready after cleanup")
	require.Len(t, joined.Unwrap(), 4, "planner, coordinator and both workers stopped")
	require.Eventually(t, func() bool { return env.Server.NumClients() == 1 }, 10*time.Second, 10*time.Millisecond,
		"only the environment's connection is left")
}

// A worker killed with tasks in hand gives them back: a worker started
// after it finishes the job, and the killed one recorded nothing.
func TestKilledWorkerHandsTasksOver(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{AckWait: time.Second})
	tool, snap := fakes.NewNodeTool(), fakes.NewSnapshotter()
	s := stack.New(t, env, fast(clusterConfig(t), fakes.Drivers{Tool: tool, Snap: snap}))
	_, err := s.StartPlanner()
	require.NoError(t, err)
	_, err = s.StartCoordinator()
	require.NoError(t, err)
	stuck := fakes.NewNodeTool()
	stuck.Block = make(chan struct{})
	w1, err := s.StartWorker(fakes.Drivers{Tool: stuck, Snap: snap})
	require.NoError(t, err)

	job := env.Submit(t, testenv.Request("c1", "stack-kill"))
	require.Eventually(t, func() bool { return stuck.Calls.Load() == nodes }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, w1.Kill(t.Context()))

	_, err = s.StartWorker(nil)
	require.NoError(t, err)
	j := env.WaitTerminal(t, job, 30*time.Second)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	require.Len(t, tool.FlushedAt, nodes)
	require.Empty(t, stuck.FlushedAt)
}

// Now is the clock of every role: the job record's times come from it.
func TestNowIsEveryRolesClock(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	const ahead = 48 * time.Hour
	cfg := fast(clusterConfig(t), fakes.Drivers{Tool: fakes.NewNodeTool(), Snap: fakes.NewSnapshotter()})
	cfg.Now = func() time.Time { return time.Now().Add(ahead) }
	stack.Start(t, env, cfg)

	job := env.Submit(t, testenv.Request("c1", "stack-clock"))
	j := env.WaitTerminal(t, job, 30*time.Second)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	require.True(t, j.CreatedAt.After(time.Now().Add(ahead-time.Hour)), "created at %s", j.CreatedAt)
	require.True(t, j.PhaseTimes[messages.PhaseSucceeded].After(time.Now().Add(ahead-time.Hour)))
}

// Without a topology to bind to, a role's start is retried for Retry and
// then reported as an error, not as a test failure.
func TestStartRetriesThenReports(t *testing.T) {
	t.Parallel()
	srv := testenv.StartServer(t, "")
	env := &testenv.Env{Server: srv, URL: srv.ClientURL()}
	cfg := fast(clusterConfig(t), fakes.Drivers{Tool: fakes.NewNodeTool(), Snap: fakes.NewSnapshotter()})
	cfg.Retry = 300 * time.Millisecond
	s := stack.New(t, env, cfg)
	start := time.Now()
	_, err := s.StartCoordinator()
	require.Error(t, err)
	require.GreaterOrEqual(t, time.Since(start), cfg.Retry)
	_, err = s.StartWorker(nil)
	require.Error(t, err)
}
