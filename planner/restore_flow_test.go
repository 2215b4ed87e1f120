package planner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/fs"
)

const restoreTimeout = 60 * time.Second

// nodeStep is one call of the recording node restorer.
type nodeStep struct {
	kind messages.Kind
	node string
	at   time.Time
}

// recordingRestorer is a node restorer for the orchestration's tests: it
// records every call, and its Prepare puts the files of snapshots/<tag>
// from the restored copy in place of the table directory's files, as the
// node-level restore does, so a test can look at what each node received.
type recordingRestorer struct {
	mu    sync.Mutex
	steps []nodeStep
	// running names nodes whose Cassandra runs.
	running map[string]bool
	// block, when set, is called at the start of Prepare.
	block func(ctx context.Context, node string) error
	// onPrepare, when set, is called at the start of every Prepare.
	onPrepare func(node string)
}

var _ worker.NodeRestorer = (*recordingRestorer)(nil)

func (r *recordingRestorer) record(kind messages.Kind, node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, nodeStep{kind: kind, node: node, at: time.Now()})
}

func (r *recordingRestorer) Steps() []nodeStep {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]nodeStep(nil), r.steps...)
}

func (r *recordingRestorer) Stop(_ context.Context, node messages.Node, spec messages.NodeRestore) (messages.RestoreReport, error) {
	r.mu.Lock()
	running := r.running[node.Name]
	r.mu.Unlock()
	if running && !spec.StopRunning {
		return messages.RestoreReport{}, fmt.Errorf("node %s: %w", node.Name, worker.ErrCassandraRunning)
	}
	r.record(messages.KindRestoreStop, node.Name)
	return messages.RestoreReport{Step: messages.StepStopped}, nil
}

func (r *recordingRestorer) Prepare(ctx context.Context, node messages.Node, spec messages.NodeRestore) (messages.RestoreReport, error) {
	if r.onPrepare != nil {
		r.onPrepare(node.Name)
	}
	if r.block != nil {
		if err := r.block(ctx, node.Name); err != nil {
			return messages.RestoreReport{}, err
		}
	}
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
				data, err := os.ReadFile(filepath.Join(snap, e.Name()))
				if err != nil {
					return messages.RestoreReport{}, err
				}
				if err := os.WriteFile(filepath.Join(live, e.Name()), data, 0o644); err != nil {
					return messages.RestoreReport{}, err
				}
				files++
			}
		}
	}
	r.record(messages.KindRestorePrepare, node.Name)
	return messages.RestoreReport{Step: messages.StepPrepared, Files: files}, nil
}

func (r *recordingRestorer) Start(_ context.Context, node messages.Node, _ messages.NodeRestore) (messages.RestoreReport, error) {
	r.record(messages.KindRestoreStart, node.Name)
	return messages.RestoreReport{Step: messages.StepStarted}, nil
}

func (r *recordingRestorer) Verify(_ context.Context, node messages.Node, v messages.RestoreVerify) (messages.RestoreReport, error) {
	r.record(messages.KindRestoreVerify, node.Name)
	if len(v.Nodes) == 0 {
		return messages.RestoreReport{}, errors.New("nothing to verify")
	}
	return messages.RestoreReport{Step: messages.StepVerified}, nil
}

// restoreDrivers serves the fs driver and the recording node restorer.
type restoreDrivers struct {
	fs    *fs.Driver
	nodes worker.NodeRestorer
}

func (d restoreDrivers) NodeTool(string) (worker.NodeTool, error) {
	return nil, errors.New("no node tool")
}
func (d restoreDrivers) Snapshotter(string) (worker.Snapshotter, error) { return d.fs, nil }
func (d restoreDrivers) RestoreNodes(string) (worker.NodeRestorer, error) {
	return d.nodes, nil
}

type restoreBundle struct {
	env   *testenv.Env
	stack *stack.Stack
	fs    *fs.Driver
	nodes *recordingRestorer
	dir   string
	inv   planner.Inventory
	job   string
	tag   string
}

