package worker_test

import (
	"context"
	"encoding/json"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

// regionalSnapshotter keeps snapshots in regions: a snapshot is in the
// region its node's data centre maps to. It records every look-up and
// every regional delete.
type regionalSnapshotter struct {
	*fakes.Snapshotter
	regions map[string]string // data centre -> region

	mu        sync.Mutex
	finds     []map[string]string
	deletedIn map[string]string // snapshot -> region
}

var (
	_ worker.Snapshotter     = (*regionalSnapshotter)(nil)
	_ worker.RegionalDeleter = (*regionalSnapshotter)(nil)
)

func (r *regionalSnapshotter) Find(ctx context.Context, filter map[string]string) ([]worker.Snapshot, error) {
	r.mu.Lock()
	r.finds = append(r.finds, maps.Clone(filter))
	r.mu.Unlock()
	return r.Snapshotter.Find(ctx, filter)
}

func (r *regionalSnapshotter) Create(ctx context.Context, req worker.CreateRequest) ([]worker.Snapshot, error) {
	snaps, err := r.Snapshotter.Create(ctx, req)
	for i := range snaps {
		snaps[i].Region = r.regions[req.Node.DC]
	}
	return snaps, err
}

func (r *regionalSnapshotter) DeleteIn(ctx context.Context, region, id string) error {
	r.mu.Lock()
	r.deletedIn[id] = region
	r.mu.Unlock()
	return r.Snapshotter.Delete(ctx, id)
}

func (r *regionalSnapshotter) lookups() []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]string(nil), r.finds...)
}

// runTask publishes one task and returns its result event.
func runTask(t *testing.T, env *testenv.Env, snap worker.Snapshotter, task messages.Task) messages.TaskResult {
	t.Helper()
	results := make(chan *nats.Msg, 4)
	sub, err := env.NC.ChanSubscribe(messages.SubjectTaskEvent(task.JobID, task.Kind), results)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Snap: snap}, worker.Config{Logger: zerolog.Nop(), Kinds: []messages.Kind{task.Kind}})
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	task.Schema = messages.TaskSchema
	data, err := json.Marshal(task)
	require.NoError(t, err)
	_, err = env.JS.Publish(t.Context(), messages.SubjectTask(task.Kind, task.Cluster), data)
	require.NoError(t, err)
	select {
	case m := <-results:
		var r messages.TaskResult
		require.NoError(t, json.Unmarshal(m.Data, &r))
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no result")
	}
	return messages.TaskResult{}
}

// A snapshot task of a node in a data centre looks for its earlier work
// once, in that data centre only, and reports where its snapshot is.
func TestSnapshotTaskOfADataCentre(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	snap := &regionalSnapshotter{Snapshotter: fakes.NewSnapshotter(), regions: map[string]string{"west": "us-west-2"}, deletedIn: map[string]string{}}
	job := "c1-000000000001"
	node := &messages.Node{Name: "w1", DC: "west", Region: "us-west-2"}
	vol := messages.Volume{ID: "vol-1"}
	res := runTask(t, env, snap, messages.Task{
		ID: messages.TaskID(job, messages.KindSnapshot, vol.ID), Kind: messages.KindSnapshot, JobID: job, Cluster: "c1",
		Target: vol.ID, Node: node, Volumes: []messages.Volume{vol},
		SnapshotTags: map[string]string{messages.TagManaged: "true", messages.TagJob: job, messages.TagDC: "west"},
	})
	require.Equal(t, messages.OutcomeSucceeded, res.Outcome, res.Error)
	require.Len(t, res.Snapshots, 1)
	require.Equal(t, "us-west-2", res.Snapshots[0].Region)
	require.Equal(t, []map[string]string{{messages.TagTask: messages.TaskID(job, messages.KindSnapshot, vol.ID), messages.TagDC: "west"}},
		snap.lookups(), "one look-up, narrowed to the data centre")
}

// Retention deletes each snapshot in the region Find reported it in.
func TestRetentionDeletesInEachRegion(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	snap := &regionalSnapshotter{Snapshotter: fakes.NewSnapshotter(), deletedIn: map[string]string{}}
	old := "c1-000000000001"
	tags := map[string]string{messages.TagManaged: "true", messages.TagJob: old, messages.TagCluster: "c1"}
	snap.Put(worker.Snapshot{ID: "snap-e", VolumeID: "vol-e", State: worker.StateCompleted, Tags: tags, Region: "us-east-1"})
	snap.Put(worker.Snapshot{ID: "snap-w", VolumeID: "vol-w", State: worker.StateCompleted, Tags: tags, Region: "us-west-2"})
	job := "c1-000000000002"
	res := runTask(t, env, snap, messages.Task{
		ID: messages.TaskID(job, messages.KindRetention, "c1"), Kind: messages.KindRetention, JobID: job, Cluster: "c1",
		Target: "c1", Retire: []string{old},
	})
	require.Equal(t, messages.OutcomeSucceeded, res.Outcome, res.Error)
	require.ElementsMatch(t, []string{"snap-e", "snap-w"}, res.Deleted)
	require.Equal(t, []string{old}, res.Retired)
	snap.mu.Lock()
	defer snap.mu.Unlock()
	require.Equal(t, map[string]string{"snap-e": "us-east-1", "snap-w": "us-west-2"}, snap.deletedIn)
}
