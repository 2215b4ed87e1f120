package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/netfault"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

const snapJob = "c1-000000000000"

func snapshotTask(vols ...string) messages.Task {
	t := messages.Task{Schema: messages.TaskSchema, ID: messages.TaskID(snapJob, messages.KindSnapshot, "n1"),
		Kind: messages.KindSnapshot, JobID: snapJob, Cluster: "c1", Target: "n1", Node: &messages.Node{Name: "n1"},
		SnapshotTags: map[string]string{messages.TagJob: snapJob, messages.TagCluster: "c1", messages.TagNode: "n1"}}
	for _, v := range vols {
		t.Volumes = append(t.Volumes, messages.Volume{ID: v})
	}
	return t
}

func publishTask(t *testing.T, js jetstream.JetStream, task messages.Task) {
	t.Helper()
	data, err := json.Marshal(task)
	require.NoError(t, err)
	_, err = js.Publish(context.Background(), messages.SubjectTask(task.Kind, task.Cluster), data)
	require.NoError(t, err)
}

// results reads task result events as they are published.
type results struct {
	cons jetstream.Consumer
}

func watchResults(t *testing.T, env *testenv.Env) *results {
	t.Helper()
	cons, err := env.JS.OrderedConsumer(context.Background(), messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectTaskEventsAll}})
	require.NoError(t, err)
	return &results{cons: cons}
}

// next returns the next result of a task, waiting up to timeout.
func (r *results) next(t *testing.T, taskID string, timeout time.Duration) messages.TaskResult {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m, err := r.cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		var res messages.TaskResult
		require.NoError(t, json.Unmarshal(m.Data(), &res))
		if res.TaskID == taskID {
			return res
		}
	}
	t.Fatalf("no result for %s within %s", taskID, timeout)
	return messages.TaskResult{}
}

func startWorker(t *testing.T, js jetstream.JetStream, jobs jetstream.KeyValue, drivers worker.Drivers, cfg worker.Config) *worker.Worker {
	t.Helper()
	cfg.Logger = zerolog.Nop()
	if cfg.Kinds == nil {
		cfg.Kinds = []messages.Kind{messages.KindSnapshot}
	}
	cfg.BackoffBase, cfg.BackoffMax = 20*time.Millisecond, 100*time.Millisecond
	w := worker.New(js, jobs, drivers, cfg)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.StopAndCancel(ctx)
	})
	return w
}

// A snapshot task that finds its earlier snapshot in error (a copy a crash
// interrupted) deletes it and takes the volume again, instead of failing
// the job.
func TestSnapshotInErrorIsTakenAgain(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	snap := fakes.NewSnapshotter()
	task := snapshotTask("vol-1", "vol-2")
	// vol-1 was taken; vol-2's copy was interrupted.
	snap.Put(worker.Snapshot{ID: "snap-00000000000000a01", VolumeID: "vol-1", State: worker.StateCompleted,
		Tags: map[string]string{messages.TagTask: task.ID, messages.TagManaged: "true", messages.TagJob: snapJob}})
	snap.Put(worker.Snapshot{ID: "snap-00000000000000a02", VolumeID: "vol-2", State: worker.StateError,
		StateMessage: "copy interrupted: the process copying the volume stopped",
		Tags:         map[string]string{messages.TagTask: task.ID, messages.TagManaged: "true", messages.TagJob: snapJob}})
	res := watchResults(t, env)
	startWorker(t, env.JS, env.H.Jobs, fakes.Drivers{Snap: snap}, worker.Config{Leases: env.H.Leases})
	publishTask(t, env.JS, task)

	r := res.next(t, task.ID, 20*time.Second)
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, "error: %s", r.Error)
	got := map[string]string{}
	for _, s := range r.Snapshots {
		got[s.VolumeID] = s.SnapshotID
	}
	require.Equal(t, "snap-00000000000000a01", got["vol-1"], "the good snapshot is kept")
	require.NotEqual(t, "snap-00000000000000a02", got["vol-2"], "the one in error is replaced")
	all, err := snap.Find(context.Background(), map[string]string{messages.TagTask: task.ID})
	require.NoError(t, err)
	require.Len(t, all, 2, "one snapshot per volume, the errored one deleted")
	for _, s := range all {
		require.Equal(t, worker.StateCompleted, s.State)
	}
}

// paced is a snapshotter whose provider asks for a pause between two
// snapshots of one volume.
type paced struct {
	*fakes.Snapshotter
	after time.Duration
}

func (p paced) RetakeAfter() time.Duration { return p.after }

// The new snapshot of a volume whose snapshot failed is taken no sooner
// than the provider's spacing after the failed one began.
func TestRetakeIsPaced(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	snap := paced{Snapshotter: fakes.NewSnapshotter(), after: 700 * time.Millisecond}
	task := snapshotTask("vol-1")
	failedAt := time.Now()
	snap.Put(worker.Snapshot{ID: "snap-00000000000000b01", VolumeID: "vol-1", State: worker.StateError, StartTime: failedAt,
		StateMessage: "internal error", Tags: map[string]string{messages.TagTask: task.ID, messages.TagManaged: "true"}})
	res := watchResults(t, env)
	startWorker(t, env.JS, env.H.Jobs, fakes.Drivers{Snap: snap}, worker.Config{})
	publishTask(t, env.JS, task)
	r := res.next(t, task.ID, 20*time.Second)
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, "error: %s", r.Error)
	require.Len(t, r.Snapshots, 1)
	require.False(t, r.Snapshots[0].StartTime.Before(failedAt.Add(snap.after)),
		"taken at %s, failed one began at %s", r.Snapshots[0].StartTime, failedAt)
}