// setupRestore catalogues a backup of three nodes, each with one fs volume
// that is its data directory, whose snapshot holds rows "A" in
// snapshots/<tag> while the live files say "B" (written after the
// barrier), and configures cluster c1 and a new cluster c2 of three nodes.
func setupRestore(t *testing.T) *restoreBundle {
	t.Helper()
	// A short ack wait: a killed worker's task comes back within seconds.
	env := testenv.New(t, topology.Options{AckWait: 3 * time.Second})
	dir := t.TempDir()
	d, err := fs.New(filepath.Join(dir, "store"))
	require.NoError(t, err)
	job := messages.JobIDFor("c1", "backup-1")
	tag := "quiesce-" + job
	b := messages.Backup{Schema: messages.BackupSchema, JobID: job, Cluster: "c1", Mode: messages.ModeApplication, Tag: tag,
		FinishedAt: time.Now(), Topology: &messages.Topology{ClusterName: "Test Cluster", SchemaVersion: "sv"}}
	src := planner.Cluster{Name: "c1", Snapshotter: planner.SnapshotterFS}
	dst := planner.Cluster{Name: "c2", Snapshotter: planner.SnapshotterFS}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("n%d", i)
		data := filepath.Join(dir, name, "data")
		table := filepath.Join(data, "ks", "t-1")
		require.NoError(t, os.MkdirAll(filepath.Join(table, "snapshots", tag), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(table, "snapshots", tag, "nb-1-big-Data.db"), []byte("A of "+name), 0o644))
		vol := messages.Volume{ID: "vol-" + name, Path: data}
		snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: messages.Node{Name: name}, Volumes: []messages.Volume{vol},
			Tags: map[string]string{messages.TagManaged: "true", messages.TagJob: job, messages.TagTask: job + ".snapshot." + vol.ID}})
		require.NoError(t, err)
		// After the barrier: the tag cleared, live files newer.
		require.NoError(t, os.RemoveAll(filepath.Join(table, "snapshots")))
		require.NoError(t, os.WriteFile(filepath.Join(table, "nb-2-big-Data.db"), []byte("B of "+name), 0o644))
		node := messages.Node{Name: name, Address: fmt.Sprintf("127.0.0.%d", i), Volumes: []messages.Volume{vol},
			Dirs: &messages.NodeDirs{Data: []string{data}}}
		b.Nodes = append(b.Nodes, node)
		b.Snapshots = append(b.Snapshots, messages.SnapshotRef{SnapshotID: snaps[0].ID, VolumeID: vol.ID, Node: name, State: "completed"})
		b.Topology.Nodes = append(b.Topology.Nodes, messages.NodeFacts{Schema: messages.NodeFactsSchema, Node: name, HostID: "h" + name,
			Tokens: []string{fmt.Sprint(i * 1000)}, Datacenter: "dc1", Rack: "r1", Dirs: messages.NodeDirs{Data: []string{data}}})
		src.Nodes = append(src.Nodes, node)
		dst.Nodes = append(dst.Nodes, messages.Node{Name: fmt.Sprintf("m%d", i), Address: fmt.Sprintf("127.0.1.%d", i),
			Dirs: &messages.NodeDirs{Data: []string{filepath.Join(dir, fmt.Sprintf("m%d", i), "data")}}})
	}
	b.NodeCount, b.SnapshotCount = 3, 3
	data, err := json.Marshal(b)
	require.NoError(t, err)
	_, err = env.H.Catalog.Put(t.Context(), messages.CatalogKey("c1", job), data)
	require.NoError(t, err)
	rb := &restoreBundle{env: env, fs: d, nodes: &recordingRestorer{running: map[string]bool{}}, dir: dir, job: job, tag: tag,
		inv: planner.Inventory{Clusters: []planner.Cluster{src, dst}}}
	rb.stack = stack.New(t, env, stack.Config{
		Planner:     planner.PlannerConfig{Inventory: rb.inv},
		Coordinator: planner.CoordinatorConfig{SweepInterval: 200 * time.Millisecond, StallAfter: time.Second},
		Worker:      worker.Config{BackoffBase: 50 * time.Millisecond, BackoffMax: time.Second, Heartbeat: time.Second},
		Drivers:     restoreDrivers{fs: d, nodes: rb.nodes},
	})
	return rb
}

func (b *restoreBundle) startAll(t *testing.T) {
	t.Helper()
	_, err := b.stack.StartPlanner()
	require.NoError(t, err)
	_, err = b.stack.StartCoordinator()
	require.NoError(t, err)
	_, err = b.stack.StartWorker(nil)
	require.NoError(t, err)
}

