//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

const (
	nodes          = 50
	volumesPerNode = 2
	cluster        = "chaos"
	// ackWait is short so work a killed process held is redelivered soon;
	// heartbeats keep live tasks well inside it.
	ackWait = time.Second
	// jobTimeout bounds every phase and the job: a run that loses its way
	// still ends, failed, instead of hanging the suite.
	jobTimeout  = 2 * time.Minute
	waitTimeout = jobTimeout + 30*time.Second
)

// seeds returns the seeds to run: QUIESCE_CHAOS_SEED replays one, and
// QUIESCE_CHAOS_SEEDS says how many to run (default 20).
func seeds(t *testing.T) []uint64 {
	if s := os.Getenv("QUIESCE_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "QUIESCE_CHAOS_SEED")
		return []uint64{n}
	}
	count := 20
	if s := os.Getenv("QUIESCE_CHAOS_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "QUIESCE_CHAOS_SEEDS")
		count = n
	}
	out := make([]uint64, count)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

func TestChaos(t *testing.T) {
	for _, seed := range seeds(t) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay with QUIESCE_CHAOS_SEED=%d", seed)
				}
			})
			runSeed(t, seed)
		})
	}
}

// event is one fault on the schedule.
type event struct {
	at   time.Duration
	kind string // "worker", "coordinator", "server-stop", "server-start"
	arg  int
}

// schedule draws a run's faults from its seed: at least one of each kind,
// and never more than one server down at a time, so the cluster keeps its
// quorum.
func schedule(rng *rand.Rand, workers int) []event {
	window := 3 * time.Second
	at := func() time.Duration { return time.Duration(rng.Int64N(int64(window))) }
	evs := []event{
		{at: at(), kind: "worker", arg: rng.IntN(workers)},
		{at: at(), kind: "coordinator"},
	}
	for range rng.IntN(4) {
		if rng.IntN(3) == 0 {
			evs = append(evs, event{at: at(), kind: "coordinator"})
		} else {
			evs = append(evs, event{at: at(), kind: "worker", arg: rng.IntN(workers)})
		}
	}
	// Server outages do not overlap: each starts after the previous ended.
	next := time.Duration(0)
	for range 1 + rng.IntN(2) {
		start := next + time.Duration(rng.Int64N(int64(window/2)))
		down := 300*time.Millisecond + time.Duration(rng.Int64N(int64(1500*time.Millisecond)))
		srv := rng.IntN(3)
		evs = append(evs, event{at: start, kind: "server-stop", arg: srv}, event{at: start + down, kind: "server-start", arg: srv})
		next = start + down + 200*time.Millisecond
	}
	slices.SortStableFunc(evs, func(a, b event) int { return int(a.at - b.at) })
	return evs
}

// slowSnapshotter stretches Create so faults land inside the snapshot phase
// too.
type slowSnapshotter struct {
	*fakes.Snapshotter
	delay time.Duration
}

func (s slowSnapshotter) Create(ctx context.Context, req worker.CreateRequest) ([]worker.Snapshot, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	return s.Snapshotter.Create(ctx, req)
}

// proc is a process the schedule can kill: its connection is closed
// abruptly, then it stops. A process that did not start has no role.
type proc struct {
	role interface{ Kill(context.Context) error }
}

func (p proc) kill() {
	if p.role == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.role.Kill(ctx)
}

type harness struct {
	t     *testing.T
	cl    *testenv.Cluster
	env   *testenv.Env
	stack *stack.Stack

	mu      sync.Mutex
	workers []proc
	coord   proc
}

// dial connects through any server of the cluster and keeps trying: a
// process started while a server is down still comes up.
func dial(url string) (*nats.Conn, error) {
	return nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true))
}

func (h *harness) connect() (*nats.Conn, jetstream.JetStream) {
	nc, err := dial(h.cl.URL)
	if err != nil {
		h.t.Errorf("connect: %v", err)
		return nil, nil
	}
	h.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		h.t.Errorf("jetstream: %v", err)
	}
	return nc, js
}

// The start functions report through t.Errorf, not FailNow, since the
// schedule calls them off the test's goroutine. The stack retries a start
// that fails while leaders move, and stops every process at cleanup.

func (h *harness) startWorker() proc {
	w, err := h.stack.StartWorker(nil)
	if err != nil {
		h.t.Errorf("%v", err)
		return proc{}
	}
	return proc{role: w}
}

func (h *harness) startCoordinator() proc {
	c, err := h.stack.StartCoordinator()
	if err != nil {
		h.t.Errorf("%v", err)
		return proc{}
	}
	return proc{role: c}
}

func (h *harness) startPlanner() {
	if _, err := h.stack.StartPlanner(); err != nil {
		h.t.Errorf("%v", err)
	}
}

