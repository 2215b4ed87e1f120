package planner_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

type testBundle struct {
	env   *testenv.Env
	inv   planner.Inventory
	tool  *fakes.NodeTool
	snap  *fakes.Snapshotter
	hooks *fakes.Hooks
	obs   *countingObserver
}

type setupOpts struct {
	nodes, volumes int
	keepLast       int
	allowPartial   bool
	flushTimeout   time.Duration
	armWindow      time.Duration
	ackWait        time.Duration
	maxDeliver     int
	hooks          []messages.Hook
	copyRegions    []string
	copyRetention  map[string]planner.Retention
}

func clusterInventory(o setupOpts) planner.Inventory {
	if o.nodes == 0 {
		o.nodes = 3
	}
	if o.volumes == 0 {
		o.volumes = 2
	}
	cl := planner.Cluster{Name: "c1", DefaultPolicy: "nightly"}
	for i := 0; i < o.nodes; i++ {
		n := messages.Node{Name: fmt.Sprintf("node-%d", i+1), Address: "127.0.0.1"}
		for v := 0; v < o.volumes; v++ {
			n.Volumes = append(n.Volumes, messages.Volume{ID: fmt.Sprintf("vol-%d-%d", i+1, v+1), Path: "/unused"})
		}
		cl.Nodes = append(cl.Nodes, n)
	}
	return planner.Inventory{
		Clusters: []planner.Cluster{cl},
		Policies: []planner.Policy{{Name: "nightly", Cluster: "c1", Retention: planner.Retention{KeepLast: o.keepLast}, AllowPartial: o.allowPartial, Hooks: o.hooks,
			FlushTimeout: o.flushTimeout, ArmWindow: o.armWindow, CopyRegions: o.copyRegions, CopyRetention: o.copyRetention}},
	}
}

func setup(t *testing.T, o setupOpts) *testBundle {
	t.Helper()
	if o.ackWait == 0 {
		o.ackWait = 2 * time.Second
	}
	topo := topology.Options{AckWait: o.ackWait}
	if o.maxDeliver > 0 {
		topo.MaxDeliver = map[messages.Kind]int{}
		for _, k := range messages.Kinds {
			topo.MaxDeliver[k] = o.maxDeliver
		}
	}
	b := &testBundle{
		env: testenv.New(t, topo), inv: clusterInventory(o),
		tool: fakes.NewNodeTool(), snap: fakes.NewSnapshotter(), hooks: &fakes.Hooks{}, obs: newCountingObserver(),
	}
	return b
}

func (b *testBundle) opts() planner.Options {
	return planner.Options{Logger: zerolog.Nop(), Observer: b.obs}
}

func (b *testBundle) startPlanner(t *testing.T) *planner.Planner {
	t.Helper()
	_, js := b.env.Connect(t)
	h, err := testenv.Handles(context.Background(), js)
	require.NoError(t, err)
	p := planner.NewPlanner(js, h, planner.PlannerConfig{Options: b.opts(), Inventory: b.inv})
	require.NoError(t, p.Start(context.Background()))
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p
}

func (b *testBundle) startCoordinator(t *testing.T) *planner.Coordinator {
	t.Helper()
	_, js := b.env.Connect(t)
	h, err := testenv.Handles(context.Background(), js)
	require.NoError(t, err)
	c := planner.NewCoordinator(js, h, planner.CoordinatorConfig{Options: b.opts(),
		SweepInterval: 100 * time.Millisecond, StallAfter: 500 * time.Millisecond})
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func (b *testBundle) startWorker(t *testing.T, js jetstream.JetStream, drivers worker.Drivers) *worker.Worker {
	t.Helper()
	h, err := testenv.Handles(context.Background(), js)
	require.NoError(t, err)
	if drivers == nil {
		drivers = fakes.Drivers{Tool: b.tool, Snap: b.snap, Hook: b.hooks}
	}
	w := worker.New(js, h.Jobs, drivers, worker.Config{
		Logger: zerolog.Nop(), Heartbeat: 200 * time.Millisecond, BackoffBase: 20 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond, AwaitPoll: 20 * time.Millisecond,
		MaxDeliver: b.env.Opts.MaxDeliverFor,
	})
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.StopAndCancel(ctx)
	})
	return w
}

func (b *testBundle) startAll(t *testing.T) {
	t.Helper()
	b.startPlanner(t)
	b.startCoordinator(t)
	_, js := b.env.Connect(t)
	b.startWorker(t, js, nil)
}

// countingObserver counts the coordinator's reports, so a test can show a
// transition was reported exactly once across replicas.
type countingObserver struct {
	planner.NopObserver
	mu         sync.Mutex
	finished   map[messages.Phase]int
	barriers   int
	rejected   map[string]int
	handedBack int
	successes  int
	retired    int
	started    int
}

func (o *countingObserver) JobStarted(string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started++
}

func (o *countingObserver) startedJobs() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.started
}

func newCountingObserver() *countingObserver {
	return &countingObserver{finished: map[messages.Phase]int{}, rejected: map[string]int{}}
}

func (o *countingObserver) JobFinished(_ string, p messages.Phase, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finished[p]++
}

func (o *countingObserver) BarrierReleased(string, time.Duration, time.Duration, time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.barriers++
}

func (o *countingObserver) RequestRejected(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rejected[reason]++
}

func (o *countingObserver) RequestHandedBack() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handedBack++
}

func (o *countingObserver) BackupSucceeded(string, time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.successes++
}

func (o *countingObserver) SnapshotsRetired(_ string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.retired += n
}

func (o *countingObserver) counts() (finished map[messages.Phase]int, barriers int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := map[messages.Phase]int{}
	for k, v := range o.finished {
		f[k] = v
	}
	return f, o.barriers
}