func (b *restoreBundle) submit(t *testing.T, req messages.RestoreRequest) string {
	t.Helper()
	data, err := json.Marshal(req)
	require.NoError(t, err)
	_, err = b.env.JS.Publish(t.Context(), messages.SubjectRestoreSubmit, data, jetstream.WithMsgID(req.RequestID))
	require.NoError(t, err)
	return req.RestoreID()
}

func (b *restoreBundle) waitTerminal(t *testing.T, id string) messages.Restore {
	t.Helper()
	var r messages.Restore
	require.NoError(t, testenv.Eventually(restoreTimeout, func() bool {
		var err error
		r, err = planner.LoadRestore(t.Context(), b.env.H, id)
		return err == nil && r.Phase.Terminal()
	}), "restore %s did not end: %+v", id, r)
	return r
}

func restoreRequest(id string, target messages.RestoreTarget) messages.RestoreRequest {
	r := messages.RestoreRequest{Schema: messages.RestoreRequestSchema, RequestID: id, Cluster: "c1", Backup: "latest", Target: target}
	if target == messages.TargetNewCluster {
		r.TargetCluster = "c2"
	}
	return r
}

// requireBarriers checks, by the restorer's own clock, that every node was
// stopped before any was prepared, and prepared before any started.
func requireBarriers(t *testing.T, steps []nodeStep, nodes int) {
	t.Helper()
	last := map[messages.Kind]time.Time{}
	first := map[messages.Kind]time.Time{}
	count := map[messages.Kind]map[string]bool{}
	for _, s := range steps {
		if count[s.kind] == nil {
			count[s.kind] = map[string]bool{}
		}
		count[s.kind][s.node] = true
		if s.at.After(last[s.kind]) {
			last[s.kind] = s.at
		}
		if f, ok := first[s.kind]; !ok || s.at.Before(f) {
			first[s.kind] = s.at
		}
	}
	for _, k := range []messages.Kind{messages.KindRestoreStop, messages.KindRestorePrepare, messages.KindRestoreStart} {
		require.Len(t, count[k], nodes, "%s on every node", k)
	}
	require.True(t, last[messages.KindRestoreStop].Before(first[messages.KindRestorePrepare]), "every node stopped before any prepared")
	require.True(t, last[messages.KindRestorePrepare].Before(first[messages.KindRestoreStart]), "every node prepared before any started")
	require.True(t, last[messages.KindRestoreStart].Before(first[messages.KindRestoreVerify]), "verified after every start")
}

// The files each node holds after the restore are the backup's, from the
// snapshot's copy, not what was written after the barrier.
func requireRestored(t *testing.T, dataDir, source string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "ks", "t-1", "nb-1-big-Data.db"))
	require.NoError(t, err)
	require.Equal(t, "A of "+source, string(data))
}

