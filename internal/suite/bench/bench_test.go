package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
)

// rawMessages is how many messages the raw JetStream baseline moves.
const rawMessages = 50000

// BenchmarkRawJetStream is the baseline: publish asynchronously to a
// work-queue stream, consume with a durable pull consumer and acknowledge
// each message, on the same embedded server the orchestration runs on.
func BenchmarkRawJetStream(b *testing.B) {
	for _, st := range storages {
		b.Run("storage="+st.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				env := testenv.New(b, topology.Options{Memory: st.memory})
				ctx := context.Background()
				storage := jetstream.FileStorage
				if st.memory {
					storage = jetstream.MemoryStorage
				}
				if _, err := env.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"},
					Retention: jetstream.WorkQueuePolicy, Storage: storage}); err != nil {
					b.Fatal(err)
				}
				cons, err := env.JS.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "raw",
					AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10000})
				if err != nil {
					b.Fatal(err)
				}
				_, cjs := env.Connect(b)
				ccons, err := cjs.Consumer(ctx, "RAW", "raw")
				if err != nil {
					b.Fatal(err)
				}
				_ = cons
				var acked atomic.Int64
				done := make(chan struct{})
				payload := make([]byte, 400) // about a task's size
				b.StartTimer()
				start := time.Now()
				cc, err := ccons.Consume(func(m jetstream.Msg) {
					_ = m.Ack()
					if acked.Add(1) == rawMessages {
						close(done)
					}
				}, jetstream.PullMaxMessages(1000))
				if err != nil {
					b.Fatal(err)
				}
				for i := range rawMessages {
					if _, err := env.JS.PublishAsync(fmt.Sprintf("raw.%d", i%16), payload); err != nil {
						b.Fatal(err)
					}
				}
				select {
				case <-env.JS.PublishAsyncComplete():
				case <-time.After(time.Minute):
					b.Fatal("publish acks timed out")
				}
				pubDone := time.Since(start)
				select {
				case <-done:
				case <-time.After(time.Minute):
					b.Fatalf("consumed %d of %d", acked.Load(), rawMessages)
				}
				el := time.Since(start)
				b.StopTimer()
				cc.Stop()
				b.ReportMetric(rawMessages/pubDone.Seconds(), "publish+ack/s")
				b.ReportMetric(rawMessages/el.Seconds(), "msgs/s")
			}
		})
	}
}

// BenchmarkOrchestrated runs one job end to end (planner, coordinator, one
// worker) and reports every task it carried per second of wall time:
// flushes, snapshots, clears and the await.
func BenchmarkOrchestrated(b *testing.B) {
	const nodes = 2000
	drivers := []struct {
		name  string
		delay time.Duration
	}{{"noop", 0}, {"latency=5ms", 5 * time.Millisecond}}
	for _, st := range storages {
		for _, dr := range drivers {
			b.Run(fmt.Sprintf("storage=%s/driver=%s", st.name, dr.name), func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					cfg := clusterConfig(1, nodes, 1)
					tool := fakes.NewNodeTool()
					if dr.delay > 0 {
						tool.Delay = func(string) time.Duration { return dr.delay }
					}
					d := fakes.Drivers{Tool: tool, Snap: newIndexedSnapshotter()}
					env := startStack(b, st.memory, cfg, d, 1000)
					b.StartTimer()
					start, cpu0 := time.Now(), processCPU()
					job := env.Submit(b, testenv.Request("c0", "throughput"))
					j := env.WaitTerminal(b, job, 5*time.Minute)
					el, cpu := time.Since(start), processCPU()-cpu0
					b.StopTimer()
					if j.Phase != messages.PhaseSucceeded {
						b.Fatalf("job %s: %s", j.Phase, j.Error)
					}
					tasks := j.Progress.Nodes + j.Progress.SnapshotTasks + j.Progress.Cleared + 1
					b.ReportMetric(float64(tasks)/el.Seconds(), "tasks/s")
					b.ReportMetric(float64(tasks), "tasks")
					b.ReportMetric(ms(el), "job-ms")
					// The process's CPU time (server, planner, coordinator
					// and worker together) per task: unlike tasks/s, it
					// hardly moves when other work shares the machine.
					b.ReportMetric(float64(cpu.Microseconds())/float64(tasks), "cpu-us/task")
					pt := j.PhaseTimes
					b.ReportMetric(ms(pt[messages.PhaseSnapshotting].Sub(pt[messages.PhaseFlushing])), "flushing-ms")
					b.ReportMetric(ms(pt[messages.PhaseFinishing].Sub(pt[messages.PhaseSnapshotting])), "snapshotting-ms")
					b.ReportMetric(ms(pt[messages.PhaseSucceeded].Sub(pt[messages.PhaseFinishing])), "finishing-ms")
				}
			})
		}
	}
}