// The await task deletes a snapshot in error that its task already
// replaced and leaves it out of the listing; a volume whose only snapshot
// is in error fails it for good, with the snapshot's message.
func TestAwaitSortsSnapshotsInError(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	tags := func() map[string]string {
		return map[string]string{messages.TagJob: snapJob, messages.TagManaged: "true", messages.TagNode: "n1",
			messages.TagTask: messages.TaskID(snapJob, messages.KindSnapshot, "n1")}
	}
	snap := fakes.NewSnapshotter()
	snap.Put(worker.Snapshot{ID: "snap-00000000000000c01", VolumeID: "vol-1", State: worker.StateError, StateMessage: "copy interrupted", Tags: tags()})
	snap.Put(worker.Snapshot{ID: "snap-00000000000000c02", VolumeID: "vol-1", State: worker.StateCompleted, Tags: tags()})
	snap.Put(worker.Snapshot{ID: "snap-00000000000000c03", VolumeID: "vol-2", State: worker.StateCompleted, Tags: tags()})
	res := watchResults(t, env)
	startWorker(t, env.JS, env.H.Jobs, fakes.Drivers{Snap: snap}, worker.Config{Kinds: []messages.Kind{messages.KindAwait},
		AwaitPoll: 20 * time.Millisecond})
	await := messages.Task{Schema: messages.TaskSchema, ID: messages.TaskID(snapJob, messages.KindAwait, snapJob), Kind: messages.KindAwait,
		JobID: snapJob, Cluster: "c1", Target: snapJob, Expect: 2}
	publishTask(t, env.JS, await)
	r := res.next(t, await.ID, 20*time.Second)
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, "error: %s", r.Error)
	store, err := env.JS.ObjectStore(context.Background(), messages.BucketPlans)
	require.NoError(t, err)
	data, err := store.GetBytes(context.Background(), r.Listing)
	require.NoError(t, err)
	l, err := messages.DecodeListing(data)
	require.NoError(t, err)
	var ids []string
	for _, ref := range l.Snapshots {
		ids = append(ids, ref.SnapshotID)
	}
	require.ElementsMatch(t, []string{"snap-00000000000000c02", "snap-00000000000000c03"}, ids)
	all, err := snap.Find(context.Background(), map[string]string{messages.TagJob: snapJob})
	require.NoError(t, err)
	require.Len(t, all, 2, "the replaced snapshot in error is deleted")

	// A second job whose only snapshot of vol-1 is in error.
	job2 := "c1-000000000002"
	snap.Put(worker.Snapshot{ID: "snap-00000000000000c04", VolumeID: "vol-1", State: worker.StateError, StateMessage: "internal error",
		Tags: map[string]string{messages.TagJob: job2, messages.TagManaged: "true"}})
	await2 := await
	await2.ID, await2.JobID, await2.Target, await2.Expect = messages.TaskID(job2, messages.KindAwait, job2), job2, job2, 1
	publishTask(t, env.JS, await2)
	r = res.next(t, await2.ID, 20*time.Second)
	require.Equal(t, messages.OutcomeFailed, r.Outcome)
	require.Equal(t, messages.ClassPermanent, r.ErrorClass)
	require.Contains(t, r.Error, "snap-00000000000000c04 (volume vol-1): internal error")
}

// lookThenCreate is a snapshotter with EC2's weakness: its Create looks
// for the task's snapshots, then creates the missing ones unconditionally,
// so an execution that stalls between the two creates a second snapshot
// unless something fences it. stall, when set, runs between the two.
type lookThenCreate struct {
	*fakes.Snapshotter
	stall func(context.Context)
}

func (s lookThenCreate) Create(ctx context.Context, req worker.CreateRequest) ([]worker.Snapshot, error) {
	found, err := s.Find(ctx, map[string]string{messages.TagTask: req.Tags[messages.TagTask]})
	if err != nil {
		return nil, err
	}
	have := map[string]worker.Snapshot{}
	for _, f := range found {
		have[f.VolumeID] = f
	}
	if s.stall != nil {
		s.stall(ctx)
	}
	var out []worker.Snapshot
	for i, v := range req.Volumes {
		if f, ok := have[v.ID]; ok {
			out = append(out, f)
			continue
		}
		if req.Fence != nil {
			if err := req.Fence(ctx); err != nil {
				return nil, err
			}
		}
		sn := worker.Snapshot{ID: fmt.Sprintf("snap-%017x", time.Now().UnixNano()+int64(i)), VolumeID: v.ID,
			State: worker.StateCompleted, StartTime: time.Now(), Tags: maps.Clone(req.Tags)}
		s.Put(sn)
		out = append(out, sn)
	}
	return out, nil
}