func TestRestoreNewClusterEndToEnd(t *testing.T) {
	t.Parallel()
	b := setupRestore(t)
	holdSeen := make(chan string, 8)
	retentionSeen := make(chan string, 8)
	b.nodes.onPrepare = func(string) {
		holds, err := planner.Holds(context.Background(), b.env.H.Holds, "c1")
		if err == nil {
			newer := messages.Backup{JobID: messages.JobIDFor("c1", "newer"), Cluster: "c1", FinishedAt: time.Now().Add(time.Hour)}
			ours := messages.Backup{JobID: b.job, Cluster: "c1", FinishedAt: time.Now()}
			retired := planner.Retired(planner.SelectRetention([]messages.Backup{newer, ours}, planner.Retention{KeepLast: 1}, holds, time.Now()))
			if len(retired) == 0 {
				retentionSeen <- "kept"
			} else {
				retentionSeen <- fmt.Sprint("retired ", retired)
			}
		}
		kv, err := b.env.H.Holds, error(nil)
		if err != nil {
			holdSeen <- "no holds bucket: " + err.Error()
			return
		}
		e, err := kv.Get(context.Background(), messages.CatalogKey("c1", b.job))
		if err != nil {
			holdSeen <- "no hold: " + err.Error()
			return
		}
		holdSeen <- string(e.Value())
	}
	b.startAll(t)
	req := restoreRequest("drill-1", messages.TargetNewCluster)
	id := b.submit(t, req)
	b.submit(t, req) // the same request again: one restore
	r := b.waitTerminal(t, id)
	require.Equal(t, messages.RestoreSucceeded, r.Phase, r.Error)
	require.Equal(t, b.job, r.Backup)
	require.Equal(t, "c2", r.TargetCluster)
	require.Equal(t, messages.RestoreProgress{Volumes: 3, VolumesDone: 3, Nodes: 3, Stopped: 3, Prepared: 3, Started: 3, Verified: true}, r.Progress)
	requireBarriers(t, b.nodes.Steps(), 3)
	for i := 1; i <= 3; i++ {
		requireRestored(t, filepath.Join(b.dir, fmt.Sprintf("m%d", i), "data"), fmt.Sprintf("n%d", i))
	}
	// Each volume was restored beside the target node's data directory.
	vols, err := planner.RestoredVolumes(t.Context(), b.env.JS, b.env.H, id)
	require.NoError(t, err)
	require.Len(t, vols, 3)
	for _, v := range vols {
		require.Equal(t, filepath.Join(b.dir, v.TargetNode, ".quiesce-restore", id, v.SourceVolume), v.Path)
		require.DirExists(t, v.Path)
	}
	// The backup was held while the nodes were prepared, and is no longer.
	h := <-holdSeen
	require.Contains(t, h, `"reason":"restore `+id+`"`)
	require.Equal(t, "kept", <-retentionSeen, "retention keeps the backup a running restore reads, a newer one beside it")
	kv, err := b.env.H.Holds, error(nil)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(restoreTimeout, func() bool {
		_, err = kv.Get(t.Context(), messages.CatalogKey("c1", b.job))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}), "hold released: %v", err)
	// Every phase change is an event.
	phases := restorePhaseEvents(t, b.env, id)
	require.Equal(t, []messages.RestorePhase{messages.RestorePlanned, messages.RestoreVolumes, messages.RestoreStopping,
		messages.RestorePreparing, messages.RestoreStarting, messages.RestoreVerifying, messages.RestoreSucceeded}, phases)
}

func restorePhaseEvents(t *testing.T, env *testenv.Env, id string) []messages.RestorePhase {
	t.Helper()
	cons, err := env.JS.OrderedConsumer(t.Context(), messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectPhaseEvent(id)}})
	require.NoError(t, err)
	var out []messages.RestorePhase
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			return out
		}
		var ev messages.RestorePhaseEvent
		require.NoError(t, json.Unmarshal(m.Data(), &ev))
		out = append(out, ev.To)
	}
}

// A node whose Cassandra runs fails the restore before any node is
// changed, unless the request lets the restore stop it.
func TestRestoreRefusesARunningNode(t *testing.T) {
	t.Parallel()
	b := setupRestore(t)
	b.nodes.running["n2"] = true
	b.startAll(t)
	r := b.waitTerminal(t, b.submit(t, restoreRequest("in-place-1", messages.TargetInPlace)))
	require.Equal(t, messages.RestoreFailed, r.Phase)
	require.Equal(t, string(planner.RestoreReasonNodeRunning), r.EndReason)
	require.Contains(t, r.Error, "n2")
	for _, s := range b.nodes.Steps() {
		require.NotEqual(t, messages.KindRestorePrepare, s.kind, "no node prepared")
	}
	data, err := os.ReadFile(filepath.Join(b.dir, "n1", "data", "ks", "t-1", "nb-2-big-Data.db"))
	require.NoError(t, err)
	require.Equal(t, "B of n1", string(data), "the live files are untouched")

	req := restoreRequest("in-place-2", messages.TargetInPlace)
	req.StopRunning = true
	r = b.waitTerminal(t, b.submit(t, req))
	require.Equal(t, messages.RestoreSucceeded, r.Phase, r.Error)
	for i := 1; i <= 3; i++ {
		requireRestored(t, filepath.Join(b.dir, fmt.Sprintf("n%d", i), "data"), fmt.Sprintf("n%d", i))
	}
}

