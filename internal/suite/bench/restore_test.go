package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/fs"
)

// nodeClock adds up the time each target node's own tasks took.
type nodeClock struct {
	mu  sync.Mutex
	per map[string]time.Duration
}

func (c *nodeClock) add(node string, d time.Duration) {
	c.mu.Lock()
	c.per[node] += d
	c.mu.Unlock()
}

func (c *nodeClock) slowest() (string, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var name string
	var max time.Duration
	for n, d := range c.per {
		if d > max {
			name, max = n, d
		}
	}
	return name, max
}

// timedFS is the fs driver restoring volumes, timed per target node.
type timedFS struct {
	*fs.Driver
	clock  *nodeClock
	target map[string]string // snapshot → target node
}

func (t timedFS) RestoreVolume(ctx context.Context, taskID string, v messages.VolumeRestore) (messages.RestoreReport, error) {
	start := time.Now()
	rep, err := t.Driver.RestoreVolume(ctx, taskID, v)
	t.clock.add(t.target[v.SnapshotID], time.Since(start))
	return rep, err
}

// linkRestorer is a simulated node restore: Prepare hard-links the files of
// snapshots/<tag> from the restored copy into the live table directories,
// Start waits boot (a node's start), and every step is timed per node.
type linkRestorer struct {
	clock *nodeClock
	boot  time.Duration
}

func (l linkRestorer) Stop(_ context.Context, n messages.Node, _ messages.NodeRestore) (messages.RestoreReport, error) {
	return messages.RestoreReport{Step: messages.StepStopped}, nil
}

func (l linkRestorer) Prepare(_ context.Context, n messages.Node, spec messages.NodeRestore) (messages.RestoreReport, error) {
	start := time.Now()
	defer func() { l.clock.add(n.Name, time.Since(start)) }()
	files := 0
	for _, s := range spec.Sources {
		snaps, err := filepath.Glob(filepath.Join(s.From, "*", "*", "snapshots", spec.Tag))
		if err != nil {
			return messages.RestoreReport{}, err
		}
		for _, snap := range snaps {
			table, _ := filepath.Rel(s.From, filepath.Dir(filepath.Dir(snap)))
			live := filepath.Join(s.DataDir, table)
			if err := os.MkdirAll(live, 0o755); err != nil {
				return messages.RestoreReport{}, err
			}
			ents, err := os.ReadDir(snap)
			if err != nil {
				return messages.RestoreReport{}, err
			}
			for _, e := range ents {
				dst := filepath.Join(live, e.Name())
				if _, err := os.Stat(dst); err == nil {
					continue
				}
				if err := os.Link(filepath.Join(snap, e.Name()), dst); err != nil {
					return messages.RestoreReport{}, err
				}
				files++
			}
		}
	}
	return messages.RestoreReport{Step: messages.StepPrepared, Files: files}, nil
}

func (l linkRestorer) Start(ctx context.Context, n messages.Node, _ messages.NodeRestore) (messages.RestoreReport, error) {
	start := time.Now()
	defer func() { l.clock.add(n.Name, time.Since(start)) }()
	select {
	case <-time.After(l.boot):
	case <-ctx.Done():
		return messages.RestoreReport{}, ctx.Err()
	}
	return messages.RestoreReport{Step: messages.StepStarted}, nil
}

func (l linkRestorer) Verify(context.Context, messages.Node, messages.RestoreVerify) (messages.RestoreReport, error) {
	return messages.RestoreReport{Step: messages.StepVerified}, nil
}

type restoreBenchDrivers struct {
	fs    timedFS
	nodes linkRestorer
}

func (d restoreBenchDrivers) NodeTool(string) (worker.NodeTool, error) {
	return nil, fmt.Errorf("no node tool")
}
func (d restoreBenchDrivers) Snapshotter(string) (worker.Snapshotter, error) { return d.fs, nil }
func (d restoreBenchDrivers) RestoreNodes(string) (worker.NodeRestorer, error) {
	return d.nodes, nil
}

