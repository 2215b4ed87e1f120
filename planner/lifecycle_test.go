package planner_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

// service is what planner, coordinator and worker share.
type service interface {
	Start(context.Context) error
	Stop(context.Context) error
	Ready() error
}

func exerciseLifecycle(t *testing.T, s service) {
	t.Helper()
	ctx := context.Background()
	require.Error(t, s.Ready(), "not started")
	require.NoError(t, s.Stop(ctx), "stopping what never started is harmless")
	require.NoError(t, s.Start(ctx))
	require.NoError(t, s.Ready())
	require.Error(t, s.Start(ctx), "started twice")
	require.NoError(t, s.Stop(ctx))
	require.Error(t, s.Ready(), "a stopped service is not ready")

	// Many goroutines at once: whatever the interleaving, one last Stop
	// stops it and it starts again.
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				switch (g + i) % 3 {
				case 0:
					_ = s.Start(ctx)
				case 1:
					_ = s.Stop(ctx)
				default:
					_ = s.Ready()
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, s.Stop(ctx))
	require.Error(t, s.Ready())
	require.NoError(t, s.Start(ctx))
	require.NoError(t, s.Ready())
}

// A planner and a coordinator stopped and started again take work again.
func TestPlannerAndCoordinatorRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 2, volumes: 1})
	_, js := b.env.Connect(t)
	h, err := testenv.Handles(context.Background(), js)
	require.NoError(t, err)
	p := planner.NewPlanner(js, h, planner.PlannerConfig{Options: b.opts(), Inventory: b.inv})
	c := planner.NewCoordinator(js, h, planner.CoordinatorConfig{Options: b.opts(),
		SweepInterval: 100 * time.Millisecond, StallAfter: 500 * time.Millisecond})
	exerciseLifecycle(t, p)
	exerciseLifecycle(t, c)
	t.Cleanup(func() {
		_ = p.Stop(context.Background())
		_ = c.Stop(context.Background())
	})
	_, wjs := b.env.Connect(t)
	b.startWorker(t, wjs, nil)
	job := b.env.Submit(t, testenv.Request("c1", "after-restart"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
}
