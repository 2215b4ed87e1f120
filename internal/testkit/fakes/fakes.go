package fakes

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

// NodeTool is an in-memory nodetool: tags per node, with timestamps.
type NodeTool struct {
	mu sync.Mutex
	// Tags holds the snapshot tags present on each node.
	Tags map[string]map[string]bool
	// FlushedAt records when each node's snapshot completed.
	FlushedAt map[string]time.Time
	// Fail makes a node's snapshot fail with the error it returns (nil: ok).
	Fail func(node string) error
	// Delay returns how long a node's snapshot takes.
	Delay func(node string) time.Duration
	// ClearFail makes a node's clear fail with the error it returns (nil: ok).
	ClearFail func(node string) error
	// Block, when set, is waited on by every snapshot call before it runs.
	Block chan struct{}
	// Synced records the directories each node's syncs named.
	Synced map[string][][]string
	Calls  atomic.Int64
	Clears atomic.Int64
}

var _ worker.NodeTool = (*NodeTool)(nil)

// NewNodeTool makes an empty fleet.
func NewNodeTool() *NodeTool {
	return &NodeTool{Tags: map[string]map[string]bool{}, FlushedAt: map[string]time.Time{}}
}

// Snapshot records the tag on the node; a tag already there is an error
// wrapping worker.ErrSnapshotExists, as nodetool refuses it.
func (f *NodeTool) Snapshot(ctx context.Context, node messages.Node, tag string, _ []string) error {
	f.Calls.Add(1)
	if f.Block != nil {
		select {
		case <-f.Block:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	if f.Delay != nil {
		if d := f.Delay(node.Name); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	}
	if f.Fail != nil {
		if err := f.Fail(node.Name); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Tags[node.Name] == nil {
		f.Tags[node.Name] = map[string]bool{}
	}
	if f.Tags[node.Name][tag] {
		// As nodetool: a tag already on the node is refused.
		return errclass.Permanent(fmt.Errorf("snapshot %s on %s: %w", tag, node.Name, worker.ErrSnapshotExists))
	}
	f.Tags[node.Name][tag] = true
	if _, ok := f.FlushedAt[node.Name]; !ok {
		f.FlushedAt[node.Name] = time.Now()
	}
	return nil
}

// ClearSnapshot removes the tag.
func (f *NodeTool) ClearSnapshot(_ context.Context, node messages.Node, tag string) error {
	f.Clears.Add(1)
	if f.ClearFail != nil {
		if err := f.ClearFail(node.Name); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.Tags[node.Name], tag)
	return nil
}

// TagsOn returns the tags present on a node.
func (f *NodeTool) TagsOn(node string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for t := range f.Tags[node] {
		out = append(out, t)
	}
	return out
}

var (
	_ worker.Syncer       = (*NodeTool)(nil)
	_ worker.FactGatherer = (*NodeTool)(nil)
)

// Sync records the directories synced on the node (nil: every file system).
func (f *NodeTool) Sync(_ context.Context, node messages.Node, dirs []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Synced == nil {
		f.Synced = map[string][][]string{}
	}
	f.Synced[node.Name] = append(f.Synced[node.Name], dirs)
	return nil
}

// SyncedOn returns the directories each of the node's syncs named.
func (f *NodeTool) SyncedOn(node string) [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.Synced[node]...)
}

// DataDirs answers /fake/<node>/data.
func (f *NodeTool) DataDirs(_ context.Context, node messages.Node) ([]string, error) {
	return []string{"/fake/" + node.Name + "/data"}, nil
}

// SnapshotTables describes one table, ks1.t1, while the tag is on the node.
func (f *NodeTool) SnapshotTables(_ context.Context, node messages.Node, dirs []string, tag string) ([]messages.TableSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.Tags[node.Name][tag] || len(dirs) == 0 {
		return nil, nil
	}
	return []messages.TableSnapshot{{Keyspace: "ks1", Table: "t1", ID: "5a1c395e0b4a11f0a5a2c3f0d1e2f3a4", DataDir: dirs[0],
		SSTables: 1, Files: 8, Bytes: 1024, CQL: "CREATE TABLE IF NOT EXISTS ks1.t1 (id int PRIMARY KEY) WITH ID = 5a1c395e-0b4a-11f0-a5a2-c3f0d1e2f3a4;"}}, nil
}

// Describe answers as a node of a one-DC cluster named "fake" would, the
// host ID and tokens derived from the node's name.
func (f *NodeTool) Describe(_ context.Context, node messages.Node) (messages.NodeFacts, error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(node.Name))
	n := h.Sum32()
	return messages.NodeFacts{
		HostID: fmt.Sprintf("%08x-0000-4000-8000-000000000000", n), Datacenter: "dc1", Rack: "rack1",
		Address: node.Address, Tokens: []string{fmt.Sprint(int32(n)), fmt.Sprint(int32(n) / 2)}, Version: "5.0.6",
		ClusterName: "fake", Partitioner: "org.apache.cassandra.dht.Murmur3Partitioner",
		Snitch: "org.apache.cassandra.locator.GossipingPropertyFileSnitch", SchemaVersion: "069b3db1-68df-30bd-8d47-42e3f8390898",
		Keyspaces: []messages.KeyspaceFacts{{Name: "ks1", Class: "NetworkTopologyStrategy", Options: map[string]string{"dc1": "3"}},
			{Name: "system", Class: "LocalStrategy"}},
	}, nil
}

// LastFlush returns the latest flush completion time.
func (f *NodeTool) LastFlush() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var last time.Time
	for _, t := range f.FlushedAt {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// Snapshotter is an in-memory volume snapshot store.
type Snapshotter struct {
	mu    sync.Mutex
	snaps map[string]*worker.Snapshot
	seq   int
	// CreatedAt records when each Create call began, by volume.
	CreatedAt map[string]time.Time
	// Fail makes Create of a volume fail with the error it returns.
	Fail func(volume string) error
	// Hold, when set, is waited on by Create after it created the snapshot
	// and before it returns: a worker killed there has done the work but
	// not reported it.
	Hold chan struct{}
	// Pending leaves new snapshots pending until Complete is called.
	Pending bool
	Creates atomic.Int64
	Deletes atomic.Int64
}

var _ worker.Snapshotter = (*Snapshotter)(nil)

// NewSnapshotter makes an empty store.
func NewSnapshotter() *Snapshotter {
	return &Snapshotter{snaps: map[string]*worker.Snapshot{}, CreatedAt: map[string]time.Time{}}
}

// Find returns snapshots carrying every tag of filter.
func (s *Snapshotter) Find(_ context.Context, filter map[string]string) ([]worker.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []worker.Snapshot
	for _, sn := range s.snaps {
		if matches(sn.Tags, filter) {
			c := *sn
			c.Tags = maps.Clone(sn.Tags)
			out = append(out, c)
		}
	}
	return out, nil
}

// Create snapshots each volume that has no snapshot of the request's task
// yet, as the real drivers do, and returns the task's snapshots. It asks
// the request's fence first when it has something to create.
func (s *Snapshotter) Create(ctx context.Context, req worker.CreateRequest) ([]worker.Snapshot, error) {
	now := time.Now()
	var out []worker.Snapshot
	for _, v := range req.Volumes {
		if s.Fail != nil {
			if err := s.Fail(v.ID); err != nil {
				return nil, err
			}
		}
	}
	task := req.Tags[messages.TagTask]
	s.mu.Lock()
	have := map[string]worker.Snapshot{}
	for _, sn := range s.snaps {
		if task != "" && sn.Tags[messages.TagTask] == task && sn.State != worker.StateError {
			have[sn.VolumeID] = *sn
		}
	}
	var missing []messages.Volume
	for _, v := range req.Volumes {
		if prior, ok := have[v.ID]; ok {
			out = append(out, prior)
		} else {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 && req.Fence != nil {
		if err := req.Fence(ctx); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	for _, v := range missing {
		s.Creates.Add(1)
		s.seq++
		state := worker.StateCompleted
		if s.Pending {
			state = worker.StatePending
		}
		sn := &worker.Snapshot{ID: fmt.Sprintf("snap-%017x", s.seq), VolumeID: v.ID, State: state,
			StartTime: now, Tags: maps.Clone(req.Tags)}
		s.snaps[sn.ID] = sn
		if _, ok := s.CreatedAt[v.ID]; !ok {
			s.CreatedAt[v.ID] = now
		}
		out = append(out, *sn)
	}
	s.mu.Unlock()
	if s.Hold != nil {
		select {
		case <-s.Hold:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	return out, nil
}

var _ worker.VolumeDescriber = (*Snapshotter)(nil)

// DescribeVolumes describes every volume as a 10 GiB gp3 volume in
// fake-1a.
func (s *Snapshotter) DescribeVolumes(_ context.Context, snaps []worker.Snapshot) ([]messages.VolumeFacts, error) {
	seen := map[string]bool{}
	var out []messages.VolumeFacts
	for _, sn := range snaps {
		if !seen[sn.VolumeID] {
			seen[sn.VolumeID] = true
			out = append(out, messages.VolumeFacts{VolumeID: sn.VolumeID, AZ: "fake-1a", SizeGiB: 10, Type: "gp3", IOPS: 3000, Throughput: 125})
		}
	}
	return out, nil
}

// Delete removes a managed snapshot.
func (s *Snapshotter) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.snaps[id]
	if !ok {
		return worker.ErrSnapshotGone
	}
	if sn.Tags[messages.TagManaged] != "true" {
		return errclass.Permanent(worker.ErrNotManaged)
	}
	s.Deletes.Add(1)
	delete(s.snaps, id)
	return nil
}

// Put adds a snapshot as is (to plant an unmanaged one, say).
func (s *Snapshotter) Put(sn worker.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := sn
	s.snaps[sn.ID] = &c
}

// Complete marks every pending snapshot completed.
func (s *Snapshotter) Complete() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sn := range s.snaps {
		if sn.State == worker.StatePending {
			sn.State = worker.StateCompleted
		}
	}
}

// Count returns how many snapshots carry every tag of filter.
func (s *Snapshotter) Count(filter map[string]string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sn := range s.snaps {
		if matches(sn.Tags, filter) {
			n++
		}
	}
	return n
}

func matches(tags, filter map[string]string) bool {
	for k, v := range filter {
		if tags[k] != v {
			return false
		}
	}
	return true
}

// FirstCreate returns the earliest Create time.
func (s *Snapshotter) FirstCreate() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first time.Time
	for _, t := range s.CreatedAt {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first
}

// Drivers serves the same node tool, snapshotter and hook runner for every
// cluster, or for the clusters of Clusters only when it is set: for any
// other, an error wrapping worker.ErrUnknownCluster, as a worker whose
// configuration lacks the cluster would.
type Drivers struct {
	Tool     worker.NodeTool
	Snap     worker.Snapshotter
	Hook     *Hooks
	Clusters []string
}

var (
	_ worker.Drivers     = Drivers{}
	_ worker.HookDrivers = Drivers{}
)

// Hooks returns the hook runner.
func (d Drivers) Hooks(cluster string) (worker.HookRunner, error) {
	if err := d.known(cluster); err != nil {
		return nil, err
	}
	if d.Hook == nil {
		return nil, errors.New("no hook runner")
	}
	return d.Hook, nil
}

func (d Drivers) known(cluster string) error {
	if d.Clusters != nil && !slices.Contains(d.Clusters, cluster) {
		return fmt.Errorf("cluster %q: %w", cluster, worker.ErrUnknownCluster)
	}
	return nil
}

// NodeTool returns the node tool.
func (d Drivers) NodeTool(cluster string) (worker.NodeTool, error) {
	if err := d.known(cluster); err != nil {
		return nil, err
	}
	if d.Tool == nil {
		return nil, errors.New("no node tool")
	}
	return d.Tool, nil
}

// Snapshotter returns the snapshotter.
func (d Drivers) Snapshotter(cluster string) (worker.Snapshotter, error) {
	if err := d.known(cluster); err != nil {
		return nil, err
	}
	if d.Snap == nil {
		return nil, errors.New("no snapshotter")
	}
	return d.Snap, nil
}

// HookRun is one hook command a Hooks runner ran.
type HookRun struct {
	Node string // "" for a job-scoped hook
	Hook string
	Env  map[string]string
	At   time.Time
}

// Hooks records the hooks it runs, in order.
type Hooks struct {
	mu   sync.Mutex
	runs []HookRun
	// Fail makes the run of a hook on a node fail with the error it returns.
	Fail func(hook, node string) error
}

var _ worker.HookRunner = (*Hooks)(nil)

// RunHook records the run.
func (h *Hooks) RunHook(_ context.Context, node *messages.Node, cmd worker.HookCommand) (worker.HookOutput, error) {
	run := HookRun{Hook: cmd.Env["QUIESCE_HOOK"], Env: maps.Clone(cmd.Env), At: time.Now()}
	if node != nil {
		run.Node = node.Name
	}
	h.mu.Lock()
	h.runs = append(h.runs, run)
	fail := h.Fail
	h.mu.Unlock()
	if fail != nil {
		if err := fail(run.Hook, run.Node); err != nil {
			return worker.HookOutput{Stderr: []byte(err.Error()), ExitCode: 1}, err
		}
	}
	return worker.HookOutput{Stdout: []byte("ran " + run.Hook + " on " + run.Node)}, nil
}

// Runs returns the hooks run so far, in order.
func (h *Hooks) Runs() []HookRun {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.runs)
}