// Bad requests are rejected with their reasons and start nothing.
func TestRestoreRejectsBadRequests(t *testing.T) {
	t.Parallel()
	b := setupRestore(t)
	b.startAll(t)
	subset := restoreRequest("subset-1", messages.TargetInPlace)
	subset.Nodes = []messages.NodeMapping{{Source: "n1"}}
	for _, tc := range []struct {
		req  messages.RestoreRequest
		want string
	}{
		{subset, "the others would repair post-barrier data back"},
		{func() messages.RestoreRequest {
			r := restoreRequest("nobackup-1", messages.TargetInPlace)
			r.Backup = messages.JobIDFor("c1", "nope")
			return r
		}(), "is not in the catalog"},
		{func() messages.RestoreRequest {
			r := restoreRequest("bad-1", messages.TargetNewCluster)
			r.TargetCluster = ""
			return r
		}(), "target_cluster: is required"},
	} {
		id := b.submit(t, tc.req)
		rej := b.env.Rejection(t, id, tc.req.RequestID, restoreTimeout)
		require.Contains(t, rej.Reason, tc.want)
		_, err := b.env.H.Restores.Get(t.Context(), id)
		require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "no restore record")
	}
	require.Empty(t, b.nodes.Steps())
}

// A worker killed while it prepares a node leaves the restore to another
// worker, which finishes it with the same result.
func TestRestoreSurvivesAWorkerKilledWhilePreparing(t *testing.T) {
	t.Parallel()
	b := setupRestore(t)
	_, err := b.stack.StartPlanner()
	require.NoError(t, err)
	_, err = b.stack.StartCoordinator()
	require.NoError(t, err)
	entered := make(chan struct{}, 1)
	var once sync.Once
	first := &recordingRestorer{running: map[string]bool{}, block: func(ctx context.Context, node string) error {
		if node != "m2" {
			return nil
		}
		once.Do(func() { entered <- struct{}{} })
		<-ctx.Done()
		return ctx.Err()
	}}
	w1, err := b.stack.StartWorker(restoreDrivers{fs: b.fs, nodes: first})
	require.NoError(t, err)
	id := b.submit(t, restoreRequest("crash-1", messages.TargetNewCluster))
	select {
	case <-entered:
	case <-time.After(restoreTimeout):
		t.Fatal("m2 never prepared")
	}
	require.NoError(t, w1.Kill(t.Context()))
	_, err = b.stack.StartWorker(nil)
	require.NoError(t, err)
	r := b.waitTerminal(t, id)
	require.Equal(t, messages.RestoreSucceeded, r.Phase, r.Error)
	for i := 1; i <= 3; i++ {
		requireRestored(t, filepath.Join(b.dir, fmt.Sprintf("m%d", i), "data"), fmt.Sprintf("n%d", i))
	}
}

// A coordinator killed mid-restore is replaced; the sweep carries the
// restore on from its record.
func TestRestoreSurvivesACoordinatorKilled(t *testing.T) {
	t.Parallel()
	b := setupRestore(t)
	_, err := b.stack.StartPlanner()
	require.NoError(t, err)
	c1, err := b.stack.StartCoordinator()
	require.NoError(t, err)
	release := make(chan struct{})
	b.nodes.block = func(ctx context.Context, _ string) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_, err = b.stack.StartWorker(nil)
	require.NoError(t, err)
	id := b.submit(t, restoreRequest("coord-1", messages.TargetNewCluster))
	require.NoError(t, testenv.Eventually(restoreTimeout, func() bool {
		r, err := planner.LoadRestore(t.Context(), b.env.H, id)
		return err == nil && r.Phase == messages.RestorePreparing
	}))
	require.NoError(t, c1.Kill(t.Context()))
	close(release)
	_, err = b.stack.StartCoordinator()
	require.NoError(t, err)
	r := b.waitTerminal(t, id)
	require.Equal(t, messages.RestoreSucceeded, r.Phase, r.Error)
	requireBarriers(t, b.nodes.Steps(), 3)
}

// A cancelled restore starts no further task: nodes being prepared finish,
// none is started, and the backup's hold is released.
func TestRestoreCancelStartsNothingMore(t *testing.T) {
	t.Parallel()
	b := setupRestore(t)
	release := make(chan struct{})
	b.nodes.block = func(ctx context.Context, _ string) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.startAll(t)
	id := b.submit(t, restoreRequest("cancel-1", messages.TargetNewCluster))
	require.NoError(t, testenv.Eventually(restoreTimeout, func() bool {
		r, err := planner.LoadRestore(t.Context(), b.env.H, id)
		return err == nil && r.Phase == messages.RestorePreparing
	}))
	data, err := json.Marshal(messages.Control{Schema: messages.ControlSchema, JobID: id, Action: "cancel", By: "ops", Reason: "wrong backup"})
	require.NoError(t, err)
	_, err = b.env.JS.Publish(t.Context(), messages.SubjectControl(id), data)
	require.NoError(t, err)
	r := b.waitTerminal(t, id)
	close(release)
	require.Equal(t, messages.RestoreCancelled, r.Phase)
	require.Contains(t, r.Error, "cancelled by ops: wrong backup")
	kv, err := b.env.H.Holds, error(nil)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(restoreTimeout, func() bool {
		_, err := kv.Get(t.Context(), messages.CatalogKey("c1", b.job))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}), "hold released")
	// Give any task in flight time to land: still none started.
	time.Sleep(time.Second)
	for _, s := range b.nodes.Steps() {
		require.NotEqual(t, messages.KindRestoreStart, s.kind)
	}
}