func (h *harness) apply(ev event) {
	switch ev.kind {
	case "worker":
		h.mu.Lock()
		old := h.workers[ev.arg]
		h.mu.Unlock()
		old.kill()
		nw := h.startWorker()
		h.mu.Lock()
		h.workers[ev.arg] = nw
		h.mu.Unlock()
	case "coordinator":
		h.mu.Lock()
		old := h.coord
		h.mu.Unlock()
		old.kill()
		nc := h.startCoordinator()
		h.mu.Lock()
		h.coord = nc
		h.mu.Unlock()
	case "server-stop":
		h.cl.Stop(ev.arg)
	case "server-start":
		h.cl.Restart(ev.arg)
	}
}

func chaosConfig() planner.Inventory {
	cl := planner.Cluster{Name: cluster, DefaultPolicy: "chaos"}
	for i := range nodes {
		n := messages.Node{Name: fmt.Sprintf("node-%02d", i), Address: "127.0.0.1"}
		for v := range volumesPerNode {
			n.Volumes = append(n.Volumes, messages.Volume{ID: fmt.Sprintf("vol-%02d-%d", i, v), Path: "/unused"})
		}
		cl.Nodes = append(cl.Nodes, n)
	}
	d := jobTimeout
	return planner.Inventory{
		Clusters: []planner.Cluster{cl},
		Policies: []planner.Policy{{Name: "chaos", Cluster: cluster,
			FlushTimeout: d, SnapshotTimeout: d, FinishTimeout: d, JobTimeout: d}},
	}
}

func runSeed(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	flushDelay := make(map[string]time.Duration, nodes)
	for i := range nodes {
		flushDelay[fmt.Sprintf("node-%02d", i)] = 50*time.Millisecond + time.Duration(rng.Int64N(int64(450*time.Millisecond)))
	}
	const workers = 3
	evs := schedule(rng, workers)
	t.Logf("seed %d schedule: %v", seed, evs)

	tool := fakes.NewNodeTool()
	tool.Delay = func(node string) time.Duration { return flushDelay[node] }
	snap := fakes.NewSnapshotter()

	cl := testenv.StartCluster(t, 3)
	// MaxDeliver is raised above production's 5: here deliveries are spent
	// by killed processes, not by failing tasks, and a task that runs out
	// would fail a job the faults should not fail.
	md := map[messages.Kind]int{}
	for _, k := range messages.Kinds {
		md[k] = 20
	}
	env := cl.NewEnv(t, topology.Options{Replicas: 3, AckWait: ackWait, MaxDeliver: md})
	cfg := chaosConfig()
	nop := planner.Options{Logger: zerolog.Nop()}
	h := &harness{t: t, cl: cl, env: env, stack: stack.New(t, env, stack.Config{
		Planner: planner.PlannerConfig{Options: nop, Inventory: cfg},
		Coordinator: planner.CoordinatorConfig{Options: nop,
			SweepInterval: 100 * time.Millisecond, StallAfter: 500 * time.Millisecond},
		Worker: worker.Config{
			Logger: zerolog.Nop(), Heartbeat: 200 * time.Millisecond,
			BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
			AwaitPoll: 50 * time.Millisecond, MaxDeliver: env.Opts.MaxDeliverFor,
			Concurrency: map[messages.Kind]int{messages.KindFlush: 16, messages.KindSnapshot: 16},
		},
		Drivers: fakes.Drivers{Tool: tool, Snap: slowSnapshotter{Snapshotter: snap, delay: 30 * time.Millisecond}},
		Dial:    func() (*nats.Conn, error) { return dial(cl.URL) },
		Retry:   60 * time.Second,
	})}

	h.startPlanner()
	h.coord = h.startCoordinator()
	for range workers {
		h.workers = append(h.workers, h.startWorker())
	}

	job := env.Submit(t, testenv.Request(cluster, fmt.Sprintf("chaos-%d", seed)))

	// The schedule runs beside the job and stops by itself when the job
	// ends or the schedule is spent.
	done := make(chan struct{})
	finished := make(chan struct{})
	applied := 0
	start := time.Now()
	go func() {
		defer close(finished)
		for _, ev := range evs {
			select {
			case <-done:
				return
			case <-time.After(time.Until(start.Add(ev.at))):
			}
			h.apply(ev)
			applied++
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			dump(t, env, job)
		}
	})
	j := h.waitTerminal(job)
	close(done)
	<-finished
	t.Logf("job %s %s after %s; %d of %d faults applied", job, j.Phase, time.Since(start).Round(time.Millisecond), applied, len(evs))
	// Every server runs again before the checks read the buckets.
	for i := range cl.Size() {
		cl.Restart(i)
	}
	require.Equal(t, messages.PhaseSucceeded, j.Phase, "job error: %s; failures: %+v", j.Error, j.Failures)

	// No Cassandra snapshot tag left behind. A flush that ran twice (its
	// first ack lost) is cleared again when its second result arrives,
	// which can be just after the job succeeded, so this polls while the
	// processes still run.
	for i := range nodes {
		node := fmt.Sprintf("node-%02d", i)
		require.NoError(t, testenv.Eventually(30*time.Second, func() bool { return len(tool.TagsOn(node)) == 0 }),
			"tags left on %s: %v", node, tool.TagsOn(node))
	}

	// Every process stops before the drivers' records are read.
	h.mu.Lock()
	ps := append(slices.Clone(h.workers), h.coord)
	h.mu.Unlock()
	for _, p := range ps {
		p.kill()
	}

	// The barrier held, by the drivers' own clocks.
	lastFlush, firstCreate := tool.LastFlush(), snap.FirstCreate()
	require.False(t, lastFlush.IsZero())
	require.True(t, lastFlush.Before(firstCreate),
		"snapshot requested at %s before the last flush at %s", firstCreate.Format(time.RFC3339Nano), lastFlush.Format(time.RFC3339Nano))

	// Exactly one snapshot per volume, found by its task's tag.
	for i := range nodes {
		for v := range volumesPerNode {
			vol := fmt.Sprintf("vol-%02d-%d", i, v)
			id := messages.TaskID(job, messages.KindSnapshot, vol)
			require.Equal(t, 1, snap.Count(map[string]string{messages.TagTask: id}), "snapshots of %s", vol)
		}
	}
	all, err := snap.Find(context.Background(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, all, nodes*volumesPerNode)

	// The catalog names exactly the snapshots the snapshotter holds.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var entry jetstream.KeyValueEntry
	require.NoError(t, testenv.Eventually(30*time.Second, func() bool {
		entry, err = env.H.Catalog.Get(ctx, messages.CatalogKey(cluster, job))
		return err == nil
	}), "catalog record: %v", err)
	var b messages.Backup
	require.NoError(t, json.Unmarshal(entry.Value(), &b))
	var inCatalog, inStore []string
	for _, r := range b.Snapshots {
		inCatalog = append(inCatalog, r.SnapshotID)
	}
	for _, s := range all {
		inStore = append(inStore, s.ID)
	}
	slices.Sort(inCatalog)
	slices.Sort(inStore)
	require.Equal(t, inStore, inCatalog)
	require.Len(t, b.Nodes, nodes)
}