// BenchmarkBarrierRelease runs many small jobs one after another and
// measures, by the drivers' own clocks, the time from the last node's flush
// completing to the first snapshot Create call: result publish, coordinator
// apply and compare-and-set, snapshot task publish, worker fetch.
func BenchmarkBarrierRelease(b *testing.B) {
	const jobs, nodes = 200, 10
	for _, st := range storages {
		b.Run("storage="+st.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				cfg := clusterConfig(jobs, nodes, 1)
				d := newPerCluster(nil)
				obs := &releaseObserver{}
				env := startStackObserved(b, st.memory, cfg, d, 64, obs)
				lat := make([]time.Duration, 0, jobs)
				b.StartTimer()
				for k := range jobs {
					cl := fmt.Sprintf("c%d", k)
					job := env.Submit(b, testenv.Request(cl, fmt.Sprintf("barrier-%d", k)))
					j := env.WaitTerminal(b, job, time.Minute)
					if j.Phase != messages.PhaseSucceeded {
						b.Fatalf("job %s: %s", j.Phase, j.Error)
					}
					tool, snap := d.get(cl)
					lat = append(lat, snap.FirstCreate().Sub(tool.LastFlush()))
				}
				b.StopTimer()
				sortDurations(lat)
				b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
				b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
				b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
				obs.mu.Lock()
				rel := obs.releases
				obs.mu.Unlock()
				sortDurations(rel)
				b.ReportMetric(ms(percentile(rel, 0.50)), "coord-p50-ms")
			}
		})
	}
}

// startTimes wraps a node tool to record when each flush began.
type startTimes struct {
	*fakes.NodeTool
	mu    sync.Mutex
	first time.Time
}

func (s *startTimes) Snapshot(ctx context.Context, node messages.Node, tag string, ks []string) error {
	now := time.Now()
	s.mu.Lock()
	if s.first.IsZero() || now.Before(s.first) {
		s.first = now
	}
	s.mu.Unlock()
	return s.NodeTool.Snapshot(ctx, node, tag, ks)
}

// BenchmarkFlushSpread flushes 1,000 simulated nodes whose flushes take 1s
// each and reports how long the whole flush phase took by the drivers'
// clocks (first flush started to last flush finished) and its excess over
// the slowest single flush: the cost of fanning tasks out.
func BenchmarkFlushSpread(b *testing.B) {
	const nodes = 1000
	const flush = time.Second
	for range b.N {
		b.StopTimer()
		cfg := clusterConfig(1, nodes, 1)
		tool := &startTimes{NodeTool: fakes.NewNodeTool()}
		tool.Delay = func(string) time.Duration { return flush }
		d := fakes.Drivers{Tool: tool, Snap: fakes.NewSnapshotter()}
		env := startStack(b, false, cfg, d, nodes)
		b.StartTimer()
		start := time.Now()
		job := env.Submit(b, testenv.Request("c0", "spread"))
		j := env.WaitTerminal(b, job, 5*time.Minute)
		b.StopTimer()
		if j.Phase != messages.PhaseSucceeded {
			b.Fatalf("job %s: %s", j.Phase, j.Error)
		}
		tool.mu.Lock()
		first := tool.first
		tool.mu.Unlock()
		phase := tool.LastFlush().Sub(first)
		b.ReportMetric(ms(phase), "flush-phase-ms")
		b.ReportMetric(ms(phase-flush), "excess-ms")
		b.ReportMetric(ms(first.Sub(start)), "submit-to-first-flush-ms")
		b.ReportMetric(ms(j.FlushLast.Sub(j.FlushFirst)), "result-spread-ms")
	}
}

// peakHeap samples HeapAlloc until stop is closed and returns the peak.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

const bigNodes, bigVolumesPerNode = 10000, 4

