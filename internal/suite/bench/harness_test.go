package bench

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

// storages are the stream storages every throughput figure is given for.
var storages = []struct {
	name   string
	memory bool
}{{"file", false}, {"memory", true}}

// clusterConfig is a static inventory: clusters c0..c{k-1}, each of n nodes
// with v volumes.
func clusterConfig(k, n, v int) planner.Inventory {
	var cfg planner.Inventory
	for c := range k {
		name := fmt.Sprintf("c%d", c)
		cl := planner.Cluster{Name: name, DefaultPolicy: "bench"}
		cl.Nodes = make([]messages.Node, 0, n)
		for i := range n {
			node := messages.Node{Name: fmt.Sprintf("n%05d", i), Address: "10.0.0.1", InstanceID: fmt.Sprintf("i-%017x", i), AZ: "us-east-1a"}
			for j := range v {
				node.Volumes = append(node.Volumes, messages.Volume{ID: fmt.Sprintf("vol-%05d%012x", i, j), Device: fmt.Sprintf("/dev/xvd%c", 'f'+j), Path: "/unused"})
			}
			cl.Nodes = append(cl.Nodes, node)
		}
		cfg.Clusters = append(cfg.Clusters, cl)
		cfg.Policies = append(cfg.Policies, planner.Policy{Name: "bench", Cluster: name})
	}
	return cfg
}

// perCluster gives each cluster its own fakes, so each job's driver
// timestamps are its own.
type perCluster struct {
	mu    sync.Mutex
	tools map[string]*fakes.NodeTool
	snaps map[string]*fakes.Snapshotter
	setup func(tool *fakes.NodeTool, snap *fakes.Snapshotter)
}

var _ worker.Drivers = (*perCluster)(nil)

func newPerCluster(setup func(*fakes.NodeTool, *fakes.Snapshotter)) *perCluster {
	return &perCluster{tools: map[string]*fakes.NodeTool{}, snaps: map[string]*fakes.Snapshotter{}, setup: setup}
}

func (d *perCluster) get(cluster string) (*fakes.NodeTool, *fakes.Snapshotter) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, s := d.tools[cluster], d.snaps[cluster]
	if t == nil {
		t, s = fakes.NewNodeTool(), fakes.NewSnapshotter()
		if d.setup != nil {
			d.setup(t, s)
		}
		d.tools[cluster], d.snaps[cluster] = t, s
	}
	return t, s
}

func (d *perCluster) NodeTool(cluster string) (worker.NodeTool, error) {
	t, _ := d.get(cluster)
	return t, nil
}

func (d *perCluster) Snapshotter(cluster string) (worker.Snapshotter, error) {
	_, s := d.get(cluster)
	return s, nil
}

// startStack starts a server with a planner, a coordinator and one worker
// running conc tasks of each kind at once, and returns the server's
// environment.
func startStack(b *testing.B, memory bool, cfg planner.Inventory, drivers worker.Drivers, conc int) *testenv.Env {
	return startStackObserved(b, memory, cfg, drivers, conc, nil)
}

// releaseObserver keeps the coordinator's own measure of each barrier
// release: last flush result applied → snapshot tasks published.
type releaseObserver struct {
	planner.NopObserver
	mu       sync.Mutex
	releases []time.Duration
}

func (o *releaseObserver) BarrierReleased(_ string, _, release, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.releases = append(o.releases, release)
}

func startStackObserved(b *testing.B, memory bool, cfg planner.Inventory, drivers worker.Drivers, conc int, obs planner.Observer) *testenv.Env {
	b.Helper()
	env := testenv.New(b, topology.Options{Memory: memory, MaxAckPending: map[messages.Kind]int{
		messages.KindFlush: 10000, messages.KindSnapshot: 10000, messages.KindClear: 10000,
	}})
	opts := planner.Options{Logger: zerolog.Nop(), Observer: obs}
	stack.Start(b, env, stack.Config{
		Planner:     planner.PlannerConfig{Options: opts, Inventory: cfg},
		Coordinator: planner.CoordinatorConfig{Options: opts},
		Drivers:     drivers,
		Worker: worker.Config{
			Logger: zerolog.Nop(), AwaitPoll: 5 * time.Millisecond,
			Concurrency: map[messages.Kind]int{messages.KindFlush: conc, messages.KindSnapshot: conc, messages.KindClear: conc},
		},
	})
	return env
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

// processCPU is the CPU time, user and system, the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// indexedSnapshotter is a no-op snapshotter that finds a task's snapshots
// by index: fakes.Snapshotter scans every snapshot on each Find, which at
// thousands of volumes measures the fake rather than the orchestrator.
type indexedSnapshotter struct {
	mu     sync.Mutex
	seq    int
	byTask map[string][]worker.Snapshot
}

var _ worker.Snapshotter = (*indexedSnapshotter)(nil)

func newIndexedSnapshotter() *indexedSnapshotter {
	return &indexedSnapshotter{byTask: map[string][]worker.Snapshot{}}
}

func (s *indexedSnapshotter) Find(_ context.Context, filter map[string]string) ([]worker.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := filter[messages.TagTask]; ok {
		return append([]worker.Snapshot(nil), s.byTask[id]...), nil
	}
	var out []worker.Snapshot
	for _, sns := range s.byTask {
		for _, sn := range sns {
			match := true
			for k, v := range filter {
				if sn.Tags[k] != v {
					match = false
					break
				}
			}
			if match {
				out = append(out, sn)
			}
		}
	}
	return out, nil
}

func (s *indexedSnapshotter) Create(_ context.Context, req worker.CreateRequest) ([]worker.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []worker.Snapshot
	for _, v := range req.Volumes {
		s.seq++
		sn := worker.Snapshot{ID: fmt.Sprintf("snap-%017x", s.seq), VolumeID: v.ID, State: worker.StateCompleted,
			StartTime: time.Now(), Tags: req.Tags}
		s.byTask[req.Tags[messages.TagTask]] = append(s.byTask[req.Tags[messages.TagTask]], sn)
		out = append(out, sn)
	}
	return out, nil
}

func (s *indexedSnapshotter) Delete(context.Context, string) error { return nil }