// outcomes passes on the outcome of every delivery a worker ends.
type outcomes struct {
	worker.NopObserver
	ch chan string
}

func (o *outcomes) TaskFinished(_ messages.Kind, outcome string, _ time.Duration, _ string) {
	select {
	case o.ch <- outcome:
	default:
	}
}

// A worker that stalls between looking for its snapshot and creating it,
// longer than the ack wait (here its network to NATS stalls, so neither
// its heartbeats nor its lease renewals get through), sees its task handed
// to another worker, which takes the snapshot. When the stalled worker
// resumes, it has lost the task's lease and creates nothing. Without
// leases, it would make a second snapshot: the control case shows the test
// can tell.
func TestStalledWorkerCreatesNoSecondSnapshot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		leases    bool
		snapshots int
	}{
		{name: "with leases", leases: true, snapshots: 1},
		{name: "control without leases", leases: false, snapshots: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const ackWait = time.Second
			env := testenv.New(t, topology.Options{AckWait: ackWait})
			store := fakes.NewSnapshotter()
			var leases worker.LeaseStore

			// Worker A reaches NATS through a proxy the test stalls.
			proxy := netfault.New(t, env.Server.Addr().String())
			nc, err := nats.Connect("nats://"+proxy.Addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
			require.NoError(t, err)
			t.Cleanup(nc.Close)
			jsA, err := jetstream.New(nc)
			require.NoError(t, err)
			if tc.leases {
				// A's lease goes through its own, stalled, connection.
				leases, err = jsA.KeyValue(context.Background(), messages.BucketLeases)
				require.NoError(t, err)
			}
			stalled := make(chan struct{})
			resume := make(chan struct{})
			var once, resumed sync.Once
			doResume := func() { resumed.Do(func() { close(resume) }) }
			t.Cleanup(doResume)
			a := lookThenCreate{Snapshotter: store, stall: func(ctx context.Context) {
				once.Do(func() {
					close(stalled)
					select {
					case <-resume:
					case <-ctx.Done():
					}
				})
			}}
			res := watchResults(t, env)
			obsA := &outcomes{ch: make(chan string, 16)}
			startWorker(t, jsA, nil, fakes.Drivers{Snap: a}, worker.Config{Leases: leases, Name: "a", Observer: obsA})
			task := snapshotTask("vol-1")
			publishTask(t, env.JS, task)
			<-stalled // A looked, found nothing, and is about to create
			proxy.Stall()

			// B takes the redelivered task and makes the snapshot.
			var leasesB worker.LeaseStore
			if tc.leases {
				leasesB = env.H.Leases
			}
			startWorker(t, env.JS, nil, fakes.Drivers{Snap: lookThenCreate{Snapshotter: store}}, worker.Config{Leases: leasesB, Name: "b"})
			r := res.next(t, task.ID, 30*time.Second)
			require.Equal(t, messages.OutcomeSucceeded, r.Outcome, "error: %s", r.Error)
			require.Equal(t, "b", r.Worker)
			require.Equal(t, 1, store.Count(map[string]string{messages.TagTask: task.ID}))

			// A resumes: its network first, then its work.
			proxy.Resume()
			doResume()
			// A may also have been handed the task again meanwhile (a pull
			// it issued before the stall): that delivery finds B's
			// snapshot. The stalled one is what matters.
			if tc.leases {
				timeout := time.After(30 * time.Second)
				for out := ""; out != "abandoned"; {
					select {
					case out = <-obsA.ch:
					case <-timeout:
						t.Fatal("worker A's stalled delivery never gave the task up")
					}
				}
			} else {
				require.NoError(t, testenv.Eventually(30*time.Second, func() bool {
					return store.Count(map[string]string{messages.TagTask: task.ID}) == tc.snapshots
				}))
			}
			require.Equal(t, tc.snapshots, store.Count(map[string]string{messages.TagTask: task.ID}))
		})
	}
}

// A snapshot task delivered again after its result was stored (its ack
// lost) takes no second snapshot: it finds its first by task tag.
func TestSnapshotTaskDeliveredAgainAfterItsResultTakesNothingMore(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	snap := fakes.NewSnapshotter()
	task := snapshotTask("vol-1", "vol-2")
	res := watchResults(t, env)
	startWorker(t, env.JS, env.H.Jobs, fakes.Drivers{Snap: snap}, worker.Config{Leases: env.H.Leases})
	publishTask(t, env.JS, task)
	first := res.next(t, task.ID, 20*time.Second)
	require.Equal(t, messages.OutcomeSucceeded, first.Outcome, "error: %s", first.Error)

	// The same task again, as the stream redelivers it when the ack is lost.
	publishTask(t, env.JS, task)
	require.NoError(t, testenv.Eventually(20*time.Second, func() bool {
		info, err := env.JS.Stream(context.Background(), messages.StreamTasks)
		return err == nil && info.CachedInfo().State.Msgs == 0
	}), "the second delivery settled")
	require.Equal(t, 2, snap.Count(map[string]string{messages.TagTask: task.ID}), "one snapshot per volume, taken once")
}