// dump logs what a failed run left behind: each stream's leader and
// replicas, each consumer's backlog, and the job record.
func dump(t *testing.T, env *testenv.Env, job string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, name := range []string{messages.StreamJobs, messages.StreamTasks, messages.StreamEvents, "KV_" + messages.BucketJobs} {
		s, err := env.JS.Stream(ctx, name)
		if err != nil {
			t.Logf("stream %s: %v", name, err)
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Logf("stream %s: %v", name, err)
			continue
		}
		t.Logf("stream %s: msgs %d, cluster %+v", name, info.State.Msgs, info.Cluster)
		for c := range s.ListConsumers(ctx).Info() {
			t.Logf("  consumer %s: pending %d, ack pending %d, redelivered %d, waiting %d, cluster %+v",
				c.Name, c.NumPending, c.NumAckPending, c.NumRedelivered, c.NumWaiting, c.Cluster)
		}
	}
	if e, err := env.H.Jobs.Get(ctx, job); err == nil {
		t.Logf("record: %s", e.Value())
	}
}

// waitTerminal polls the job record until it is terminal. A read that fails
// opens a fresh connection for the next one, so a client stuck on a server
// that went away cannot pass for a job that does not finish.
func (h *harness) waitTerminal(job string) messages.Job {
	t := h.t
	deadline := time.Now().Add(waitTimeout)
	env := h.env
	var last messages.Job
	var lastErr error
	failures := 0
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		j, err := env.Job(ctx, job)
		cancel()
		if err == nil {
			last = j
			if j.Phase.Terminal() {
				return j
			}
		} else {
			lastErr = err
			failures++
			_, js := h.connect()
			if js != nil {
				bctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				hd, err := topology.Bind(bctx, js)
				cancel()
				if err == nil {
					env = &testenv.Env{URL: h.cl.URL, JS: js, H: hd, Opts: h.env.Opts}
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %s not terminal in %s: phase %q, progress %+v; %d failed reads, last: %v",
		job, waitTimeout, last.Phase, last.Progress, failures, lastErr)
	return last
}