// startRestorePlanner starts a planner whose configuration is inv, as a
// replica still running an older configuration file would.
func (b *restoreBundle) startRestorePlanner(t *testing.T, inv planner.Inventory, obs planner.Observer) {
	t.Helper()
	_, js := b.env.Connect(t)
	h, err := testenv.Handles(t.Context(), js)
	require.NoError(t, err)
	p := planner.NewPlanner(js, h, planner.PlannerConfig{Options: planner.Options{Observer: obs}, Inventory: inv,
		HandbackBase: 50 * time.Millisecond, HandbackMax: 300 * time.Millisecond})
	require.NoError(t, p.Start(context.Background()))
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
}

// A restore request naming a cluster this planner's configuration lacks is
// left for a running planner that has it, for longer than the consumer
// delivers one message, never refused: during a rolling update the planner
// with the new configuration plans it.
func TestRestoreRequestLeftForThePlannerThatHasItsClusters(t *testing.T) {
	t.Parallel()
	b := setupRestore(t)
	pres, err := topology.StartPresence(t.Context(), b.env.H.Replicas, messages.Replica{Name: "planner-new",
		Roles: []string{messages.RolePlanner}, Clusters: []string{"c1", "c2"}, Config: "new"}, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pres.Stop(context.Background()) })
	_, err = b.stack.StartCoordinator()
	require.NoError(t, err)
	_, err = b.stack.StartWorker(nil)
	require.NoError(t, err)

	// The old planner has the backup's cluster, not the target cluster.
	obs := newCountingObserver()
	b.startRestorePlanner(t, planner.Inventory{Clusters: b.inv.Clusters[:1]}, obs)
	id := b.submit(t, restoreRequest("roll-restore-1", messages.TargetNewCluster))
	require.NoError(t, testenv.Eventually(restoreTimeout, func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.handedBack > 2*topology.RestorePlannerMaxDeliver
	}), "the old planner hands the request back")
	_, err = b.env.H.Restores.Get(t.Context(), id)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "nothing planned by the planner without the target cluster")

	_, err = b.stack.StartPlanner()
	require.NoError(t, err)
	r := b.waitTerminal(t, id)
	require.Equal(t, messages.RestoreSucceeded, r.Phase, r.Error)
	obs.mu.Lock()
	require.Empty(t, obs.rejected, "no request rejected")
	obs.mu.Unlock()
	for i := 1; i <= 3; i++ {
		requireRestored(t, filepath.Join(b.dir, fmt.Sprintf("m%d", i), "data"), fmt.Sprintf("n%d", i))
	}
}

// A restore request for a cluster no running planner has is rejected at
// once, naming the cluster: a mistyped name is never redelivered for ever.
func TestRestoreRequestNoPlannerKnowsIsRejected(t *testing.T) {
	t.Parallel()
	b := setupRestore(t)
	pres, err := topology.StartPresence(t.Context(), b.env.H.Replicas, messages.Replica{Name: "worker-x",
		Roles: []string{messages.RoleWorker}, Clusters: []string{"c1", "c9"}, Config: "x"}, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pres.Stop(context.Background()) })
	b.startAll(t)
	req := restoreRequest("typo-restore-1", messages.TargetNewCluster)
	req.TargetCluster = "c9"
	id := b.submit(t, req)
	rej := b.env.Rejection(t, id, req.RequestID, restoreTimeout)
	require.Equal(t, "unknown_cluster", rej.Code)
	require.Contains(t, rej.Reason, `unknown cluster "c9": no running planner has it in its configuration`)
	_, err = b.env.H.Restores.Get(t.Context(), id)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
}