// BenchmarkRestoreNewCluster restores a backup of a 1,000-node cluster into
// a new 1,000-node cluster (fs driver: each node's volume is a directory of
// SSTable-like files; Prepare hard-links the snapshot's files into place;
// Start takes a simulated boot of 2 s) and reports the wall time from the
// request to a verified cluster beside the slowest single node's own work
// (its volume restored, prepared, started), measured in the same run.
func BenchmarkRestoreNewCluster(b *testing.B) {
	const nodes, boot = 1000, 2 * time.Second
	dir := b.TempDir()
	d, err := fs.New(filepath.Join(dir, "store"))
	if err != nil {
		b.Fatal(err)
	}
	job := messages.JobIDFor("src", "backup")
	tag := "quiesce-" + job
	bk := messages.Backup{Schema: messages.BackupSchema, JobID: job, Cluster: "src", Mode: messages.ModeApplication, Tag: tag,
		FinishedAt: time.Now(), Topology: &messages.Topology{ClusterName: "Bench", SchemaVersion: "sv"}}
	src := planner.Cluster{Name: "src", Snapshotter: planner.SnapshotterFS}
	dst := planner.Cluster{Name: "dst", Snapshotter: planner.SnapshotterFS}
	payload := make([]byte, 16<<10)
	for i := range nodes {
		name := fmt.Sprintf("n%04d", i)
		data := filepath.Join(dir, "src", name, "data")
		for _, table := range []string{"t1-1", "t2-2"} {
			snap := filepath.Join(data, "ks", table, "snapshots", tag)
			if err := os.MkdirAll(snap, 0o755); err != nil {
				b.Fatal(err)
			}
			for _, f := range []string{"nb-1-big-Data.db", "nb-1-big-Index.db", "nb-1-big-Statistics.db"} {
				if err := os.WriteFile(filepath.Join(snap, f), payload, 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}
		vol := messages.Volume{ID: fmt.Sprintf("vol-%04d", i), Path: data}
		snaps, err := d.Create(b.Context(), worker.CreateRequest{Node: messages.Node{Name: name}, Volumes: []messages.Volume{vol},
			Tags: map[string]string{messages.TagManaged: "true", messages.TagJob: job, messages.TagTask: job + ".snapshot." + vol.ID}})
		if err != nil {
			b.Fatal(err)
		}
		bk.Nodes = append(bk.Nodes, messages.Node{Name: name, Volumes: []messages.Volume{vol}, Dirs: &messages.NodeDirs{Data: []string{data}}})
		bk.Snapshots = append(bk.Snapshots, messages.SnapshotRef{SnapshotID: snaps[0].ID, VolumeID: vol.ID, Node: name, State: "completed"})
		bk.Topology.Nodes = append(bk.Topology.Nodes, messages.NodeFacts{Node: name, Tokens: []string{fmt.Sprint(i)},
			Dirs: messages.NodeDirs{Data: []string{data}}})
		src.Nodes = append(src.Nodes, bk.Nodes[i])
		dst.Nodes = append(dst.Nodes, messages.Node{Name: fmt.Sprintf("m%04d", i), Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1),
			Dirs: &messages.NodeDirs{Data: []string{filepath.Join(dir, "dst", fmt.Sprintf("m%04d", i), "data")}}})
	}
	env := testenv.New(b, topology.Options{})
	data, err := json.Marshal(bk)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := env.H.Catalog.Put(b.Context(), messages.CatalogKey("src", job), data); err != nil {
		b.Fatal(err)
	}
	clock := &nodeClock{per: map[string]time.Duration{}}
	target := map[string]string{}
	for i, s := range bk.Snapshots {
		target[s.SnapshotID] = dst.Nodes[i].Name
	}
	conc := map[messages.Kind]int{}
	for _, k := range messages.RestoreKinds {
		conc[k] = nodes
	}
	opts := planner.Options{Logger: zerolog.Nop()}
	stack.Start(b, env, stack.Config{
		Planner:     planner.PlannerConfig{Options: opts, Inventory: planner.Inventory{Clusters: []planner.Cluster{src, dst}}},
		Coordinator: planner.CoordinatorConfig{Options: opts},
		Drivers:     restoreBenchDrivers{fs: timedFS{Driver: d, clock: clock, target: target}, nodes: linkRestorer{clock: clock, boot: boot}},
		Worker:      worker.Config{Logger: zerolog.Nop(), Concurrency: conc},
	})
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		req := messages.RestoreRequest{Schema: messages.RestoreRequestSchema, RequestID: fmt.Sprintf("bench-%d", n), Cluster: "src",
			Backup: job, Target: messages.TargetNewCluster, TargetCluster: "dst"}
		body, err := json.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := env.JS.Publish(b.Context(), messages.SubjectRestoreSubmit, body, jetstream.WithMsgID(req.RequestID)); err != nil {
			b.Fatal(err)
		}
		var r messages.Restore
		if err := testenv.Eventually(20*time.Minute, func() bool {
			r, err = planner.LoadRestore(b.Context(), env.H, req.RestoreID())
			return err == nil && r.Phase.Terminal()
		}); err != nil {
			b.Fatalf("restore did not end: %+v", r)
		}
		wall := time.Since(start)
		if r.Phase != messages.RestoreSucceeded {
			b.Fatalf("restore %s: %s", r.Phase, r.Error)
		}
		node, slowest := clock.slowest()
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(slowest.Seconds(), "slowest-node-s")
		b.ReportMetric(float64(wall)/float64(slowest), "wall/slowest")
		var phases []string
		for _, ph := range messages.RestorePhases[1:6] {
			next := r.PhaseTimes[messages.RestorePhases[messages.IndexOfRestorePhase(ph)+1]]
			if ph == messages.RestoreVerifying {
				next = r.PhaseTimes[messages.RestoreSucceeded]
			}
			phases = append(phases, fmt.Sprintf("%s %.1fs", ph, next.Sub(r.PhaseTimes[ph]).Seconds()))
		}
		b.Logf("%d nodes: wall %.1fs, slowest node %s %.2fs (ratio %.1f); phases: %v", nodes, wall.Seconds(), node, slowest.Seconds(),
			float64(wall)/float64(slowest), phases)
		clock.per = map[string]time.Duration{}
		if err := os.RemoveAll(filepath.Join(dir, "dst")); err != nil {
			b.Fatal(err)
		}
	}
}