func bigNodesList(cfg planner.Inventory) []messages.Node {
	nodes, _ := planner.StaticDiscoverer{}.Discover(context.Background(), cfg.Clusters[0])
	return nodes
}

// BenchmarkBuildPlan plans a 10,000-node, 40,000-volume cluster in memory.
func BenchmarkBuildPlan(b *testing.B) {
	cfg := clusterConfig(1, bigNodes, bigVolumesPerNode)
	nodes := bigNodesList(cfg)
	req := testenv.Request("c0", "big")
	policy := cfg.Policies[0]
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		runtime.GC()
		stop := make(chan struct{})
		peak := peakHeap(stop)
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		p, err := planner.BuildPlan(req, policy, nodes, false, time.Now())
		el := time.Since(start)
		close(stop)
		if err != nil {
			b.Fatal(err)
		}
		data, _ := json.Marshal(p)
		b.ReportMetric(ms(el), "plan-ms")
		b.ReportMetric(float64(<-peak-before.HeapAlloc)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(len(data))/(1<<20), "plan-json-MB")
		b.ReportMetric(float64(len(p.Units)), "units")
	}
}

// BenchmarkPlannerSubmit runs the planner's full path for a 10,000-node,
// 40,000-volume cluster on an embedded server: validate, discover (static),
// plan, store the plan, create the job record, publish 10,000 flush tasks.
// It reports the sizes of the job record and of the catalog record such a
// job would write, against nats-server's default 1 MB message limit.
func BenchmarkPlannerSubmit(b *testing.B) {
	cfg := clusterConfig(1, bigNodes, bigVolumesPerNode)
	for _, st := range storages {
		b.Run("storage="+st.name, func(b *testing.B) {
			b.ReportAllocs()
			for k := range b.N {
				b.StopTimer()
				env := testenv.New(b, topology.Options{Memory: st.memory})
				_, js := env.Connect(b)
				ctx := context.Background()
				h, err := testenv.Handles(ctx, js)
				if err != nil {
					b.Fatal(err)
				}
				p := planner.NewPlanner(js, h, planner.PlannerConfig{Inventory: cfg})
				req := testenv.Request("c0", fmt.Sprintf("big-%d", k))
				runtime.GC()
				stop := make(chan struct{})
				peak := peakHeap(stop)
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				b.StartTimer()
				start := time.Now()
				created, err := p.Submit(ctx, req)
				el := time.Since(start)
				b.StopTimer()
				runtime.ReadMemStats(&after)
				close(stop)
				if err != nil || !created {
					b.Fatalf("submit: created %v, %v", created, err)
				}
				entry, err := env.H.Jobs.Get(ctx, req.JobID())
				if err != nil {
					b.Fatal(err)
				}
				n, err := env.StreamCount(ctx, messages.StreamTasks)
				if err != nil || n != bigNodes {
					b.Fatalf("%d flush tasks published, want %d (%v)", n, bigNodes, err)
				}
				b.ReportMetric(ms(el), "submit-ms")
				b.ReportMetric(float64(<-peak-before.HeapAlloc)/(1<<20), "peak-heap-MB")
				b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), "alloc-MB")
				b.ReportMetric(float64(len(entry.Value()))/1024, "job-record-KB")
				b.ReportMetric(float64(catalogSize(cfg))/1024, "catalog-record-KB")
			}
		})
	}
}

// catalogSize is the size of the catalog record a successful job of the
// cluster writes: every node, and a reference per volume snapshot.
func catalogSize(cfg planner.Inventory) int {
	nodes := bigNodesList(cfg)
	bk := messages.Backup{Schema: messages.BackupSchema, JobID: "c0-0123456789ab", Cluster: "c0", Policy: "bench",
		Mode: messages.ModeApplication, Tag: "quiesce-c0-0123456789ab", StartedAt: time.Now(), FinishedAt: time.Now(), Nodes: nodes}
	for _, n := range nodes {
		for _, v := range n.Volumes {
			bk.Snapshots = append(bk.Snapshots, messages.SnapshotRef{SnapshotID: "snap-0123456789abcdef0", VolumeID: v.ID,
				Node: n.Name, State: "completed", StartTime: time.Now()})
		}
	}
	data, _ := json.Marshal(bk)
	return len(data)
}
